//! The staging table a package's rows are bulk loaded into, and the
//! statements that move a batch of them into the channel table.
//!
//! One temp table per package table: `[cdx_ord]` numbers the rows in
//! package order, `[cdx_del]` marks a delete, and the package's columns
//! follow as `[c0]`, `[c1]`, ... by position. Positional names because
//! tiberius writes the column names of `INSERT BULK` unquoted, and a
//! package may name a column `Key` or `Order`. A delete stages its key
//! values in the key columns' places and NULL elsewhere.
//!
//! Staged values are read back cast to the channel column's own type
//! (`Layout::stored`), so keys partition and compare as the table stores
//! them: a `datetime` key rounds to 1/300 s on both sides, a `varchar` key
//! is compared as `varchar` and its index can be used.
//!
//! A key's final state depends only on its last row in the batch (an
//! upsert writes the whole row), so a batch, however upserts and deletes
//! interleave, moves by two statements: delete the keys whose last row is
//! a delete, merge those whose last row is an upsert.

use super::tsql::{qualified, quote, quote_all};
use super::types::staging_type;
use crate::package::{ColumnType, TableSchema};
use crate::plan::InvalidIdentifier;

/// Numbers the staged rows in package order.
pub const ORDINAL: &str = "cdx_ord";
/// 1 for a delete, 0 for an upsert.
pub const DELETED: &str = "cdx_del";

/// The staging table of the package's table number `index`: a temp table,
/// private to the connection and gone with it.
pub fn table(index: usize) -> String {
    format!("#cdx_stage_{index}")
}

/// The staging column of the package's column number `i`.
fn column(i: usize) -> String {
    format!("[c{i}]")
}

/// A package table as its staging table holds it.
pub struct Layout<'a> {
    pub table: &'a TableSchema,
    /// For each package column, the channel column's type as declared
    /// (`nvarchar(20)`, `datetime`), when known.
    pub stored: &'a [Option<String>],
    /// For each package column, the channel column's collation, when text.
    pub collations: &'a [Option<String>],
}

/// A collation name as `sys.columns` gives it (`SQL_Latin1_General_CP1_CI_AS`),
/// checked before it goes into SQL text.
fn is_collation_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether a declared type (`decimal(32,6)`) is one to cast staged values
/// to: only plain type names with their numbers, and not the legacy
/// large types, which do not compare.
fn is_cast_target(declared: &str) -> bool {
    let plain = declared
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"(),_".contains(&b));
    let base = declared.split('(').next().unwrap_or_default();
    plain && !matches!(base, "text" | "ntext" | "image" | "xml" | "")
}

fn is_staged_as_text(ty: ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::Text | ColumnType::BoundedText { .. } | ColumnType::Decimal { .. }
    )
}

/// Inserts one row into the staging table, for a row bulk load cannot
/// carry: `@P1` the ordinal, `@P2` deleted, then the columns in order.
pub fn insert_row(stage: &str, columns: usize) -> String {
    let names: Vec<String> = (0..columns).map(column).collect();
    let params: Vec<String> = (1..=columns + 2).map(|i| format!("@P{i}")).collect();
    format!(
        "INSERT INTO {stage} ([{ORDINAL}], [{DELETED}], {}) VALUES ({})",
        names.join(", "),
        params.join(", ")
    )
}

