//! Applying a package in one SQL Server transaction.
//!
//! Every table of the header is checked (created, emptied for a full
//! package) before the first row. Rows then go by TDS bulk load into a
//! temp staging table, at most `BATCH_ROWS` at a time, and a statement
//! moves each batch into the table: a merge by key for upserts, a delete
//! joined on the key for deletes. A batch ends where the frames switch
//! between upserts and deletes, so the package's order holds. The
//! package's row in `cdx_applied_packages` commits with its data.

use std::time::{SystemTime, UNIX_EPOCH};

use tiberius::{ColumnData, TokenRow};
use uuid::Uuid;

use super::pool::{Connection, SqlServerPool};
use super::read::{execute, existing, last_sequence, query};
use super::tsql::{self, Bookkeeping, Staging};
use super::values::to_column_data;
use crate::channel_db::frames::{self, Frames};
use crate::channel_db::{ApplyOutcome, ApplyReport, ChannelDbError, PackageSource};
use crate::package::{
    text_len, Frame, PackageError, PackageHeader, PackageKind, TableSchema, Value,
};
use crate::plan::{self, Limits, TableAction};

/// Rows per bulk load: large enough that the merge per batch costs little
/// per row, small enough that the staging table stays small.
const BATCH_ROWS: usize = 50_000;

pub(super) fn apply_package(
    pool: &SqlServerPool,
    mut package: PackageSource<'_>,
) -> Result<ApplyOutcome, ChannelDbError> {
    let header = package.header().clone();
    let result = pool.with_connection(|connection| {
        frames::read_ahead(&mut package, |frames| {
            pool.block_on(in_transaction(pool, connection, &header, frames))
        })
    });
    match result {
        Err(e @ (ChannelDbError::Package { .. } | ChannelDbError::OutOfOrder { .. })) => Err(e),
        Err(e) => Err(frames::blame_corruption(&mut package, e)),
        ok => ok,
    }
}

/// Runs the apply between `BEGIN TRANSACTION` and `COMMIT`. On an error
/// the caller drops the connection, which rolls the transaction back on
/// the server whatever state the connection is in.
async fn in_transaction(
    pool: &SqlServerPool,
    connection: &mut Connection,
    header: &PackageHeader,
    frames: &mut Frames,
) -> Result<ApplyOutcome, ChannelDbError> {
    let id = header.package_id;
    batch(
        pool,
        connection,
        || format!("begin transaction for package {id}"),
        "BEGIN TRANSACTION",
    )
    .await?;
    let outcome = Applying::new(pool, header)?.run(connection, frames).await?;
    let end = match outcome {
        ApplyOutcome::Applied(_) => "COMMIT TRANSACTION",
        ApplyOutcome::AlreadyApplied => "ROLLBACK TRANSACTION",
    };
    batch(pool, connection, || format!("commit package {id}"), end).await?;
    Ok(outcome)
}

async fn batch(
    pool: &SqlServerPool,
    connection: &mut Connection,
    context: impl Fn() -> String,
    sql: &str,
) -> Result<(), ChannelDbError> {
    pool.timed(&context, async {
        connection.simple_query(sql).await?.into_results().await
    })
    .await?;
    Ok(())
}

/// Whether bulk load can carry every value of `values`: tiberius 0.12
/// refuses a value of a `max` column above 64 KiB (and large values are
/// where its bulk encoding has open bugs, tiberius#322), so texts above
/// 4000 characters and blobs above 8000 bytes go by a parameterized insert.
fn fits_bulk_load(values: &[Value]) -> bool {
    values.iter().all(|v| match v {
        Value::Text(s) => text_len(s) <= 4000,
        Value::Blob(b) => b.len() <= 8000,
        _ => true,
    })
}

/// Where the next frame goes while a batch of `op` is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// A row of the batch's kind that bulk load can carry.
    Bulk,
    /// A row of the batch's kind that it cannot (see `fits_bulk_load`).
    Insert,
    /// Anything else ends the batch: a row of the other kind, a full
    /// batch, a `Table` or `End` frame, or the end of the frames.
    EndBatch,
}

