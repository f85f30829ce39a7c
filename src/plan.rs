//! Pure decisions, no I/O: does a package's table fit the table the channel
//! database has, and the SQL that creates a missing one.
//!
//! **Invariant:** every identifier that reaches SQL text passes
//! [`quote_ident`], which refuses anything but a validated identifier, so a
//! package can never run SQL of its own.

use thiserror::Error;

use crate::channel_db::{ChannelDbError, UploadTable};
use crate::package::{
    is_identifier, parse_decimal, shown, text_len, ColumnType, PackageHeader, TableSchema, Value,
    EXACT_FLOAT_DIGITS,
};
use crate::protocol::PackageInfo;

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
    /// What the declared type holds, as the backend reads it; `None` for
    /// a type no package type maps to.
    pub stored: Option<StoredType>,
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

    pub fn column(&self, name: &str) -> Option<&ExistingColumn> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// The kinds of values a column can hold, whatever its length or precision:
/// a package column fits an existing column of the same family, and each
/// value is then checked against the column's [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Integer,
    Real,
    Text,
    Blob,
    Boolean,
    Decimal,
    Date,
    DateTime,
    Time,
    Uuid,
}

impl Family {
    pub fn of(ty: ColumnType) -> Family {
        match ty {
            ColumnType::Integer => Family::Integer,
            ColumnType::Real => Family::Real,
            ColumnType::Text | ColumnType::BoundedText { .. } => Family::Text,
            ColumnType::Blob | ColumnType::BoundedBlob { .. } => Family::Blob,
            ColumnType::Boolean => Family::Boolean,
            ColumnType::Decimal { .. } => Family::Decimal,
            ColumnType::Date => Family::Date,
            ColumnType::DateTime => Family::DateTime,
            ColumnType::Time => Family::Time,
            ColumnType::Uuid => Family::Uuid,
        }
    }

    /// The family's name in messages: `text`, `decimal`, ...
    pub fn name(self) -> &'static str {
        match self {
            Family::Integer => "integer",
            Family::Real => "real",
            Family::Text => "text",
            Family::Blob => "blob",
            Family::Boolean => "boolean",
            Family::Decimal => "decimal",
            Family::Date => "date",
            Family::DateTime => "datetime",
            Family::Time => "time",
            Family::Uuid => "uuid",
        }
    }

    /// Whether a column of this family stores values of package type `ty`.
    /// Booleans also go into integer columns (AX stores NoYes as int).
    pub fn stores(self, ty: ColumnType) -> bool {
        let family = Family::of(ty);
        family == self || (family == Family::Boolean && self == Family::Integer)
    }
}

/// How much an existing column holds; `None` is no limit beyond the family's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Text: UTF-16 code units; blob: bytes.
    pub max_len: Option<u32>,
    /// Decimal: (precision, scale).
    pub decimal: Option<(u8, u8)>,
    /// Integer: the smallest and largest value (`int` is 32-bit, say).
    pub int_range: Option<(i64, i64)>,
}

/// A column's family and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredType {
    pub family: Family,
    pub limits: Limits,
}

impl Limits {
    /// Whether every value of package type `ty` fits without a check per
    /// value (the package's own bounds are within these).
    pub fn hold_all_of(&self, ty: ColumnType) -> bool {
        let len_ok = match (self.max_len, ty) {
            (None, _) => true,
            (
                Some(max),
                ColumnType::BoundedText { max_len } | ColumnType::BoundedBlob { max_len },
            ) => max_len <= max,
            (Some(_), _) => false,
        };
        let decimal_ok = match (self.decimal, ty) {
            (Some((p, s)), ColumnType::Decimal { precision, scale }) => {
                scale <= s && precision - scale <= p - s.min(p)
            }
            _ => true,
        };
        let int_ok = match (self.int_range, ty) {
            (Some((min, max)), ColumnType::Integer) => min == i64::MIN && max == i64::MAX,
            _ => true,
        };
        len_ok && decimal_ok && int_ok
    }

    /// Why `value` does not fit, as the database would refuse or silently
    /// alter it; `None` when it fits.
    pub fn violation(&self, value: &Value) -> Option<String> {
        match value {
            Value::Text(s) => self.max_len.and_then(|max| {
                let len = text_len(s);
                (len > max as usize).then(|| {
                    format!("the value is {len} characters long, the column holds at most {max}")
                })
            }),
            Value::Blob(b) => self.max_len.and_then(|max| {
                (b.len() > max as usize).then(|| {
                    format!(
                        "the value is {} bytes long, the column holds at most {max}",
                        b.len()
                    )
                })
            }),
            Value::Integer(i) => self.int_range.and_then(|(min, max)| {
                (!(min..=max).contains(i))
                    .then(|| format!("the value {i} is outside the column's range {min} to {max}"))
            }),
            _ => None,
        }
        .or_else(|| self.decimal_violation(value))
    }

