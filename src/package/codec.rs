//! Frame and header encoding: one bincode configuration with size limits.
//!
//! Everything in a package is encoded with [`options`]: fixed-width
//! little-endian integers, a size limit on every decode (so a length field
//! claiming terabytes is an error, not an allocation), and no trailing bytes.

use std::io::{self, Write};

use bincode::Options;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Frame, PackageError, PackageHeader, Value, REPLACE_FORMAT_VERSION};

/// The first 8 bytes of every package.
pub const MAGIC: [u8; 8] = *b"CDXPKG\r\n";
/// The largest encoded header, in bytes (1 MiB).
pub const MAX_HEADER: u32 = 1 << 20;
/// The largest encoded frame, in bytes, not counting its length prefix (16 MiB).
pub const MAX_FRAME: u32 = 16 << 20;
/// Length of the SHA-256 that follows the `End` frame.
pub const CHECKSUM_LEN: usize = 32;
/// The zstd level the writer uses.
pub const ZSTD_LEVEL: i32 = 3;
/// The largest zstd window the reader accepts: 2^23 = 8 MiB. Level 3 uses
/// 2^21; the cap bounds the decoder's memory whatever the input claims.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;
/// Buffer size for the compressed input and for the decompressed content.
pub const BUFFER_SIZE: usize = 64 * 1024;
/// Bytes before the header: magic, version (u16), header length (u32).
pub const PREAMBLE_LEN: usize = MAGIC.len() + 2 + 4;

/// The one bincode configuration of the format, with a decode/encode limit
/// of `limit` bytes.
pub fn options(limit: u64) -> impl Options + Copy {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(limit)
        .reject_trailing_bytes()
}

