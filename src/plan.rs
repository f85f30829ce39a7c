//! Pure decisions, no I/O: does a package's table fit the table the channel
//! database has, and the SQL that creates a missing one.
//!
//! **Invariant:** every identifier that reaches SQL text passes
//! [`quote_ident`], which refuses anything but a validated identifier, so a
//! package can never run SQL of its own.

use thiserror::Error;

use crate::package::{is_identifier, is_reserved, ColumnType, TableSchema};

/// A table as the channel database has it (`PRAGMA table_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingTable {
    pub name: String,
    /// In table order.
    pub columns: Vec<ExistingColumn>,
}

/// One column of an [`ExistingTable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingColumn {
    pub name: String,
    /// The declared type, as written in `CREATE TABLE` (may be empty).
    pub declared_type: String,
    pub not_null: bool,
    pub has_default: bool,
    /// 1-based position in the primary key; 0 when not a key column.
    pub pk_position: u32,
}

impl ExistingTable {
    /// The primary-key columns, in key order.
    pub fn key(&self) -> Vec<&str> {
        let mut key: Vec<&ExistingColumn> =
            self.columns.iter().filter(|c| c.pk_position > 0).collect();
        key.sort_by_key(|c| c.pk_position);
        key.into_iter().map(|c| c.name.as_str()).collect()
    }

    fn column(&self, name: &str) -> Option<&ExistingColumn> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// What to do with a package's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableAction {
    /// The table is missing: create it with [`create_table_sql`].
    Create,
    /// The table exists and fits the package.
    UseExisting,
}

/// Why a package's table does not fit the table the channel database has.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchemaConflict {
    #[error("table `{table}` has no column `{column}`, which the package needs")]
    MissingColumn { table: String, column: String },
    #[error("column `{table}.{column}` is declared `{found}`, the package needs `{expected}`")]
    TypeMismatch {
        table: String,
        column: String,
        expected: String,
        found: String,
    },
    #[error(
        "table `{table}` has primary key ({}), the package needs ({}): they differ at column `{column}`",
        found.join(", "),
        expected.join(", ")
    )]
    KeyMismatch {
        table: String,
        /// The first column, in key order, where the keys differ.
        column: String,
        expected: Vec<String>,
        found: Vec<String>,
    },
    #[error(
        "column `{table}.{column}` is NOT NULL without a default and not in the package: inserts would fail"
    )]
    RequiredExtraColumn { table: String, column: String },
}

/// A name that is not a valid identifier, refused before it reaches SQL.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("`{name}` is not a valid identifier")]
pub struct InvalidIdentifier {
    pub name: String,
}

/// The SQLite type a column of type `ty` is declared with. The names pick
/// SQLite's affinity on purpose: a decimal is declared `DECIMAL_TEXT(p,s)`
/// so that its TEXT affinity keeps `12.50` exact (a plain `DECIMAL` has
/// NUMERIC affinity and would turn it into the float 12.5); dates, times
/// and uuids are never numeric literals, so NUMERIC affinity keeps their
/// text as it is.
pub fn sql_type(ty: ColumnType) -> String {
    match ty {
        ColumnType::Integer => "INTEGER".into(),
        ColumnType::Real => "REAL".into(),
        ColumnType::Text => "TEXT".into(),
        ColumnType::Blob => "BLOB".into(),
        ColumnType::Boolean => "BOOLEAN".into(),
        ColumnType::Decimal { precision, scale } => format!("DECIMAL_TEXT({precision},{scale})"),
        ColumnType::Date => "DATE".into(),
        ColumnType::DateTime => "DATETIME".into(),
        ColumnType::Time => "TIME".into(),
        ColumnType::Uuid => "UUID".into(),
        ColumnType::BoundedText { max_len } => format!("VARCHAR({max_len})"),
        ColumnType::BoundedBlob { max_len } => format!("VARBINARY({max_len})"),
    }
}

