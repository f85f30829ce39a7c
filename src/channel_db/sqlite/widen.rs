//! Widening columns in place. SQLite has no `ALTER COLUMN`: a column's
//! declared type is rewritten in the table's statement in `sqlite_schema`,
//! in the package's transaction, the procedure SQLite's documentation gives
//! for changes that leave the stored values as they are ("Making Other
//! Kinds Of Table Schema Changes"). The one change that does not, a decimal
//! growing past [`EXACT_FLOAT_DIGITS`] digits (numeric affinity to text),
//! respells the numbers stored as exact text at the column's scale.

use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{params, Connection};
use uuid::Uuid;

use crate::channel_db::error::SqliteContext;
use crate::channel_db::ChannelDbError;
use crate::package::{decimal_from_number, ColumnType, TableSchema, Value, EXACT_FLOAT_DIGITS};
use crate::plan::sqlite_ddl::{keeps_values, retype_columns};
use crate::plan::{self, ExistingTable, Family, SchemaConflict, Widen};

/// The SQL function that respells a number as a decimal's exact text.
const RESPELL: &str = "cdx_decimal_text";

/// Widens `widen`'s columns of `existing` (the table as it is) to their
/// new types. The rows keep their values.
///
/// # Errors
/// A value already in an integer column that the decimal it becomes cannot
/// hold (`ValueDoesNotFit`), a table statement that cannot be read, or a
/// SQLite failure.
pub(super) fn widen_columns(
    tx: &Connection,
    package_id: Uuid,
    existing: &ExistingTable,
    schema: &TableSchema,
    widen: &[Widen],
) -> Result<(), ChannelDbError> {
    if widen.is_empty() {
        return Ok(());
    }
    let name = &schema.name;
    let table = plan::quote_ident(name)?;
    let mut changes = Vec::with_capacity(widen.len());
    for w in widen {
        let column = &schema.columns[w.index];
        let Some(have) = existing.column(&column.name) else {
            continue;
        };
        // The integers there must stay exact in what the column becomes.
        if have.stored.map(|s| s.family) == Some(Family::Integer) {
            if let Some((bound, becomes)) = plan::exact_integer_bound(w.to) {
                check_integers_fit(tx, package_id, name, &have.name, bound, &becomes)?;
            }
        }
        changes.push((have.name.clone(), have.declared_type.clone(), w.to));
    }
    let create: String = tx
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
            [name],
            |r| r.get(0),
        )
        .context(|| format!("read the definition of {name}"))?;
    let types: Vec<String> = changes
        .iter()
        .map(|(_, _, to)| plan::sql_type(*to))
        .collect();
    let edits: Vec<(&str, &str)> = changes
        .iter()
        .zip(&types)
        .map(|((column, _, _), ty)| (column.as_str(), ty.as_str()))
        .collect();
    let edited = retype_columns(&create, &edits).map_err(|why| SchemaConflict::TypeMismatch {
        table: name.clone(),
        column: changes[0].0.clone(),
        expected: changes[0].2.to_string(),
        found: changes[0].1.clone(),
        why: format!("its definition could not be rewritten ({why})"),
    })?;
    rewrite_definition(tx, name, &edited)?;
    // The statement SQLite reads back declares exactly the new types.
    let now = super::schema::read_table(tx, name)?;
    for ((column, from, _), ty) in changes.iter().zip(&types) {
        let declared = now
            .as_ref()
            .and_then(|t| t.column(column))
            .map(|c| c.declared_type.clone());
        if declared.as_deref() != Some(ty.as_str()) {
            return Err(SchemaConflict::TypeMismatch {
                table: name.clone(),
                column: column.clone(),
                expected: ty.clone(),
                found: from.clone(),
                why: format!(
                    "its definition was rewritten but reads back as {declared:?}; nothing was \
                     changed"
                ),
            }
            .into());
        }
    }
    for ((column, from, to), ty) in changes.iter().zip(&types) {
        if let (false, ColumnType::Decimal { scale, precision }) = (keeps_values(from, ty), *to) {
            if u32::from(precision) > EXACT_FLOAT_DIGITS {
                respell_as_text(tx, &table, column, scale)?;
            }
        }
        tracing::info!(package = %package_id, table = %name, column = %column,
            from = %from, to = %ty, "widened a column the package needs wider");
    }
    Ok(())
}

