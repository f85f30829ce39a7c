//! What a package says: its header and its frames.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The format version this build writes a package in, unless the package
/// replaces table definitions ([`REPLACE_FORMAT_VERSION`]). Version 2 only
/// added column types, so every version 1 package is a valid version 2
/// package.
pub const FORMAT_VERSION: u16 = 2;
/// The version of a package that replaces table definitions: version 3
/// appends `replaces` to the header. A package that needs it is written in
/// it, so that an agent too old to replace a definition refuses the package
/// by its version rather than applying it without the replacement.
pub const REPLACE_FORMAT_VERSION: u16 = 3;
/// The newest format version this build reads.
pub const NEWEST_FORMAT_VERSION: u16 = REPLACE_FORMAT_VERSION;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u16 = 1;

/// Full packages replace a table's rows; incremental ones upsert and delete by key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackageKind {
    Full,
    Incremental,
}

impl PackageKind {
    /// `"Full"` or `"Incremental"`: how databases and listings spell it.
    pub fn name(self) -> &'static str {
        match self {
            PackageKind::Full => "Full",
            PackageKind::Incremental => "Incremental",
        }
    }
}

/// The type of a column, as the channel database stores it. The canonical
/// form of each type's values is in `types.rs`. New variants go at the end:
/// bincode encodes the variant's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ColumnType {
    /// A 64-bit signed integer.
    Integer,
    /// A 64-bit float.
    Real,
    /// Text of any length.
    Text,
    /// Bytes of any length.
    Blob,
    /// `Integer` 0 or 1.
    Boolean,
    /// `Text` such as `-12.50`: exact, `precision` digits of which `scale`
    /// after the point.
    Decimal { precision: u8, scale: u8 },
    /// `Text` `YYYY-MM-DD`.
    Date,
    /// `Text` `YYYY-MM-DDTHH:MM:SS[.fffffff]`, no time zone.
    DateTime,
    /// `Text` `HH:MM:SS[.fffffff]`.
    Time,
    /// `Text`, a lowercase hyphenated uuid.
    Uuid,
    /// Text of at most `max_len` UTF-16 code units (as `nvarchar(n)` counts).
    BoundedText { max_len: u32 },
    /// At most `max_len` bytes.
    BoundedBlob { max_len: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
}

impl Column {
    pub fn new(name: impl Into<String>, ty: ColumnType, nullable: bool) -> Column {
        Column {
            name: name.into(),
            ty,
            nullable,
        }
    }
}

/// A table as a package describes it. `key` names the primary-key columns,
/// in order; every table has at least one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    pub name: String,
    pub columns: Vec<Column>,
    pub key: Vec<String>,
}

impl TableSchema {
    /// Positions of the key columns among the columns, in key order.
    pub fn key_positions(&self) -> Vec<usize> {
        self.key
            .iter()
            .filter_map(|k| self.columns.iter().position(|c| &c.name == k))
            .collect()
    }
}

/// The header at the start of every package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageHeader {
    pub format_version: u16,
    pub package_id: Uuid,
    /// The channel data group the package was generated for.
    pub data_group: String,
    /// The scheduler job, such as "1040" (products) or "1010" (customers).
    pub job: String,
    /// Position in the data group's publication order, starting at 1.
    pub sequence: u64,
    pub kind: PackageKind,
    /// Unix time in milliseconds when the package was generated.
    pub created_at_ms: i64,
    pub tables: Vec<TableSchema>,
    /// Version 3: the tables (names from `tables`) whose definition this
    /// full package replaces: each is dropped and created as `tables` says,
    /// in the package's transaction. Encoded after `tables`, only from
    /// version 3; empty before.
    #[serde(skip)]
    pub replaces: Vec<String>,
}

impl PackageHeader {
    /// The oldest format version that can say this header: version 3 when
    /// it replaces a definition, [`FORMAT_VERSION`] otherwise.
    pub fn needed_version(&self) -> u16 {
        if self.replaces.is_empty() {
            FORMAT_VERSION
        } else {
            REPLACE_FORMAT_VERSION
        }
    }

    /// Whether this package replaces the definition of `table`.
    pub fn replaces_table(&self, table: &str) -> bool {
        self.replaces.iter().any(|t| t.eq_ignore_ascii_case(table))
    }
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// One frame of a package body. Rows and deletes belong to the table most
/// recently opened by a `Table` frame; `End` closes the package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Frame {
    /// Opens the section of the table at this index of `PackageHeader::tables`.
    Table(u32),
    /// A full row, values in the table's column order: insert or replace by key.
    Upsert(Vec<Value>),
    /// The key values, in key order, of a row to delete (incremental only).
    Delete(Vec<Value>),
    /// Closes the package: how many row frames (upserts plus deletes) came before.
    End { rows: u64 },
}