/// A frame that borrows its values, so the writer encodes a row without
/// copying it. Encodes exactly like [`Frame`]: same variants, same order.
#[derive(Serialize)]
pub(crate) enum FrameRef<'a> {
    Table(u32),
    Upsert(&'a [Value]),
    Delete(&'a [Value]),
    End { rows: u64 },
}

/// Encodes the header; fails when it exceeds [`MAX_HEADER`]. From version 3
/// the header's fields are followed by `replaces`.
pub(crate) fn encode_header(header: &PackageHeader) -> Result<Vec<u8>, PackageError> {
    let mut out = Vec::new();
    let written = options(u64::from(MAX_HEADER))
        .serialize_into(&mut out, header)
        .and_then(|()| {
            if header.format_version >= REPLACE_FORMAT_VERSION {
                options(u64::from(MAX_HEADER)).serialize_into(&mut out, &header.replaces)
            } else {
                Ok(())
            }
        });
    let too_large = match written {
        Ok(()) => out.len() > MAX_HEADER as usize,
        Err(e) => match *e {
            bincode::ErrorKind::SizeLimit => true,
            _ => {
                return Err(PackageError::Encode {
                    what: "header",
                    source: e,
                })
            }
        },
    };
    if too_large {
        let replaces = options(u64::MAX)
            .serialized_size(&header.replaces)
            .unwrap_or(0);
        return Err(PackageError::HeaderTooLarge {
            len: options(u64::MAX)
                .serialized_size(header)
                .map_or(u64::MAX, |n| n.saturating_add(replaces)),
            max: u64::from(MAX_HEADER),
        });
    }
    Ok(out)
}

pub(crate) fn decode_header(bytes: &[u8]) -> Result<PackageHeader, PackageError> {
    let decode_err = |source| PackageError::Decode {
        what: "header",
        source,
    };
    // The fields one after the other, then nothing may be left.
    let fields = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(u64::from(MAX_HEADER))
        .allow_trailing_bytes();
    let mut rest = bytes;
    let mut header: PackageHeader = fields.deserialize_from(&mut rest).map_err(decode_err)?;
    if header.format_version >= REPLACE_FORMAT_VERSION {
        header.replaces = fields.deserialize_from(&mut rest).map_err(decode_err)?;
    }
    if !rest.is_empty() {
        return Err(decode_err(Box::new(bincode::ErrorKind::Custom(format!(
            "{} bytes after the header's last field",
            rest.len()
        )))));
    }
    Ok(header)
}

/// Encodes `frame` into `buf` (cleared first) as `u32 LE length` + bincode.
pub(crate) fn encode_frame<T: Serialize>(frame: &T, buf: &mut Vec<u8>) -> Result<(), PackageError> {
    buf.clear();
    buf.extend_from_slice(&[0; 4]);
    if let Err(e) = options(u64::from(MAX_FRAME)).serialize_into(&mut *buf, frame) {
        buf.clear();
        return Err(match *e {
            bincode::ErrorKind::SizeLimit => PackageError::FrameTooLarge {
                len: options(u64::MAX).serialized_size(frame).unwrap_or(u64::MAX),
                max: u64::from(MAX_FRAME),
            },
            _ => PackageError::Encode {
                what: "frame",
                source: e,
            },
        });
    }
    // At most MAX_FRAME bytes, so it fits in u32.
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

pub(crate) fn decode_frame(bytes: &[u8]) -> Result<Frame, PackageError> {
    options(u64::from(MAX_FRAME))
        .deserialize(bytes)
        .map_err(|source| PackageError::Decode {
            what: "frame",
            source,
        })
}

/// Decodes a frame into `frame`, reusing its allocations: a row's value
/// vector and the strings and byte vectors of values of the same type in
/// the same place. Decoding a package into the same few hundred frames
/// over and over allocates and frees next to nothing, where
/// [`decode_frame`] allocated every row and every text value (and the
/// package reader freed them: a third of its thread's time in
/// `cdx-bench apply`, `perf`).
///
/// Accepts exactly what [`decode_frame`] accepts: on anything it does not
/// read whole (an unknown variant, a short or long frame, a string that is
/// not UTF-8), it hands the bytes to [`decode_frame`], whose error (or
/// frame) stands.
pub(crate) fn decode_frame_into(bytes: &[u8], frame: &mut Frame) -> Result<(), PackageError> {
    if fast::frame_into(bytes, frame).is_none() {
        *frame = decode_frame(bytes)?;
    }
    Ok(())
}

/// The fixint little-endian bincode of [`Frame`], read by hand.
mod fast {
    use crate::package::{Frame, Value};

    struct Input<'a>(&'a [u8]);

    impl<'a> Input<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if n > self.0.len() {
                return None;
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Some(head)
        }

        fn u32(&mut self) -> Option<u32> {
            Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
        }

        fn u64(&mut self) -> Option<u64> {
            Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }

        /// A length-prefixed byte string.
        fn bytes(&mut self) -> Option<&'a [u8]> {
            let n = usize::try_from(self.u64()?).ok()?;
            self.take(n)
        }
    }

    /// `None` where the input is not a whole, valid frame.
    pub(super) fn frame_into(bytes: &[u8], frame: &mut Frame) -> Option<()> {
        let mut input = Input(bytes);
        match input.u32()? {
            0 => *frame = Frame::Table(input.u32()?),
            variant @ (1 | 2) => {
                let values = match (variant, &mut *frame) {
                    (1, Frame::Upsert(values)) | (2, Frame::Delete(values)) => values,
                    _ => {
                        *frame = if variant == 1 {
                            Frame::Upsert(Vec::new())
                        } else {
                            Frame::Delete(Vec::new())
                        };
                        match frame {
                            Frame::Upsert(values) | Frame::Delete(values) => values,
                            _ => unreachable!("set just above"),
                        }
                    }
                };
                values_into(&mut input, values)?;
            }
            3 => *frame = Frame::End { rows: input.u64()? },
            _ => return None,
        }
        input.0.is_empty().then_some(())
    }

    fn values_into(input: &mut Input<'_>, values: &mut Vec<Value>) -> Option<()> {
        let n = usize::try_from(input.u64()?).ok()?;
        // Every value takes at least its 4-byte variant: a length the
        // frame cannot hold is refused before anything is reserved.
        if n > input.0.len() / 4 {
            return None;
        }
        if !reusable(values.capacity(), n) {
            *values = Vec::with_capacity(n);
        }
        values.truncate(n);
        for i in 0..n {
            if i == values.len() {
                values.push(Value::Null);
            }
            value_into(input, &mut values[i])?;
        }
        Some(())
    }

    /// Whether an allocation of `capacity` is kept for `len` items: never
    /// more than twice what it holds (or 64), so frames decoded again and
    /// again hold about what they carry now, not the largest they ever
    /// carried (memory stays bounded by the bytes in flight).
    fn reusable(capacity: usize, len: usize) -> bool {
        capacity <= len.max(32) * 2
    }

    fn value_into(input: &mut Input<'_>, value: &mut Value) -> Option<()> {
        match input.u32()? {
            0 => *value = Value::Null,
            1 => *value = Value::Integer(input.u64()? as i64),
            2 => *value = Value::Real(f64::from_bits(input.u64()?)),
            3 => {
                let text = std::str::from_utf8(input.bytes()?).ok()?;
                match value {
                    Value::Text(s) if reusable(s.capacity(), text.len()) => {
                        s.clear();
                        s.push_str(text);
                    }
                    _ => *value = Value::Text(text.to_owned()),
                }
            }
            4 => {
                let blob = input.bytes()?;
                match value {
                    Value::Blob(b) if reusable(b.capacity(), blob.len()) => {
                        b.clear();
                        b.extend_from_slice(blob);
                    }
                    _ => *value = Value::Blob(blob.to_vec()),
                }
            }
            _ => return None,
        }
        Some(())
    }
}

