//! The T-SQL the backend runs, built from validated names only.
//!
//! **Invariant:** every identifier passes [`quote`], which refuses anything
//! but an identifier (`package::is_identifier`: ASCII letters, digits and
//! `_`), so a package cannot run SQL of its own. Values always travel as
//! parameters or through bulk load, never in the text.

use super::types::{create_type, is_text, staging_type};
use crate::package::{ColumnType, TableSchema};
use crate::plan::InvalidIdentifier;

/// The column bulk load numbers the rows with, so a merge keeps the last
/// of several upserts of one key.
pub const ORDINAL: &str = "cdx_ord";

/// `name` in brackets.
///
/// # Errors
/// `name` is not an identifier.
pub fn quote(name: &str) -> Result<String, InvalidIdentifier> {
    if !crate::package::is_identifier(name) {
        return Err(InvalidIdentifier {
            name: name.to_owned(),
        });
    }
    // An identifier holds no `]`; doubling it keeps the quoting right
    // should that rule ever loosen.
    Ok(format!("[{}]", name.replace(']', "]]")))
}

/// `[schema].[table]`.
pub fn qualified(schema: &str, table: &str) -> Result<String, InvalidIdentifier> {
    Ok(format!("{}.{}", quote(schema)?, quote(table)?))
}

fn quote_all<S: AsRef<str>>(names: &[S]) -> Result<Vec<String>, InvalidIdentifier> {
    names.iter().map(|n| quote(n.as_ref())).collect()
}

/// Creates the schema and the bookkeeping tables when missing.
pub fn bookkeeping(schema: &str) -> Result<String, InvalidIdentifier> {
    let s = quote(schema)?;
    let applied = qualified(schema, "cdx_applied_packages")?;
    let watermarks = qualified(schema, "cdx_upload_watermarks")?;
    // The schema name is an identifier, so it is safe inside N'...'.
    Ok(format!(
        "IF SCHEMA_ID(N'{schema}') IS NULL EXEC(N'CREATE SCHEMA {s}');
IF OBJECT_ID(N'{applied}', N'U') IS NULL CREATE TABLE {applied} (
    [package_id] uniqueidentifier NOT NULL PRIMARY KEY,
    [data_group] nvarchar(128) NOT NULL,
    [job] nvarchar(128) NOT NULL,
    [sequence] bigint NOT NULL,
    [kind] nvarchar(16) NOT NULL,
    [rows] bigint NOT NULL,
    [applied_at_ms] bigint NOT NULL,
    CONSTRAINT [cdx_applied_packages_sequence] UNIQUE ([data_group], [sequence]));
IF OBJECT_ID(N'{watermarks}', N'U') IS NULL CREATE TABLE {watermarks} (
    [table_name] nvarchar(128) NOT NULL PRIMARY KEY,
    [counter] bigint NOT NULL);"
    ))
}

/// The columns of a table, one row each: name, type, max_length,
/// precision, scale, nullable, identity, computed, has a default, position
/// in the primary key. Parameter: the qualified name.
pub const COLUMNS: &str =
    "SELECT c.name, TYPE_NAME(c.system_type_id), c.max_length, c.precision, c.scale, \
c.is_nullable, c.is_identity, c.is_computed, \
CAST(CASE WHEN c.default_object_id <> 0 THEN 1 ELSE 0 END AS bit), \
CAST(ISNULL(ic.key_ordinal, 0) AS int) \
FROM sys.columns AS c \
LEFT JOIN sys.indexes AS i ON i.object_id = c.object_id AND i.is_primary_key = 1 \
LEFT JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id \
AND ic.column_id = c.column_id \
WHERE c.object_id = OBJECT_ID(@P1, N'U') ORDER BY c.column_id";

/// `CREATE TABLE` for a package table: its columns, NOT NULL where the
/// package says so or in the key, and the primary key.
pub fn create_table(schema: &str, table: &TableSchema) -> Result<String, InvalidIdentifier> {
    let mut columns = Vec::with_capacity(table.columns.len() + 1);
    for c in &table.columns {
        let in_key = table.key.contains(&c.name);
        let null = if c.nullable && !in_key {
            "NULL"
        } else {
            "NOT NULL"
        };
        columns.push(format!(
            "{} {} {null}",
            quote(&c.name)?,
            create_type(c.ty, in_key)
        ));
    }
    columns.push(format!(
        "PRIMARY KEY ({})",
        quote_all(&table.key)?.join(", ")
    ));
    Ok(format!(
        "CREATE TABLE {} ({})",
        qualified(schema, &table.name)?,
        columns.join(", ")
    ))
}

