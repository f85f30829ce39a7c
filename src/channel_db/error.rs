//! What can go wrong in the channel database.

use std::path::PathBuf;

use thiserror::Error;
use uuid::Uuid;

use crate::failure::FailureClass;
use crate::package::PackageError;
use crate::plan::{InvalidIdentifier, SchemaConflict};

/// What went wrong in the channel database, naming the package, table or
/// column concerned. Any error from `apply_package` means nothing of the
/// package was applied.
#[derive(Debug, Error)]
pub enum ChannelDbError {
    /// The package could not be read (corrupt, truncated, bad checksum...).
    #[error("package {}: {source}", display_id(.package_id))]
    Package {
        /// `None` when the package failed before its header was read.
        package_id: Option<Uuid>,
        #[source]
        source: PackageError,
    },

    /// A package's table does not fit the table the channel database has.
    /// Boxed: the largest variant by far, it would make every `Result`
    /// carrying this error as big.
    #[error("schema conflict: {0}")]
    SchemaConflict(Box<SchemaConflict>),

    /// The package is not the next of its data group: it comes at or
    /// before a sequence already applied, or (passing over) after a gap.
    #[error(
        "package {package_id} of data group `{data_group}` has sequence {sequence}, \
         but the channel database's last is {last_applied}: packages apply in order, \
         one after the other"
    )]
    OutOfOrder {
        package_id: Uuid,
        data_group: String,
        sequence: u64,
        last_applied: u64,
    },

    /// Applying again a package the channel database does not hold.
    #[error(
        "package {package_id} is not in cdx_applied_packages: only an applied package can be \
         applied again"
    )]
    NotApplied { package_id: Uuid },

    /// A value does not fit the channel database's column (the original's
    /// "String or binary data would be truncated"); nothing was applied.
    #[error(
        "package {package_id}: table `{table}`, column `{column}`, row with key ({key}): {detail}"
    )]
    ValueDoesNotFit {
        package_id: Uuid,
        table: String,
        column: String,
        key: String,
        detail: String,
    },

    /// A SQLite call failed; `context` says which (e.g. "insert into products").
    #[error("sqlite: {context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },

    /// A SQL Server call failed; `context` says which, `transient` whether
    /// trying again can help (a deadlock, a lock timeout, a dropped
    /// connection).
    #[error("sql server: {context}: {source}")]
    SqlServer {
        context: String,
        #[source]
        source: tiberius::error::Error,
        transient: bool,
    },

    /// A SQL Server call got no answer in time; the connection was dropped.
    #[error("sql server: {context}: no answer within {}", humantime::format_duration(*.timeout))]
    SqlServerTimeout {
        context: String,
        timeout: std::time::Duration,
    },

    /// No connection to SQL Server could be made; `transient` when it was
    /// unreachable or slow, not when it refused the login.
    #[error("cannot connect to SQL Server at {server}: {detail}")]
    Connect {
        server: String,
        detail: String,
        transient: bool,
    },

    #[error("no table `{table}` in the channel database")]
    UnknownTable { table: String },

    #[error("table `{table}` has no column `{column}`")]
    UnknownColumn { table: String, column: String },

    /// An upload table has a column of a type a package value cannot hold.
    #[error("table `{table}`: column `{column}` is of type {type_name}, which cdx cannot upload")]
    UnsupportedColumn {
        table: String,
        column: String,
        type_name: String,
    },

    /// A table or column name that is not an identifier; refused before it
    /// reached SQL.
    #[error("`{name}` is not a valid table or column name")]
    InvalidIdentifier { name: String },

    /// The package's header contradicts the listing it was downloaded by:
    /// it is not the package the server listed, and nothing of it is applied.
    #[error(
        "package {package_id}: its header says {field} {header}, but the server listed {listed}; \
         nothing of it was applied"
    )]
    NotAsListed {
        package_id: Uuid,
        field: &'static str,
        listed: String,
        header: String,
    },

    /// A package writes a table whose rows the store uploads
    /// (`[[upload.tables]]`): applying it would replace the store's sales.
    #[error(
        "package {package_id} writes to table `{table}`, which this store uploads to \
         headquarters ([[upload.tables]]); nothing of it was applied"
    )]
    UploadTable { package_id: Uuid, table: String },

    /// A package names a table of SQLite or of cdx's bookkeeping.
    #[error("package {package_id} writes to table `{table}`, which is reserved")]
    ReservedTable { package_id: Uuid, table: String },

    #[error("cannot open channel database {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

fn display_id(id: &Option<Uuid>) -> String {
    id.map_or_else(|| "(unknown id)".to_owned(), |id| id.to_string())
}

impl From<InvalidIdentifier> for ChannelDbError {
    fn from(e: InvalidIdentifier) -> Self {
        ChannelDbError::InvalidIdentifier { name: e.name }
    }
}

impl ChannelDbError {
    /// Whether the same call may succeed if tried again: the database was
    /// unreachable, busy, locked or out of disk, or the package file could
    /// not be read; not the package or the call wrong.
    pub fn class(&self) -> FailureClass {
        use rusqlite::ErrorCode as Code;
        let transient = match self {
            ChannelDbError::SqlServer { transient, .. }
            | ChannelDbError::Connect { transient, .. } => *transient,
            ChannelDbError::SqlServerTimeout { .. } | ChannelDbError::Open { .. } => true,
            ChannelDbError::Package {
                source: PackageError::Io(_),
                ..
            } => true,
            ChannelDbError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(
                    Code::DatabaseBusy
                        | Code::DatabaseLocked
                        | Code::DiskFull
                        | Code::ReadOnly
                        | Code::SystemIoFailure
                        | Code::CannotOpen
                        | Code::OutOfMemory
                )
            ),
            _ => false,
        };
        if transient {
            FailureClass::Transient
        } else {
            FailureClass::Permanent
        }
    }

    pub fn is_transient(&self) -> bool {
        self.class().is_transient()
    }

    /// A package error for the package `package_id`.
    pub fn package(package_id: Option<Uuid>, source: PackageError) -> Self {
        ChannelDbError::Package { package_id, source }
    }
}

/// Adds a lazily built context to a rusqlite result.
pub(crate) trait SqliteContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, ChannelDbError>;
}

impl<T> SqliteContext<T> for Result<T, rusqlite::Error> {
    #[inline]
    fn context(self, what: impl FnOnce() -> String) -> Result<T, ChannelDbError> {
        self.map_err(|source| ChannelDbError::Sqlite {
            context: what(),
            source,
        })
    }
}

impl From<SchemaConflict> for ChannelDbError {
    fn from(conflict: SchemaConflict) -> Self {
        ChannelDbError::SchemaConflict(Box::new(conflict))
    }
}
