//! The rules a header and a sequence of frames must follow. The writer and
//! the reader run the same checks, so a package the writer produces is one
//! the reader accepts.

use std::collections::HashSet;

use super::types::{check_type, value_mismatch};
use super::{ColumnType, Frame, PackageError, PackageHeader, PackageKind, TableSchema, Value};
use super::{NEWEST_FORMAT_VERSION, OLDEST_FORMAT_VERSION, REPLACE_FORMAT_VERSION};

/// Most tables a header may list.
pub const MAX_TABLES: usize = 1024;
/// Most columns a table may have.
pub const MAX_COLUMNS: usize = 1024;
/// Longest identifier, in bytes (identifiers are ASCII).
pub const MAX_IDENTIFIER: usize = 128;
/// Longest `data_group` or `job`, in characters.
pub const MAX_LABEL_CHARS: usize = 128;
/// Prefix of the bookkeeping tables of the channel database; no package
/// table or column may start with it (compared case-insensitively).
pub const RESERVED_PREFIX: &str = "cdx_";

/// Whether `name` matches `^[A-Za-z_][A-Za-z0-9_]{0,127}$`: the names a
/// package may give tables and columns, safe to quote in any SQL dialect.
pub fn is_identifier(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_alphabetic() || *first == b'_' => {
            bytes.len() <= MAX_IDENTIFIER
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        _ => false,
    }
}

/// Whether `name` starts with [`RESERVED_PREFIX`], ignoring ASCII case.
pub fn is_reserved(name: &str) -> bool {
    name.as_bytes()
        .get(..RESERVED_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes()))
}

/// Whether a package must not write to a table of this name: the tables of
/// cdx's bookkeeping (`cdx_*`) and of SQLite itself (`sqlite_*`), compared
/// case-insensitively. The one rule the publisher and the reader (so every
/// agent) enforce; an agent also protects its upload tables
/// (`plan::check_listed`).
pub fn is_reserved_table(name: &str) -> bool {
    is_reserved(name)
        || name
            .as_bytes()
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"sqlite_"))
}

/// A name as it appears in a message: debug-quoted, cut after 64 characters
/// so a hostile megabyte-long name does not end up in a log line.
pub fn shown(name: &str) -> String {
    const SHOWN: usize = 64;
    match name.char_indices().nth(SHOWN) {
        None => format!("{name:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &name[..cut], name.len()),
    }
}

fn invalid(detail: String) -> PackageError {
    PackageError::InvalidHeader(detail)
}

/// Checks every rule of the header (see `docs/package-format.md`).
pub(crate) fn validate_header(header: &PackageHeader) -> Result<(), PackageError> {
    if !(OLDEST_FORMAT_VERSION..=NEWEST_FORMAT_VERSION).contains(&header.format_version) {
        return Err(invalid(format!(
            "format_version is {}, this build reads {OLDEST_FORMAT_VERSION} to \
             {NEWEST_FORMAT_VERSION}",
            header.format_version
        )));
    }
    validate_label("data_group", &header.data_group)?;
    validate_label("job", &header.job)?;
    if header.tables.len() > MAX_TABLES {
        return Err(invalid(format!(
            "{} tables, the limit is {MAX_TABLES}",
            header.tables.len()
        )));
    }
    let mut names = HashSet::with_capacity(header.tables.len());
    for (i, table) in header.tables.iter().enumerate() {
        validate_table(i, table)?;
        validate_types(header.format_version, table)?;
        if !names.insert(table.name.to_ascii_lowercase()) {
            return Err(invalid(format!(
                "table `{}` is listed twice (table names are compared case-insensitively)",
                table.name
            )));
        }
    }
    validate_replaces(header)
}

/// `replaces`: only in a full package of version 3 or later, each name one of
/// the package's tables, none twice.
fn validate_replaces(header: &PackageHeader) -> Result<(), PackageError> {
    if header.replaces.is_empty() {
        return Ok(());
    }
    if header.format_version < REPLACE_FORMAT_VERSION {
        return Err(invalid(format!(
            "replaces {} tables but format_version is {}: replacing a definition needs \
             version {REPLACE_FORMAT_VERSION}",
            header.replaces.len(),
            header.format_version
        )));
    }
    if header.kind != PackageKind::Full {
        return Err(invalid(
            "an incremental package replaces a table's definition: only a full package can, \
             since it brings every row of the table"
                .into(),
        ));
    }
    let mut seen = HashSet::with_capacity(header.replaces.len());
    for name in &header.replaces {
        if !header
            .tables
            .iter()
            .any(|t| t.name.eq_ignore_ascii_case(name))
        {
            return Err(invalid(format!(
                "replaces the definition of {}, which is not one of its tables",
                shown(name)
            )));
        }
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(invalid(format!("replaces `{name}` twice")));
        }
    }
    Ok(())
}