/// The staging tables of the package's table number `index`: every
/// column for upserts, the key for deletes. Temp tables: private to the
/// connection, gone with it.
pub struct Staging {
    pub upserts: String,
    pub deletes: String,
}

impl Staging {
    pub fn of(index: usize) -> Staging {
        Staging {
            upserts: format!("#cdx_up_{index}"),
            deletes: format!("#cdx_del_{index}"),
        }
    }
}

/// `CREATE TABLE` for a staging table holding `columns` of `table`, after
/// the ordinal; every column nullable, text in the database's collation.
pub fn create_staging(
    name: &str,
    table: &TableSchema,
    columns: &[&str],
) -> Result<String, InvalidIdentifier> {
    let mut defs = vec![format!("[{ORDINAL}] bigint NOT NULL")];
    for name in columns {
        let ty = column_type(table, name);
        let collate = if is_text(ty) {
            " COLLATE DATABASE_DEFAULT"
        } else {
            ""
        };
        defs.push(format!(
            "{} {}{collate} NULL",
            quote(name)?,
            staging_type(ty)
        ));
    }
    Ok(format!("CREATE TABLE {name} ({})", defs.join(", ")))
}

fn column_type(table: &TableSchema, name: &str) -> ColumnType {
    table
        .columns
        .iter()
        .find(|c| c.name == name)
        .map_or(ColumnType::Text, |c| c.ty)
}

/// Inserts one row into a staging table, for a row bulk load cannot carry
/// (see `apply::fits_bulk_load`): `@P1` the ordinal, then `columns` in order.
pub fn insert_staged_row(stage: &str, columns: &[&str]) -> Result<String, InvalidIdentifier> {
    let names = quote_all(columns)?.join(", ");
    let params: Vec<String> = (1..=columns.len() + 1).map(|i| format!("@P{i}")).collect();
    Ok(format!(
        "INSERT INTO {stage} ([{ORDINAL}], {names}) VALUES ({})",
        params.join(", ")
    ))
}

/// A staged column as the merge reads it: decimals cast from their text.
fn source_column(table: &TableSchema, name: &str) -> Result<String, InvalidIdentifier> {
    let q = quote(name)?;
    Ok(match column_type(table, name) {
        ColumnType::Decimal { precision, scale } => {
            format!("CAST({q} AS decimal({precision},{scale})) AS {q}")
        }
        _ => q,
    })
}

/// Moves the staged upserts into the table: inserts for a full package
/// (the table was emptied), a merge by key for an incremental one, where
/// the last upsert of a key in the batch wins.
pub fn upsert_from_staging(
    schema: &str,
    table: &TableSchema,
    stage: &str,
    full: bool,
) -> Result<String, InvalidIdentifier> {
    let target = qualified(schema, &table.name)?;
    let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
    let columns = quote_all(&names)?.join(", ");
    let sources = names
        .iter()
        .map(|n| source_column(table, n))
        .collect::<Result<Vec<_>, _>>()?
        .join(", ");
    if full {
        return Ok(format!(
            "INSERT INTO {target} ({columns}) SELECT {sources} FROM {stage} ORDER BY [{ORDINAL}]"
        ));
    }
    let keys = quote_all(&table.key)?;
    let on = keys
        .iter()
        .map(|k| format!("t.{k} = s.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let non_key: Vec<String> = quote_all(
        &names
            .iter()
            .filter(|n| !table.key.iter().any(|k| k == *n))
            .collect::<Vec<_>>(),
    )?;
    let update = if non_key.is_empty() {
        String::new()
    } else {
        let sets: Vec<String> = non_key.iter().map(|c| format!("{c} = s.{c}")).collect();
        format!(" WHEN MATCHED THEN UPDATE SET {}", sets.join(", "))
    };
    let values: Vec<String> = quote_all(&names)?
        .iter()
        .map(|c| format!("s.{c}"))
        .collect();
    Ok(format!(
        "MERGE {target} WITH (HOLDLOCK) AS t USING (SELECT {sources} FROM (SELECT *, \
         ROW_NUMBER() OVER (PARTITION BY {} ORDER BY [{ORDINAL}] DESC) AS [cdx_last] \
         FROM {stage}) AS d WHERE [cdx_last] = 1) AS s ON {on}{update} \
         WHEN NOT MATCHED BY TARGET THEN INSERT ({columns}) VALUES ({});",
        keys.join(", "),
        values.join(", ")
    ))
}

/// Deletes the rows whose keys are staged.
pub fn delete_from_staging(
    schema: &str,
    table: &TableSchema,
    stage: &str,
) -> Result<String, InvalidIdentifier> {
    let target = qualified(schema, &table.name)?;
    let on = table
        .key
        .iter()
        .map(|k| {
            let q = quote(k)?;
            let source = match column_type(table, k) {
                ColumnType::Decimal { precision, scale } => {
                    format!("CAST(d.{q} AS decimal({precision},{scale}))")
                }
                _ => format!("d.{q}"),
            };
            Ok(format!("t.{q} = {source}"))
        })
        .collect::<Result<Vec<_>, InvalidIdentifier>>()?
        .join(" AND ");
    Ok(format!(
        "DELETE t FROM {target} AS t WHERE EXISTS (SELECT 1 FROM {stage} AS d WHERE {on})"
    ))
}

/// How the upload counter is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// An `int` or `bigint` (identity, typically).
    Integer,
    /// A `rowversion`: compared as `binary(8)`, read as a bigint, and only
    /// below `MIN_ACTIVE_ROWVERSION()`, so a row an open transaction is
    /// still writing is never skipped.
    RowVersion,
}