    fn decimal_violation(&self, value: &Value) -> Option<String> {
        let ((p, s), Value::Text(text)) = (self.decimal?, value) else {
            return None;
        };
        let fits = parse_decimal(text).is_some_and(|d| d.fits(p, s));
        (!fits).then(|| format!("the value {text} does not fit the column's decimal({p},{s})"))
    }
}

/// The package columns (by index) whose existing column is narrower than
/// the package's type, with the existing column's limits: the values of
/// these must be checked one by one.
pub fn narrower_columns(existing: &ExistingTable, wanted: &TableSchema) -> Vec<(usize, Limits)> {
    wanted
        .columns
        .iter()
        .enumerate()
        .filter_map(|(i, column)| {
            let stored = existing.column(&column.name)?.stored?;
            (!stored.limits.hold_all_of(column.ty)).then_some((i, stored.limits))
        })
        .collect()
}

/// The package columns (by index) stored as decimals of another scale than
/// the package's, with the column's scale: their values must be respelled
/// at that scale (`1.50` in a `decimal(10,4)` is `1.5000`), or one number
/// would have two spellings and a key two rows. A backend that converts
/// by type (SQL Server's decimal) does this itself.
pub fn rescaled_columns(existing: &ExistingTable, wanted: &TableSchema) -> Vec<(usize, u8)> {
    wanted
        .columns
        .iter()
        .enumerate()
        .filter_map(|(i, column)| {
            let ColumnType::Decimal { scale, .. } = column.ty else {
                return None;
            };
            let (_, stored_scale) = existing.column(&column.name)?.stored?.limits.decimal?;
            (stored_scale != scale).then_some((i, stored_scale))
        })
        .collect()
}

/// `values` with the decimals at `rescale`'s positions respelled at the
/// column's scale; borrowed when there is nothing to respell. Call after
/// [`check_row`], which refuses what would lose digits; a value that still
/// cannot be respelled is left as is.
pub fn rescale<'v>(values: &'v [Value], rescale: &[(usize, u8)]) -> std::borrow::Cow<'v, [Value]> {
    if rescale.is_empty() {
        return std::borrow::Cow::Borrowed(values);
    }
    let mut values = values.to_vec();
    for &(i, scale) in rescale {
        if let Some(Value::Text(text)) = values.get_mut(i) {
            if let Some(canonical) = parse_decimal(text).and_then(|d| d.to_canonical(scale)) {
                *text = canonical;
            }
        }
    }
    std::borrow::Cow::Owned(values)
}

/// Checks `row` against `checks` (from [`narrower_columns`]).
///
/// # Errors
/// `ValueDoesNotFit` naming the package, table, column and the row's key.
pub fn check_row(
    package_id: uuid::Uuid,
    schema: &TableSchema,
    checks: &[(usize, Limits)],
    row: &[Value],
) -> Result<(), crate::channel_db::ChannelDbError> {
    for (i, limits) in checks {
        if let Some(detail) = row.get(*i).and_then(|v| limits.violation(v)) {
            return Err(crate::channel_db::ChannelDbError::ValueDoesNotFit {
                package_id,
                table: schema.name.clone(),
                column: schema.columns[*i].name.clone(),
                key: describe_key(schema, row),
                detail,
            });
        }
    }
    Ok(())
}