/// `data_group` and `job`: 1 to 128 characters, none of them a control character.
fn validate_label(field: &str, value: &str) -> Result<(), PackageError> {
    if value.is_empty() {
        return Err(invalid(format!("{field} is empty")));
    }
    let chars = value.chars().count();
    if chars > MAX_LABEL_CHARS {
        return Err(invalid(format!(
            "{field} is {chars} characters long, the limit is {MAX_LABEL_CHARS}"
        )));
    }
    if let Some((pos, c)) = value.chars().enumerate().find(|(_, c)| c.is_control()) {
        return Err(invalid(format!(
            "{field} {} has the control character {c:?} at character {pos}",
            shown(value)
        )));
    }
    Ok(())
}

fn validate_name(what: &str, name: &str) -> Result<(), PackageError> {
    if !is_identifier(name) {
        return Err(invalid(format!(
            "{what} name {} is not an identifier (ASCII letters, digits and `_`, \
             not starting with a digit, 1 to {MAX_IDENTIFIER} bytes)",
            shown(name)
        )));
    }
    if is_reserved(name) {
        return Err(invalid(format!(
            "{what} name `{name}` starts with `{RESERVED_PREFIX}`, \
             which is reserved for the channel database's bookkeeping"
        )));
    }
    Ok(())
}

fn validate_table(index: usize, table: &TableSchema) -> Result<(), PackageError> {
    validate_name(&format!("table #{index}"), &table.name)?;
    let t = &table.name;
    if is_reserved_table(t) {
        return Err(invalid(format!(
            "table name `{t}` is reserved: `sqlite_*` tables belong to SQLite"
        )));
    }
    if table.columns.is_empty() {
        return Err(invalid(format!("table `{t}` has no columns")));
    }
    if table.columns.len() > MAX_COLUMNS {
        return Err(invalid(format!(
            "table `{t}` has {} columns, the limit is {MAX_COLUMNS}",
            table.columns.len()
        )));
    }
    let mut names = HashSet::with_capacity(table.columns.len());
    for (j, column) in table.columns.iter().enumerate() {
        validate_name(&format!("table `{t}`, column #{j}"), &column.name)?;
        if !names.insert(column.name.to_ascii_lowercase()) {
            return Err(invalid(format!(
                "table `{t}`: column `{}` appears twice \
                 (column names are compared case-insensitively)",
                column.name
            )));
        }
    }
    if table.key.is_empty() {
        return Err(invalid(format!("table `{t}` has no key columns")));
    }
    let mut key = HashSet::with_capacity(table.key.len());
    for k in &table.key {
        let Some(column) = table.columns.iter().find(|c| &c.name == k) else {
            return Err(invalid(format!(
                "table `{t}`: key column {} is not a column of the table",
                shown(k)
            )));
        };
        if !key.insert(k.as_str()) {
            return Err(invalid(format!(
                "table `{t}`: key column `{k}` appears twice in the key"
            )));
        }
        if column.nullable {
            return Err(invalid(format!(
                "table `{t}`: key column `{k}` is nullable; key columns must not be"
            )));
        }
    }
    Ok(())
}