impl Route {
    fn of(frame: Option<&Frame>, op: Op, staged: usize) -> Route {
        let values = match (op, frame) {
            (Op::Upsert, Some(Frame::Upsert(values)))
            | (Op::Delete, Some(Frame::Delete(values))) => values,
            _ => return Route::EndBatch,
        };
        if staged >= BATCH_ROWS {
            Route::EndBatch
        } else if fits_bulk_load(values) {
            Route::Bulk
        } else {
            Route::Insert
        }
    }
}

/// A staged value as a query parameter.
struct Param(ColumnData<'static>);

impl tiberius::ToSql for Param {
    fn to_sql(&self) -> ColumnData<'_> {
        self.0.clone()
    }
}

/// One table of the package as the apply writes it.
struct Target {
    schema: TableSchema,
    staging: Staging,
    /// Columns narrower in the database than in the package.
    checks: Vec<(usize, Limits)>,
    /// Key columns' positions among the columns, in key order.
    key: Vec<usize>,
}

impl Target {
    fn stage(&self, op: Op) -> &str {
        match op {
            Op::Upsert => &self.staging.upserts,
            Op::Delete => &self.staging.deletes,
        }
    }
}

struct Applying<'p> {
    pool: &'p SqlServerPool,
    header: &'p PackageHeader,
    schema: String,
    sql: Bookkeeping,
    report: ApplyReport,
    /// Rows staged so far, numbering the next one.
    ordinal: i64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Upsert,
    Delete,
}

impl<'p> Applying<'p> {
    fn new(pool: &'p SqlServerPool, header: &'p PackageHeader) -> Result<Self, ChannelDbError> {
        let schema = pool.config().schema.clone();
        Ok(Applying {
            pool,
            header,
            sql: Bookkeeping::new(&schema)?,
            schema,
            report: ApplyReport::default(),
            ordinal: 0,
        })
    }

    fn id(&self) -> Uuid {
        self.header.package_id
    }

    async fn run(
        mut self,
        connection: &mut Connection,
        frames: &mut Frames,
    ) -> Result<ApplyOutcome, ChannelDbError> {
        if self.is_applied(connection).await? {
            return Ok(ApplyOutcome::AlreadyApplied);
        }
        self.check_sequence(connection).await?;
        let mut targets = Vec::with_capacity(self.header.tables.len());
        for (index, schema) in self.header.tables.iter().enumerate() {
            targets.push(self.prepare(connection, index, schema).await?);
        }
        self.write_frames(connection, frames, &targets).await?;
        self.record(connection).await?;
        for target in &targets {
            let drop = format!(
                "DROP TABLE {}; DROP TABLE {}",
                target.staging.upserts, target.staging.deletes
            );
            batch(
                self.pool,
                connection,
                || "drop the staging tables".into(),
                &drop,
            )
            .await?;
        }
        Ok(ApplyOutcome::Applied(self.report))
    }

    async fn is_applied(&self, connection: &mut Connection) -> Result<bool, ChannelDbError> {
        let id = self.id();
        let rows = query(
            self.pool,
            connection,
            || "read cdx_applied_packages".into(),
            &self.sql.is_applied,
            &[&id],
        )
        .await?;
        Ok(!rows.is_empty())
    }

    async fn check_sequence(&self, connection: &mut Connection) -> Result<(), ChannelDbError> {
        let group = &self.header.data_group;
        let context = || format!("read the last applied sequence of data group {group}");
        let last = last_sequence(
            self.pool,
            connection,
            &self.sql.last_sequence,
            group,
            context,
        )
        .await?;
        if self.header.sequence <= last {
            return Err(ChannelDbError::OutOfOrder {
                package_id: self.id(),
                data_group: group.clone(),
                sequence: self.header.sequence,
                last_applied: last,
            });
        }
        Ok(())
    }

