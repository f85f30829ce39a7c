//! The embedded default backend: SQLite through rusqlite.
//!
//! The file runs in WAL mode with `synchronous=NORMAL` (the usual safe and
//! fast setting: a crash loses at most the last commits, never consistency)
//! and waits up to 5 s for a lock the POS holds.

mod apply;
mod schema;
mod value;
mod widen;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};
use uuid::Uuid;

use self::schema::read_table;
use self::value::value_from_ref;
use super::error::SqliteContext;
use super::{
    AppliedPackage, ApplyOutcome, ChannelDb, ChannelDbError, PackageSource, PassedOver, RowBatch,
    UploadTable,
};
use crate::package::PackageKind;
use crate::plan;

/// How long a statement waits for a lock another connection holds.
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Bytes the WAL file is truncated to after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// The bookkeeping tables, created when missing.
const BOOKKEEPING: &str = "
CREATE TABLE IF NOT EXISTS cdx_applied_packages (
    package_id TEXT PRIMARY KEY,
    data_group TEXT NOT NULL,
    job TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    kind TEXT NOT NULL,
    rows INTEGER NOT NULL,
    applied_at_ms INTEGER NOT NULL,
    passed_over TEXT,
    UNIQUE (data_group, sequence)
);
CREATE TABLE IF NOT EXISTS cdx_upload_watermarks (
    table_name TEXT PRIMARY KEY,
    counter INTEGER NOT NULL
);
";

/// A channel database in one SQLite file.
pub struct SqliteChannelDb {
    conn: Connection,
}

impl SqliteChannelDb {
    /// Opens the database at `path`, creating the file and the bookkeeping
    /// tables when missing.
    ///
    /// # Errors
    /// [`ChannelDbError::Open`] naming the path.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ChannelDbError> {
        let path = path.as_ref();
        let open = || -> rusqlite::Result<Self> {
            let conn = Connection::open(path)?;
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| {
                row.get::<_, String>(0)
            })?;
            Self::init(conn)
        };
        open().map_err(|source| ChannelDbError::Open {
            path: path.to_owned(),
            source,
        })
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, ChannelDbError> {
        Connection::open_in_memory()
            .and_then(Self::init)
            .map_err(|source| ChannelDbError::Open {
                path: ":memory:".into(),
                source,
            })
    }

    fn init(conn: Connection) -> rusqlite::Result<Self> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // A large package (or one that failed and rolled back) grows the
        // WAL; after the next checkpoint it shrinks back to this.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        conn.execute_batch(BOOKKEEPING)?;
        // Added after the table's first release: older files lack it.
        let has_passed_over: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('cdx_applied_packages') \
             WHERE name = 'passed_over'",
            [],
            |r| r.get(0),
        )?;
        if !has_passed_over {
            conn.execute_batch("ALTER TABLE cdx_applied_packages ADD COLUMN passed_over TEXT")?;
        }
        Ok(SqliteChannelDb { conn })
    }

    /// The exact value of `value`, read from a column declared
    /// `declared_type`: a decimal held as a number (`DECIMAL(p,s)`, see
    /// [`plan::sql_type`]) comes back as its canonical text at the
    /// column's scale, as the package carried it; anything else as it is.
    /// A number the column's scale cannot spell (a POS that wrote 1.005
    /// into `DECIMAL(10,2)`) also comes back as it is.
    ///
    /// # Errors
    /// Text that is not UTF-8.
    pub fn exact_value(
        declared_type: &str,
        value: rusqlite::types::ValueRef<'_>,
    ) -> rusqlite::Result<crate::package::Value> {
        let value = value_from_ref(value)?;
        let scale = schema::is_numeric_decimal(declared_type)
            .then(|| schema::stored_type(declared_type))
            .flatten()
            .and_then(|t| t.limits.decimal)
            .map(|(_, scale)| scale);
        Ok(match scale {
            Some(scale) => match crate::package::decimal_from_number(&value, scale) {
                Some(text) => crate::package::Value::Text(text),
                None => value,
            },
            None => value,
        })
    }

    /// The connection, for what the trait does not cover (reports, tests).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

