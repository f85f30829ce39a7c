//! What can go wrong writing or reading a package.

use thiserror::Error;

/// What is wrong with a package. The caller adds which package it was.
///
/// Every reading error means the package must not be applied; a reader that
/// returned one returns [`PackageError::AlreadyFailed`] from then on.
#[derive(Debug, Error)]
pub enum PackageError {
    /// The file does not start with `CDXPKG\r\n`.
    #[error("not a package: the file does not start with the magic bytes \"CDXPKG\\r\\n\"")]
    BadMagic,

    /// The preamble names a format version this build does not read.
    #[error("unsupported package format version {found} (this build reads versions 1 and 2)")]
    UnsupportedVersion { found: u16 },

    /// The header (as the preamble declares or as encoded) exceeds the limit.
    #[error("package header of {len} bytes exceeds the limit of {max} bytes")]
    HeaderTooLarge { len: u64, max: u64 },

    /// A frame (as its length prefix declares or as encoded) exceeds the limit.
    #[error("package frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: u64, max: u64 },

    /// The input ended before `what` was complete.
    #[error("package truncated: the input ended inside the {what}")]
    Truncated { what: &'static str },

    /// `what` (the header or a frame) is not valid bincode for its type.
    #[error("cannot decode the package {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: bincode::Error,
    },

    /// `what` could not be encoded (the writer side of `Decode`).
    #[error("cannot encode the package {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: bincode::Error,
    },

    /// The compressed body is not a valid zstd frame (bad block, bad zstd
    /// checksum, window too large, ...).
    #[error("corrupt package body: {detail}")]
    Corrupt { detail: String },

    /// The SHA-256 stored after the `End` frame (`expected`) differs from the
    /// one computed over the content (`actual`). Both in lower-case hex.
    #[error(
        "package checksum mismatch: the package says {expected}, its content hashes to {actual}"
    )]
    ChecksumMismatch { expected: String, actual: String },

    /// Bytes follow the checksum inside the zstd frame, or follow the zstd
    /// frame in the file.
    #[error("unexpected data after the end of the package")]
    TrailingData,

    /// The header breaks a rule of the format; the text names the table and
    /// column.
    #[error("invalid package header: {0}")]
    InvalidHeader(String),

    /// A frame breaks a rule of the format or does not fit the schema.
    #[error(
        "invalid package frame{}: {detail}",
        .table.as_deref().map(|t| format!(" in table `{t}`")).unwrap_or_default()
    )]
    InvalidFrame {
        /// The table whose section the frame is in, when one is open.
        table: Option<String>,
        detail: String,
    },

    /// The package holds more (or other) rows or content bytes than the
    /// listing it was downloaded by declares: a decompression bomb or a
    /// package that is not the one listed. Reading stops at the declared
    /// amount, before it fills memory or disk.
    #[error("package {what}: the listing declares {declared}, the package has {found}")]
    NotAsDeclared {
        what: &'static str,
        declared: u64,
        found: String,
    },

    /// The reader or writer failed before; its stream is in an unknown state.
    #[error("the package reader or writer failed earlier and cannot continue")]
    AlreadyFailed,

    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl PackageError {
    pub(crate) fn frame(table: Option<&str>, detail: impl Into<String>) -> Self {
        PackageError::InvalidFrame {
            table: table.map(str::to_owned),
            detail: detail.into(),
        }
    }
}