    /// Checks the table against the package's, creates or empties it, and
    /// creates its staging tables.
    async fn prepare(
        &mut self,
        connection: &mut Connection,
        index: usize,
        schema: &TableSchema,
    ) -> Result<Target, ChannelDbError> {
        let name = &schema.name;
        if plan::is_reserved_table(name) {
            return Err(ChannelDbError::ReservedTable {
                package_id: self.id(),
                table: name.clone(),
            });
        }
        let qualified = tsql::qualified(&self.schema, name)?;
        let mut found = existing(self.pool, connection, name).await?;
        match plan::check_table(found.as_ref(), schema)? {
            TableAction::Create => {
                let ddl = tsql::create_table(&self.schema, schema)?;
                execute(
                    self.pool,
                    connection,
                    || format!("create table {qualified}"),
                    &ddl,
                    &[],
                )
                .await?;
                self.report.created_tables.push(name.clone());
                // Read back: an unbounded text key was created narrower.
                found = existing(self.pool, connection, name).await?;
            }
            TableAction::UseExisting if self.header.kind == PackageKind::Full => {
                let delete = format!("DELETE FROM {qualified}");
                execute(
                    self.pool,
                    connection,
                    || format!("delete all rows of {qualified}"),
                    &delete,
                    &[],
                )
                .await?;
            }
            TableAction::UseExisting => {}
        }
        let staging = Staging::of(index);
        let all: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
        let keys: Vec<&str> = schema.key.iter().map(String::as_str).collect();
        let ddl = format!(
            "{}; {}",
            tsql::create_staging(&staging.upserts, schema, &all)?,
            tsql::create_staging(&staging.deletes, schema, &keys)?
        );
        batch(
            self.pool,
            connection,
            || format!("create the staging tables of {qualified}"),
            &ddl,
        )
        .await?;
        let key = schema
            .key
            .iter()
            .filter_map(|k| schema.columns.iter().position(|c| &c.name == k))
            .collect();
        Ok(Target {
            checks: found.map_or_else(Vec::new, |e| plan::narrower_columns(&e, schema)),
            schema: schema.clone(),
            staging,
            key,
        })
    }

    async fn write_frames(
        &mut self,
        connection: &mut Connection,
        frames: &mut Frames,
        targets: &[Target],
    ) -> Result<(), ChannelDbError> {
        let id = self.id();
        let package_err = |detail: String| {
            ChannelDbError::package(
                Some(id),
                PackageError::InvalidFrame {
                    table: None,
                    detail,
                },
            )
        };
        let mut open: Option<&Target> = None;
        let mut next = frames.take_next();
        loop {
            match next.take() {
                // The reader stops early only with an error, which `read_ahead` reports.
                None => return Err(package_err("the frames ended before End".into())),
                Some(Frame::End { .. }) => return Ok(()),
                Some(Frame::Table(index)) => {
                    open = Some(targets.get(index as usize).ok_or_else(|| {
                        package_err(format!(
                            "Table({index}) but the header lists {} tables",
                            targets.len()
                        ))
                    })?);
                    next = frames.take_next();
                }
                Some(first) => {
                    let target =
                        open.ok_or_else(|| package_err("a row before any Table frame".into()))?;
                    let op = if matches!(first, Frame::Delete(_)) {
                        Op::Delete
                    } else {
                        Op::Upsert
                    };
                    next = self.load(connection, target, op, first, frames).await?;
                    self.move_batch(connection, target, op).await?;
                }
            }
        }
    }

    /// Stages `first` and the frames after it of the same kind, up to
    /// `BATCH_ROWS`; returns the frame it stopped at. Rows go by bulk load,
    /// but for one bulk load cannot carry, which goes alone by insert.
    async fn load(
        &mut self,
        connection: &mut Connection,
        target: &Target,
        op: Op,
        first: Frame,
        frames: &mut Frames,
    ) -> Result<Option<Frame>, ChannelDbError> {
        let mut next = Some(first);
        let mut staged = 0;
        loop {
            match Route::of(next.as_ref(), op, staged) {
                Route::Bulk => {
                    next = self
                        .bulk_load(connection, target, op, next, frames, &mut staged)
                        .await?;
                }
                Route::Insert => {
                    let (Some(Frame::Upsert(values)) | Some(Frame::Delete(values))) = next else {
                        unreachable!("Route::Insert is only for rows");
                    };
                    self.insert_one(connection, target, op, values).await?;
                    staged += 1;
                    next = frames.take_next();
                }
                Route::EndBatch => return Ok(next),
            }
        }
    }

