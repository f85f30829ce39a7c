//! Reads a package frame by frame, with bounded memory.

use std::io::Read;

use super::{Frame, PackageError, PackageHeader};

/// What a full read of a package found.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageSummary {
    pub header: PackageHeader,
    pub upserts: u64,
    pub deletes: u64,
}

pub struct PackageReader<R: Read> {
    _input: R,
}

impl<R: Read> PackageReader<R> {
    /// Reads and validates the preamble and header.
    pub fn open(input: R) -> Result<Self, PackageError> {
        let _ = input;
        todo!()
    }

    pub fn header(&self) -> &PackageHeader {
        todo!()
    }

    /// The next frame, or `None` once the `End` frame was read and the
    /// checksum over everything before it verified. A caller that applies
    /// frames commits only after it got `None`.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, PackageError> {
        todo!()
    }

    /// Reads the whole package, validating every frame and the checksum.
    pub fn verify(self) -> Result<PackageSummary, PackageError> {
        todo!()
    }
}