/// Each column type's parameters are in range, and a version 1 package
/// uses only the types version 1 had.
fn validate_types(version: u16, table: &TableSchema) -> Result<(), PackageError> {
    for column in &table.columns {
        let (t, c) = (&table.name, &column.name);
        check_type(column.ty)
            .map_err(|why| invalid(format!("table `{t}`, column `{c}`: {why}")))?;
        let in_v1 = matches!(
            column.ty,
            ColumnType::Integer | ColumnType::Real | ColumnType::Text | ColumnType::Blob
        );
        if version == 1 && !in_v1 {
            return Err(invalid(format!(
                "table `{t}`, column `{c}` is {}, a type format version 1 does not have",
                column.ty
            )));
        }
    }
    Ok(())
}

/// Why `value` may not be stored in a column of type `ty`, `None` when it may.
#[inline]
pub(crate) fn mismatch(ty: ColumnType, nullable: bool, value: &Value) -> Option<String> {
    match value {
        Value::Null if nullable => None,
        Value::Null => Some("Null in a NOT NULL column".to_owned()),
        value => value_mismatch(ty, value),
    }
}

/// One table of a validated header, with its key columns resolved.
struct TableRules {
    schema: TableSchema,
    /// Indices in `schema.columns` of the key columns, in key order.
    key: Vec<usize>,
}

/// Checks a sequence of frames against a validated header: the state machine
/// of the body (which table is open, which were, how many rows came).
pub(crate) struct FrameChecker {
    kind: PackageKind,
    tables: Vec<TableRules>,
    opened: Vec<bool>,
    current: Option<usize>,
    upserts: u64,
    deletes: u64,
}

impl FrameChecker {
    /// `header` must have passed [`validate_header`].
    pub(crate) fn new(header: &PackageHeader) -> Self {
        let tables: Vec<TableRules> = header
            .tables
            .iter()
            .map(|schema| TableRules {
                key: schema.key_positions(),
                schema: schema.clone(),
            })
            .collect();
        FrameChecker {
            kind: header.kind,
            opened: vec![false; tables.len()],
            tables,
            current: None,
            upserts: 0,
            deletes: 0,
        }
    }

    pub(crate) fn upserts(&self) -> u64 {
        self.upserts
    }

    pub(crate) fn deletes(&self) -> u64 {
        self.deletes
    }

    pub(crate) fn rows(&self) -> u64 {
        self.upserts + self.deletes
    }

    pub(crate) fn check(&mut self, frame: &Frame) -> Result<(), PackageError> {
        match frame {
            Frame::Table(index) => self.table(*index),
            Frame::Upsert(row) => self.upsert(row),
            Frame::Delete(key) => self.delete(key),
            Frame::End { rows } => self.end(*rows),
        }
    }

    pub(crate) fn table(&mut self, index: u32) -> Result<(), PackageError> {
        let i = index as usize;
        let Some(rules) = self.tables.get(i) else {
            return Err(PackageError::frame(
                None,
                format!(
                    "Table({index}) but the header lists {} tables",
                    self.tables.len()
                ),
            ));
        };
        if self.opened[i] {
            return Err(PackageError::frame(
                Some(&rules.schema.name),
                format!("Table({index}) opens the table a second time"),
            ));
        }
        self.opened[i] = true;
        self.current = Some(i);
        Ok(())
    }

    fn open_table(&self, frame: &str) -> Result<&TableRules, PackageError> {
        self.current
            .map(|i| &self.tables[i])
            .ok_or_else(|| PackageError::frame(None, format!("{frame} before any Table frame")))
    }

    pub(crate) fn upsert(&mut self, row: &[Value]) -> Result<(), PackageError> {
        let rules = self.open_table("Upsert")?;
        let schema = &rules.schema;
        let err = |detail: String| PackageError::frame(Some(&schema.name), detail);
        if row.len() != schema.columns.len() {
            return Err(err(format!(
                "Upsert has {} values, the table has {} columns",
                row.len(),
                schema.columns.len()
            )));
        }
        for (column, value) in schema.columns.iter().zip(row) {
            if let Some(why) = mismatch(column.ty, column.nullable, value) {
                return Err(err(format!(
                    "Upsert: column `{}` ({}{}): {why}",
                    column.name,
                    column.ty,
                    if column.nullable { ", nullable" } else { "" },
                )));
            }
        }
        self.upserts += 1;
        Ok(())
    }

