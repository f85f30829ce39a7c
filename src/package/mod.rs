//! The package file format (see `docs/package-format.md`).
//!
//! A package is written and read as a stream: [`PackageWriter`] appends frames
//! to any `Write`, [`PackageReader`] yields them from any `Read`, one at a
//! time, with a size limit on every length field, so memory stays bounded
//! whatever the package size and hostile input gets an error, never an abort.

pub(crate) mod codec;
mod error;
mod model;
mod reader;
mod types;
mod validate;
mod writer;

pub use codec::{MAGIC, MAX_FRAME, MAX_HEADER};
pub use error::PackageError;
pub use model::{
    Column, ColumnType, Frame, PackageHeader, PackageKind, TableSchema, Value, FORMAT_VERSION,
    NEWEST_FORMAT_VERSION, OLDEST_FORMAT_VERSION, REPLACE_FORMAT_VERSION,
};
pub use reader::{Declared, PackageReader, PackageSummary};
pub use types::{
    check_type, decimal_from_number, format_decimal, is_canonical_uuid, parse_date, parse_datetime,
    parse_decimal, parse_time, text_len, value_mismatch, Date, Decimal, TimeOfDay,
    EXACT_FLOAT_DIGITS, MAX_BLOB_LEN, MAX_PRECISION, MAX_TEXT_LEN, TICKS_PER_SECOND,
};
pub use validate::{
    is_identifier, is_reserved, is_reserved_table, shown, MAX_COLUMNS, MAX_IDENTIFIER,
    MAX_LABEL_CHARS, MAX_TABLES, RESERVED_PREFIX,
};
pub use writer::{PackageWriter, WrittenPackage};