/// The key of `row` for an error message: `ItemId=A0001, Store=12`.
pub fn describe_key(schema: &TableSchema, row: &[Value]) -> String {
    schema
        .key
        .iter()
        .filter_map(|k| {
            let i = schema.columns.iter().position(|c| &c.name == k)?;
            let shown = match row.get(i)? {
                Value::Null => "NULL".to_owned(),
                Value::Integer(n) => n.to_string(),
                Value::Real(r) => r.to_string(),
                Value::Text(t) => t.chars().take(64).collect(),
                Value::Blob(b) => format!("<{} bytes>", b.len()),
            };
            Some(format!("{k}={shown}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What to do with a package's table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableAction {
    /// The table is missing: create it with [`create_table_sql`].
    Create,
    /// The table exists and fits the package.
    UseExisting,
    /// The table exists and fits once altered in place, in the package's
    /// own transaction (the rows there keep their values): `add` are the
    /// package's new columns (their indices; each nullable and outside the
    /// key, NULL in the rows there), `widen` the columns whose type grows.
    Alter { add: Vec<usize>, widen: Vec<Widen> },
    /// A full package replaces the table's definition: the table is
    /// dropped and created as the package says, in its transaction.
    Replace,
}

/// A column whose type grows so that it holds every value of the package's
/// type and every value it holds already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Widen {
    /// The column's index among the package's columns.
    pub index: usize,
    /// The type it gets: the package's, except a decimal keeps the
    /// table's scale (`decimal(8,4)` holding a package's `decimal(10,2)`
    /// becomes `decimal(12,4)`).
    pub to: ColumnType,
}

/// How a table's column meets the package's type for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnChange {
    /// It holds every value of the package's type.
    Fits,
    /// It holds values of the package's type, each checked as it is
    /// applied: a key column, an integer narrower than 64 bits, or a
    /// decimal of a coarser scale or too many digits to grow, which a
    /// package never alters.
    Checked,
    /// It grows to this type.
    Widen(ColumnType),
    /// It cannot change in place without losing values: why.
    Refused(String),
}

/// The magnitude an integer already in a column must stay below for the
/// column to become `to` without changing it, with how to say `to`: 10^(p-s)
/// for `decimal(p,s)`, 2^53 for `real` (the largest a float holds exactly).
/// `None`: every 64-bit integer fits.
pub fn exact_integer_bound(to: ColumnType) -> Option<(i64, String)> {
    match to {
        ColumnType::Decimal { precision, scale } => Some((
            10i64.checked_pow(u32::from(precision - scale))?,
            format!("decimal({precision},{scale})"),
        )),
        ColumnType::Real => Some((
            1 << 53,
            "real (a float holds integers up to 2^53 exactly)".into(),
        )),
        _ => None,
    }
}

/// Decides how a column stored as `stored` takes values of package type
/// `ty`. Widening is in place, outside the key: `text(n)` to a longer or
/// unbounded text, a blob likewise, `decimal(p,s)` to more digits before
/// the point at the same scale, `integer` to `decimal` or `real`. A column
/// is never narrowed (a wider column holds a narrower type's values) and
/// never loses a value: a change of kind (`text` to `integer`, say), or a
/// key column changing kind, is refused.
pub fn column_change(stored: StoredType, ty: ColumnType, in_key: bool) -> ColumnChange {
    let limits = stored.limits;
    if stored.family.stores(ty) {
        if limits.hold_all_of(ty) {
            return ColumnChange::Fits;
        }
        if in_key {
            return ColumnChange::Checked;
        }
        return match (stored.family, ty, limits.decimal) {
            // To a longer bounded length; a package saying unbounded `text`
            // (what `cdx-server publish` infers for every string column)
            // leaves a bounded column as it is, its values checked: an
            // unbounded column cannot be indexed on SQL Server, and the
            // point of sale may rely on the length.
            (
                Family::Text | Family::Blob,
                ColumnType::BoundedText { .. } | ColumnType::BoundedBlob { .. },
                _,
            ) => ColumnChange::Widen(ty),
            // Grown at the column's scale to hold the package's digits
            // before the point; a finer scale than the column's, or more
            // digits than a decimal has, cannot grow in place: such values
            // are checked one by one, and one that would be rounded fails.
            (Family::Decimal, ColumnType::Decimal { precision, scale }, Some((p, s)))
                if scale <= s =>
            {
                let digits = (precision - scale).max(p - s.min(p));
                match digits.checked_add(s) {
                    Some(p) if p <= crate::package::MAX_PRECISION => {
                        ColumnChange::Widen(ColumnType::Decimal {
                            precision: p,
                            scale: s,
                        })
                    }
                    _ => ColumnChange::Checked,
                }
            }
            _ => ColumnChange::Checked,
        };
    }
    match (stored.family, ty) {
        (Family::Integer, ColumnType::Real | ColumnType::Decimal { .. }) if !in_key => {
            ColumnChange::Widen(ty)
        }
        (Family::Integer, ColumnType::Real | ColumnType::Decimal { .. }) => {
            ColumnChange::Refused("it is a key column: a key's type never changes in place".into())
        }
        _ => ColumnChange::Refused(format!(
            "{} values do not become {} values in place",
            stored.family.name(),
            Family::of(ty).name()
        )),
    }
}

/// The way out of a schema change a package cannot make in place, named by
/// every refusal.
pub const REPLACE_WAY_OUT: &str = "The way out: a full package that replaces the table's \
    definition (`cdx-server publish --kind full --replace-definition TABLE ...`), which drops \
    and creates the table in its own transaction";

/// Why a package's table does not fit the table the channel database has.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchemaConflict {
    #[error(
        "table `{table}` has no column `{column}`, which the package needs; a package adds \
         only nullable columns outside the key to a table that exists. {REPLACE_WAY_OUT}"
    )]
    MissingColumn { table: String, column: String },
    #[error(
        "column `{table}.{column}` is `{found}` and the package's is `{expected}`, which it cannot \
         become in place: {why}. {REPLACE_WAY_OUT}"
    )]
    TypeMismatch {
        table: String,
        column: String,
        expected: String,
        found: String,
        /// Why the column cannot change in place.
        why: String,
    },
    #[error(
        "table `{table}` has primary key ({}), the package needs ({}): they differ at column \
         `{column}`. {REPLACE_WAY_OUT}",
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

