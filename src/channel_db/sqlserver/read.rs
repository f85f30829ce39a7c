//! Every call but apply: reads of the bookkeeping, the upload batches and
//! the watermarks. Each is one statement that can safely run twice, so a
//! transient failure is tried again on a new connection.

use tiberius::{Row, ToSql};
use uuid::Uuid;

use super::pool::{Connection, SqlServerPool};
use super::tsql::{self, Bookkeeping, ReadAs};
use super::types::{is_uploadable, ServerColumn};
use super::values::from_column_data;
use crate::channel_db::{AppliedPackage, ChannelDbError, PassedOver, RowBatch, UploadTable};
use crate::package::PackageKind;

/// The rows of `sql` with `params`, all of them.
pub(super) async fn query(
    pool: &SqlServerPool,
    connection: &mut Connection,
    context: impl Fn() -> String,
    sql: &str,
    params: &[&dyn ToSql],
) -> Result<Vec<Row>, ChannelDbError> {
    pool.timed(&context, async {
        connection
            .query(sql, params)
            .await?
            .into_first_result()
            .await
    })
    .await
}

/// Runs `sql` for its effect.
pub(super) async fn execute(
    pool: &SqlServerPool,
    connection: &mut Connection,
    context: impl Fn() -> String,
    sql: &str,
    params: &[&dyn ToSql],
) -> Result<u64, ChannelDbError> {
    pool.timed(&context, async {
        Ok(connection.execute(sql, params).await?.total())
    })
    .await
}

/// The columns of `schema.table`, or `None` when there is no such table.
pub(super) async fn table_columns(
    pool: &SqlServerPool,
    connection: &mut Connection,
    table: &str,
) -> Result<Option<Vec<ServerColumn>>, ChannelDbError> {
    let name = tsql::qualified(&pool.config().schema, table)?;
    let rows = query(
        pool,
        connection,
        || format!("read the columns of {name}"),
        tsql::COLUMNS,
        &[&name.as_str()],
    )
    .await?;
    let columns = rows
        .iter()
        .map(server_column)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| corrupt_bookkeeping(format!("read the columns of {name}")))?;
    Ok((!columns.is_empty()).then_some(columns))
}

/// A `sys.columns` row; `None` when a cell has an unexpected type.
fn server_column(row: &Row) -> Option<ServerColumn> {
    Some(ServerColumn {
        name: cell::<&str>(row, 0)?.to_owned(),
        type_name: cell::<&str>(row, 1)?.to_ascii_lowercase(),
        max_length: cell(row, 2)?,
        precision: cell(row, 3)?,
        scale: cell(row, 4)?,
        nullable: cell(row, 5)?,
        identity: cell(row, 6)?,
        computed: cell(row, 7)?,
        has_default: cell(row, 8)?,
        key_ordinal: u32::try_from(cell::<i32>(row, 9)?).ok()?,
        collation: cell::<&str>(row, 10).map(str::to_owned),
        indexed: cell(row, 11).unwrap_or(false),
        checked: cell(row, 12).unwrap_or(false),
    })
}

/// Cell `i` of `row`: `None` when it is NULL or not a `T` (tiberius's
/// `get` would panic).
fn cell<'a, T: tiberius::FromSql<'a>>(row: &'a Row, i: usize) -> Option<T> {
    row.try_get(i).ok().flatten()
}

fn bookkeeping(pool: &SqlServerPool) -> Result<Bookkeeping, ChannelDbError> {
    Ok(Bookkeeping::new(&pool.config().schema)?)
}

pub(super) fn applied_packages(
    pool: &SqlServerPool,
    data_group: &str,
) -> Result<Vec<AppliedPackage>, ChannelDbError> {
    let sql = bookkeeping(pool)?.applied;
    let context = || format!("read cdx_applied_packages of data group {data_group}");
    let rows = pool.retrying(|c| pool.block_on(query(pool, c, context, &sql, &[&data_group])))?;
    rows.iter()
        .map(|row| applied_package(row).ok_or_else(|| corrupt_bookkeeping(context())))
        .collect()
}

fn applied_package(row: &Row) -> Option<AppliedPackage> {
    Some(AppliedPackage {
        package_id: cell::<Uuid>(row, 0)?,
        data_group: cell::<&str>(row, 1)?.to_owned(),
        job: cell::<&str>(row, 2)?.to_owned(),
        sequence: u64::try_from(cell::<i64>(row, 3)?).ok()?,
        kind: match cell::<&str>(row, 4)? {
            "Full" => PackageKind::Full,
            "Incremental" => PackageKind::Incremental,
            _ => return None,
        },
        rows: u64::try_from(cell::<i64>(row, 5)?).ok()?,
        applied_at_ms: cell(row, 6)?,
        passed_over: cell::<&str>(row, 7).map(str::to_owned),
    })
}

