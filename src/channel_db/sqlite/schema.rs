//! Tables as the SQLite database has them, and the statements that write
//! a package's rows into them.

use rusqlite::Connection;

use crate::channel_db::error::SqliteContext;
use crate::channel_db::ChannelDbError;
use crate::package::{ColumnType, PackageKind, TableSchema};
use crate::plan::{self, ExistingColumn, ExistingTable, Family, Limits, StoredType};

/// The table `name` (compared case-insensitively, as SQLite does), or
/// `None` when the database has no such table or view.
pub(super) fn read_table(
    conn: &Connection,
    name: &str,
) -> Result<Option<ExistingTable>, ChannelDbError> {
    let context = || format!("read the columns of {name}");
    let mut stmt = conn
        .prepare_cached(
            "SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk \
             FROM pragma_table_info(?1) ORDER BY cid",
        )
        .context(context)?;
    let columns = stmt
        .query_map([name], |row| {
            let declared_type: String = row.get(1)?;
            Ok(ExistingColumn {
                name: row.get(0)?,
                stored: stored_type(&declared_type),
                declared_type,
                not_null: row.get(2)?,
                has_default: row.get(3)?,
                pk_position: row.get(4)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .context(context)?;
    Ok((!columns.is_empty()).then(|| ExistingTable {
        name: name.to_owned(),
        columns,
    }))
}

/// What a declared SQLite type holds: the names `plan::sql_type` writes,
/// and the common synonyms a hand-made table may use. SQLite enforces no
/// length, but a declared `VARCHAR(20)` is a promise the POS relies on, so
/// values are checked against it as on SQL Server.
pub(super) fn stored_type(declared: &str) -> Option<StoredType> {
    let compact: String = declared
        .split_whitespace()
        .collect::<String>()
        .to_ascii_uppercase();
    let (name, args) = match compact.split_once('(') {
        Some((name, rest)) => (name.to_owned(), rest.strip_suffix(')')?.to_owned()),
        None => (compact.clone(), String::new()),
    };
    let numbers: Vec<u32> = if args.is_empty() {
        Vec::new()
    } else {
        args.split(',')
            .map(|n| n.parse().ok())
            .collect::<Option<_>>()?
    };
    let limits = |max_len: Option<u32>, decimal: Option<(u8, u8)>| Limits {
        max_len,
        decimal,
        int_range: None,
    };
    let (family, limits) = match (name.as_str(), numbers.as_slice()) {
        ("INTEGER" | "INT" | "BIGINT", []) => (Family::Integer, Limits::default()),
        ("REAL" | "FLOAT" | "DOUBLE", []) => (Family::Real, Limits::default()),
        ("TEXT", []) => (Family::Text, Limits::default()),
        ("VARCHAR" | "NVARCHAR" | "CHAR" | "NCHAR", [n]) => (Family::Text, limits(Some(*n), None)),
        ("BLOB", []) => (Family::Blob, Limits::default()),
        ("VARBINARY", [n]) => (Family::Blob, limits(Some(*n), None)),
        ("BOOLEAN", []) => (Family::Boolean, Limits::default()),
        ("DECIMAL_TEXT" | "DECIMAL" | "NUMERIC", [p, s]) => {
            let decimal = (u8::try_from(*p).ok()?, u8::try_from(*s).ok()?);
            (Family::Decimal, limits(None, Some(decimal)))
        }
        ("DATE", []) => (Family::Date, Limits::default()),
        ("DATETIME", []) => (Family::DateTime, Limits::default()),
        ("TIME", []) => (Family::Time, Limits::default()),
        ("UUID", []) => (Family::Uuid, Limits::default()),
        _ => return None,
    };
    Some(StoredType { family, limits })
}

/// Whether a column declared `declared` holds decimals as numbers
/// (`DECIMAL(p,s)` or `NUMERIC(p,s)`, NUMERIC affinity) rather than as
/// canonical text (`DECIMAL_TEXT(p,s)`).
pub fn is_numeric_decimal(declared: &str) -> bool {
    let name = declared.split('(').next().unwrap_or("").trim();
    (name.eq_ignore_ascii_case("DECIMAL") || name.eq_ignore_ascii_case("NUMERIC"))
        && matches!(stored_type(declared), Some(t) if t.family == Family::Decimal)
}

/// The positions among `wanted`'s columns of the decimals `existing`
/// holds as numbers.
pub(super) fn numeric_columns(existing: &ExistingTable, wanted: &TableSchema) -> Vec<usize> {
    wanted
        .columns
        .iter()
        .enumerate()
        .filter(|(_, column)| matches!(column.ty, ColumnType::Decimal { .. }))
        .filter(|(_, column)| {
            existing
                .column(&column.name)
                .is_some_and(|c| is_numeric_decimal(&c.declared_type))
        })
        .map(|(i, _)| i)
        .collect()
}

/// A full package inserts into an emptied table; an incremental one inserts
/// or, when the key exists, updates the other columns.
pub(super) fn upsert_sql(
    table: &str,
    schema: &TableSchema,
    kind: PackageKind,
) -> Result<String, ChannelDbError> {
    let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    let mut sql = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        plan::quote_list(&names)?,
        placeholders.join(", ")
    );
    if kind == PackageKind::Incremental {
        let non_key: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !schema.key.iter().any(|k| k == n))
            .collect();
        sql.push_str(&format!(
            " ON CONFLICT ({}) DO ",
            plan::quote_list(&schema.key)?
        ));
        if non_key.is_empty() {
            // A key-only row that exists already is the row itself.
            sql.push_str("NOTHING");
        } else {
            let sets = non_key
                .iter()
                .map(|n| plan::quote_ident(n).map(|q| format!("{q} = excluded.{q}")))
                .collect::<Result<Vec<_>, _>>()?;
            sql.push_str("UPDATE SET ");
            sql.push_str(&sets.join(", "));
        }
    }
    Ok(sql)
}

pub(super) fn delete_sql(table: &str, schema: &TableSchema) -> Result<String, ChannelDbError> {
    let conditions = schema
        .key
        .iter()
        .enumerate()
        .map(|(i, k)| plan::quote_ident(k).map(|q| format!("{q} = ?{}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!(
        "DELETE FROM {table} WHERE {}",
        conditions.join(" AND ")
    ))
}