/// The package type that holds the values of a column stored as `stored`:
/// what an upload batch declares for the column. `None` when the stored
/// type is outside what a package type can say (`varchar(8000)`,
/// `NUMERIC(40,2)`): the column is then sent untyped, never refused.
pub fn package_type(stored: &StoredType) -> Option<ColumnType> {
    let ty = stored_package_type(stored);
    crate::package::check_type(ty).ok().map(|()| ty)
}

fn stored_package_type(stored: &StoredType) -> ColumnType {
    let limits = stored.limits;
    match stored.family {
        Family::Integer => ColumnType::Integer,
        Family::Real => ColumnType::Real,
        Family::Text => match limits.max_len {
            Some(max_len) => ColumnType::BoundedText { max_len },
            None => ColumnType::Text,
        },
        Family::Blob => match limits.max_len {
            Some(max_len) => ColumnType::BoundedBlob { max_len },
            None => ColumnType::Blob,
        },
        Family::Boolean => ColumnType::Boolean,
        Family::Decimal => match limits.decimal {
            Some((precision, scale)) => ColumnType::Decimal { precision, scale },
            None => ColumnType::Decimal {
                precision: crate::package::MAX_PRECISION,
                scale: 0,
            },
        },
        Family::Date => ColumnType::Date,
        Family::DateTime => ColumnType::DateTime,
        Family::Time => ColumnType::Time,
        Family::Uuid => ColumnType::Uuid,
    }
}

/// `value`, read from an upload table column of type `ty`, in the exact
/// form an upload batch carries: a decimal as its canonical text at the
/// column's scale (whether the database held `2.8`, `2.80` or the number
/// 2.8), anything else as it is. A value the scale cannot spell is left
/// as it is, for headquarters to see rather than to lose.
pub fn exact_upload_value(ty: Option<ColumnType>, value: Value) -> Value {
    match (ty, &value) {
        (
            Some(ColumnType::Decimal { scale, .. }),
            Value::Integer(_) | Value::Real(_) | Value::Text(_),
        ) => match crate::package::decimal_from_number(&value, scale) {
            Some(text) => Value::Text(text),
            None => value,
        },
        _ => value,
    }
}

