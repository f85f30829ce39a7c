//! The T-SQL the backend runs, built from validated names only.
//!
//! **Invariant:** every identifier passes [`quote`], which refuses anything
//! but an identifier (`package::is_identifier`: ASCII letters, digits and
//! `_`), so a package cannot run SQL of its own. Values always travel as
//! parameters or through bulk load, never in the text.

use super::types::create_types;
use crate::package::TableSchema;
use crate::plan::InvalidIdentifier;

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

pub(super) fn quote_all<S: AsRef<str>>(names: &[S]) -> Result<Vec<String>, InvalidIdentifier> {
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
    [data_group] nvarchar(256) NOT NULL,
    [job] nvarchar(256) NOT NULL,
    [sequence] bigint NOT NULL,
    [kind] nvarchar(16) NOT NULL,
    [rows] bigint NOT NULL,
    [applied_at_ms] bigint NOT NULL,
    CONSTRAINT [cdx_applied_packages_sequence] UNIQUE ([data_group], [sequence]));
IF COL_LENGTH(N'{applied}', N'passed_over') IS NULL ALTER TABLE {applied} ADD [passed_over] nvarchar(max) NULL;
IF OBJECT_ID(N'{watermarks}', N'U') IS NULL CREATE TABLE {watermarks} (
    [table_name] nvarchar(128) NOT NULL PRIMARY KEY,
    [counter] bigint NOT NULL);"
    ))
}

/// The columns of a table, one row each: name, type, max_length,
/// precision, scale, nullable, identity, computed, has a default, position
/// in the primary key, collation, in an index, in a CHECK constraint.
/// Parameter: the qualified name.
pub const COLUMNS: &str =
    "SELECT c.name, TYPE_NAME(c.system_type_id), c.max_length, c.precision, c.scale, \
c.is_nullable, c.is_identity, c.is_computed, \
CAST(CASE WHEN c.default_object_id <> 0 THEN 1 ELSE 0 END AS bit), \
CAST(ISNULL(ic.key_ordinal, 0) AS int), c.collation_name, \
CAST(CASE WHEN EXISTS (SELECT 1 FROM sys.index_columns AS x WHERE x.object_id = c.object_id \
AND x.column_id = c.column_id) THEN 1 ELSE 0 END AS bit), \
CAST(CASE WHEN EXISTS (SELECT 1 FROM sys.check_constraints AS k \
WHERE k.parent_object_id = c.object_id AND k.parent_column_id = c.column_id) THEN 1 ELSE 0 END AS bit) \
FROM sys.columns AS c \
LEFT JOIN sys.indexes AS i ON i.object_id = c.object_id AND i.is_primary_key = 1 \
LEFT JOIN sys.index_columns AS ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id \
AND ic.column_id = c.column_id \
WHERE c.object_id = OBJECT_ID(@P1, N'U') ORDER BY c.column_id";

