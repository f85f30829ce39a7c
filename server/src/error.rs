//! What can go wrong in the server, as one error type for the library API.
//!
//! The HTTP layer maps each variant to a status code (see `http.rs`); the CLI
//! prints the `Display` text, which always names what was wrong and where.

use std::path::PathBuf;

use thiserror::Error;

use cdx::package::PackageError;

#[derive(Debug, Error)]
pub enum ServerError {
    /// A record of a publish input does not fit its table. `column` is absent
    /// when the record as a whole is malformed (bad JSON, wrong field count).
    #[error(
        "{}:{line}: {}{problem}",
        .file.display(),
        .column.as_deref().map(|c| format!("column `{c}`: ")).unwrap_or_default()
    )]
    Record {
        file: PathBuf,
        line: u64,
        column: Option<String>,
        problem: String,
    },

    /// The request or the command line asks for something malformed.
    #[error("{0}")]
    Invalid(String),

    /// The request body is larger than the route takes (decoded, for a
    /// compressed body).
    #[error("{0}")]
    TooLarge(String),

    /// What was asked for does not exist (for this channel).
    #[error("{0}")]
    NotFound(String),

    /// What was asked for existed and was removed for good (a pruned
    /// package's file).
    #[error("{0}")]
    Gone(String),

    /// What was asked for exists already.
    #[error("{0}")]
    Conflict(String),

    /// The request carries no usable HTTP Basic credentials.
    #[error("{0}")]
    MissingCredentials(&'static str),

    /// An operators' route without the admin token.
    #[error("{0}")]
    NotAdmin(&'static str),

    /// An operators' route from another machine while no admin token is set.
    #[error("{0}")]
    Forbidden(&'static str),

    #[error("unknown channel database id `{0}`")]
    UnknownChannel(String),

    #[error("wrong secret for channel database id `{0}`")]
    WrongSecret(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("server database: {0}")]
    Db(#[from] rusqlite::Error),

    #[error("package: {0}")]
    Package(#[from] PackageError),
}

impl ServerError {
    /// An i/o error with what was being done when it happened.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ServerError::Io {
            context: context.into(),
            source,
        }
    }

    /// A record error without a column.
    pub(crate) fn record(file: &std::path::Path, line: u64, problem: impl Into<String>) -> Self {
        ServerError::Record {
            file: file.to_owned(),
            line,
            column: None,
            problem: problem.into(),
        }
    }
}
