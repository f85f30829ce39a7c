//! Writes a package as a stream of frames.

use std::io::Write;

use sha2::{Digest, Sha256};

use super::codec::{self, FrameRef, HashingWriter, MAX_HEADER, ZSTD_LEVEL};
use super::validate::{validate_header, FrameChecker};
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
    /// Uncompressed body bytes: every frame with its length prefix, and
    /// the checksum. Listed, so that a reader can refuse a package that
    /// expands beyond it.
    pub content_bytes: u64,
}

/// Streams a package into `W`. Validates the header and every row against the
/// schema, so a package this writer accepts is one the reader accepts.
///
/// A call that returns a validation error (`InvalidFrame`, `FrameTooLarge`)
/// writes nothing and the writer stays usable. After an I/O error the output
/// is in an unknown state and every later call returns
/// [`PackageError::AlreadyFailed`]. Dropping the writer without
/// [`finish`](Self::finish) leaves an incomplete package that no reader
/// accepts. `W` is written in zstd-sized chunks; it needs no buffering.
pub struct PackageWriter<W: Write> {
    /// zstd encoder over the output, which hashes and counts the file bytes.
    out: zstd::stream::write::Encoder<'static, HashingWriter<W>>,
    /// SHA-256 of the uncompressed content (preamble, header, frames).
    content: Sha256,
    /// The frame being encoded; reused so a row costs no allocation.
    buf: Vec<u8>,
    checker: FrameChecker,
    failed: bool,
    /// Uncompressed body bytes written so far.
    body_bytes: u64,
}

impl<W: Write> PackageWriter<W> {
    /// Validates the header and writes the preamble and header.
    pub fn new(out: W, header: &PackageHeader) -> Result<Self, PackageError> {
        validate_header(header)?;
        let header_bytes = codec::encode_header(header)?;
        // encode_header enforces MAX_HEADER, so the length fits in u32.
        let header_len = u32::try_from(header_bytes.len()).unwrap_or(MAX_HEADER);
        let preamble = codec::preamble(header.format_version, header_len);

        let mut content = Sha256::new();
        content.update(preamble);
        content.update(&header_bytes);

        let mut file = HashingWriter::new(out);
        file.write_all(&preamble)?;
        file.write_all(&header_bytes)?;
        let mut out = zstd::stream::write::Encoder::new(file, ZSTD_LEVEL)?;
        out.include_checksum(true)?;

        Ok(PackageWriter {
            out,
            content,
            buf: Vec::with_capacity(4096),
            checker: FrameChecker::new(header),
            failed: false,
            body_bytes: 0,
        })
    }

    /// Opens the section of the table at `index` of the header's tables.
    /// Each table may be opened once.
    /// Uncompressed body bytes written so far (frames with their length
    /// prefixes).
    pub fn content_written(&self) -> u64 {
        self.body_bytes
    }

    pub fn table(&mut self, index: u32) -> Result<(), PackageError> {
        self.usable()?;
        codec::encode_frame(&FrameRef::Table(index), &mut self.buf)?;
        self.checker.table(index)?;
        self.write_buf()
    }

    /// Writes a full row of the open table, values in column order.
    pub fn upsert(&mut self, row: &[Value]) -> Result<(), PackageError> {
        self.usable()?;
        codec::encode_frame(&FrameRef::Upsert(row), &mut self.buf)?;
        self.checker.upsert(row)?;
        self.write_buf()
    }

    /// Writes the key values, in key order, of a row of the open table to
    /// delete. Only in incremental packages.
    pub fn delete(&mut self, key: &[Value]) -> Result<(), PackageError> {
        self.usable()?;
        codec::encode_frame(&FrameRef::Delete(key), &mut self.buf)?;
        self.checker.delete(key)?;
        self.write_buf()
    }

    /// Writes the end frame and the checksum, finishes the zstd frame,
    /// flushes, and returns the output.
    pub fn finish(mut self) -> Result<(W, WrittenPackage), PackageError> {
        self.usable()?;
        let rows = self.checker.rows();
        codec::encode_frame(&FrameRef::End { rows }, &mut self.buf)?;
        self.checker.end(rows)?;
        self.write_buf()?;
        let checksum = self.content.finalize_reset();
        self.out.write_all(&checksum)?;
        let mut file = self.out.finish()?;
        file.flush()?;
        let (out, bytes, sha256) = file.into_parts();
        Ok((
            out,
            WrittenPackage {
                bytes,
                sha256,
                rows,
                content_bytes: self.body_bytes + checksum.len() as u64,
            },
        ))
    }

    fn usable(&self) -> Result<(), PackageError> {
        if self.failed {
            Err(PackageError::AlreadyFailed)
        } else {
            Ok(())
        }
    }