    /// One bulk load into the staging table of `op`, from `first` on, for
    /// as long as the frames go by bulk load; returns the frame it stopped at.
    async fn bulk_load(
        &mut self,
        connection: &mut Connection,
        target: &Target,
        op: Op,
        first: Option<Frame>,
        frames: &mut Frames,
        staged: &mut usize,
    ) -> Result<Option<Frame>, ChannelDbError> {
        let stage = target.stage(op);
        let pool = self.pool;
        let context = || format!("bulk load into {stage} for table {}", target.schema.name);
        let mut request = pool.timed(context, connection.bulk_insert(stage)).await?;
        let mut frame = first;
        while Route::of(frame.as_ref(), op, *staged) == Route::Bulk {
            let (values, key) = match frame.take() {
                Some(Frame::Upsert(row)) => (row, None),
                Some(Frame::Delete(key)) => (key, Some(target.key.as_slice())),
                _ => unreachable!("Route::Bulk is only for rows"),
            };
            let mut row = TokenRow::with_capacity(values.len() + 1);
            for data in self.staged_row(target, values, key)? {
                row.push(data);
            }
            pool.timed(context, request.send(row)).await?;
            *staged += 1;
            frame = frames.take_next();
        }
        pool.timed(context, request.finalize()).await?;
        Ok(frame)
    }

    /// Stages one row by a parameterized insert.
    async fn insert_one(
        &mut self,
        connection: &mut Connection,
        target: &Target,
        op: Op,
        values: Vec<Value>,
    ) -> Result<(), ChannelDbError> {
        let positions = match op {
            Op::Upsert => None,
            Op::Delete => Some(target.key.as_slice()),
        };
        let columns: Vec<&str> = match positions {
            None => target
                .schema
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .collect(),
            Some(key) => key
                .iter()
                .map(|&i| target.schema.columns[i].name.as_str())
                .collect(),
        };
        let stage = target.stage(op);
        let sql = tsql::insert_staged_row(stage, &columns)?;
        let params: Vec<Param> = self
            .staged_row(target, values, positions)?
            .into_iter()
            .map(Param)
            .collect();
        let params: Vec<&dyn tiberius::ToSql> =
            params.iter().map(|p| p as &dyn tiberius::ToSql).collect();
        let context = || {
            format!(
                "insert a long row into {stage} for table {}",
                target.schema.name
            )
        };
        execute(self.pool, connection, context, &sql, &params).await?;
        Ok(())
    }

