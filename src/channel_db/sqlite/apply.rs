//! Applying a package: one `BEGIN IMMEDIATE` transaction per package, its
//! frames read ahead on a helper thread (`frames`).

use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Statement};
use rusqlite::{Transaction, TransactionBehavior};
use uuid::Uuid;

use super::schema::{delete_sql, numeric_columns, read_table, upsert_sql};
use super::value::SqlValue;
use crate::channel_db::error::SqliteContext;
use crate::channel_db::frames::{self, Frames};
use crate::channel_db::{ApplyOutcome, ApplyReport, ChannelDbError, PackageSource, PassedOver};
use crate::package::{
    parse_decimal, shown, Frame, PackageError, PackageHeader, PackageKind, TableSchema, Value,
    EXACT_FLOAT_DIGITS,
};
use crate::plan::{self, Limits, TableAction};

/// Applies `package` to `conn`: everything or, on any error, nothing (the
/// transaction rolls back when dropped).
///
/// Every table the header lists is checked (and created, and for a full
/// package emptied) before the first row, so a conflict anywhere in the
/// package fails it before any row was written. Commits only after the
/// reader verified the checksum.
///
/// # Errors
/// Any error but `OutOfOrder` reads the rest of the package after the
/// rollback: a package that turns out corrupt is reported as such.
///
/// `reapply`: the package is applied already and is applied again over
/// itself (its record replaced), in its place in the order.
pub(super) fn apply_package(
    conn: &mut Connection,
    mut package: PackageSource<'_>,
    reapply: bool,
) -> Result<ApplyOutcome, ChannelDbError> {
    let header = package.header().clone();
    match apply_in_transaction(conn, &header, &mut package, reapply) {
        Err(
            e @ (ChannelDbError::Package { .. }
            | ChannelDbError::OutOfOrder { .. }
            | ChannelDbError::NotApplied { .. }),
        ) => Err(e),
        Err(e) => Err(frames::blame_corruption(&mut package, e)),
        ok => ok,
    }
}

fn apply_in_transaction(
    conn: &mut Connection,
    header: &PackageHeader,
    package: &mut PackageSource<'_>,
    reapply: bool,
) -> Result<ApplyOutcome, ChannelDbError> {
    let id = header.package_id;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context(|| format!("begin transaction for package {id}"))?;
    let applied = is_applied(&tx, header)?;
    let last_applied = super::last_applied_sequence(&tx, &header.data_group)?;
    if reapply {
        if !applied {
            return Err(ChannelDbError::NotApplied { package_id: id });
        }
        tx.execute(
            "DELETE FROM cdx_applied_packages WHERE package_id = ?1",
            [id.to_string()],
        )
        .context(|| format!("replace package {id} in cdx_applied_packages"))?;
    } else if applied {
        return Ok(ApplyOutcome::AlreadyApplied);
    } else if header.sequence <= last_applied {
        return Err(ChannelDbError::OutOfOrder {
            package_id: id,
            data_group: header.data_group.clone(),
            sequence: header.sequence,
            last_applied,
        });
    }

    let mut report = ApplyReport::default();
    let mut tables = Vec::with_capacity(header.tables.len());
    for schema in &header.tables {
        tables.push(prepare_table(&tx, header, schema, &mut report)?);
    }
    // Decimals held as numbers are turned into them on the reader's thread.
    let numbers: Vec<(Vec<bool>, Vec<bool>)> = tables.iter().map(TableSql::to_numbers).collect();
    let mut current: Option<usize> = None;
    let prepare = move |frame: &mut Frame| match frame {
        Frame::Table(index) => current = Some(*index as usize),
        Frame::Upsert(values) => {
            to_numbers(values, current.and_then(|t| numbers.get(t)).map(|n| &n.0))
        }
        Frame::Delete(key) => to_numbers(key, current.and_then(|t| numbers.get(t)).map(|n| &n.1)),
        Frame::End { .. } => {}
    };
    frames::read_ahead_prepared(package, prepare, |frames| {
        apply_frames(&tx, id, frames, &tables, &mut report)
    })?;
    record(&tx, header, report.upserts + report.deletes)?;
    tx.commit().context(|| format!("commit package {id}"))?;
    Ok(ApplyOutcome::Applied(report))
}