/// Records a package passed over; see [`Bookkeeping::pass_over`].
/// Drops every record of `data_group` from `cdx_applied_packages`.
pub(super) fn forget_applied(
    pool: &SqlServerPool,
    data_group: &str,
) -> Result<u64, ChannelDbError> {
    let sql = bookkeeping(pool)?;
    let context = || format!("forget the packages of data group {data_group}");
    pool.retrying(|c| pool.block_on(execute(pool, c, context, &sql.forget_group, &[&data_group])))
}

pub(super) fn pass_over(pool: &SqlServerPool, p: &PassedOver) -> Result<(), ChannelDbError> {
    let sql = bookkeeping(pool)?;
    let id = p.package_id;
    let context = || format!("record package {id} as passed over in cdx_applied_packages");
    let sequence = i64::try_from(p.sequence).unwrap_or(i64::MAX);
    let kind = p.kind.name();
    let now = crate::protocol::now_ms();
    let params: [&dyn ToSql; 7] = [
        &id,
        &p.data_group.as_str(),
        &p.job.as_str(),
        &sequence,
        &kind,
        &now,
        &p.reason.as_str(),
    ];
    let inserted =
        pool.retrying(|c| pool.block_on(execute(pool, c, context, &sql.pass_over, &params)))?;
    if inserted == 1 {
        return Ok(());
    }
    let recorded = pool.retrying(|c| {
        pool.block_on(query(
            pool,
            c,
            || "read cdx_applied_packages".into(),
            &sql.is_applied,
            &[&id],
        ))
    })?;
    if !recorded.is_empty() {
        return Ok(());
    }
    Err(ChannelDbError::OutOfOrder {
        package_id: id,
        data_group: p.data_group.clone(),
        sequence: p.sequence,
        last_applied: last_applied_sequence(pool, &p.data_group)?,
    })
}

/// A row of unexpected shape from a statement of ours.
fn corrupt_bookkeeping(context: String) -> ChannelDbError {
    unexpected(context, "a row of unexpected shape".into())
}

/// A value the statement of `context` returned that cdx cannot use.
fn unexpected(context: String, why: String) -> ChannelDbError {
    ChannelDbError::SqlServer {
        context,
        source: tiberius::error::Error::Conversion(why.into()),
        transient: false,
    }
}

pub(super) fn last_applied_sequence(
    pool: &SqlServerPool,
    data_group: &str,
) -> Result<u64, ChannelDbError> {
    let sql = bookkeeping(pool)?.last_sequence;
    let context = || format!("read the last applied sequence of data group {data_group}");
    pool.retrying(|c| pool.block_on(last_sequence(pool, c, &sql, data_group, context)))
}

/// The highest sequence applied for `data_group`, 0 when none.
pub(super) async fn last_sequence(
    pool: &SqlServerPool,
    connection: &mut Connection,
    sql: &str,
    data_group: &str,
    context: impl Fn() -> String,
) -> Result<u64, ChannelDbError> {
    let rows = query(pool, connection, &context, sql, &[&data_group]).await?;
    let last = rows.first().and_then(|r| cell::<i64>(r, 0)).unwrap_or(0);
    u64::try_from(last).map_err(|_| corrupt_bookkeeping(context()))
}

pub(super) fn upload_rows(
    pool: &SqlServerPool,
    table: &UploadTable,
    after: i64,
    limit: usize,
) -> Result<RowBatch, ChannelDbError> {
    tsql::quote(&table.counter_column)?;
    tsql::quote(&table.name)?;
    pool.retrying(|c| pool.block_on(read_batch(pool, c, table, after, limit)))
}