/// The preamble: magic, format version, header length.
pub(crate) fn preamble(version: u16, header_len: u32) -> [u8; PREAMBLE_LEN] {
    let mut out = [0; PREAMBLE_LEN];
    out[..8].copy_from_slice(&MAGIC);
    out[8..10].copy_from_slice(&version.to_le_bytes());
    out[10..14].copy_from_slice(&header_len.to_le_bytes());
    out
}

/// A `Write` that hashes and counts everything written through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The output, the byte count and the hex SHA-256 of what was written.
    pub(crate) fn into_parts(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?.min(buf.len());
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Packages and helpers the tests of the package module share.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::io::Write;

    use sha2::{Digest, Sha256};
    use uuid::Uuid;

    use super::{encode_frame, encode_header, preamble, CHECKSUM_LEN, ZSTD_LEVEL};
    use crate::package::{
        Column, ColumnType, Frame, PackageError, PackageHeader, PackageKind, PackageReader,
        PackageWriter, TableSchema, Value, WrittenPackage, FORMAT_VERSION,
    };

    pub(crate) fn column(name: &str, ty: ColumnType, nullable: bool) -> Column {
        Column::new(name, ty, nullable)
    }

    /// Two tables: `Item` (one-column key, every column type, nullable
    /// columns) and `Price` (two-column key).
    pub(crate) fn header(kind: PackageKind) -> PackageHeader {
        PackageHeader {
            format_version: FORMAT_VERSION,
            package_id: Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            data_group: "Houston stores".into(),
            job: "1040".into(),
            sequence: 7,
            kind,
            created_at_ms: 1_700_000_000_000,
            replaces: Vec::new(),
            tables: vec![
                TableSchema {
                    name: "Item".into(),
                    columns: vec![
                        column("ItemId", ColumnType::Text, false),
                        column("Name", ColumnType::Text, true),
                        column("Price", ColumnType::Real, false),
                        column("Qty", ColumnType::Integer, true),
                        column("Image", ColumnType::Blob, true),
                    ],
                    key: vec!["ItemId".into()],
                },
                TableSchema {
                    name: "Price".into(),
                    columns: vec![
                        column("ItemId", ColumnType::Text, false),
                        column("Store", ColumnType::Integer, false),
                        column("Amount", ColumnType::Real, false),
                    ],
                    key: vec!["ItemId".into(), "Store".into()],
                },
            ],
        }
    }

    pub(crate) fn item(id: &str, price: f64) -> Vec<Value> {
        vec![
            Value::Text(id.into()),
            Value::Text(format!("Item {id}")),
            Value::Real(price),
            Value::Integer(3),
            Value::Blob(vec![0, 1, 2, 255]),
        ]
    }

    /// The frames of a small incremental package, `End` included.
    pub(crate) fn small_frames() -> Vec<Frame> {
        vec![
            Frame::Table(0),
            Frame::Upsert(item("A1", 1.5)),
            Frame::Upsert(vec![
                Value::Text("A2".into()),
                Value::Null,
                Value::Integer(2),
                Value::Null,
                Value::Null,
            ]),
            Frame::Delete(vec![Value::Text("A0".into())]),
            Frame::Table(1),
            Frame::Upsert(vec![
                Value::Text("A1".into()),
                Value::Integer(12),
                Value::Real(-0.25),
            ]),
            Frame::Delete(vec![Value::Text("A0".into()), Value::Integer(12)]),
            Frame::End { rows: 5 },
        ]
    }

    /// Writes `frames` (ending with `End`) through the writer.
    pub(crate) fn write(header: &PackageHeader, frames: &[Frame]) -> (Vec<u8>, WrittenPackage) {
        let mut w = PackageWriter::new(Vec::new(), header).unwrap();
        for frame in frames {
            match frame {
                Frame::Table(i) => w.table(*i).unwrap(),
                Frame::Upsert(row) => w.upsert(row).unwrap(),
                Frame::Delete(key) => w.delete(key).unwrap(),
                Frame::End { .. } => {}
            }
        }
        w.finish().unwrap()
    }

    /// The small incremental package's bytes.
    pub(crate) fn small_package() -> Vec<u8> {
        write(&header(PackageKind::Incremental), &small_frames()).0
    }

    /// Every frame the reader returns, `End` included, until `Ok(None)`.
    pub(crate) fn read_all(bytes: &[u8]) -> Result<Vec<Frame>, PackageError> {
        let mut reader = PackageReader::open(bytes)?;
        let mut frames = Vec::new();
        while let Some(frame) = reader.next_frame()? {
            frames.push(frame);
        }
        Ok(frames)
    }

    /// The decompressed content of a package: preamble, header, then
    /// `body` (frame bytes), with no validation at all.
    pub(crate) fn raw_content(header: &PackageHeader, body: &[u8]) -> Vec<u8> {
        let header_bytes = encode_header(header).unwrap();
        let mut content = preamble(FORMAT_VERSION, header_bytes.len() as u32).to_vec();
        content.extend_from_slice(&header_bytes);
        content.extend_from_slice(body);
        content
    }

    /// Frame bytes, length prefixes included, of `frames`, not validated.
    pub(crate) fn raw_frames(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for frame in frames {
            encode_frame(frame, &mut buf).unwrap();
            out.extend_from_slice(&buf);
        }
        out
    }

    /// A package file built by hand: preamble and header as given, then a
    /// zstd frame of `body` followed by the SHA-256 of everything before it
    /// (or `checksum` when given). No validation: for testing the reader.
    pub(crate) fn raw_package(
        header: &PackageHeader,
        body: &[u8],
        checksum: Option<[u8; CHECKSUM_LEN]>,
    ) -> Vec<u8> {
        let content = raw_content(header, body);
        let sum: [u8; CHECKSUM_LEN] = checksum.unwrap_or_else(|| Sha256::digest(&content).into());
        let plain_len = content.len() - body.len();
        let mut file = content[..plain_len].to_vec();
        let mut enc = zstd::stream::write::Encoder::new(&mut file, ZSTD_LEVEL).unwrap();
        enc.include_checksum(true).unwrap();
        enc.write_all(body).unwrap();
        enc.write_all(&sum).unwrap();
        enc.finish().unwrap();
        file
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::small_frames;
    use super::*;
    use crate::package::{PackageKind, PackageReader};

    /// `decode_frame_into` over a slot holding other values, and
    /// `decode_frame`, agree on `bytes`: the same frame (compared by its
    /// encoding, since a NaN is not equal to itself) or the same error.
    fn decode_alike(bytes: &[u8], slot: &Frame) {
        let theirs = decode_frame(bytes);
        let mut ours = slot.clone();
        let result = decode_frame_into(bytes, &mut ours);
        match (theirs, result) {
            (Ok(theirs), Ok(())) => {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                encode_frame(&theirs, &mut a).unwrap();
                encode_frame(&ours, &mut b).unwrap();
                assert_eq!(a, b, "{bytes:?} over {slot:?}");
            }
            (Err(theirs), Err(ours)) => {
                assert_eq!(theirs.to_string(), ours.to_string(), "{bytes:?}")
            }
            (theirs, ours) => panic!("{bytes:?} over {slot:?}: {theirs:?} but {ours:?}"),
        }
    }

    /// The in-place decoder reads every frame as `decode_frame` does, over
    /// a slot that held any other frame, and accepts and refuses exactly
    /// what it does: every cut, every byte changed three ways, a byte
    /// added, and text that is not UTF-8.
    #[test]
    fn decoding_in_place_accepts_and_refuses_exactly_what_decode_frame_does() {
        let mut frames = small_frames();
        frames.push(Frame::Upsert(vec![
            Value::Blob(vec![9; 40]),
            Value::Text("é and more".into()),
            Value::Real(f64::NAN),
            Value::Integer(i64::MIN),
        ]));
        frames.push(Frame::Upsert(Vec::new()));
        let mut encoded = Vec::new();
        for frame in &frames {
            encode_frame(frame, &mut encoded).unwrap();
            let bytes = encoded[4..].to_vec();
            for slot in &frames {
                decode_alike(&bytes, slot);
                // Read by hand, not handed over to serde.
                let mut read = slot.clone();
                assert!(fast::frame_into(&bytes, &mut read).is_some(), "{frame:?}");
            }
            let slot = &frames[1];
            for cut in 0..bytes.len() {
                decode_alike(&bytes[..cut], slot);
            }
            for i in 0..bytes.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut changed = bytes.clone();
                    changed[i] ^= flip;
                    decode_alike(&changed, slot);
                }
            }
            let mut longer = bytes.clone();
            longer.push(0);
            decode_alike(&longer, slot);
        }
        // Text of 2 bytes that are not UTF-8.
        let mut bad = vec![1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0];
        bad.extend_from_slice(&2u64.to_le_bytes());
        bad.extend_from_slice(&[0xc3, 0x28]);
        decode_alike(&bad, &frames[1]);
    }

    /// A row decoded into the slot of a row like it reuses its strings; a
    /// small row decoded into the slot of a wide one keeps no more than
    /// twice what it carries.
    #[test]
    fn frames_decoded_in_place_reuse_what_fits_and_drop_the_rest() {
        let decode = |frame: &Frame, slot: &mut Frame| {
            let mut buf = Vec::new();
            encode_frame(frame, &mut buf).unwrap();
            decode_frame_into(&buf[4..], slot).unwrap();
            assert_eq!(slot, frame);
        };
        let text = |slot: &Frame, i: usize| match slot {
            Frame::Upsert(values) => match &values[i] {
                Value::Text(s) => (s.as_ptr(), s.capacity()),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let mut slot = Frame::End { rows: 0 };
        decode(
            &Frame::Upsert(vec![Value::Text("SKU-0001".into())]),
            &mut slot,
        );
        let first = text(&slot, 0).0;
        decode(
            &Frame::Upsert(vec![Value::Text("SKU-0002".into())]),
            &mut slot,
        );
        assert_eq!(text(&slot, 0).0, first, "the string was not reused");

        decode(
            &Frame::Upsert(vec![Value::Text("x".repeat(4000)); 300]),
            &mut slot,
        );
        decode(&Frame::Upsert(vec![Value::Text("y".into()); 2]), &mut slot);
        let Frame::Upsert(values) = &slot else {
            unreachable!()
        };
        assert!(values.capacity() <= 64, "{}", values.capacity());
        assert!(text(&slot, 0).1 <= 64, "{}", text(&slot, 0).1);
    }

    /// Encoding a borrowed `FrameRef` gives the same bytes as the owned `Frame`.
    #[test]
    fn frame_ref_encodes_exactly_like_frame() {
        let (mut owned, mut borrowed) = (Vec::new(), Vec::new());
        for frame in small_frames() {
            encode_frame(&frame, &mut owned).unwrap();
            let r = match &frame {
                Frame::Table(i) => FrameRef::Table(*i),
                Frame::Upsert(row) => FrameRef::Upsert(row),
                Frame::Delete(key) => FrameRef::Delete(key),
                Frame::End { rows } => FrameRef::End { rows: *rows },
            };
            encode_frame(&r, &mut borrowed).unwrap();
            assert_eq!(owned, borrowed, "{frame:?}");
            assert_eq!(decode_frame(&owned[4..]).unwrap(), frame);
        }
    }

    /// Enum variants are u32 LE indices, integers fixed-width LE, lengths u64 LE.
    #[test]
    fn frames_use_fixint_little_endian_bincode() {
        let mut buf = Vec::new();
        encode_frame(&Frame::Table(2), &mut buf).unwrap();
        assert_eq!(buf, [8, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
        encode_frame(&Frame::End { rows: 1 }, &mut buf).unwrap();
        assert_eq!(buf, [12, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        let row = [Value::Null, Value::Text("hi".into()), Value::Real(1.0)];
        encode_frame(&FrameRef::Upsert(&row), &mut buf).unwrap();
        #[rustfmt::skip]
        let expected = [
            42, 0, 0, 0,                  // frame length
            1, 0, 0, 0,                   // Frame::Upsert
            3, 0, 0, 0, 0, 0, 0, 0,       // 3 values
            0, 0, 0, 0,                   // Value::Null
            3, 0, 0, 0,                   // Value::Text
            2, 0, 0, 0, 0, 0, 0, 0, b'h', b'i',
            2, 0, 0, 0,                   // Value::Real
            0, 0, 0, 0, 0, 0, 0xf0, 0x3f, // 1.0f64
        ];
        assert_eq!(buf, expected);
    }

    /// The worked example of docs/package-format.md, byte for byte.
    #[test]
    fn tiny_header_encodes_as_documented() {
        let tiny = tiny_header();
        let bytes = encode_header(&tiny).unwrap();
        let expected = "0100\
            1000000000000000 00112233445566778899aabbccddeeff\
            0100000000000000 67\
            0400000000000000 31303430\
            0100000000000000\
            00000000\
            0068e5cf8b010000\
            0100000000000000\
            0100000000000000 54\
            0100000000000000\
            0200000000000000 6964 00000000 00\
            0100000000000000 0200000000000000 6964";
        assert_eq!(hex::encode(&bytes), expected.replace(' ', ""));
        assert_eq!(bytes.len(), 125);
        assert_eq!(
            hex::encode(preamble(1, bytes.len() as u32)),
            "434458504b470d0a01007d000000"
        );
    }

    /// Version 3 appends `replaces` to the same fields: the tiny header
    /// replacing `T` is its 125 bytes, then one name. It reads back, and a
    /// byte more after it is an error.
    #[test]
    fn a_version_3_header_appends_replaces() {
        let mut tiny = tiny_header();
        (tiny.format_version, tiny.replaces) = (3, vec!["T".into()]);
        let bytes = encode_header(&tiny).unwrap();
        let mut v1 = tiny_header();
        v1.format_version = 3;
        let fields = encode_header(&PackageHeader {
            replaces: Vec::new(),
            ..tiny.clone()
        })
        .unwrap();
        assert_eq!(fields.len(), 125 + 8, "an empty list is its count");
        let v1_fields = {
            let mut b = encode_header(&v1).unwrap();
            b.truncate(125);
            b
        };
        assert_eq!(&bytes[..125], &v1_fields[..]);
        assert_eq!(
            hex::encode(&bytes[125..]),
            "0100000000000000 0100000000000000 54".replace(' ', "")
        );
        assert_eq!(decode_header(&bytes).unwrap(), tiny);
        let mut longer = bytes.clone();
        longer.push(0);
        let err = decode_header(&longer).unwrap_err().to_string();
        assert!(err.contains("1 bytes after"), "{err}");
        // Before version 3 the list is not encoded at all.
        assert_eq!(encode_header(&tiny_header()).unwrap().len(), 125);
    }

    /// The documented content of the tiny package with one row is what the writer writes.
    #[test]
    fn tiny_package_content_is_as_documented() {
        use crate::package::PackageWriter;
        let mut w = PackageWriter::new(Vec::new(), &tiny_header()).unwrap();
        w.table(0).unwrap();
        w.upsert(&[Value::Integer(5)]).unwrap();
        let (file, _) = w.finish().unwrap();
        let plain = PREAMBLE_LEN + 125;
        let body = zstd::decode_all(&file[plain..]).unwrap();
        let frames = "08000000 00000000 00000000\
            18000000 01000000 0100000000000000 01000000 0500000000000000\
            0c000000 03000000 0100000000000000";
        let frames = hex::decode(frames.replace(' ', "")).unwrap();
        assert_eq!(&body[..frames.len()], &frames[..]);
        let mut content = file[..plain].to_vec();
        content.extend_from_slice(&frames);
        assert_eq!(&body[frames.len()..], Sha256::digest(&content).as_slice());
    }

    fn tiny_header() -> crate::package::PackageHeader {
        use crate::package::{Column, ColumnType, PackageHeader, TableSchema};
        PackageHeader {
            format_version: 1,
            package_id: uuid::Uuid::from_u128(0x00112233_4455_6677_8899_aabbccddeeff),
            data_group: "g".into(),
            job: "1040".into(),
            sequence: 1,
            kind: PackageKind::Full,
            created_at_ms: 1_700_000_000_000,
            replaces: Vec::new(),
            tables: vec![TableSchema {
                name: "T".into(),
                columns: vec![Column {
                    name: "id".into(),
                    ty: ColumnType::Integer,
                    nullable: false,
                }],
                key: vec!["id".into()],
            }],
        }
    }

    /// A frame whose Text claims 16 TiB is a decode error, not an allocation.
    #[test]
    fn string_claiming_16_tib_is_an_error_not_an_abort() {
        let mut frame = vec![1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0];
        frame.extend_from_slice(&(1u64 << 44).to_le_bytes());
        frame.extend_from_slice(b"abc");
        let err = decode_frame(&frame).unwrap_err();
        assert!(
            matches!(&err, PackageError::Decode { what: "frame", .. }),
            "{err}"
        );
        // The same claim in the header's data_group, through the reader.
        let mut header = vec![1, 0];
        header.extend_from_slice(&16u64.to_le_bytes());
        header.extend_from_slice(&[0; 16]);
        header.extend_from_slice(&(1u64 << 44).to_le_bytes());
        let mut file = preamble(1, header.len() as u32).to_vec();
        file.extend_from_slice(&header);
        let err = PackageReader::open(&file[..]).err().unwrap();
        assert!(
            matches!(&err, PackageError::Decode { what: "header", .. }),
            "{err}"
        );
    }

    /// A row larger than MAX_FRAME is refused with its size, nothing written.
    #[test]
    fn frame_over_the_limit_is_refused_when_encoding() {
        let blob = vec![Value::Blob(vec![0; MAX_FRAME as usize])];
        let mut buf = Vec::new();
        match encode_frame(&FrameRef::Upsert(&blob), &mut buf) {
            Err(PackageError::FrameTooLarge { len, max }) => {
                assert_eq!(max, u64::from(MAX_FRAME));
                assert_eq!(len, u64::from(MAX_FRAME) + 4 + 8 + 4 + 8);
            }
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
    }
}
