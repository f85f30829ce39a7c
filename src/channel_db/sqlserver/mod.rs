//! SQL Server through tiberius: the channel database of most stores.
//!
//! Packages are bulk loaded (TDS bulk load) into temp staging tables in
//! bounded batches and merged from there, all in one transaction with the
//! package's bookkeeping row; uploads are read in counter order by one
//! statement per batch. See `docs/sqlserver.md` for the setup and the
//! reasoning, `tsql.rs` for the statements.

mod apply;
mod pool;
mod read;
mod staging;
mod tsql;
mod types;
mod values;

pub use pool::SqlServerPool;

use crate::channel_db::PassedOver;
use crate::package::Value;

use super::{
    AppliedPackage, ApplyOutcome, ChannelDb, ChannelDbError, PackageSource, RowBatch, UploadTable,
};

/// One connection's worth of the channel database: calls take a pooled
/// connection for their duration. Open as many as there are threads that
/// call; the pool bounds the connections.
pub struct SqlServerChannelDb {
    pool: SqlServerPool,
}

impl SqlServerChannelDb {
    pub fn new(pool: SqlServerPool) -> Self {
        SqlServerChannelDb { pool }
    }

    /// Connects now (the pool connects lazily), so that a wrong address or
    /// password shows at start rather than at the first package.
    ///
    /// # Errors
    /// `Connect`, or the bookkeeping tables could not be created.
    pub fn check_connection(&mut self) -> Result<(), ChannelDbError> {
        self.pool.with_connection(|_| Ok(()))
    }

    /// Runs the batch `sql` (no parameters, not retried) and returns the
    /// rows of its first result set as package values: for what the trait
    /// does not cover (reports, tests), like `SqliteChannelDb::connection`.
    ///
    /// # Errors
    /// The batch failed, or returned a type no package type maps to.
    pub fn query_sql(&mut self, sql: &str) -> Result<Vec<Vec<Value>>, ChannelDbError> {
        read::query_batch(&self.pool, sql)
    }
}

impl ChannelDb for SqlServerChannelDb {
    fn applied_packages(
        &mut self,
        data_group: &str,
    ) -> Result<Vec<AppliedPackage>, ChannelDbError> {
        read::applied_packages(&self.pool, data_group)
    }

    fn last_applied_sequence(&mut self, data_group: &str) -> Result<u64, ChannelDbError> {
        read::last_applied_sequence(&self.pool, data_group)
    }

    fn apply_package(
        &mut self,
        package: PackageSource<'_>,
    ) -> Result<ApplyOutcome, ChannelDbError> {
        apply::apply_package(&self.pool, package, false)
    }

    fn reapply_package(
        &mut self,
        package: PackageSource<'_>,
    ) -> Result<ApplyOutcome, ChannelDbError> {
        apply::apply_package(&self.pool, package, true)
    }

    fn pass_over(&mut self, package: &PassedOver) -> Result<(), ChannelDbError> {
        read::pass_over(&self.pool, package)
    }

    fn forget_applied(&mut self, data_group: &str) -> Result<u64, ChannelDbError> {
        read::forget_applied(&self.pool, data_group)
    }

    fn read_upload_rows(
        &mut self,
        table: &UploadTable,
        after: i64,
        limit: usize,
    ) -> Result<RowBatch, ChannelDbError> {
        read::upload_rows(&self.pool, table, after, limit)
    }

    fn watermark(&mut self, table: &str) -> Result<i64, ChannelDbError> {
        read::watermark(&self.pool, table)
    }

    fn advance_watermark(&mut self, table: &str, counter: i64) -> Result<(), ChannelDbError> {
        read::advance_watermark(&self.pool, table, counter)
    }

    fn row_count(&mut self, table: &str) -> Result<u64, ChannelDbError> {
        read::row_count(&self.pool, table, None)
    }

    fn rows_above(&mut self, table: &UploadTable, after: i64) -> Result<u64, ChannelDbError> {
        read::row_count(
            &self.pool,
            &table.name,
            Some((&table.counter_column, after)),
        )
    }
}

#[cfg(test)]
mod tests;