    /// Writes the frame encoded in `buf` (checked by then), length prefix
    /// included, and adds it to the content checksum.
    fn write_buf(&mut self) -> Result<(), PackageError> {
        if let Err(e) = self.out.write_all(&self.buf) {
            self.failed = true;
            return Err(e.into());
        }
        self.content.update(&self.buf);
        self.body_bytes += self.buf.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::package::codec::fixtures::*;
    use crate::package::{Frame, PackageKind, PackageReader};

    fn incremental_writer() -> PackageWriter<Vec<u8>> {
        PackageWriter::new(Vec::new(), &header(PackageKind::Incremental)).unwrap()
    }

    fn frame_error(result: Result<(), PackageError>, needle: &str) {
        match result {
            Err(e @ PackageError::InvalidFrame { .. }) if e.to_string().contains(needle) => {}
            other => panic!("expected InvalidFrame containing {needle:?}, got {other:?}"),
        }
    }

    /// The reported size and SHA-256 are those of the bytes actually written.
    #[test]
    fn written_sha256_and_bytes_match_the_produced_file() {
        let (bytes, written) = write(&header(PackageKind::Incremental), &small_frames());
        assert_eq!(written.bytes, bytes.len() as u64);
        assert_eq!(written.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(written.rows, 5);
        assert!(bytes.starts_with(b"CDXPKG\r\n\x02\x00"));
    }

    /// A delete in a full package is refused, and the writer stays usable.
    #[test]
    fn delete_in_a_full_package_is_refused() {
        let mut w = PackageWriter::new(Vec::new(), &header(PackageKind::Full)).unwrap();
        w.table(0).unwrap();
        frame_error(w.delete(&[Value::Text("A".into())]), "Full package");
        w.upsert(&item("A", 1.0)).unwrap();
        let (bytes, written) = w.finish().unwrap();
        assert_eq!(written.rows, 1);
        let summary = PackageReader::open(&bytes[..]).unwrap().verify().unwrap();
        assert_eq!((summary.upserts, summary.deletes), (1, 0));
    }

    /// Rows and keys with the wrong number of values are refused.
    #[test]
    fn rows_and_keys_of_the_wrong_arity_are_refused() {
        let mut w = incremental_writer();
        w.table(1).unwrap();
        frame_error(
            w.upsert(&[Value::Text("A".into())]),
            "Upsert has 1 values, the table has 3 columns",
        );
        frame_error(
            w.delete(&[Value::Text("A".into())]),
            "Delete has 1 values, the key has 2 columns",
        );
        frame_error(w.upsert(&[]), "Upsert has 0 values");
    }

    /// A value of the wrong type is refused; a Real column takes an Integer.
    #[test]
    fn values_of_the_wrong_type_are_refused() {
        let mut w = incremental_writer();
        w.table(0).unwrap();
        let mut row = item("A", 1.0);
        row[3] = Value::Text("3".into());
        frame_error(
            w.upsert(&row),
            "column `Qty` (integer, nullable): Text value in a column of type integer",
        );
        let mut row = item("A", 1.0);
        row[2] = Value::Null;
        frame_error(
            w.upsert(&row),
            "column `Price` (real): Null in a NOT NULL column",
        );
        let mut row = item("A", 1.0);
        row[4] = Value::Text("png".into());
        frame_error(
            w.upsert(&row),
            "column `Image` (blob, nullable): Text value",
        );
        let mut row = item("A", 1.0);
        row[2] = Value::Integer(2);
        row[1] = Value::Null;
        w.upsert(&row).unwrap();
    }

    /// A Null or mistyped key value is refused, in upserts and deletes.
    #[test]
    fn null_keys_are_refused() {
        let mut w = incremental_writer();
        w.table(1).unwrap();
        frame_error(
            w.delete(&[Value::Text("A".into()), Value::Null]),
            "key column `Store` (integer): Null in a NOT NULL column",
        );
        frame_error(
            w.delete(&[Value::Integer(1), Value::Integer(1)]),
            "key column `ItemId` (text): Integer value",
        );
        frame_error(
            w.upsert(&[Value::Null, Value::Integer(1), Value::Real(1.0)]),
            "column `ItemId` (text): Null in a NOT NULL column",
        );
    }

    /// Rows need an open table; a table index must exist and open only once.
    #[test]
    fn table_sections_are_checked() {
        let mut w = incremental_writer();
        frame_error(w.upsert(&item("A", 1.0)), "Upsert before any Table frame");
        frame_error(
            w.delete(&[Value::Text("A".into())]),
            "Delete before any Table frame",
        );
        frame_error(w.table(2), "Table(2) but the header lists 2 tables");
        w.table(1).unwrap();
        w.table(0).unwrap();
        frame_error(w.table(1), "opens the table a second time");
    }

    /// An invalid header is refused before anything is written.
    #[test]
    fn invalid_header_is_refused() {
        let mut header = header(PackageKind::Full);
        header.tables[0].columns[1].name = "Na me".into();
        match PackageWriter::new(Vec::new(), &header) {
            Err(PackageError::InvalidHeader(m)) => assert!(m.contains("\"Na me\""), "{m}"),
            other => panic!("{:?}", other.err()),
        }
    }

    /// After the output fails, every call is AlreadyFailed.
    #[test]
    fn writer_after_an_io_error_is_already_failed() {
        struct Full(usize);
        impl Write for Full {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.0 < buf.len() {
                    return Err(io::Error::other("disk full"));
                }
                self.0 -= buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = PackageWriter::new(Full(1000), &header(PackageKind::Full)).unwrap();
        w.table(0).unwrap();
        // zstd buffers up to a block; incompressible rows soon reach the output.
        let mut row = item("A", 1.0);
        let mut seed = 1u32;
        let first = (0..50)
            .map(|_| {
                let blob = (0..50_000)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        seed.to_be_bytes()[0]
                    })
                    .collect();
                row[4] = Value::Blob(blob);
                w.upsert(&row)
            })
            .find(Result::is_err);
        assert!(matches!(first, Some(Err(PackageError::Io(_)))), "{first:?}");
        assert!(matches!(
            w.upsert(&item("B", 1.0)),
            Err(PackageError::AlreadyFailed)
        ));
        assert!(matches!(w.finish(), Err(PackageError::AlreadyFailed)));
    }

    /// Frames the writer wrote are exactly the frames the reader returns.
    #[test]
    fn writer_output_reads_back_frame_for_frame() {
        let (bytes, _) = write(&header(PackageKind::Incremental), &small_frames());
        let mut reader = PackageReader::open(&bytes[..]).unwrap();
        for expected in small_frames() {
            assert_eq!(reader.next_frame().unwrap(), Some(expected));
        }
        assert_eq!(reader.next_frame().unwrap(), None::<Frame>);
    }
}
