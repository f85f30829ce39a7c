use thiserror::Error;

/// What went wrong in the channel database, naming the package, table or
/// column concerned.
#[derive(Debug, Error)]
pub enum ChannelDbError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}