/// Up to `@P1` rows of `table` with counter above `@P2`, in counter order.
///
/// `READCOMMITTEDLOCK` makes the scan wait for a row a point of sale is
/// still inserting, even when the database uses read-committed snapshot:
/// a snapshot would skip that row, the watermark would move past its
/// counter, and the sale would never be uploaded.
pub fn select_upload_rows(
    schema: &str,
    table: &str,
    columns: &[&str],
    counter: &str,
    kind: Counter,
) -> Result<String, InvalidIdentifier> {
    let c = quote(counter)?;
    let select = columns
        .iter()
        .map(|name| {
            let q = quote(name)?;
            Ok(match kind {
                Counter::RowVersion if name.eq_ignore_ascii_case(counter) => {
                    format!("CAST({q} AS bigint) AS {q}")
                }
                _ => q,
            })
        })
        .collect::<Result<Vec<_>, InvalidIdentifier>>()?
        .join(", ");
    let filter = match kind {
        Counter::Integer => format!("{c} > @P2"),
        Counter::RowVersion => format!(
            "{c} > CAST(CAST(@P2 AS bigint) AS binary(8)) AND {c} < MIN_ACTIVE_ROWVERSION()"
        ),
    };
    Ok(format!(
        "SELECT TOP (@P1) {select} FROM {} WITH (READCOMMITTEDLOCK) WHERE {filter} ORDER BY {c}",
        qualified(schema, table)?
    ))
}

/// Statements on the bookkeeping tables; parameters as numbered.
pub struct Bookkeeping {
    /// @P1 package id → a row when applied. Locks the key for the transaction.
    pub is_applied: String,
    /// @P1 data group → the highest sequence, 0 when none.
    pub last_sequence: String,
    /// @P1..@P7: id, data group, job, sequence, kind, rows, applied at.
    pub record: String,
    /// @P1 data group → the applied packages in sequence order.
    pub applied: String,
    /// @P1 table → its watermark.
    pub watermark: String,
    /// @P1 table, @P2 counter: raises the watermark, never lowers it.
    pub advance: String,
}

impl Bookkeeping {
    pub fn new(schema: &str) -> Result<Bookkeeping, InvalidIdentifier> {
        let applied = qualified(schema, "cdx_applied_packages")?;
        let marks = qualified(schema, "cdx_upload_watermarks")?;
        Ok(Bookkeeping {
            is_applied: format!(
                "SELECT 1 FROM {applied} WITH (UPDLOCK, HOLDLOCK) WHERE [package_id] = @P1"
            ),
            last_sequence: format!(
                "SELECT CAST(ISNULL(MAX([sequence]), 0) AS bigint) FROM {applied} \
                 WITH (UPDLOCK, HOLDLOCK) WHERE [data_group] = @P1"
            ),
            record: format!(
                "INSERT INTO {applied} ([package_id], [data_group], [job], [sequence], [kind], \
                 [rows], [applied_at_ms]) VALUES (@P1, @P2, @P3, @P4, @P5, @P6, @P7)"
            ),
            applied: format!(
                "SELECT [package_id], [data_group], [job], [sequence], [kind], [rows], \
                 [applied_at_ms] FROM {applied} WHERE [data_group] = @P1 ORDER BY [sequence]"
            ),
            watermark: format!("SELECT [counter] FROM {marks} WHERE [table_name] = @P1"),
            advance: format!(
                "MERGE {marks} WITH (HOLDLOCK) AS w USING (SELECT @P1 AS [table_name], \
                 CAST(@P2 AS bigint) AS [counter]) AS s ON w.[table_name] = s.[table_name] \
                 WHEN MATCHED AND w.[counter] < s.[counter] THEN UPDATE SET [counter] = s.[counter] \
                 WHEN NOT MATCHED THEN INSERT ([table_name], [counter]) VALUES (s.[table_name], s.[counter]);"
            ),
        })
    }
}