impl Layout<'_> {
    /// `CREATE TABLE` for the staging table. Every package column is
    /// nullable; text takes the collation of the channel table's column (or
    /// the database's), so comparing the two does not fail with "Cannot
    /// resolve the collation conflict" when tempdb's collation differs.
    ///
    /// # Errors
    /// A collation that is not a plain name.
    pub fn create(&self, stage: &str) -> Result<String, InvalidIdentifier> {
        let mut defs = vec![
            format!("[{ORDINAL}] bigint NOT NULL"),
            format!("[{DELETED}] bit NOT NULL"),
        ];
        for (i, c) in self.table.columns.iter().enumerate() {
            let ty = staging_type(c.ty);
            let collate = match (
                is_staged_as_text(c.ty),
                self.collations.get(i).cloned().flatten(),
            ) {
                (false, _) => String::new(),
                (true, None) => " COLLATE DATABASE_DEFAULT".to_owned(),
                (true, Some(name)) if is_collation_name(&name) => format!(" COLLATE {name}"),
                (true, Some(name)) => return Err(InvalidIdentifier { name }),
            };
            defs.push(format!("{} {ty}{collate} NULL", column(i)));
        }
        Ok(format!("CREATE TABLE {stage} ({})", defs.join(", ")))
    }

    /// Staged column `i` as the channel table stores it: cast to the
    /// column's declared type when known, else decimals from their text
    /// and dates from the `datetime2` they are staged as.
    fn read(&self, i: usize, alias: &str) -> String {
        let c = format!("{alias}{}", column(i));
        if let Some(declared) = self.stored.get(i).and_then(Option::as_deref) {
            if is_cast_target(declared) {
                return format!("CAST({c} AS {declared})");
            }
        }
        match self.table.columns[i].ty {
            ColumnType::Decimal { precision, scale } => {
                format!("CAST({c} AS decimal({precision},{scale}))")
            }
            ColumnType::Date => format!("CAST({c} AS date)"),
            _ => c,
        }
    }

    /// Moves a full package's staged rows into its (emptied) table.
    pub fn insert_into_table(
        &self,
        schema: &str,
        stage: &str,
    ) -> Result<String, InvalidIdentifier> {
        let target = qualified(schema, &self.table.name)?;
        let names: Vec<&str> = self.table.columns.iter().map(|c| c.name.as_str()).collect();
        let sources: Vec<String> = (0..names.len()).map(|i| self.read(i, "")).collect();
        Ok(format!(
            "INSERT INTO {target} ({}) SELECT {} FROM {stage}",
            quote_all(&names)?.join(", "),
            sources.join(", ")
        ))
    }

    /// The staged rows that are the last of their key in the batch and
    /// delete (`deleted`) or upsert, as a derived table `d`.
    fn last_of_each_key(&self, stage: &str, deleted: bool) -> String {
        let partition: Vec<String> = self
            .table
            .key_positions()
            .into_iter()
            .map(|i| self.read(i, ""))
            .collect();
        format!(
            "(SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {} ORDER BY [{ORDINAL}] DESC) \
             AS [cdx_last] FROM {stage}) AS l WHERE l.[cdx_last] = 1 AND l.[{DELETED}] = {}) AS d",
            partition.join(", "),
            u8::from(deleted)
        )
    }

    /// Deletes the rows whose key's last staged row is a delete. A join:
    /// the derived table has one row per key.
    pub fn delete_from_table(
        &self,
        schema: &str,
        stage: &str,
    ) -> Result<String, InvalidIdentifier> {
        let target = qualified(schema, &self.table.name)?;
        let on = self
            .table
            .key_positions()
            .into_iter()
            .map(|i| {
                Ok(format!(
                    "t.{} = {}",
                    quote(&self.table.columns[i].name)?,
                    self.read(i, "d.")
                ))
            })
            .collect::<Result<Vec<_>, InvalidIdentifier>>()?
            .join(" AND ");
        Ok(format!(
            "DELETE t FROM {target} AS t JOIN {} ON {on}",
            self.last_of_each_key(stage, true)
        ))
    }

    /// Merges the rows whose key's last staged row is an upsert: updates
    /// the row with that key, or inserts it.
    pub fn merge_into_table(&self, schema: &str, stage: &str) -> Result<String, InvalidIdentifier> {
        let target = qualified(schema, &self.table.name)?;
        let names: Vec<&str> = self.table.columns.iter().map(|c| c.name.as_str()).collect();
        let quoted = quote_all(&names)?;
        let sources: Vec<String> = quoted
            .iter()
            .enumerate()
            .map(|(i, q)| format!("{} AS {q}", self.read(i, "d.")))
            .collect();
        let keys = quote_all(&self.table.key)?;
        let on: Vec<String> = keys.iter().map(|k| format!("t.{k} = s.{k}")).collect();
        let sets: Vec<String> = quoted
            .iter()
            .filter(|q| !keys.contains(q))
            .map(|q| format!("{q} = s.{q}"))
            .collect();
        // A key-only row that exists already is the row itself.
        let update = if sets.is_empty() {
            String::new()
        } else {
            format!(" WHEN MATCHED THEN UPDATE SET {}", sets.join(", "))
        };
        let values: Vec<String> = quoted.iter().map(|q| format!("s.{q}")).collect();
        Ok(format!(
            "MERGE {target} WITH (HOLDLOCK) AS t USING (SELECT {} FROM {}) AS s \
             ON {}{update} WHEN NOT MATCHED BY TARGET THEN INSERT ({}) VALUES ({});",
            sources.join(", "),
            self.last_of_each_key(stage, false),
            on.join(" AND "),
            quoted.join(", "),
            values.join(", ")
        ))
    }
}
