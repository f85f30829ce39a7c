//! Tables as the SQLite database has them.

use rusqlite::Connection;

use crate::channel_db::error::SqliteContext;
use crate::channel_db::ChannelDbError;
use crate::plan::{ExistingColumn, ExistingTable};

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