fn is_applied(tx: &Transaction<'_>, header: &PackageHeader) -> Result<bool, ChannelDbError> {
    tx.query_row(
        "SELECT 1 FROM cdx_applied_packages WHERE package_id = ?1",
        [header.package_id.to_string()],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
    .context(|| "read cdx_applied_packages".to_owned())
}

/// The statements that write one table's rows.
struct TableSql {
    schema: TableSchema,
    upsert: String,
    delete: String,
    /// Columns narrower than the package's type, checked value by value.
    checks: Vec<(usize, Limits)>,
    /// Decimal columns stored at another scale, by position among the
    /// columns (`rescale`) and among the key columns (`rescale_key`).
    rescale: Vec<(usize, u8)>,
    rescale_key: Vec<(usize, u8)>,
    /// Whether each column, and each key column, is a decimal held as a
    /// number (NUMERIC affinity).
    numeric: Vec<bool>,
    numeric_key: Vec<bool>,
}

impl TableSql {
    /// Which columns, and which key columns, the reader may turn from a
    /// decimal's text into the number the column holds: the numeric ones
    /// that are neither checked nor rescaled first (those stay text until
    /// [`bind`], after their own step).
    fn to_numbers(&self) -> (Vec<bool>, Vec<bool>) {
        let mut columns = self.numeric.clone();
        let own_step = self.checks.iter().map(|(i, _)| *i);
        for i in own_step.chain(self.rescale.iter().map(|(i, _)| *i)) {
            if let Some(c) = columns.get_mut(i) {
                *c = false;
            }
        }
        let mut key = self.numeric_key.clone();
        for (k, name) in self.schema.key.iter().enumerate() {
            let at = self.schema.columns.iter().position(|c| &c.name == name);
            if let (Some(slot), Some(at)) = (key.get_mut(k), at) {
                *slot = *slot && columns.get(at) == Some(&true);
            }
        }
        (columns, key)
    }
}

/// Turns each decimal text of `values` where `mask` says so into the number
/// [`bind`] would bind; one that no number holds exactly stays text, for
/// [`bind`] to refuse with the row's key.
fn to_numbers(values: &mut [Value], mask: Option<&Vec<bool>>) {
    // A table with no such column: nothing to look at.
    let Some(mask) = mask.filter(|m| m.contains(&true)) else {
        return;
    };
    for (value, &numeric) in values.iter_mut().zip(mask) {
        if !numeric {
            continue;
        }
        if let Value::Text(text) = value {
            if let Some(number) = parse_decimal(text).and_then(|d| d.to_number()) {
                *value = number;
            }
        }
    }
}

/// Checks `schema` against the database, creates the table when missing,
/// empties it for a full package, and builds its statements.
fn prepare_table(
    tx: &Transaction<'_>,
    header: &PackageHeader,
    schema: &TableSchema,
    report: &mut ApplyReport,
) -> Result<TableSql, ChannelDbError> {
    let name = &schema.name;
    if plan::is_reserved_table(name) {
        return Err(ChannelDbError::ReservedTable {
            package_id: header.package_id,
            table: name.clone(),
        });
    }
    let table = plan::quote_ident(name)?;
    let mut existing = read_table(tx, name)?;
    let replace = header.replaces_table(name);
    let action = plan::check_table(existing.as_ref(), schema, replace)?;
    if header.kind == PackageKind::Full
        && matches!(action, TableAction::UseExisting | TableAction::Alter { .. })
    {
        tx.execute(&format!("DELETE FROM {table}"), [])
            .context(|| format!("delete all rows of {name}"))?;
    }
    match &action {
        TableAction::Create | TableAction::Replace => {
            if action == TableAction::Replace {
                tx.execute(&format!("DROP TABLE {table}"), [])
                    .context(|| format!("drop table {name} to replace its definition"))?;
                tracing::warn!(package = %header.package_id, table = %name,
                    "the package replaces the table's definition: dropped and created again");
                report.replaced_tables.push(name.clone());
            } else {
                report.created_tables.push(name.clone());
            }
            tx.execute(&plan::create_table_sql(schema)?, [])
                .context(|| format!("create table {name}"))?;
        }
        TableAction::UseExisting => {}
        TableAction::Alter { add, widen } => {
            for &i in add {
                let column = &schema.columns[i];
                tx.execute(&plan::add_column_sql(name, column)?, [])
                    .context(|| format!("add column {}.{}", name, column.name))?;
                tracing::info!(package = %header.package_id, table = %name,
                    column = %column.name, ty = %column.ty, "added a column the package brings");
            }
            if let Some(have) = &existing {
                super::widen::widen_columns(tx, header.package_id, have, schema, widen)?;
            }
        }
    }
    if action != TableAction::UseExisting {
        existing = read_table(tx, name)?;
    }
    // Checked against the table as it is now: altered, or created.
    let checks = existing
        .as_ref()
        .map_or_else(Vec::new, |e| plan::narrower_columns(e, schema));
    let rescale = existing
        .as_ref()
        .map_or_else(Vec::new, |e| plan::rescaled_columns(e, schema));
    let rescale_key = rescale
        .iter()
        .filter_map(|&(i, scale)| {
            let name = &schema.columns[i].name;
            Some((schema.key.iter().position(|k| k == name)?, scale))
        })
        .collect();
    let numeric = existing
        .as_ref()
        .map_or_else(Vec::new, |e| numeric_columns(e, schema));
    let numeric_key = key_positions(schema, &numeric);
    let mask = |positions: &[usize], len: usize| {
        let mut mask = vec![false; len];
        for &i in positions {
            if let Some(m) = mask.get_mut(i) {
                *m = true;
            }
        }
        mask
    };
    let numeric_key = mask(&numeric_key, schema.key.len());
    let numeric = mask(&numeric, schema.columns.len());
    Ok(TableSql {
        numeric,
        numeric_key,
        schema: schema.clone(),
        upsert: upsert_sql(&table, schema, header.kind)?,
        delete: delete_sql(&table, schema)?,
        checks,
        rescale,
        rescale_key,
    })
}

/// The open table's statements; the delete one is prepared on first use.
struct Current<'t, 'c> {
    sql: &'t TableSql,
    upsert: Statement<'c>,
    delete: Option<Statement<'c>>,
}

/// Writes the rows of `frames`, which must end with `Frame::End`.
fn apply_frames(
    tx: &Transaction<'_>,
    id: Uuid,
    frames: &mut Frames,
    tables: &[TableSql],
    report: &mut ApplyReport,
) -> Result<(), ChannelDbError> {
    let package_err = |source| ChannelDbError::package(Some(id), source);
    let mut current: Option<Current<'_, '_>> = None;
    let mut ended = false;
    while let Some(batch) = frames.next_batch() {
        for frame in batch {
            apply_frame(tx, id, frame, tables, &mut current, report)?;
            ended |= matches!(frame, Frame::End { .. });
        }
    }
    // The reader stops early only with an error, which `read_ahead` reports.
    if !ended {
        return Err(package_err(frame_error(
            "the frames ended before End".into(),
        )));
    }
    Ok(())
}

/// Applies one frame; `current` holds the statements of the open table.
fn apply_frame<'t, 'c>(
    tx: &'c Connection,
    id: Uuid,
    frame: &Frame,
    tables: &'t [TableSql],
    current: &mut Option<Current<'t, 'c>>,
    report: &mut ApplyReport,
) -> Result<(), ChannelDbError> {
    let package_err = |source| ChannelDbError::package(Some(id), source);
    match frame {
        Frame::Table(index) => {
            let Some(sql) = tables.get(*index as usize) else {
                return Err(package_err(frame_error(format!(
                    "Table({index}) but the header lists {} tables",
                    tables.len()
                ))));
            };
            let upsert = tx
                .prepare(&sql.upsert)
                .context(|| format!("prepare upsert into {}", sql.schema.name))?;
            *current = Some(Current {
                sql,
                upsert,
                delete: None,
            });
        }
        Frame::Upsert(row) => {
            let cur = open_table(current, "Upsert").map_err(package_err)?;
            plan::check_row(id, &cur.sql.schema, &cur.sql.checks, row)?;
            let row = plan::rescale(row, &cur.sql.rescale);
            let schema = &cur.sql.schema;
            bind(id, schema, &mut cur.upsert, &row, &cur.sql.numeric, |i| i)?;
            cur.upsert
                .raw_execute()
                .context(|| format!("upsert into {}", schema.name))?;
            report.upserts += 1;
        }
        Frame::Delete(key) => {
            let cur = open_table(current, "Delete").map_err(package_err)?;
            delete(tx, id, cur, key)?;
            report.deletes += 1;
        }
        Frame::End { .. } => *current = None,
    }
    Ok(())
}

fn delete<'c>(
    tx: &'c Connection,
    id: Uuid,
    cur: &mut Current<'_, 'c>,
    key: &[Value],
) -> Result<(), ChannelDbError> {
    let name = &cur.sql.schema.name;
    let key = plan::rescale(key, &cur.sql.rescale_key);
    let schema = &cur.sql.schema;
    let column = |i: usize| {
        let key = &schema.key[i];
        schema
            .columns
            .iter()
            .position(|c| &c.name == key)
            .unwrap_or(i)
    };
    let stmt = match &mut cur.delete {
        Some(stmt) => stmt,
        none => none.insert(
            tx.prepare(&cur.sql.delete)
                .context(|| format!("prepare delete from {name}"))?,
        ),
    };
    bind(id, schema, stmt, &key, &cur.sql.numeric_key, column)?;
    stmt.raw_execute()
        .context(|| format!("delete from {name}"))?;
    Ok(())
}

