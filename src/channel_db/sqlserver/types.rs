//! Between package column types and SQL Server's: the type a package
//! column is created and staged with, and what an existing column holds.

use crate::package::{ColumnType, TableSchema};
use crate::plan::{ExistingColumn, ExistingTable, Family, Limits, StoredType};

/// Bytes a primary key may take: SQL Server's limit for a clustered index.
pub const KEY_BYTES: u32 = 900;

/// The type each column of `table` is created with. Unbounded text and
/// blob key columns, and bounded ones too wide, share what the key's other
/// columns leave of `KEY_BYTES`, so the key always fits its index; a value
/// longer than that is then refused by name (`plan::check_row`), not by
/// SQL Server's error 1946 halfway through a package.
pub fn create_types(table: &TableSchema) -> Vec<String> {
    let in_key = |name: &str| table.key.iter().any(|k| k == name);
    let key_types = table
        .columns
        .iter()
        .filter(|c| in_key(&c.name))
        .map(|c| c.ty);
    let (fixed, variable): (Vec<ColumnType>, Vec<ColumnType>) =
        key_types.partition(|ty| fixed_key_bytes(*ty).is_some());
    let fixed_bytes: u32 = fixed.iter().filter_map(|ty| fixed_key_bytes(*ty)).sum();
    let share = KEY_BYTES.saturating_sub(fixed_bytes) / (variable.len().max(1) as u32);
    table
        .columns
        .iter()
        .map(|c| match c.ty {
            ColumnType::Text | ColumnType::BoundedText { .. } if in_key(&c.name) => {
                let chars = (share / 2).max(1);
                let chars = match c.ty {
                    ColumnType::BoundedText { max_len } => max_len.min(chars),
                    _ => chars,
                };
                format!("nvarchar({chars})")
            }
            ColumnType::Blob | ColumnType::BoundedBlob { .. } if in_key(&c.name) => {
                let bytes = match c.ty {
                    ColumnType::BoundedBlob { max_len } => max_len.min(share.max(1)),
                    _ => share.max(1),
                };
                format!("varbinary({bytes})")
            }
            ty => sql_type(ty),
        })
        .collect()
}

/// Bytes a key column of type `ty` takes in an index; `None` for text and
/// blobs, whose width is chosen.
fn fixed_key_bytes(ty: ColumnType) -> Option<u32> {
    Some(match ty {
        ColumnType::Integer | ColumnType::Real | ColumnType::DateTime => 8,
        ColumnType::Boolean => 1,
        ColumnType::Decimal { precision, .. } => match precision {
            1..=9 => 5,
            10..=19 => 9,
            20..=28 => 13,
            _ => 17,
        },
        ColumnType::Date => 3,
        ColumnType::Time => 5,
        ColumnType::Uuid => 16,
        ColumnType::Text
        | ColumnType::Blob
        | ColumnType::BoundedText { .. }
        | ColumnType::BoundedBlob { .. } => return None,
    })
}

/// The type a package column has in the staging table bulk load fills.
/// - Text and blobs: `max`, whatever their bound (checked before they are
///   sent): tiberius declares an `nvarchar(n)` above 2000 characters as
///   `nvarchar(max)` in `INSERT BULK` yet sends it as `nvarchar(n)`.
/// - Decimals: their canonical text, cast by the merge: tiberius panics on
///   a `Numeric` whose scale differs from the column's. As `max` too: for
///   `nvarchar(n)` tiberius's `INSERT BULK` declares n bytes as n characters.
/// - Dates: `datetime2(7)`, cast by the merge: tiberius 0.12.3 describes a
///   `date` column to bulk load with a length byte too many (tiberius#373).
pub fn staging_type(ty: ColumnType) -> String {
    match ty {
        ColumnType::Text | ColumnType::BoundedText { .. } => "nvarchar(max)".into(),
        ColumnType::Blob | ColumnType::BoundedBlob { .. } => "varbinary(max)".into(),
        ColumnType::Decimal { .. } => "nvarchar(max)".into(),
        ColumnType::Date => "datetime2(7)".into(),
        ty => sql_type(ty),
    }
}

/// The SQL Server type of a package type, outside a key.
pub fn sql_type(ty: ColumnType) -> String {
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

/// The type existing column `have` is widened to, to hold package type
/// `to`: the same kind of SQL Server type (`varchar` stays `varchar`, and
/// `char` becomes `varchar` rather than padding), the package's length or
/// precision.
pub fn widened_type(have: &ServerColumn, to: ColumnType) -> String {
    let length = |max_len: Option<u32>| max_len.map_or_else(|| "max".to_owned(), |n| n.to_string());
    match to {
        ColumnType::Text | ColumnType::BoundedText { .. } => {
            let max_len = match to {
                ColumnType::BoundedText { max_len } => Some(max_len),
                _ => None,
            };
            let base = if matches!(have.type_name.as_str(), "varchar" | "char") {
                "varchar"
            } else {
                "nvarchar"
            };
            format!("{base}({})", length(max_len))
        }
        ColumnType::Blob => "varbinary(max)".into(),
        ColumnType::BoundedBlob { max_len } => format!("varbinary({max_len})"),
        ty => sql_type(ty),
    }
}

/// Why SQL Server cannot `ALTER COLUMN` `have` to `to` in place, by its
/// rules: a column in an index, or a CHECK constraint, may only grow as a
/// `varchar`, `nvarchar` or `varbinary` of the same type; one with a DEFAULT
/// constraint may change its length or precision but not its type. `None`
/// when it can.
pub fn alter_refusal(have: &ServerColumn, to: &str) -> Option<String> {
    let base = |t: &str| t.split('(').next().unwrap_or(t).trim().to_ascii_lowercase();
    let same_type = base(to) == base(&have.type_name);
    let grows_in_place = same_type
        && matches!(
            have.type_name.as_str(),
            "varchar" | "nvarchar" | "varbinary"
        )
        && !to.ends_with("(max)");
    if have.indexed && !grows_in_place {
        return Some(format!(
            "it is in an index, and SQL Server alters an indexed column in place only to a \
             longer varchar, nvarchar or varbinary, not {} to {to}",
            have.declared()
        ));
    }
    if have.checked && !grows_in_place {
        return Some(format!(
            "a CHECK constraint names it, and SQL Server then alters it in place only to a \
             longer varchar, nvarchar or varbinary, not {} to {to}",
            have.declared()
        ));
    }
    if have.has_default && !same_type {
        return Some(format!(
            "it has a DEFAULT constraint, and SQL Server then changes its length or precision \
             in place, not its type ({} to {to})",
            have.declared()
        ));
    }
    None
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
    /// The collation of a text column.
    pub collation: Option<String>,
    /// Whether an index, or a CHECK constraint, names the column.
    pub indexed: bool,
    pub checked: bool,
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

/// Whether a column of this type can be read for upload: every type a
/// package type maps to, the counters (identity, rowversion) and xml; not
/// `sql_variant`, `datetimeoffset` or CLR types such as `geography`.
pub fn is_uploadable(type_name: &str) -> bool {
    let probe = ServerColumn {
        name: String::new(),
        type_name: type_name.to_owned(),
        max_length: -1,
        precision: 38,
        scale: 0,
        nullable: true,
        identity: false,
        computed: false,
        has_default: false,
        key_ordinal: 0,
        collation: None,
        indexed: false,
        checked: false,
    };
    probe.stored().is_some() || matches!(type_name, "timestamp" | "rowversion" | "xml")
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