/// Refuses when a value of integer column `column` is `bound` or more in
/// magnitude: what the column `becomes` cannot hold it exactly.
fn check_integers_fit(
    tx: &Connection,
    package_id: Uuid,
    table: &str,
    column: &str,
    bound: i64,
    becomes: &str,
) -> Result<(), ChannelDbError> {
    let quoted = plan::quote_ident(column)?;
    let too_large: Option<i64> = tx
        .query_row(
            &format!(
                "SELECT {quoted} FROM {} WHERE {quoted} >= ?1 OR {quoted} <= -?1 LIMIT 1",
                plan::quote_ident(table)?
            ),
            [bound],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
        .context(|| format!("check the values of {table}.{column} fit {becomes}"))?;
    match too_large {
        None => Ok(()),
        Some(value) => Err(ChannelDbError::ValueDoesNotFit {
            package_id,
            table: table.to_owned(),
            column: column.to_owned(),
            key: "a row already in the table".into(),
            detail: format!(
                "the value {value} would not stay exact, so the column cannot become {becomes} \
                 in place. {}",
                plan::REPLACE_WAY_OUT
            ),
        }),
    }
}

/// Replaces the statement of `table` in `sqlite_schema` with `sql`, and
/// bumps the schema version so that every connection reads it again.
fn rewrite_definition(tx: &Connection, table: &str, sql: &str) -> Result<(), ChannelDbError> {
    let context = || format!("rewrite the definition of {table}");
    let version: i64 = tx
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .context(context)?;
    tx.execute_batch("PRAGMA writable_schema = ON")
        .context(context)?;
    let rewritten = tx
        .execute(
            "UPDATE sqlite_schema SET sql = ?1 WHERE type = 'table' AND name = ?2 COLLATE NOCASE",
            params![sql, table],
        )
        .and_then(|_| tx.execute_batch(&format!("PRAGMA schema_version = {}", version + 1)));
    let off = tx.execute_batch("PRAGMA writable_schema = OFF");
    rewritten.and(off).context(context)
}

/// Respells the numbers stored in `column` as exact decimal text at
/// `scale`, now that its affinity is text.
fn respell_as_text(
    tx: &Connection,
    table: &str,
    column: &str,
    scale: u8,
) -> Result<(), ChannelDbError> {
    let context = || format!("respell {table}.{column} as decimal text");
    tx.create_scalar_function(
        RESPELL,
        2,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let scale = u8::try_from(ctx.get::<i64>(1)?).unwrap_or(0);
            let value = match ctx.get_raw(0) {
                ValueRef::Integer(n) => Value::Integer(n),
                ValueRef::Real(r) => Value::Real(r),
                other => return Ok(SqlValue::from(other)),
            };
            Ok(match decimal_from_number(&value, scale) {
                Some(text) => SqlValue::Text(text),
                // Not spellable at the scale: left as it is, for the
                // value checks to find, rather than lost.
                None => match value {
                    Value::Integer(n) => SqlValue::Integer(n),
                    Value::Real(r) => SqlValue::Real(r),
                    _ => SqlValue::Null,
                },
            })
        },
    )
    .context(context)?;
    let quoted = plan::quote_ident(column)?;
    let updated = tx.execute(
        &format!(
            "UPDATE {table} SET {quoted} = {RESPELL}({quoted}, ?1) \
             WHERE typeof({quoted}) IN ('integer', 'real')"
        ),
        [i64::from(scale)],
    );
    let removed = tx.remove_function(RESPELL, 2);
    updated.and(removed).map(|_| ()).context(context)
}
