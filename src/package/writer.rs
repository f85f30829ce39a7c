//! Writes a package as a stream of frames.

use std::io::Write;

use super::{PackageError, PackageHeader, Value};

/// What a finished package file is: the figures the server publishes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenPackage {
    /// Size of the whole file in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole file, lower-case hex.
    pub sha256: String,
    /// Row frames (upserts plus deletes) written.
    pub rows: u64,
}

/// Streams a package into `W`. Validates the header and every row against the
/// schema, so a package this writer accepts is one the reader accepts.
pub struct PackageWriter<W: Write> {
    _out: W,
}

impl<W: Write> PackageWriter<W> {
    /// Writes the preamble and header.
    pub fn new(out: W, header: &PackageHeader) -> Result<Self, PackageError> {
        let _ = (out, header);
        todo!()
    }

    /// Opens the section of the table at `index` of the header's tables.
    pub fn table(&mut self, index: u32) -> Result<(), PackageError> {
        let _ = index;
        todo!()
    }

    pub fn upsert(&mut self, row: &[Value]) -> Result<(), PackageError> {
        let _ = row;
        todo!()
    }

    pub fn delete(&mut self, key: &[Value]) -> Result<(), PackageError> {
        let _ = key;
        todo!()
    }

    /// Writes the end frame and the checksum, flushes, and returns the output.
    pub fn finish(self) -> Result<(W, WrittenPackage), PackageError> {
        todo!()
    }
}
