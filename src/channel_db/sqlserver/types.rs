//! Between package column types and SQL Server's: the type a package
//! column is created and staged with, and what an existing column holds.

use crate::package::ColumnType;
use crate::plan::{ExistingColumn, ExistingTable, Family, Limits, StoredType};

/// Longest `nvarchar` an index key takes (900 bytes): an unbounded text
/// key column is created this wide, and longer keys are refused by value.
pub const KEY_TEXT_LEN: u32 = 450;
/// Longest `varbinary` an index key takes.
pub const KEY_BLOB_LEN: u32 = 900;

/// The type a package column is created with. Unbounded text and blob
/// key columns get the widest type an index key can hold.
pub fn create_type(ty: ColumnType, in_key: bool) -> String {
    match ty {
        ColumnType::Text if in_key => format!("nvarchar({KEY_TEXT_LEN})"),
        ColumnType::Blob if in_key => format!("varbinary({KEY_BLOB_LEN})"),
        ty => staged_type(ty),
    }
}

/// The type a package column has in the staging table bulk load fills.
/// Decimals are staged as their canonical text and cast by the merge:
/// tiberius panics on a `Numeric` whose scale differs from the column's,
/// and text converts exactly.
pub fn staging_type(ty: ColumnType) -> String {
    match ty {
        ColumnType::Decimal { .. } => "nvarchar(48)".into(),
        ty => staged_type(ty),
    }
}

fn staged_type(ty: ColumnType) -> String {
    match ty {
        ColumnType::Integer => "bigint".into(),
        ColumnType::Real => "float".into(),
        ColumnType::Text => "nvarchar(max)".into(),
        ColumnType::Blob => "varbinary(max)".into(),
        ColumnType::Boolean => "bit".into(),
        ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
        ColumnType::Date => "date".into(),
        ColumnType::DateTime => "datetime2(7)".into(),
        ColumnType::Time => "time(7)".into(),
        ColumnType::Uuid => "uniqueidentifier".into(),
        ColumnType::BoundedText { max_len } => format!("nvarchar({max_len})"),
        ColumnType::BoundedBlob { max_len } => format!("varbinary({max_len})"),
    }
}

/// Whether text of this type needs `COLLATE DATABASE_DEFAULT` in a temp
/// table: tempdb's collation may differ from the channel database's, and
/// comparing the two in a merge fails ("Cannot resolve the collation
/// conflict").
pub fn is_text(ty: ColumnType) -> bool {
    matches!(
        ty,
        ColumnType::Text | ColumnType::BoundedText { .. } | ColumnType::Decimal { .. }
    )
}

/// A column as `sys.columns` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerColumn {
    pub name: String,
    /// The system type's name, lowercase (`nvarchar`, `int`, ...).
    pub type_name: String,
    /// In bytes; -1 for `max`.
    pub max_length: i16,
    pub precision: u8,
    pub scale: u8,
    pub nullable: bool,
    pub identity: bool,
    pub computed: bool,
    pub has_default: bool,
    /// 1-based position in the primary key, 0 when not a key column.
    pub key_ordinal: u32,
}

impl ServerColumn {
    /// The type as it would be declared: `nvarchar(20)`, `decimal(32,6)`.
    pub fn declared(&self) -> String {
        let t = &self.type_name;
        let len = |unit: i16| match self.max_length {
            -1 => "max".to_owned(),
            n => (n / unit).to_string(),
        };
        let base = match t.as_str() {
            "nvarchar" | "nchar" => format!("{t}({})", len(2)),
            "varchar" | "char" | "varbinary" | "binary" => format!("{t}({})", len(1)),
            "decimal" | "numeric" => format!("{t}({},{})", self.precision, self.scale),
            "datetime2" | "time" | "datetimeoffset" => format!("{t}({})", self.scale),
            _ => t.clone(),
        };
        match (self.identity, self.computed) {
            (true, _) => format!("{base} IDENTITY"),
            (_, true) => format!("{base} (computed)"),
            _ => base,
        }
    }

    /// What the column holds; `None` for what a package cannot write:
    /// identity, computed and rowversion columns, and types no package
    /// type maps to.
    pub fn stored(&self) -> Option<StoredType> {
        if self.identity || self.computed {
            return None;
        }
        let len = |unit: i16| (self.max_length > 0).then(|| (self.max_length / unit) as u32);
        let text = |max_len| (Family::Text, limits(max_len, None, None));
        let int = |min: i64, max: i64| (Family::Integer, limits(None, None, Some((min, max))));
        let (family, limits) = match self.type_name.as_str() {
            "bigint" => (Family::Integer, Limits::default()),
            "int" => int(i32::MIN.into(), i32::MAX.into()),
            "smallint" => int(i16::MIN.into(), i16::MAX.into()),
            "tinyint" => int(0, 255),
            "bit" => (Family::Boolean, Limits::default()),
            "float" | "real" => (Family::Real, Limits::default()),
            "nvarchar" | "nchar" => text(len(2)),
            "varchar" | "char" => text(len(1)),
            "ntext" | "text" => text(None),
            "varbinary" | "binary" => (Family::Blob, limits(len(1), None, None)),
            "image" => (Family::Blob, Limits::default()),
            "decimal" | "numeric" => decimal(self.precision, self.scale),
            "money" => decimal(19, 4),
            "smallmoney" => decimal(10, 4),
            "date" => (Family::Date, Limits::default()),
            "datetime2" | "datetime" | "smalldatetime" => (Family::DateTime, Limits::default()),
            "time" => (Family::Time, Limits::default()),
            "uniqueidentifier" => (Family::Uuid, Limits::default()),
            _ => return None,
        };
        Some(StoredType { family, limits })
    }

    /// Whether the database fills the column itself when an insert leaves
    /// it out.
    fn fills_itself(&self) -> bool {
        self.has_default || self.identity || self.computed || self.type_name == "timestamp"
    }
}

fn limits(max_len: Option<u32>, decimal: Option<(u8, u8)>, int: Option<(i64, i64)>) -> Limits {
    Limits {
        max_len,
        decimal,
        int_range: int,
    }
}

fn decimal(precision: u8, scale: u8) -> (Family, Limits) {
    (
        Family::Decimal,
        limits(None, Some((precision, scale)), None),
    )
}

/// The table as `plan::check_table` compares it with a package's.
pub fn existing_table(name: &str, columns: &[ServerColumn]) -> ExistingTable {
    ExistingTable {
        name: name.to_owned(),
        columns: columns
            .iter()
            .map(|c| ExistingColumn {
                name: c.name.clone(),
                declared_type: c.declared(),
                stored: c.stored(),
                not_null: !c.nullable,
                has_default: c.fills_itself(),
                pk_position: c.key_ordinal,
            })
            .collect(),
    }
}
