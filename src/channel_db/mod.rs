//! The channel database: where packages are applied and sales transactions
//! are read for upload.
//!
//! [`ChannelDb`] is blocking on purpose: the agent calls it only from a
//! blocking pool, never from an actor's event loop. A backend for an async
//! driver (SQL Server through tiberius) owns a small runtime of its own and
//! blocks on it inside these calls.
//!
//! **Invariant:** the channel database records each applied package in the
//! same transaction as the package's rows (`cdx_applied_packages`), and each
//! upload watermark (`cdx_upload_watermarks`). These are the system of
//! record; the agent's message database can be rebuilt from them.

mod error;
mod frames;
mod sqlite;
mod sqlserver;

use std::io::Read;

pub use error::ChannelDbError;
pub use sqlite::SqliteChannelDb;
pub use sqlserver::{SqlServerChannelDb, SqlServerPool};
use uuid::Uuid;

use crate::package::{PackageKind, PackageReader, Value};

/// A package's frames from any source (a file, a buffer in tests).
pub type PackageSource<'a> = PackageReader<Box<dyn Read + Send + 'a>>;

/// A package the channel database has applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedPackage {
    pub package_id: Uuid,
    pub data_group: String,
    pub job: String,
    pub sequence: u64,
    pub kind: PackageKind,
    pub rows: u64,
    pub applied_at_ms: i64,
    /// Why the package was passed over instead of applied (withdrawn or
    /// superseded at headquarters); `None` when its rows were applied.
    pub passed_over: Option<String>,
}

/// A package a store passes over instead of applying: recorded in
/// `cdx_applied_packages` with no rows and the reason, so that it keeps its
/// place in the data group's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedOver {
    pub package_id: Uuid,
    pub data_group: String,
    pub job: String,
    pub sequence: u64,
    pub kind: PackageKind,
    pub reason: String,
}

/// What applying one package did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied(ApplyReport),
    /// The channel database already holds this package (a re-delivery after
    /// a crash, say); nothing was changed.
    AlreadyApplied,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApplyReport {
    pub upserts: u64,
    pub deletes: u64,
    /// Tables the package created because they were missing.
    pub created_tables: Vec<String>,
    /// Tables whose definition the package replaced (dropped and created).
    pub replaced_tables: Vec<String>,
}

/// A channel table whose rows go to headquarters, and its counter column
/// (`REPLICATIONCOUNTERFROMORIGIN` in the original): strictly increasing,
/// assigned at insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTable {
    pub name: String,
    pub counter_column: String,
}

/// Rows of an upload table with counters above a watermark, in counter order.
#[derive(Debug, Clone, PartialEq)]
pub struct RowBatch {
    pub columns: Vec<String>,
    /// Each column's type as a package type, from what the database
    /// declares (`plan::package_type`); `None` for a type cdx does not map.
    pub types: Vec<Option<crate::package::ColumnType>>,
    pub rows: Vec<Vec<Value>>,
    /// Counters of the first and last rows; `None` when there are no rows.
    pub counters: Option<(i64, i64)>,
}

/// A channel database backend.
pub trait ChannelDb: Send {
    /// Packages applied for `data_group`, in sequence order.
    fn applied_packages(&mut self, data_group: &str)
        -> Result<Vec<AppliedPackage>, ChannelDbError>;

    /// The highest sequence applied for `data_group`, 0 when none.
    fn last_applied_sequence(&mut self, data_group: &str) -> Result<u64, ChannelDbError>;

    /// Applies a whole package in one transaction: its rows and its record in
    /// `cdx_applied_packages` commit together or not at all. Missing tables
    /// are created; a table whose schema conflicts with the package's is an
    /// error and nothing is applied. Commits only after the package's
    /// checksum verified.
    fn apply_package(&mut self, package: PackageSource<'_>)
        -> Result<ApplyOutcome, ChannelDbError>;

    /// Applies again a package the channel database holds already (an
    /// operator's rerun of a full package): as [`ChannelDb::apply_package`],
    /// its record replaced in the same transaction, in its place in the
    /// order (no sequence check).
    ///
    /// # Errors
    /// [`ChannelDbError::NotApplied`] when it does not hold the package.
    fn reapply_package(
        &mut self,
        package: PackageSource<'_>,
    ) -> Result<ApplyOutcome, ChannelDbError>;

    /// Forgets every package recorded for `data_group` (`cdx-client
    /// full-sync`): the tables keep their rows, and the position in the
    /// order goes back to 0, so that headquarters' snapshot plan is applied
    /// again from the start. Returns how many records it dropped.
    fn forget_applied(&mut self, data_group: &str) -> Result<u64, ChannelDbError>;

    /// Records that `package` was passed over: in its place in the order
    /// (the sequence after the last one recorded), with no rows. Recording
    /// a package already recorded changes nothing.
    ///
    /// # Errors
    /// [`ChannelDbError::OutOfOrder`] when it is not the next sequence.
    fn pass_over(&mut self, package: &PassedOver) -> Result<(), ChannelDbError>;

    /// Up to `limit` rows of `table` with counter above `after`.
    fn read_upload_rows(
        &mut self,
        table: &UploadTable,
        after: i64,
        limit: usize,
    ) -> Result<RowBatch, ChannelDbError>;

    /// The counter up to which `table` is acknowledged by headquarters; 0 when none.
    fn watermark(&mut self, table: &str) -> Result<i64, ChannelDbError>;

    /// Moves the watermark forward to `counter`; never moves it back.
    fn advance_watermark(&mut self, table: &str, counter: i64) -> Result<(), ChannelDbError>;

    /// Rows in `table`, for reconciliation and status.
    fn row_count(&mut self, table: &str) -> Result<u64, ChannelDbError>;

    /// Rows of the upload table with counter above `after`: what waits to
    /// be uploaded when `after` is the watermark.
    fn rows_above(&mut self, table: &UploadTable, after: i64) -> Result<u64, ChannelDbError>;
}
