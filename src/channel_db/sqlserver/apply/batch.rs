//! The rows of a package, in batches: each batch is staged (by bulk load,
//! or by insert for a row bulk load cannot carry) and then moved into its
//! table by at most two statements (`staging.rs`). A batch ends at
//! `BATCH_ROWS` rows or where the package moves on to another table.

use tiberius::{ColumnData, TokenRow};

use super::{batch, Applying, Target};
use crate::channel_db::frames::Frames;
use crate::channel_db::sqlserver::pool::Connection;
use crate::channel_db::sqlserver::read::execute;
use crate::channel_db::sqlserver::staging;
use crate::channel_db::sqlserver::values::{null_of, to_column_data};
use crate::channel_db::ChannelDbError;
use crate::package::{text_len, Frame, PackageError, PackageKind, Value};
use crate::plan;

/// Rows per batch: large enough that moving a batch costs little per row,
/// small enough that the staging table stays small.
const BATCH_ROWS: usize = 50_000;

/// Where the next frame goes while a batch is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// A row that bulk load can carry.
    Bulk,
    /// A row that it cannot (see `fits_bulk_load`).
    Insert,
    /// Anything else ends the batch: a full batch, a `Table` or `End`
    /// frame, or the end of the frames.
    EndBatch,
}

impl Route {
    fn of(frame: Option<&Frame>, staged: usize) -> Route {
        match frame {
            Some(Frame::Upsert(values) | Frame::Delete(values)) if staged < BATCH_ROWS => {
                if fits_bulk_load(values) {
                    Route::Bulk
                } else {
                    Route::Insert
                }
            }
            _ => Route::EndBatch,
        }
    }
}

/// Whether bulk load can carry every value of `values`: tiberius 0.12
/// refuses a value of a `max` column above 64 KiB, and large values are
/// where its bulk encoding has open bugs (tiberius#322), so texts above
/// 4000 characters and blobs above 8000 bytes go by a parameterized insert.
fn fits_bulk_load(values: &[Value]) -> bool {
    values.iter().all(|v| match v {
        Value::Text(s) => text_len(s) <= 4000,
        Value::Blob(b) => b.len() <= 8000,
        _ => true,
    })
}

/// What a batch staged.
#[derive(Default)]
struct Staged {
    upserts: usize,
    deletes: usize,
}

impl Staged {
    fn rows(&self) -> usize {
        self.upserts + self.deletes
    }
}

/// A staged value as a query parameter.
struct Param(ColumnData<'static>);

impl tiberius::ToSql for Param {
    fn to_sql(&self) -> ColumnData<'_> {
        self.0.clone()
    }
}