/// The key positions of the columns at `positions`.
fn key_positions(schema: &TableSchema, positions: &[usize]) -> Vec<usize> {
    positions
        .iter()
        .filter_map(|&i| {
            let name = &schema.columns[i].name;
            schema.key.iter().position(|k| k == name)
        })
        .collect()
}

/// Binds `values` to `stmt`'s parameters in order, the decimals where
/// `numeric` says so as the numbers a NUMERIC column holds
/// ([`crate::package::Decimal::to_number`]), without copying the row.
/// `column` maps a position to the column's index in `schema`.
///
/// # Errors
/// `ValueDoesNotFit` for a decimal of more significant digits than a float
/// holds exactly: storing it would change it.
fn bind(
    package_id: Uuid,
    schema: &TableSchema,
    stmt: &mut Statement<'_>,
    values: &[Value],
    numeric: &[bool],
    column: impl Fn(usize) -> usize,
) -> Result<(), ChannelDbError> {
    for (i, value) in values.iter().enumerate() {
        let number;
        let value = match value {
            Value::Text(text) if numeric.get(i) == Some(&true) => {
                number = parse_decimal(text)
                    .and_then(|d| d.to_number())
                    .ok_or_else(|| {
                        let whole_row = values.len() == schema.columns.len();
                        ChannelDbError::ValueDoesNotFit {
                            package_id,
                            table: schema.name.clone(),
                            column: schema.columns[column(i)].name.clone(),
                            key: if whole_row {
                                plan::describe_key(schema, values)
                            } else {
                                String::new()
                            },
                            detail: format!(
                                "{} has more than {EXACT_FLOAT_DIGITS} significant digits, \
                                 which the column's NUMERIC affinity cannot hold exactly",
                                shown(text)
                            ),
                        }
                    })?;
                &number
            }
            value => value,
        };
        stmt.raw_bind_parameter(i + 1, SqlValue(value))
            .context(|| format!("bind a value of {}", schema.name))?;
    }
    Ok(())
}