impl ChannelDb for SqliteChannelDb {
    fn applied_packages(
        &mut self,
        data_group: &str,
    ) -> Result<Vec<AppliedPackage>, ChannelDbError> {
        let context = || format!("read cdx_applied_packages of data group {data_group}");
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT package_id, data_group, job, sequence, kind, rows, applied_at_ms, \
                 passed_over FROM cdx_applied_packages WHERE data_group = ?1 ORDER BY sequence",
            )
            .context(context)?;
        let rows = stmt
            .query_map([data_group], |row| {
                Ok(AppliedPackage {
                    package_id: parse(row, 0, |s| Uuid::parse_str(s).ok())?,
                    data_group: row.get(1)?,
                    job: row.get(2)?,
                    sequence: row.get(3)?,
                    kind: parse(row, 4, |s| match s {
                        "Full" => Some(PackageKind::Full),
                        "Incremental" => Some(PackageKind::Incremental),
                        _ => None,
                    })?,
                    rows: row.get(5)?,
                    applied_at_ms: row.get(6)?,
                    passed_over: row.get(7)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .context(context)?;
        Ok(rows)
    }

    fn last_applied_sequence(&mut self, data_group: &str) -> Result<u64, ChannelDbError> {
        last_applied_sequence(&self.conn, data_group)
    }

    fn apply_package(
        &mut self,
        package: PackageSource<'_>,
    ) -> Result<ApplyOutcome, ChannelDbError> {
        apply::apply_package(&mut self.conn, package, false)
    }

    fn reapply_package(
        &mut self,
        package: PackageSource<'_>,
    ) -> Result<ApplyOutcome, ChannelDbError> {
        apply::apply_package(&mut self.conn, package, true)
    }

    fn pass_over(&mut self, package: &PassedOver) -> Result<(), ChannelDbError> {
        apply::pass_over(&mut self.conn, package)
    }

    fn forget_applied(&mut self, data_group: &str) -> Result<u64, ChannelDbError> {
        let forgotten = self
            .conn
            .execute(
                "DELETE FROM cdx_applied_packages WHERE data_group = ?1",
                [data_group],
            )
            .context(|| format!("forget the packages of data group {data_group}"))?;
        Ok(forgotten as u64)
    }

    fn read_upload_rows(
        &mut self,
        table: &UploadTable,
        after: i64,
        limit: usize,
    ) -> Result<RowBatch, ChannelDbError> {
        let (name, counter) = (&table.name, &table.counter_column);
        // Names are refused as such before they reach any SQL.
        let (quoted_table, quoted_counter) =
            (plan::quote_ident(name)?, plan::quote_ident(counter)?);
        let existing =
            read_table(&self.conn, name)?.ok_or_else(|| ChannelDbError::UnknownTable {
                table: name.clone(),
            })?;
        // The columns `read_table` lists, by name: `SELECT *` would add
        // generated columns it does not list and shift every value.
        let names: Vec<&str> = existing.columns.iter().map(|c| c.name.as_str()).collect();
        let sql = format!(
            "SELECT {cols} FROM {t} WHERE {c} > ?1 ORDER BY {c} LIMIT ?2",
            cols = plan::quote_list(&names)?,
            t = quoted_table,
            c = quoted_counter,
        );
        if !existing
            .columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(counter))
        {
            return Err(ChannelDbError::UnknownColumn {
                table: name.clone(),
                column: counter.clone(),
            });
        }
        let context = || format!("read upload rows of {name}");
        let mut stmt = self.conn.prepare_cached(&sql).context(context)?;
        let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
        let counter_at = columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(counter))
            .unwrap_or_default();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = Vec::new();
        let mut counters = None;
        let mut query = stmt
            .query(rusqlite::params![after, limit])
            .context(context)?;
        while let Some(row) = query.next().context(context)? {
            let n: i64 = row.get(counter_at).context(context)?;
            counters = Some(counters.map_or((n, n), |(first, _)| (first, n)));
            let values = existing
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    row.get_ref(i)
                        .and_then(|v| Self::exact_value(&c.declared_type, v))
                })
                .collect::<Result<Vec<_>, _>>()
                .context(context)?;
            rows.push(values);
        }
        let types = existing
            .columns
            .iter()
            .map(|c| schema::stored_type(&c.declared_type).and_then(|t| plan::package_type(&t)))
            .collect();
        Ok(RowBatch {
            columns,
            types,
            rows,
            counters,
        })
    }

    fn watermark(&mut self, table: &str) -> Result<i64, ChannelDbError> {
        plan::quote_ident(table)?;
        let counter = self
            .conn
            .query_row(
                "SELECT counter FROM cdx_upload_watermarks WHERE table_name = ?1",
                [table],
                |row| row.get(0),
            )
            .optional()
            .context(|| format!("read the upload watermark of {table}"))?;
        Ok(counter.unwrap_or(0))
    }

    fn advance_watermark(&mut self, table: &str, counter: i64) -> Result<(), ChannelDbError> {
        plan::quote_ident(table)?;
        self.conn
            .execute(
                "INSERT INTO cdx_upload_watermarks (table_name, counter) VALUES (?1, ?2) \
                 ON CONFLICT (table_name) DO UPDATE SET counter = MAX(counter, excluded.counter)",
                rusqlite::params![table, counter],
            )
            .context(|| format!("advance the upload watermark of {table} to {counter}"))?;
        Ok(())
    }

    fn row_count(&mut self, table: &str) -> Result<u64, ChannelDbError> {
        let quoted = plan::quote_ident(table)?;
        if read_table(&self.conn, table)?.is_none() {
            return Err(ChannelDbError::UnknownTable {
                table: table.to_owned(),
            });
        }
        self.conn
            .query_row(&format!("SELECT COUNT(*) FROM {quoted}"), [], |row| {
                row.get(0)
            })
            .context(|| format!("count the rows of {table}"))
    }

    fn rows_above(&mut self, table: &UploadTable, after: i64) -> Result<u64, ChannelDbError> {
        let (name, counter) = (&table.name, &table.counter_column);
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {} > ?1",
            plan::quote_ident(name)?,
            plan::quote_ident(counter)?
        );
        if read_table(&self.conn, name)?.is_none() {
            return Err(ChannelDbError::UnknownTable {
                table: name.clone(),
            });
        }
        self.conn
            .query_row(&sql, [after], |row| row.get(0))
            .context(|| format!("count the rows of {name} above counter {after}"))
    }
}

/// The highest sequence applied for `data_group`, 0 when none.
fn last_applied_sequence(conn: &Connection, data_group: &str) -> Result<u64, ChannelDbError> {
    conn.query_row(
        "SELECT COALESCE(MAX(sequence), 0) FROM cdx_applied_packages WHERE data_group = ?1",
        [data_group],
        |row| row.get(0),
    )
    .context(|| format!("read the last applied sequence of data group {data_group}"))
}

/// Column `i` of `row`, a text that `f` turns into a `T`.
fn parse<T>(
    row: &rusqlite::Row<'_>,
    i: usize,
    f: impl FnOnce(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    let text: String = row.get(i)?;
    f(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unexpected value {text:?}").into(),
        )
    })
}

#[cfg(test)]
mod tests;