    /// The staging row: the ordinal, then `values` typed as the columns at
    /// `positions` (all columns when `None`). Checks and counts upserts.
    fn staged_row(
        &mut self,
        target: &Target,
        values: Vec<Value>,
        positions: Option<&[usize]>,
    ) -> Result<Vec<ColumnData<'static>>, ChannelDbError> {
        match positions {
            None => {
                plan::check_row(self.id(), &target.schema, &target.checks, &values)?;
                self.report.upserts += 1;
            }
            Some(_) => self.report.deletes += 1,
        }
        self.ordinal += 1;
        let mut row = Vec::with_capacity(values.len() + 1);
        row.push(ColumnData::I64(Some(self.ordinal)));
        for (i, value) in values.into_iter().enumerate() {
            let column = &target.schema.columns[positions.map_or(i, |p| p[i])];
            let data = to_column_data(column.ty, value).map_err(|detail| {
                ChannelDbError::package(
                    Some(self.id()),
                    PackageError::InvalidFrame {
                        table: Some(target.schema.name.clone()),
                        detail: format!("column `{}`: {detail}", column.name),
                    },
                )
            })?;
            row.push(data);
        }
        Ok(row)
    }

    /// Moves the staged batch into the table, then empties the stage.
    async fn move_batch(
        &self,
        connection: &mut Connection,
        target: &Target,
        op: Op,
    ) -> Result<(), ChannelDbError> {
        let schema = &target.schema;
        let (stage, sql) = match op {
            Op::Upsert => {
                let stage = &target.staging.upserts;
                let full = self.header.kind == PackageKind::Full;
                (
                    stage,
                    tsql::upsert_from_staging(&self.schema, schema, stage, full)?,
                )
            }
            Op::Delete => {
                let stage = &target.staging.deletes;
                (
                    stage,
                    tsql::delete_from_staging(&self.schema, schema, stage)?,
                )
            }
        };
        let sql = format!("{sql}; TRUNCATE TABLE {stage}");
        let what = if op == Op::Upsert {
            "upsert into"
        } else {
            "delete from"
        };
        batch(
            self.pool,
            connection,
            || format!("{what} {}", schema.name),
            &sql,
        )
        .await
    }

    /// The package's row in `cdx_applied_packages`, in the same transaction.
    async fn record(&self, connection: &mut Connection) -> Result<(), ChannelDbError> {
        let h = self.header;
        let kind = match h.kind {
            PackageKind::Full => "Full",
            PackageKind::Incremental => "Incremental",
        };
        let rows = i64::try_from(self.report.upserts + self.report.deletes).unwrap_or(i64::MAX);
        let sequence = i64::try_from(h.sequence).unwrap_or(i64::MAX);
        let context = || format!("record package {} in cdx_applied_packages", h.package_id);
        execute(
            self.pool,
            connection,
            context,
            &self.sql.record,
            &[
                &h.package_id,
                &h.data_group.as_str(),
                &h.job.as_str(),
                &sequence,
                &kind,
                &rows,
                &now_ms(),
            ],
        )
        .await?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch takes the rows of its own kind, up to its size; a long row
    /// goes by insert; anything else ends it. Both staging loops decide by
    /// this one function, so a delete can never land in the upsert stage.
    #[test]
    fn a_batch_takes_only_rows_of_its_kind_up_to_its_size() {
        let up = |v: Value| Frame::Upsert(vec![Value::Integer(1), v]);
        let del = || Frame::Delete(vec![Value::Integer(1)]);
        let short = up(Value::Text("a".into()));
        let long = up(Value::Text("x".repeat(4001)));
        let of = |f: &Frame, op, staged| Route::of(Some(f), op, staged);
        assert_eq!(of(&short, Op::Upsert, 0), Route::Bulk);
        assert_eq!(of(&long, Op::Upsert, 0), Route::Insert);
        assert_eq!(of(&short, Op::Upsert, BATCH_ROWS - 1), Route::Bulk);
        assert_eq!(of(&short, Op::Upsert, BATCH_ROWS), Route::EndBatch);
        assert_eq!(of(&long, Op::Upsert, BATCH_ROWS), Route::EndBatch);
        assert_eq!(of(&del(), Op::Upsert, 0), Route::EndBatch);
        assert_eq!(of(&short, Op::Delete, 0), Route::EndBatch);
        assert_eq!(of(&long, Op::Delete, 0), Route::EndBatch);
        assert_eq!(of(&del(), Op::Delete, 0), Route::Bulk);
        assert_eq!(of(&Frame::Table(0), Op::Upsert, 0), Route::EndBatch);
        assert_eq!(of(&Frame::End { rows: 0 }, Op::Delete, 0), Route::EndBatch);
        assert_eq!(Route::of(None, Op::Upsert, 0), Route::EndBatch);
    }

    #[test]
    fn long_texts_and_blobs_do_not_go_by_bulk_load() {
        let fits = |v: Value| fits_bulk_load(&[Value::Integer(1), v]);
        assert!(fits(Value::Text("x".repeat(4000))));
        assert!(!fits(Value::Text("x".repeat(4001))));
        assert!(!fits(Value::Text("😀".repeat(2001))), "4002 UTF-16 units");
        assert!(fits(Value::Blob(vec![0; 8000])));
        assert!(!fits(Value::Blob(vec![0; 8001])));
        assert!(fits(Value::Null));
    }
}