/// Decides whether `wanted` can be applied to `existing` (the table the
/// database has, `None` when missing).
///
/// # Errors
/// A package column missing from the table, a column whose declared type
/// differs (case-insensitively), a primary key that differs from the
/// package's key in columns or order, or an extra table column that is
/// NOT NULL without a default. Extra nullable or defaulted columns fit.
pub fn check_table(
    existing: Option<&ExistingTable>,
    wanted: &TableSchema,
) -> Result<TableAction, SchemaConflict> {
    let Some(existing) = existing else {
        return Ok(TableAction::Create);
    };
    let table = || wanted.name.clone();
    for column in &wanted.columns {
        let Some(have) = existing.column(&column.name) else {
            return Err(SchemaConflict::MissingColumn {
                table: table(),
                column: column.name.clone(),
            });
        };
        let expected = sql_type(column.ty);
        let declared: String = have.declared_type.split_whitespace().collect();
        if !declared.eq_ignore_ascii_case(&expected) {
            return Err(SchemaConflict::TypeMismatch {
                table: table(),
                column: column.name.clone(),
                expected,
                found: have.declared_type.clone(),
            });
        }
    }
    let found = existing.key();
    let differs_at =
        (0..found.len().max(wanted.key.len())).find(|&i| match (found.get(i), wanted.key.get(i)) {
            (Some(f), Some(w)) => !f.eq_ignore_ascii_case(w),
            _ => true,
        });
    if let Some(i) = differs_at {
        let column = wanted
            .key
            .get(i)
            .map(String::as_str)
            .or(found.get(i).copied());
        return Err(SchemaConflict::KeyMismatch {
            table: table(),
            column: column.unwrap_or_default().to_owned(),
            expected: wanted.key.clone(),
            found: found.iter().map(|s| (*s).to_owned()).collect(),
        });
    }
    let in_package = |name: &str| {
        wanted
            .columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(name))
    };
    if let Some(extra) = existing
        .columns
        .iter()
        .find(|c| c.not_null && !c.has_default && !in_package(&c.name))
    {
        return Err(SchemaConflict::RequiredExtraColumn {
            table: table(),
            column: extra.name.clone(),
        });
    }
    Ok(TableAction::UseExisting)
}

/// `name` in double quotes, internal quotes doubled.
///
/// # Errors
/// `name` is not an identifier (`package::is_identifier`).
pub fn quote_ident(name: &str) -> Result<String, InvalidIdentifier> {
    if !is_identifier(name) {
        return Err(InvalidIdentifier {
            name: name.to_owned(),
        });
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// Whether a package must not write to a table of this name: the tables of
/// cdx's bookkeeping (`cdx_*`, see `package::is_reserved`) and of SQLite
/// itself (`sqlite_*`), compared case-insensitively.
pub fn is_reserved_table(name: &str) -> bool {
    is_reserved(name)
        || name
            .as_bytes()
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"sqlite_"))
}

/// `CREATE TABLE` for `schema`: columns in order with their SQL types,
/// `NOT NULL` on non-nullable and key columns, and the primary key.
///
/// # Errors
/// The table name or a column name is not an identifier.
pub fn create_table_sql(schema: &TableSchema) -> Result<String, InvalidIdentifier> {
    let mut sql = format!("CREATE TABLE {} (", quote_ident(&schema.name)?);
    for (i, column) in schema.columns.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&quote_ident(&column.name)?);
        sql.push(' ');
        sql.push_str(&sql_type(column.ty));
        let in_key = schema.key.iter().any(|k| k == &column.name);
        if !column.nullable || in_key {
            sql.push_str(" NOT NULL");
        }
    }
    sql.push_str(", PRIMARY KEY (");
    sql.push_str(&quote_list(&schema.key)?);
    sql.push_str("))");
    Ok(sql)
}

/// Quoted identifiers separated by `", "`.
pub fn quote_list<S: AsRef<str>>(names: &[S]) -> Result<String, InvalidIdentifier> {
    let quoted = names
        .iter()
        .map(|n| quote_ident(n.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(quoted.join(", "))
}

#[cfg(test)]
mod tests;