fn open_table<'a, 't, 'c>(
    current: &'a mut Option<Current<'t, 'c>>,
    frame: &str,
) -> Result<&'a mut Current<'t, 'c>, PackageError> {
    current
        .as_mut()
        .ok_or_else(|| frame_error(format!("{frame} before any Table frame")))
}

fn frame_error(detail: String) -> PackageError {
    PackageError::InvalidFrame {
        table: None,
        detail,
    }
}

/// Records a package passed over, in its place in the order.
pub(super) fn pass_over(conn: &mut Connection, p: &PassedOver) -> Result<(), ChannelDbError> {
    let id = p.package_id;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context(|| format!("begin transaction for package {id}"))?;
    let recorded = tx
        .query_row(
            "SELECT 1 FROM cdx_applied_packages WHERE package_id = ?1",
            [id.to_string()],
            |_| Ok(()),
        )
        .optional()
        .context(|| "read cdx_applied_packages".to_owned())?;
    if recorded.is_some() {
        return Ok(());
    }
    let last_applied = super::last_applied_sequence(&tx, &p.data_group)?;
    if p.sequence != last_applied + 1 {
        return Err(ChannelDbError::OutOfOrder {
            package_id: id,
            data_group: p.data_group.clone(),
            sequence: p.sequence,
            last_applied,
        });
    }
    tx.execute(
        "INSERT INTO cdx_applied_packages \
         (package_id, data_group, job, sequence, kind, rows, applied_at_ms, passed_over) \
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)",
        params![
            id.to_string(),
            p.data_group,
            p.job,
            p.sequence,
            p.kind.name(),
            now_ms(),
            p.reason
        ],
    )
    .context(|| format!("record package {id} as passed over in cdx_applied_packages"))?;
    tx.commit()
        .context(|| format!("commit passing over package {id}"))
}

/// The package's row in `cdx_applied_packages`, in the same transaction.
fn record(tx: &Transaction<'_>, header: &PackageHeader, rows: u64) -> Result<(), ChannelDbError> {
    let kind = header.kind.name();
    tx.execute(
        "INSERT INTO cdx_applied_packages \
         (package_id, data_group, job, sequence, kind, rows, applied_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            header.package_id.to_string(),
            header.data_group,
            header.job,
            header.sequence,
            kind,
            rows,
            now_ms()
        ],
    )
    .context(|| {
        format!(
            "record package {} in cdx_applied_packages",
            header.package_id
        )
    })?;
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