    pub(crate) fn delete(&mut self, key: &[Value]) -> Result<(), PackageError> {
        if self.kind != PackageKind::Incremental {
            let table = self.current.map(|i| self.tables[i].schema.name.as_str());
            return Err(PackageError::frame(
                table,
                "Delete in a Full package; deletes are allowed only in Incremental packages",
            ));
        }
        let rules = self.open_table("Delete")?;
        let schema = &rules.schema;
        let err = |detail: String| PackageError::frame(Some(&schema.name), detail);
        if key.len() != rules.key.len() {
            return Err(err(format!(
                "Delete has {} values, the key has {} columns",
                key.len(),
                rules.key.len()
            )));
        }
        for (&c, value) in rules.key.iter().zip(key) {
            let column = &schema.columns[c];
            if let Some(why) = mismatch(column.ty, false, value) {
                return Err(err(format!(
                    "Delete: key column `{}` ({}): {why}",
                    column.name, column.ty
                )));
            }
        }
        self.deletes += 1;
        Ok(())
    }

    pub(crate) fn end(&mut self, rows: u64) -> Result<(), PackageError> {
        if rows != self.rows() {
            return Err(PackageError::frame(
                None,
                format!(
                    "End says {rows} rows, the package has {} ({} upserts, {} deletes)",
                    self.rows(),
                    self.upserts,
                    self.deletes
                ),
            ));
        }
        self.current = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::codec::fixtures::{column, header};

    /// Identifiers are ASCII letters, digits and `_`, 1 to 128 bytes, no leading digit.
    #[test]
    fn is_identifier_accepts_only_sql_safe_names() {
        for ok in [
            "a",
            "_",
            "Item",
            "RETAILCHANNELTABLE",
            "a1_b2",
            &"x".repeat(128),
        ] {
            assert!(is_identifier(ok), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "a-b",
            "a b",
            "a.b",
            "\"a\"",
            "é",
            "a;drop",
            &"x".repeat(129),
        ] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }

    /// `cdx_` is reserved whatever its case, for tables and for columns.
    #[test]
    fn reserved_prefix_is_refused_in_any_case_for_tables_and_columns() {
        assert!(is_reserved("cdx_x") && is_reserved("CDX_") && is_reserved("Cdx_applied"));
        assert!(!is_reserved("cdx") && !is_reserved("cdxx_") && !is_reserved("my_cdx_"));
        let mut h = header(PackageKind::Full);
        h.tables[0].name = "CDX_Items".into();
        assert!(validate_header(&h)
            .unwrap_err()
            .to_string()
            .contains("reserved"));
        let mut h = header(PackageKind::Full);
        h.tables[1].columns[2].name = "cdx_amount".into();
        let err = validate_header(&h).unwrap_err().to_string();
        assert!(
            err.contains("table `Price`, column #2") && err.contains("reserved"),
            "{err}"
        );
    }

    /// Each header rule, broken alone, gives an InvalidHeader naming what is wrong.
    #[test]
    fn every_header_rule_gives_an_error_naming_the_culprit() {
        type Breaker = fn(&mut PackageHeader);
        let cases: Vec<(Breaker, &str)> = vec![
            (|h| h.format_version = 4, "format_version is 4"),
            (
                |h| h.replaces = vec![h.tables[0].name.clone()],
                "replacing a definition needs version 3",
            ),
            (
                |h| {
                    h.format_version = 3;
                    h.replaces = vec![h.tables[0].name.clone()];
                },
                "only a full package can",
            ),
            (
                |h| {
                    (h.format_version, h.kind) = (3, PackageKind::Full);
                    h.replaces = vec!["Nowhere".into()];
                },
                "replaces the definition of \"Nowhere\", which is not one of its tables",
            ),
            (
                |h| {
                    (h.format_version, h.kind) = (3, PackageKind::Full);
                    h.replaces = vec![h.tables[0].name.clone(), h.tables[0].name.to_uppercase()];
                },
                "twice",
            ),
            (
                |h| {
                    h.format_version = 1;
                    h.tables[0].columns[1].ty = ColumnType::Uuid;
                },
                "a type format version 1 does not have",
            ),
            (
                |h| h.tables[0].columns[1].ty = ColumnType::BoundedText { max_len: 0 },
                "length must be 1 to 4000",
            ),
            (|h| h.data_group.clear(), "data_group is empty"),
            (|h| h.job = "j".repeat(129), "job is 129 characters long"),
            (|h| h.data_group = "a\nb".into(), "control character '\\n'"),
            (
                |h| h.tables = vec![h.tables[0].clone(); 1025],
                "1025 tables",
            ),
            (
                |h| h.tables[1].name = "ITEM".into(),
                "table `ITEM` is listed twice",
            ),
            (
                |h| h.tables[0].name = "1Item".into(),
                "table #0 name \"1Item\" is not an identifier",
            ),
            (
                |h| h.tables[0].name = "x".repeat(200),
                "(200 bytes) is not an identifier",
            ),
            (
                |h| h.tables[0].columns[1].name = "Na-me".into(),
                "table `Item`, column #1 name \"Na-me\"",
            ),
            (
                |h| h.tables[0].columns[1].name = "itemid".into(),
                "column `itemid` appears twice",
            ),
            (
                |h| h.tables[0].columns.clear(),
                "table `Item` has no columns",
            ),
            (
                |h| {
                    h.tables[0].columns = (0..1025)
                        .map(|i| column(&format!("c{i}"), ColumnType::Text, false))
                        .collect();
                    h.tables[0].key = vec!["c0".into()];
                },
                "table `Item` has 1025 columns",
            ),
            (
                |h| h.tables[1].key.clear(),
                "table `Price` has no key columns",
            ),
            (
                |h| h.tables[1].key[1] = "Shop".into(),
                "key column \"Shop\" is not a column",
            ),
            (
                |h| h.tables[1].key[1] = "ItemId".into(),
                "key column `ItemId` appears twice",
            ),
            (
                |h| h.tables[1].key[1] = "itemid".into(),
                "key column \"itemid\" is not a column",
            ),
            (
                |h| h.tables[0].key = vec!["Qty".into()],
                "key column `Qty` is nullable",
            ),
        ];
        for (breaker, needle) in cases {
            let mut h = header(PackageKind::Incremental);
            breaker(&mut h);
            match validate_header(&h) {
                Err(PackageError::InvalidHeader(m)) => {
                    assert!(m.contains(needle), "{m} / {needle}")
                }
                other => panic!("{needle}: {other:?}"),
            }
        }
    }

    /// Valid headers pass: the fixture, a version 1 header, no tables,
    /// non-ASCII labels, 1024 tables.
    #[test]
    fn valid_headers_pass() {
        let mut h = header(PackageKind::Full);
        validate_header(&h).unwrap();
        h.format_version = 1;
        validate_header(&h).unwrap();
        h.data_group = "Zürich – Geschäfte 北".into();
        validate_header(&h).unwrap();
        h.tables = (0..1024)
            .map(|i| TableSchema {
                name: format!("T{i}"),
                ..h.tables[0].clone()
            })
            .collect();
        validate_header(&h).unwrap();
        h.tables.clear();
        validate_header(&h).unwrap();
    }

    /// An End frame whose count differs from the rows seen is an InvalidFrame.
    #[test]
    fn end_count_mismatch_is_an_invalid_frame() {
        let h = header(PackageKind::Incremental);
        let mut checker = FrameChecker::new(&h);
        checker.table(1).unwrap();
        checker
            .upsert(&[
                Value::Text("A".into()),
                Value::Integer(1),
                Value::Integer(5),
            ])
            .unwrap();
        checker
            .delete(&[Value::Text("B".into()), Value::Integer(1)])
            .unwrap();
        let err = checker.end(3).unwrap_err().to_string();
        assert!(
            err.contains("End says 3 rows, the package has 2 (1 upserts, 1 deletes)"),
            "{err}"
        );
        checker.end(2).unwrap();
    }
}