/// The SQLite type a column of type `ty` is declared with. The names pick
/// SQLite's affinity on purpose (the whole mapping is in
/// `docs/package-format.md`):
/// - a decimal of at most [`EXACT_FLOAT_DIGITS`] digits is `DECIMAL(p,s)`,
///   NUMERIC affinity: it holds an integer or the nearest float, so plain
///   SQL compares, sorts and sums it as a number, and the float's shortest
///   spelling is the exact decimal (`decimal_from_number`);
/// - a wider decimal is `DECIMAL_TEXT(p,s)`, TEXT affinity: no float holds
///   every value of `decimal(32,16)`, so it stays exact canonical text;
/// - dates, times and uuids are never numeric literals, so their NUMERIC
///   affinity keeps their text as it is.
pub fn sql_type(ty: ColumnType) -> String {
    match ty {
        ColumnType::Integer => "INTEGER".into(),
        ColumnType::Real => "REAL".into(),
        ColumnType::Text => "TEXT".into(),
        ColumnType::Blob => "BLOB".into(),
        ColumnType::Boolean => "BOOLEAN".into(),
        ColumnType::Decimal { precision, scale } if u32::from(precision) <= EXACT_FLOAT_DIGITS => {
            format!("DECIMAL({precision},{scale})")
        }
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
/// database has, `None` when missing); `replace`: the package is a full one
/// that replaces the table's definition.
///
/// # Errors
/// A package column missing from the table that is NOT NULL or in the key
/// (a nullable one is added), a column that cannot take the package's type
/// in place ([`column_change`]; one that can is widened), a primary key
/// that differs from the package's key in columns or order, or an extra
/// table column that is NOT NULL without a default. Extra nullable or
/// defaulted columns fit. None when `replace`: a table that does not fit
/// in place is then replaced.
pub fn check_table(
    existing: Option<&ExistingTable>,
    wanted: &TableSchema,
    replace: bool,
) -> Result<TableAction, SchemaConflict> {
    let Some(existing) = existing else {
        return Ok(TableAction::Create);
    };
    // A table that takes the package as it is, or altered in place, keeps
    // its definition (its indexes, its extra columns) even when the package
    // may replace it: applied again (a rerun, a full sync), a replacing
    // package drops nothing it does not have to.
    match fit_in_place(existing, wanted) {
        Err(_) if replace => Ok(TableAction::Replace),
        fits => fits,
    }
}

fn fit_in_place(
    existing: &ExistingTable,
    wanted: &TableSchema,
) -> Result<TableAction, SchemaConflict> {
    let table = || wanted.name.clone();
    let mut add = Vec::new();
    let mut widen = Vec::new();
    for (i, column) in wanted.columns.iter().enumerate() {
        let in_key = wanted
            .key
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&column.name));
        let Some(have) = existing.column(&column.name) else {
            if column.nullable && !in_key {
                add.push(i);
                continue;
            }
            return Err(SchemaConflict::MissingColumn {
                table: table(),
                column: column.name.clone(),
            });
        };
        let change = match have.stored {
            Some(stored) => column_change(stored, column.ty, in_key || have.pk_position > 0),
            None => ColumnChange::Refused("no package type maps to the column's type".into()),
        };
        match change {
            ColumnChange::Fits | ColumnChange::Checked => {}
            ColumnChange::Widen(to) => widen.push(Widen { index: i, to }),
            ColumnChange::Refused(why) => {
                return Err(SchemaConflict::TypeMismatch {
                    table: table(),
                    column: column.name.clone(),
                    expected: column.ty.to_string(),
                    found: have.declared_type.clone(),
                    why,
                })
            }
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
    if add.is_empty() && widen.is_empty() {
        Ok(TableAction::UseExisting)
    } else {
        Ok(TableAction::Alter { add, widen })
    }
}

/// SQLite's statement adding package column `column` to `table`.
pub fn add_column_sql(
    table: &str,
    column: &crate::package::Column,
) -> Result<String, InvalidIdentifier> {
    Ok(format!(
        "ALTER TABLE {} ADD COLUMN {} {}",
        quote_ident(table)?,
        quote_ident(&column.name)?,
        sql_type(column.ty)
    ))
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

pub use crate::package::is_reserved_table;

/// Checks, before a single row is written, that a package is the one the
/// server listed (id, data group, sequence, kind and job) and that it
/// writes none of the store's upload tables (`upload_tables`, compared as
/// SQL compares names, ignoring ASCII case).
///
/// # Errors
/// [`ChannelDbError::NotAsListed`] naming the field and both values, or
/// [`ChannelDbError::UploadTable`]: permanent failures.
pub fn check_listed(
    header: &PackageHeader,
    listed: &PackageInfo,
    upload_tables: &[UploadTable],
) -> Result<(), ChannelDbError> {
    let fields: [(&'static str, String, String); 5] = [
        (
            "package id",
            listed.id.to_string(),
            header.package_id.to_string(),
        ),
        (
            "data group",
            listed.data_group.clone(),
            header.data_group.clone(),
        ),
        (
            "sequence",
            listed.sequence.to_string(),
            header.sequence.to_string(),
        ),
        (
            "kind",
            format!("{:?}", listed.kind),
            format!("{:?}", header.kind),
        ),
        ("job", listed.job.clone(), header.job.clone()),
    ];
    for (field, want, got) in fields {
        if want != got {
            return Err(ChannelDbError::NotAsListed {
                package_id: listed.id,
                field,
                listed: shown(&want),
                header: shown(&got),
            });
        }
    }
    if let Some(table) = header.tables.iter().find(|t| {
        upload_tables
            .iter()
            .any(|u| u.name.eq_ignore_ascii_case(&t.name))
    }) {
        return Err(ChannelDbError::UploadTable {
            package_id: listed.id,
            table: table.name.clone(),
        });
    }
    Ok(())
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

pub mod sqlite_ddl;

#[cfg(test)]
mod tests;