async fn read_batch(
    pool: &SqlServerPool,
    connection: &mut Connection,
    table: &UploadTable,
    after: i64,
    limit: usize,
) -> Result<RowBatch, ChannelDbError> {
    let (name, counter) = (&table.name, &table.counter_column);
    let columns = table_columns(pool, connection, name)
        .await?
        .ok_or_else(|| ChannelDbError::UnknownTable {
            table: name.clone(),
        })?;
    if !columns.iter().any(|c| c.name.eq_ignore_ascii_case(counter)) {
        return Err(ChannelDbError::UnknownColumn {
            table: name.clone(),
            column: counter.clone(),
        });
    }
    // Refused here, by name: tiberius panics on sql_variant and CLR types.
    if let Some(c) = columns.iter().find(|c| !is_uploadable(&c.type_name)) {
        return Err(ChannelDbError::UnsupportedColumn {
            table: name.clone(),
            column: c.name.clone(),
            type_name: c.type_name.clone(),
        });
    }
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let read_as: Vec<(&str, ReadAs)> = columns
        .iter()
        .map(|c| (c.name.as_str(), ReadAs::of(&c.type_name)))
        .collect();
    let sql = tsql::select_upload_rows(&pool.config().schema, name, &read_as, counter)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let context = || format!("read upload rows of {name}");
    let rows = query(pool, connection, context, &sql, &[&limit, &after]).await?;
    let counter_at = names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(counter))
        .unwrap_or_default();
    let mut batch = RowBatch {
        columns: names.iter().map(|n| (*n).to_owned()).collect(),
        types: columns
            .iter()
            .map(|c| c.stored().and_then(|t| crate::plan::package_type(&t)))
            .collect(),
        rows: Vec::with_capacity(rows.len()),
        counters: None,
    };
    for row in rows {
        let values = row
            .into_iter()
            .map(from_column_data)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| corrupt_value(name, why))?;
        let n = match values.get(counter_at) {
            Some(crate::package::Value::Integer(n)) => *n,
            _ => {
                return Err(corrupt_value(
                    name,
                    format!("counter {counter} is not an integer"),
                ))
            }
        };
        batch.counters = Some(batch.counters.map_or((n, n), |(first, _)| (first, n)));
        batch.rows.push(values);
    }
    Ok(batch)
}

fn corrupt_value(table: &str, why: String) -> ChannelDbError {
    unexpected(format!("read upload rows of {table}"), why)
}

pub(super) fn query_batch(
    pool: &SqlServerPool,
    sql: &str,
) -> Result<Vec<Vec<crate::package::Value>>, ChannelDbError> {
    let context = || format!("run {}", sql.chars().take(80).collect::<String>());
    let rows = pool.with_throwaway_connection(|c| {
        pool.block_on(pool.timed(context, async {
            c.simple_query(sql).await?.into_first_result().await
        }))
    })?;
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .map(from_column_data)
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| unexpected(context(), why))
}

pub(super) fn watermark(pool: &SqlServerPool, table: &str) -> Result<i64, ChannelDbError> {
    tsql::quote(table)?;
    let sql = bookkeeping(pool)?.watermark;
    let context = || format!("read the upload watermark of {table}");
    let rows = pool.retrying(|c| pool.block_on(query(pool, c, context, &sql, &[&table])))?;
    Ok(rows.first().and_then(|r| cell::<i64>(r, 0)).unwrap_or(0))
}

pub(super) fn advance_watermark(
    pool: &SqlServerPool,
    table: &str,
    counter: i64,
) -> Result<(), ChannelDbError> {
    tsql::quote(table)?;
    let sql = bookkeeping(pool)?.advance;
    let context = || format!("advance the upload watermark of {table} to {counter}");
    pool.retrying(|c| pool.block_on(execute(pool, c, context, &sql, &[&table, &counter])))?;
    Ok(())
}

/// Rows of `table`, or only those whose `counter` column is above a value.
pub(super) fn row_count(
    pool: &SqlServerPool,
    table: &str,
    above: Option<(&str, i64)>,
) -> Result<u64, ChannelDbError> {
    let qualified = tsql::qualified(&pool.config().schema, table)?;
    let (sql, after) = match above {
        Some((counter, after)) => (
            format!(
                "SELECT COUNT_BIG(*) FROM {qualified} WHERE {} > @P1",
                tsql::quote(counter)?
            ),
            Some(after),
        ),
        None => (format!("SELECT COUNT_BIG(*) FROM {qualified}"), None),
    };
    let context = || format!("count the rows of {table}");
    pool.retrying(|c| {
        pool.block_on(async {
            if table_columns(pool, c, table).await?.is_none() {
                return Err(ChannelDbError::UnknownTable {
                    table: table.to_owned(),
                });
            }
            let params: Vec<&dyn ToSql> = after.iter().map(|a| a as &dyn ToSql).collect();
            let rows = query(pool, c, context, &sql, &params).await?;
            let count = rows.first().and_then(|r| cell::<i64>(r, 0)).unwrap_or(0);
            Ok(u64::try_from(count).unwrap_or(0))
        })
    })
}