/// `CREATE TABLE` for a package table: its columns, NOT NULL where the
/// package says so or in the key, and the primary key.
pub fn create_table(schema: &str, table: &TableSchema) -> Result<String, InvalidIdentifier> {
    let mut columns = Vec::with_capacity(table.columns.len() + 1);
    for (c, ty) in table.columns.iter().zip(create_types(table)) {
        let in_key = table.key.contains(&c.name);
        let null = if c.nullable && !in_key {
            "NULL"
        } else {
            "NOT NULL"
        };
        columns.push(format!("{} {ty} {null}", quote(&c.name)?));
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

/// Adds the package's column `index` (nullable, outside the key) to the
/// existing table, typed as `create_table` would type it.
pub fn add_column(
    schema: &str,
    table: &TableSchema,
    index: usize,
) -> Result<String, InvalidIdentifier> {
    let ty = &create_types(table)[index];
    Ok(format!(
        "ALTER TABLE {} ADD {} {ty} NULL",
        qualified(schema, &table.name)?,
        quote(&table.columns[index].name)?
    ))
}

/// Changes existing column `have` of `table` to type `ty` (a widening),
/// keeping its nullability and its collation.
pub fn alter_column(
    schema: &str,
    table: &str,
    have: &super::types::ServerColumn,
    ty: &str,
) -> Result<String, InvalidIdentifier> {
    let collate = match &have.collation {
        Some(c) if crate::package::is_identifier(c) => format!(" COLLATE {c}"),
        _ => String::new(),
    };
    let null = if have.nullable { "NULL" } else { "NOT NULL" };
    Ok(format!(
        "ALTER TABLE {} ALTER COLUMN {} {ty}{collate} {null}",
        qualified(schema, table)?,
        quote(&have.name)?
    ))
}

/// The first value of integer column `column` of `table` at or beyond
/// ±@P1 in magnitude, if any: a value the type it would become cannot hold.
pub fn integer_beyond(
    schema: &str,
    table: &str,
    column: &str,
) -> Result<String, InvalidIdentifier> {
    let c = quote(column)?;
    Ok(format!(
        "SELECT TOP 1 CAST({c} AS bigint) FROM {} WHERE {c} >= @P1 OR {c} <= -@P1",
        qualified(schema, table)?
    ))
}

/// How a column is read for upload: as it is, or cast to what tiberius
/// reads exactly (it reads `money` as a float).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAs {
    Itself,
    Bigint,
    Decimal(u8, u8),
}

impl ReadAs {
    pub fn of(type_name: &str) -> ReadAs {
        match type_name {
            "timestamp" | "rowversion" => ReadAs::Bigint,
            "money" => ReadAs::Decimal(19, 4),
            "smallmoney" => ReadAs::Decimal(10, 4),
            _ => ReadAs::Itself,
        }
    }
}

/// Up to `@P1` rows of `table` with counter above `@P2`, in counter order;
/// `columns` are every column with how to read it.
///
/// `READCOMMITTEDLOCK` makes the scan wait for a row a point of sale is
/// still inserting, even when the database uses read-committed snapshot:
/// a snapshot would skip that row, the watermark would move past its
/// counter, and the sale would never be uploaded. A `rowversion` counter is
/// compared as `binary(8)` and read only below `MIN_ACTIVE_ROWVERSION()`,
/// SQL Server's bound for exactly this. Filter and order use the column,
/// not its cast, so the read is an ordered scan of the counter's index.
pub fn select_upload_rows(
    schema: &str,
    table: &str,
    columns: &[(&str, ReadAs)],
    counter: &str,
) -> Result<String, InvalidIdentifier> {
    let mut counter_is_rowversion = false;
    let mut select = Vec::with_capacity(columns.len());
    for &(name, read_as) in columns {
        let q = quote(name)?;
        select.push(match read_as {
            ReadAs::Itself => format!("src.{q}"),
            ReadAs::Bigint => format!("CAST(src.{q} AS bigint) AS {q}"),
            ReadAs::Decimal(p, s) => format!("CAST(src.{q} AS decimal({p},{s})) AS {q}"),
        });
        if name.eq_ignore_ascii_case(counter) {
            counter_is_rowversion = read_as == ReadAs::Bigint;
        }
    }
    let c = format!("src.{}", quote(counter)?);
    let filter = if counter_is_rowversion {
        format!("{c} > CAST(CAST(@P2 AS bigint) AS binary(8)) AND {c} < MIN_ACTIVE_ROWVERSION()")
    } else {
        format!("{c} > @P2")
    };
    Ok(format!(
        "SELECT TOP (@P1) {} FROM {} AS src WITH (READCOMMITTEDLOCK) WHERE {filter} ORDER BY {c}",
        select.join(", "),
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
    /// @P1 id: drops the package's record (re-applied in the same transaction).
    pub forget: String,
    /// @P1 data group: drops every record of the group (a full sync).
    pub forget_group: String,
    /// @P1..@P7: id, data group, job, sequence, kind, applied at, why:
    /// records a package passed over when it is the next sequence and not
    /// recorded yet (one row affected), else nothing.
    pub pass_over: String,
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
            forget: format!("DELETE FROM {applied} WHERE [package_id] = @P1"),
            forget_group: format!("DELETE FROM {applied} WHERE [data_group] = @P1"),
            pass_over: format!(
                "INSERT INTO {applied} ([package_id], [data_group], [job], [sequence], [kind], \
                 [rows], [applied_at_ms], [passed_over]) \
                 SELECT @P1, @P2, @P3, @P4, @P5, 0, @P6, @P7 \
                 WHERE NOT EXISTS (SELECT 1 FROM {applied} WITH (UPDLOCK, HOLDLOCK) \
                 WHERE [package_id] = @P1) \
                 AND (SELECT ISNULL(MAX([sequence]), 0) FROM {applied} WITH (UPDLOCK, HOLDLOCK) \
                 WHERE [data_group] = @P2) = @P4 - 1"
            ),
            applied: format!(
                "SELECT [package_id], [data_group], [job], [sequence], [kind], [rows], \
                 [applied_at_ms], [passed_over] FROM {applied} WHERE [data_group] = @P1 \
                 ORDER BY [sequence]"
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
