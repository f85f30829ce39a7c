//! Tables as the SQLite database has them, and the statements that write
//! a package's rows into them.

use rusqlite::Connection;

use crate::channel_db::error::SqliteContext;
use crate::channel_db::ChannelDbError;
use crate::package::{PackageKind, TableSchema};
use crate::plan::{self, ExistingColumn, ExistingTable};

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
            Ok(ExistingColumn {
                name: row.get(0)?,
                declared_type: row.get(1)?,
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