impl Applying<'_> {
    /// Writes the rows of `frames`, which must end with `Frame::End`.
    pub(super) async fn write_frames(
        &mut self,
        connection: &mut Connection,
        frames: &mut Frames,
        targets: &mut [Target],
    ) -> Result<(), ChannelDbError> {
        let mut open: Option<usize> = None;
        let mut next = frames.take_next();
        loop {
            match next.take() {
                // The reader stops early only with an error, which `read_ahead` reports.
                None => return Err(self.frame_error("the frames ended before End".into())),
                Some(Frame::End { .. }) => return Ok(()),
                Some(Frame::Table(index)) => {
                    let index = index as usize;
                    if index >= targets.len() {
                        let detail = format!(
                            "Table({index}) but the header lists {} tables",
                            targets.len()
                        );
                        return Err(self.frame_error(detail));
                    }
                    open = Some(index);
                    next = frames.take_next();
                }
                Some(row) => {
                    let Some(index) = open else {
                        return Err(self.frame_error("a row before any Table frame".into()));
                    };
                    let target = &mut targets[index];
                    self.create_stage(connection, target).await?;
                    let (stopped_at, staged) = self.stage(connection, target, row, frames).await?;
                    self.move_batch(connection, target, &staged).await?;
                    next = stopped_at;
                }
            }
        }
    }

    fn frame_error(&self, detail: String) -> ChannelDbError {
        let source = PackageError::InvalidFrame {
            table: None,
            detail,
        };
        ChannelDbError::package(Some(self.id()), source)
    }

    /// Creates the table's staging table before its first row.
    async fn create_stage(
        &self,
        connection: &mut Connection,
        target: &mut Target,
    ) -> Result<(), ChannelDbError> {
        if target.staged {
            return Ok(());
        }
        let sql = target.layout().create(&target.stage)?;
        let context = || format!("create {} for table {}", target.stage, target.schema.name);
        batch(self.pool, connection, context, &sql).await?;
        target.staged = true;
        Ok(())
    }

    /// Stages `first` and the rows after it, up to a batch; returns the
    /// frame it stopped at and what it staged.
    async fn stage(
        &mut self,
        connection: &mut Connection,
        target: &Target,
        first: Frame,
        frames: &mut Frames,
    ) -> Result<(Option<Frame>, Staged), ChannelDbError> {
        let mut next = Some(first);
        let mut staged = Staged::default();
        loop {
            match Route::of(next.as_ref(), staged.rows()) {
                Route::Bulk => {
                    next = self
                        .bulk_load(connection, target, next, frames, &mut staged)
                        .await?;
                }
                Route::Insert => {
                    let row = next.take().expect("Route::Insert is only for rows");
                    self.insert_one(connection, target, row, &mut staged)
                        .await?;
                    next = frames.take_next();
                }
                Route::EndBatch => return Ok((next, staged)),
            }
        }
    }

    /// One bulk load into the staging table, from `first` on, for as long
    /// as the rows go by bulk load; returns the frame it stopped at.
    async fn bulk_load(
        &mut self,
        connection: &mut Connection,
        target: &Target,
        first: Option<Frame>,
        frames: &mut Frames,
        staged: &mut Staged,
    ) -> Result<Option<Frame>, ChannelDbError> {
        let pool = self.pool;
        let stage = target.stage.as_str();
        let context = || format!("bulk load into {stage} for table {}", target.schema.name);
        let mut request = pool.timed(context, connection.bulk_insert(stage)).await?;
        let mut frame = first;
        while Route::of(frame.as_ref(), staged.rows()) == Route::Bulk {
            let values = self.staged_row(target, frame.take(), staged)?;
            let mut row = TokenRow::with_capacity(values.len());
            for value in values {
                row.push(value);
            }
            pool.timed(context, request.send(row)).await?;
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
        row: Frame,
        staged: &mut Staged,
    ) -> Result<(), ChannelDbError> {
        let stage = target.stage.as_str();
        let sql = staging::insert_row(stage, target.schema.columns.len());
        let params: Vec<Param> = self
            .staged_row(target, Some(row), staged)?
            .into_iter()
            .map(Param)
            .collect();
        let params: Vec<&dyn tiberius::ToSql> =
            params.iter().map(|p| p as &dyn tiberius::ToSql).collect();
        let context = || {
            format!(
                "stage a long row in {stage} for table {}",
                target.schema.name
            )
        };
        execute(self.pool, connection, context, &sql, &params).await?;
        Ok(())
    }

    /// The staging row of an upsert or delete frame: the ordinal, whether
    /// it deletes, then every column (a delete has its key values in the
    /// key columns' places and NULL elsewhere). Checks upserts against the
    /// table's narrower columns, and counts.
    fn staged_row(
        &mut self,
        target: &Target,
        frame: Option<Frame>,
        staged: &mut Staged,
    ) -> Result<Vec<ColumnData<'static>>, ChannelDbError> {
        let columns = &target.schema.columns;
        let (deleted, values): (bool, Vec<Option<Value>>) = match frame {
            Some(Frame::Upsert(row)) => {
                plan::check_row(self.id(), &target.schema, &target.checks, &row)?;
                self.report.upserts += 1;
                staged.upserts += 1;
                (false, row.into_iter().map(Some).collect())
            }
            Some(Frame::Delete(key)) => {
                self.report.deletes += 1;
                staged.deletes += 1;
                let mut values = vec![None; columns.len()];
                for (&at, value) in target.key.iter().zip(key) {
                    values[at] = Some(value);
                }
                (true, values)
            }
            _ => unreachable!("only rows are staged"),
        };
        self.ordinal += 1;
        let mut row = Vec::with_capacity(columns.len() + 2);
        row.push(ColumnData::I64(Some(self.ordinal)));
        row.push(ColumnData::Bit(Some(deleted)));
        for (column, value) in columns.iter().zip(values) {
            let data = match value {
                Some(value) => to_column_data(column.ty, value).map_err(|detail| {
                    ChannelDbError::package(
                        Some(self.id()),
                        PackageError::InvalidFrame {
                            table: Some(target.schema.name.clone()),
                            detail: format!("column `{}`: {detail}", column.name),
                        },
                    )
                })?,
                None => null_of(column.ty),
            };
            row.push(data);
        }
        Ok(row)
    }

    /// Moves the staged batch into the table, then empties the stage.
    async fn move_batch(
        &self,
        connection: &mut Connection,
        target: &Target,
        staged: &Staged,
    ) -> Result<(), ChannelDbError> {
        let (schema, layout, stage) = (&self.schema, target.layout(), &target.stage);
        let mut sql = Vec::new();
        if self.header.kind == PackageKind::Full {
            sql.push(layout.insert_into_table(schema, stage)?);
        } else {
            if staged.deletes > 0 {
                sql.push(layout.delete_from_table(schema, stage)?);
            }
            if staged.upserts > 0 {
                sql.push(layout.merge_into_table(schema, stage)?);
            }
        }
        sql.push(format!("TRUNCATE TABLE {stage}"));
        let table = &target.schema.name;
        let context = || format!("write a batch of {} rows into {table}", staged.rows());
        batch(self.pool, connection, context, &sql.join("; ")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch takes upserts and deletes alike, up to its size; a long row
    /// goes by insert; anything else ends it.
    #[test]
    fn a_batch_takes_rows_up_to_its_size_and_long_ones_by_insert() {
        let up = |v: Value| Frame::Upsert(vec![Value::Integer(1), v]);
        let short = up(Value::Text("a".into()));
        let long = up(Value::Text("x".repeat(4001)));
        let delete = Frame::Delete(vec![Value::Integer(1)]);
        let of = |f: &Frame, staged| Route::of(Some(f), staged);
        assert_eq!(of(&short, 0), Route::Bulk);
        assert_eq!(of(&delete, 0), Route::Bulk);
        assert_eq!(of(&long, 0), Route::Insert);
        assert_eq!(of(&short, BATCH_ROWS - 1), Route::Bulk);
        assert_eq!(of(&short, BATCH_ROWS), Route::EndBatch);
        assert_eq!(of(&long, BATCH_ROWS), Route::EndBatch);
        assert_eq!(of(&Frame::Table(0), 0), Route::EndBatch);
        assert_eq!(of(&Frame::End { rows: 0 }, 0), Route::EndBatch);
        assert_eq!(Route::of(None, 0), Route::EndBatch);
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
