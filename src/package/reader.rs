//! Reads a package frame by frame, with bounded memory.

use std::io::{self, BufRead, BufReader, Read};

use sha2::{Digest, Sha256};

use super::codec::{
    self, BUFFER_SIZE, CHECKSUM_LEN, MAGIC, MAX_FRAME, MAX_HEADER, ZSTD_WINDOW_LOG_MAX,
};
use super::validate::{validate_header, FrameChecker};
use super::{Frame, PackageError, PackageHeader, NEWEST_FORMAT_VERSION, OLDEST_FORMAT_VERSION};

/// What a full read of a package found.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageSummary {
    pub header: PackageHeader,
    pub upserts: u64,
    pub deletes: u64,
}

/// The compressed input as the decoder sees it: the file after the header.
type Compressed<R> = BufReader<Source<R>>;
/// The decompressed content, buffered so small reads stay cheap.
type Body<R> = BufReader<zstd::stream::read::Decoder<'static, Compressed<R>>>;

/// Reads a package from any `Read`, one frame at a time.
///
/// The reader buffers its input itself (64 KiB), so pass a plain `File`.
/// Memory stays bounded: one frame buffer (at most 16 MiB, reused), the two
/// 64 KiB buffers, and the zstd window (at most 8 MiB).
///
/// # Applying a package
/// A frame is only known good once the whole package has been read: apply
/// the frames inside a transaction and commit only after
/// [`next_frame`](Self::next_frame) returned `Ok(None)` (or `Frame::End`,
/// which the reader returns only after the checksum and the end of the file
/// verified). On any error, roll back.
pub struct PackageReader<R: Read> {
    header: PackageHeader,
    body: Body<R>,
    /// SHA-256 of the uncompressed content read so far.
    content: Sha256,
    checker: FrameChecker,
    /// The current frame's bytes; reused.
    buf: Vec<u8>,
    state: State,
    /// Uncompressed body bytes read so far (frames with their length prefixes).
    content_read: u64,
    /// What the listing declares, when the caller said ([`Self::expect`]).
    declared: Option<Declared>,
    /// Told the rows read so far every [`PROGRESS_ROWS`] rows
    /// ([`Self::on_progress`]).
    progress: Option<Box<dyn FnMut(u64) + Send>>,
}

/// Rows between two calls of a progress hook: often enough for a person,
/// rare enough to cost nothing beside decoding the rows.
pub const PROGRESS_ROWS: u64 = 16_384;

/// A package's size as its listing declares it, enforced while reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Declared {
    /// Row frames (upserts plus deletes).
    pub rows: u64,
    /// Uncompressed body bytes (frames and checksum), when the listing says.
    pub content_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Frames remain before `End`.
    Frames,
    /// `End`, the checksum and the end of the file verified.
    Done,
    /// A call returned an error; the stream position is unknown.
    Failed,
}

impl<R: Read> PackageReader<R> {
    /// Reads and validates the preamble and header.
    pub fn open(input: R) -> Result<Self, PackageError> {
        let mut file = BufReader::with_capacity(BUFFER_SIZE, Source::new(input));
        let mut content = Sha256::new();

        let mut magic = [0; MAGIC.len()];
        let got = read_up_to(&mut file, &mut magic)?;
        if magic[..got] != MAGIC[..got] {
            return Err(PackageError::BadMagic);
        }
        if got < magic.len() {
            return Err(PackageError::Truncated { what: "magic" });
        }
        let mut version = [0; 2];
        read_exact(&mut file, &mut version, "format version")?;
        let found = u16::from_le_bytes(version);
        if !(OLDEST_FORMAT_VERSION..=NEWEST_FORMAT_VERSION).contains(&found) {
            return Err(PackageError::UnsupportedVersion { found });
        }
        let mut len = [0; 4];
        read_exact(&mut file, &mut len, "header length")?;
        let header_len = u32::from_le_bytes(len);
        if header_len > MAX_HEADER {
            return Err(PackageError::HeaderTooLarge {
                len: u64::from(header_len),
                max: u64::from(MAX_HEADER),
            });
        }
        let mut header_bytes = vec![0; header_len as usize];
        read_exact(&mut file, &mut header_bytes, "header")?;
        let header = codec::decode_header(&header_bytes)?;
        validate_header(&header)?;
        // One file, one version: the header's must be the preamble's.
        if header.format_version != found {
            return Err(PackageError::InvalidHeader(format!(
                "format_version is {} in the header and {found} in the preamble",
                header.format_version
            )));
        }
        content.update(magic);
        content.update(version);
        content.update(len);
        content.update(&header_bytes);

        let mut decoder = zstd::stream::read::Decoder::with_buffer(file)?.single_frame();
        decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
        Ok(PackageReader {
            checker: FrameChecker::new(&header),
            header,
            body: BufReader::with_capacity(BUFFER_SIZE, decoder),
            content,
            buf: Vec::new(),
            state: State::Frames,
            content_read: 0,
            declared: None,
            progress: None,
        })
    }

    pub fn header(&self) -> &PackageHeader {
        &self.header
    }

    /// Makes the reader hold the package to what its listing declares: it
    /// fails as soon as a row or a byte more than declared comes (before the
    /// frame is allocated), and at the end unless both match exactly.
    pub fn expect(mut self, declared: Declared) -> Self {
        self.declared = Some(declared);
        self
    }

    /// Calls `hook` with the rows (upserts and deletes) read so far every
    /// [`PROGRESS_ROWS`] rows, so a long apply can say how far it is.
    pub fn on_progress(mut self, hook: impl FnMut(u64) + Send + 'static) -> Self {
        self.progress = Some(Box::new(hook));
        self
    }

    /// Uncompressed body bytes read so far; grows by each frame's size.
    pub fn content_read(&self) -> u64 {
        self.content_read
    }

    /// The next frame, or `None` once the `End` frame was read and the
    /// checksum over everything before it verified. A caller that applies
    /// frames commits only after it got `None`.
    ///
    /// `Frame::End` itself is returned (once) only after the checksum
    /// verified and the file was found to end right after the zstd frame;
    /// every call after it returns `Ok(None)`. After an error, every call
    /// returns [`PackageError::AlreadyFailed`]; never `Ok(None)`.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, PackageError> {
        let mut frame = Frame::End { rows: 0 };
        Ok(self.next_frame_into(&mut frame)?.then_some(frame))
    }

    /// [`next_frame`](Self::next_frame) into `frame`, reusing what it holds
    /// (a row's vector, its strings): true when a frame was read, false
    /// where `next_frame` returns `Ok(None)` (then `frame` is untouched).
    /// On an error `frame` holds anything.
    pub fn next_frame_into(&mut self, frame: &mut Frame) -> Result<bool, PackageError> {
        match self.state {
            State::Done => Ok(false),
            State::Failed => Err(PackageError::AlreadyFailed),
            State::Frames => match self.read_frame(frame) {
                Ok(()) => {
                    if matches!(frame, Frame::End { .. }) {
                        self.state = State::Done;
                    }
                    Ok(true)
                }
                Err(e) => {
                    self.state = State::Failed;
                    Err(e)
                }
            },
        }
    }

    /// Reads the whole package, validating every frame and the checksum.
    pub fn verify(mut self) -> Result<PackageSummary, PackageError> {
        while self.next_frame()?.is_some() {}
        Ok(PackageSummary {
            upserts: self.checker.upserts(),
            deletes: self.checker.deletes(),
            header: self.header,
        })
    }

    /// Reads, checks and hashes one frame; after `End`, also the checksum
    /// and the end of the input.
    fn read_frame(&mut self, frame: &mut Frame) -> Result<(), PackageError> {
        if !self.frame_in_buffer(frame)? {
            self.frame_copied(frame)?;
        }
        self.frame_read(frame)
    }

    /// Reads a frame that lies whole in the decompressed buffer where it
    /// lies: hashed in one pass and decoded in place, neither zeroed nor
    /// copied first (those two were 7 % of the reading thread's samples
    /// in `perf record` of `cdx-bench apply`). False, having read nothing,
    /// when it is not all there; the same checks as [`Self::frame_copied`],
    /// in the same order, so either way a package is refused alike.
    fn frame_in_buffer(&mut self, frame: &mut Frame) -> Result<bool, PackageError> {
        let buffered = self.body.buffer();
        let Some((len, _)) = buffered.split_first_chunk::<4>() else {
            return Ok(false);
        };
        let frame_len = u32::from_le_bytes(*len);
        let whole = 4 + frame_len as usize;
        if frame_len > MAX_FRAME || buffered.len() < whole {
            return Ok(false);
        }
        let frame_end = self.content_read + whole as u64;
        self.check_declared_bytes(frame_end + CHECKSUM_LEN as u64, false)?;
        let bytes = &self.body.buffer()[..whole];
        self.content.update(bytes);
        let decoded = codec::decode_frame_into(&bytes[4..], frame);
        self.body.consume(whole);
        self.content_read = frame_end;
        decoded?;
        Ok(true)
    }

    /// Reads a frame through a buffer of its own: one that crosses the end
    /// of the decompressed buffer, or one that is not whole.
    fn frame_copied(&mut self, frame: &mut Frame) -> Result<(), PackageError> {
        let mut len = [0; 4];
        self.body_read(&mut len, "frame length")?;
        let frame_len = u32::from_le_bytes(len);
        if frame_len > MAX_FRAME {
            return Err(PackageError::FrameTooLarge {
                len: u64::from(frame_len),
                max: u64::from(MAX_FRAME),
            });
        }
        let frame_end = self.content_read + 4 + u64::from(frame_len);
        self.check_declared_bytes(frame_end + CHECKSUM_LEN as u64, false)?;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.resize(frame_len as usize, 0);
        let read = self.body_read(&mut buf, "frame");
        self.buf = buf;
        read?;
        self.content.update(len);
        self.content.update(&self.buf);
        self.content_read = frame_end;
        codec::decode_frame_into(&self.buf, frame)
    }

    /// Checks a frame just decoded; after `End`, reads the checksum and the
    /// end of the input.
    fn frame_read(&mut self, frame: &Frame) -> Result<(), PackageError> {
        self.checker.check(frame)?;
        if let Some(declared) = self.declared {
            let rows = self.checker.rows();
            let ended = matches!(frame, Frame::End { .. });
            if rows > declared.rows || (ended && rows != declared.rows) {
                return Err(PackageError::NotAsDeclared {
                    what: "rows",
                    declared: declared.rows,
                    found: if ended {
                        rows.to_string()
                    } else {
                        format!("more than {}", declared.rows)
                    },
                });
            }
        }
        // Told only of rows within what the listing declares.
        if let Some(hook) = self.progress.as_mut() {
            let rows = self.checker.rows();
            if rows.is_multiple_of(PROGRESS_ROWS)
                && rows > 0
                && matches!(frame, Frame::Upsert(_) | Frame::Delete(_))
            {
                hook(rows);
            }
        }
        if matches!(frame, Frame::End { .. }) {
            self.check_declared_bytes(self.content_read + CHECKSUM_LEN as u64, true)?;
            self.finish_body()?;
        }
        Ok(())
    }

    /// Fails when a body of at least `size` bytes (exactly, when `complete`)
    /// contradicts the declared content size.
    fn check_declared_bytes(&self, size: u64, complete: bool) -> Result<(), PackageError> {
        let Some(declared) = self.declared.and_then(|d| d.content_bytes) else {
            return Ok(());
        };
        if size > declared || (complete && size != declared) {
            return Err(PackageError::NotAsDeclared {
                what: "content bytes",
                declared,
                found: if complete {
                    size.to_string()
                } else {
                    format!("at least {size}")
                },
            });
        }
        Ok(())
    }

    /// After `End`: the checksum, then nothing more, compressed or not.
    fn finish_body(&mut self) -> Result<(), PackageError> {
        let mut stored = [0; CHECKSUM_LEN];
        self.body_read(&mut stored, "checksum")?;
        let actual = self.content.finalize_reset();
        if actual.as_slice() != stored {
            return Err(PackageError::ChecksumMismatch {
                expected: hex::encode(stored),
                actual: hex::encode(actual),
            });
        }
        // The zstd frame must end here: no more content, a complete frame.
        let mut probe = [0; 1];
        if self.body_read_up_to(&mut probe, "body")? != 0 {
            return Err(PackageError::TrailingData);
        }
        // And the file must end with the zstd frame.
        let file = self.body.get_mut().get_mut();
        match file.fill_buf() {
            Ok([]) => Ok(()),
            Ok(_) => Err(PackageError::TrailingData),
            Err(e) => Err(e.into()),
        }
    }

    /// Fills `buf` from the decompressed content.
    fn body_read(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), PackageError> {
        match self.body_read_up_to(buf, what)? {
            n if n == buf.len() => Ok(()),
            _ => Err(PackageError::Truncated { what }),
        }
    }

    /// Reads into `buf` until it is full or the content ends; the count read.
    fn body_read_up_to(
        &mut self,
        buf: &mut [u8],
        what: &'static str,
    ) -> Result<usize, PackageError> {
        read_up_to(&mut self.body, buf).map_err(|e| self.body_error(e, what))
    }

    /// Tells an error of the input from one zstd found in the data.
    fn body_error(&self, e: PackageError, what: &'static str) -> PackageError {
        let PackageError::Io(e) = e else { return e };
        if self.body.get_ref().get_ref().get_ref().failed {
            PackageError::Io(e)
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            // zstd's "incomplete frame": the file ended inside the body.
            PackageError::Truncated { what }
        } else {
            PackageError::Corrupt {
                detail: format!("zstd: {e}"),
            }
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the count read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> Result<usize, PackageError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}

/// Fills `buf` from the (uncompressed) start of the file.
fn read_exact(
    input: &mut impl Read,
    buf: &mut [u8],
    what: &'static str,
) -> Result<(), PackageError> {
    if read_up_to(input, buf)? == buf.len() {
        Ok(())
    } else {
        Err(PackageError::Truncated { what })
    }
}

/// The caller's input, remembering whether it ever failed, so an I/O error
/// is not reported as corrupt data when it comes back through zstd.
struct Source<R> {
    inner: R,
    failed: bool,
}

impl<R> Source<R> {
    fn new(inner: R) -> Self {
        Source {
            inner,
            failed: false,
        }
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n.min(buf.len())),
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.failed = true;
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::mpsc;

    use super::*;
    use crate::package::codec::fixtures::*;
    use crate::package::codec::{encode_header, preamble};
    use crate::package::{PackageKind, PackageWriter, Value};

    fn err_of(bytes: &[u8]) -> PackageError {
        match read_all(bytes) {
            Ok(frames) => panic!(
                "read {} frames and Ok(None) from a bad package",
                frames.len()
            ),
            Err(e) => e,
        }
    }

    /// A full package with every value type over two tables reads back as written.
    #[test]
    fn full_package_round_trips_every_value_type_over_several_tables() {
        let header = header(PackageKind::Full);
        let frames: Vec<Frame> = small_frames()
            .into_iter()
            .filter(|f| !matches!(f, Frame::Delete(_) | Frame::End { .. }))
            .chain([Frame::End { rows: 3 }])
            .collect();
        let (bytes, written) = write(&header, &frames);
        assert_eq!(written.rows, 3);
        let mut reader = PackageReader::open(&bytes[..]).unwrap();
        assert_eq!(reader.header(), &header);
        let mut read = Vec::new();
        while let Some(frame) = reader.next_frame().unwrap() {
            read.push(frame);
        }
        assert_eq!(read, frames);
        let summary = PackageReader::open(&bytes[..]).unwrap().verify().unwrap();
        assert_eq!(
            (summary.header, summary.upserts, summary.deletes),
            (header, 3, 0)
        );
    }

    /// An incremental package with upserts and deletes reads back as written.
    #[test]
    fn incremental_package_round_trips_upserts_and_deletes() {
        let bytes = small_package();
        assert_eq!(read_all(&bytes).unwrap(), small_frames());
        let summary = PackageReader::open(&bytes[..]).unwrap().verify().unwrap();
        assert_eq!((summary.upserts, summary.deletes), (3, 2));
    }

    /// Packages without rows, with or without tables in the header, are valid.
    #[test]
    fn empty_packages_round_trip_with_only_an_end_frame() {
        let mut header = header(PackageKind::Full);
        let (bytes, written) = write(&header, &[]);
        assert_eq!(written.rows, 0);
        assert_eq!(read_all(&bytes).unwrap(), [Frame::End { rows: 0 }]);
        header.tables.clear();
        let (bytes, _) = write(&header, &[]);
        assert_eq!(read_all(&bytes).unwrap(), [Frame::End { rows: 0 }]);
        let (bytes, _) = write(&header_with_item_only(), &[Frame::Table(0)]);
        assert_eq!(
            read_all(&bytes).unwrap(),
            [Frame::Table(0), Frame::End { rows: 0 }]
        );
    }

    fn header_with_item_only() -> crate::package::PackageHeader {
        let mut header = header(PackageKind::Full);
        header.tables.truncate(1);
        header
    }

    /// After the End frame, every call returns Ok(None).
    #[test]
    fn reader_returns_none_forever_after_end() {
        let bytes = small_package();
        let mut reader = PackageReader::open(&bytes[..]).unwrap();
        while reader.next_frame().unwrap().is_some() {}
        for _ in 0..3 {
            assert!(reader.next_frame().unwrap().is_none());
        }
    }

    /// A file that does not start with the magic bytes is BadMagic.
    #[test]
    fn bad_magic_is_rejected() {
        let mut bytes = small_package();
        bytes[0] = b'X';
        assert!(matches!(err_of(&bytes), PackageError::BadMagic));
        assert!(matches!(err_of(b"PK\x03\x04"), PackageError::BadMagic));
        assert!(matches!(
            err_of(b"CDX"),
            PackageError::Truncated { what: "magic" }
        ));
        assert!(matches!(
            err_of(b""),
            PackageError::Truncated { what: "magic" }
        ));
    }

    /// A preamble with a version outside 1 to 3 is UnsupportedVersion.
    #[test]
    fn versions_outside_the_readable_range_are_rejected() {
        for version in [0u16, 4, 0x0100] {
            let mut bytes = small_package();
            bytes[8..10].copy_from_slice(&version.to_le_bytes());
            assert!(matches!(
                err_of(&bytes),
                PackageError::UnsupportedVersion { found } if found == version
            ));
        }
    }

    /// The preamble and the header name one version: a version 2 header
    /// behind a version 1 preamble is refused.
    #[test]
    fn preamble_and_header_versions_must_agree() {
        let mut bytes = small_package();
        bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
        match err_of(&bytes) {
            PackageError::InvalidHeader(why) => assert!(why.contains("preamble"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    /// A header length over 1 MiB is refused before anything is allocated.
    #[test]
    fn header_length_over_the_limit_is_rejected() {
        let mut bytes = small_package();
        bytes[10..14].copy_from_slice(&(MAX_HEADER + 1).to_le_bytes());
        let err = err_of(&bytes);
        assert!(
            matches!(err, PackageError::HeaderTooLarge { len, max } if len == u64::from(MAX_HEADER) + 1 && max == u64::from(MAX_HEADER)),
            "{err}"
        );
        bytes[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            err_of(&bytes),
            PackageError::HeaderTooLarge { .. }
        ));
    }

    /// Every strict prefix of a package is an error, mostly Truncated; never Ok(None).
    #[test]
    fn every_truncated_prefix_is_an_error() {
        let bytes = small_package();
        for len in 0..bytes.len() {
            let err = err_of(&bytes[..len]);
            assert!(
                matches!(
                    err,
                    PackageError::Truncated { .. } | PackageError::Corrupt { .. }
                ),
                "prefix of {len} bytes: {err}"
            );
        }
    }

    /// A single flipped bit either fails the read or left the frames exactly as written.
    ///
    /// Some bits of the zstd envelope do not change the content (the frame
    /// header's unused bit, the window size, padding in entropy tables): the
    /// reader guarantees the content, the whole-file SHA-256 the file.
    #[test]
    fn every_single_bit_flip_is_caught_or_changes_nothing() {
        let bytes = small_package();
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[at] ^= 1 << bit;
                if let Ok(frames) = read_all(&bad) {
                    assert_eq!(frames, small_frames(), "byte {at} bit {bit}");
                }
            }
        }
    }

    /// Replacing any one byte by its complement makes the read fail before Ok(None).
    #[test]
    fn every_flipped_byte_is_caught_before_the_end() {
        let bytes = small_package();
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0xff;
            if let Ok(frames) = read_all(&bad) {
                panic!("byte {at} flipped, yet read {frames:?} and Ok(None)");
            }
        }
    }

    /// Bytes after the zstd frame are TrailingData, and only after all frames were checked.
    #[test]
    fn trailing_garbage_after_the_zstd_frame_is_rejected() {
        let mut bytes = small_package();
        bytes.push(0);
        let mut reader = PackageReader::open(&bytes[..]).unwrap();
        let mut frames = 0;
        let err = loop {
            match reader.next_frame() {
                Ok(Some(_)) => frames += 1,
                Ok(None) => panic!("Ok(None) despite trailing data"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, PackageError::TrailingData), "{err}");
        assert_eq!(frames, small_frames().len() - 1, "End is not returned");
        // A second zstd frame after the first one is trailing data too.
        let mut twice = small_package();
        twice.extend_from_slice(&zstd::encode_all(&b"more"[..], 3).unwrap());
        assert!(matches!(err_of(&twice), PackageError::TrailingData));
    }

    /// Content after the checksum, inside the zstd frame, is TrailingData.
    #[test]
    fn content_after_the_checksum_is_rejected() {
        let header = header(PackageKind::Incremental);
        let body = raw_frames(&small_frames());
        let content = raw_content(&header, &body);
        let sum = sha2::Sha256::digest(&content);
        let mut with_extra = body.clone();
        with_extra.extend_from_slice(&sum);
        with_extra.push(0);
        // raw_package appends a checksum of its own: build this one by hand.
        let plain = content.len() - body.len();
        let mut file = content[..plain].to_vec();
        file.extend_from_slice(&zstd::encode_all(&with_extra[..], 3).unwrap());
        assert!(matches!(err_of(&file), PackageError::TrailingData));
    }

    /// A frame length prefix of 4 GiB is FrameTooLarge, nothing allocated.
    #[test]
    fn frame_with_a_huge_length_prefix_is_rejected() {
        let header = header(PackageKind::Full);
        let file = raw_package(&header, &u32::MAX.to_le_bytes(), None);
        let err = err_of(&file);
        assert!(
            matches!(err, PackageError::FrameTooLarge { len, .. } if len == u64::from(u32::MAX)),
            "{err}"
        );
        let mut body = (MAX_FRAME + 1).to_le_bytes().to_vec();
        body.extend_from_slice(&[0; 64]);
        let err = err_of(&raw_package(&header, &body, None));
        assert!(matches!(err, PackageError::FrameTooLarge { .. }), "{err}");
    }

    /// A well-formed package whose stored SHA-256 is wrong is ChecksumMismatch, in hex.
    #[test]
    fn wrong_content_checksum_is_a_checksum_mismatch() {
        let header = header(PackageKind::Incremental);
        let body = raw_frames(&small_frames());
        let good = raw_package(&header, &body, None);
        assert_eq!(read_all(&good).unwrap(), small_frames());
        let bad = raw_package(&header, &body, Some([7; 32]));
        match err_of(&bad) {
            PackageError::ChecksumMismatch { expected, actual } => {
                assert_eq!(expected, "07".repeat(32));
                let sum = sha2::Sha256::digest(raw_content(&header, &body));
                assert_eq!(actual, hex::encode(sum));
            }
            other => panic!("{other}"),
        }
    }

    /// Frames of text 0 to 3,000 bytes wide, and three wider than the
    /// decompressed buffer, end at many offsets in it: the frames read in
    /// place and those read through a copy come back as written, and the
    /// checksum covers every byte of both.
    #[test]
    fn frames_across_and_wider_than_the_buffer_read_back_and_are_hashed() {
        let header = header(PackageKind::Full);
        let mut frames = vec![Frame::Table(0)];
        for i in 0..1_500usize {
            let width = if i % 500 == 250 {
                BUFFER_SIZE + 1_000
            } else {
                (i * 7) % 3_000
            };
            let mut row = item(&format!("I{i}"), i as f64);
            row[1] = Value::Text("x".repeat(width));
            frames.push(Frame::Upsert(row));
        }
        frames.push(Frame::End { rows: 1_500 });
        let (bytes, _) = write(&header, &frames);
        assert_eq!(read_all(&bytes).unwrap(), frames);
        let body = raw_frames(&frames);
        assert!(body.len() > 30 * BUFFER_SIZE, "{} bytes", body.len());
        let bad = raw_package(&header, &body, Some([7; 32]));
        match err_of(&bad) {
            PackageError::ChecksumMismatch { actual, .. } => {
                let sum = sha2::Sha256::digest(raw_content(&header, &body));
                assert_eq!(actual, hex::encode(sum));
            }
            other => panic!("{other}"),
        }
    }

    /// Garbage where the zstd frame should be is Corrupt, not a panic.
    #[test]
    fn corrupt_zstd_data_is_reported_as_corrupt() {
        let header = header(PackageKind::Full);
        let header_bytes = encode_header(&header).unwrap();
        let mut file = preamble(header.format_version, header_bytes.len() as u32).to_vec();
        file.extend_from_slice(&header_bytes);
        file.extend_from_slice(b"this is not zstd at all");
        let err = err_of(&file);
        assert!(matches!(err, PackageError::Corrupt { .. }), "{err}");
    }

    /// After an error, the reader keeps failing: it never returns Ok(None).
    #[test]
    fn reader_after_an_error_never_returns_none() {
        let mut bytes = small_package();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let mut reader = PackageReader::open(&bytes[..]).unwrap();
        while reader.next_frame().is_ok() {}
        assert!(matches!(
            reader.next_frame(),
            Err(PackageError::AlreadyFailed)
        ));
    }

    /// An input error surfaces as Io, not as corrupt data.
    #[test]
    fn input_errors_are_io_errors() {
        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::other("disk on fire"));
                }
                let n = self.0.read(buf)?;
                Ok(n)
            }
        }
        let bytes = small_package();
        let half = &bytes[..bytes.len() / 2 + 40];
        let result = PackageReader::open(Failing(half)).and_then(|r| r.verify());
        assert!(matches!(result, Err(PackageError::Io(_))), "{result:?}");
    }

    /// The reader checks frames against the header, as the writer does.
    #[test]
    fn reader_rejects_frames_that_break_the_rules() {
        let text = |s: &str| Value::Text(s.into());
        let full = header(PackageKind::Full);
        let incremental = header(PackageKind::Incremental);
        let cases: Vec<(&PackageHeader, Vec<Frame>, &str)> = vec![
            (
                &full,
                vec![Frame::Upsert(item("A", 1.0))],
                "Upsert before any Table",
            ),
            (&full, vec![Frame::Table(2)], "the header lists 2 tables"),
            (
                &full,
                vec![Frame::Table(0), Frame::Table(0)],
                "a second time",
            ),
            (
                &full,
                vec![Frame::Table(0), Frame::Upsert(vec![text("A")])],
                "1 values",
            ),
            (
                &full,
                vec![
                    Frame::Table(1),
                    Frame::Upsert(vec![text("A"), text("x"), Value::Real(1.0)]),
                ],
                "column `Store`",
            ),
            (
                &full,
                vec![Frame::Table(0), Frame::Delete(vec![text("A")])],
                "Full package",
            ),
            (
                &incremental,
                vec![Frame::Table(1), Frame::Delete(vec![text("A"), Value::Null])],
                "key column `Store`",
            ),
            (
                &incremental,
                vec![Frame::Table(1), Frame::Delete(vec![text("A")])],
                "the key has 2",
            ),
            (
                &full,
                vec![
                    Frame::Table(0),
                    Frame::Upsert(item("A", 1.0)),
                    Frame::End { rows: 2 },
                ],
                "End says 2",
            ),
        ];
        for (header, mut frames, needle) in cases {
            if !matches!(frames.last(), Some(Frame::End { .. })) {
                frames.push(Frame::End { rows: 0 });
            }
            let file = raw_package(header, &raw_frames(&frames), None);
            let err = err_of(&file);
            assert!(
                matches!(err, PackageError::InvalidFrame { .. })
                    && err.to_string().contains(needle),
                "{frames:?}: {err}"
            );
        }
    }

    /// A header the writer would refuse is refused by the reader too.
    #[test]
    fn reader_rejects_an_invalid_header() {
        let mut header = header(PackageKind::Full);
        header.tables[1].name = "cdx_applied_packages".into();
        let file = raw_package(&header, &raw_frames(&[Frame::End { rows: 0 }]), None);
        let err = err_of(&file);
        assert!(
            matches!(err, PackageError::InvalidHeader(ref m) if m.contains("cdx_")),
            "{err}"
        );
    }

    /// The reader works over `Box<dyn Read + Send>`, and is `Send` itself.
    #[test]
    fn reader_over_a_boxed_source_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let bytes = small_package();
        let source: Box<dyn Read + Send> = Box::new(io::Cursor::new(bytes));
        let reader = PackageReader::open(source).unwrap();
        assert_send(&reader);
        assert_eq!(reader.verify().unwrap().upserts, 3);
    }

    /// A `Write` sending chunks over a bounded channel: the package is never whole in memory.
    struct ChunkWriter {
        tx: mpsc::SyncSender<Vec<u8>>,
        bytes: u64,
    }

    impl Write for ChunkWriter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.bytes += buf.len() as u64;
            self.tx.send(buf.to_vec()).map_err(io::Error::other)?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct ChunkReader {
        rx: mpsc::Receiver<Vec<u8>>,
        chunk: io::Cursor<Vec<u8>>,
    }

    impl Read for ChunkReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            loop {
                let n = self.chunk.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                match self.rx.recv() {
                    Ok(chunk) => self.chunk = io::Cursor::new(chunk),
                    Err(_) => return Ok(0),
                }
            }
        }
    }

    /// 200k rows stream from writer to reader through a 4-chunk channel, never collected.
    #[test]
    fn two_hundred_thousand_rows_stream_through_without_collecting() {
        const ROWS: u64 = 200_000;
        let (tx, rx) = mpsc::sync_channel(4);
        let header = header(PackageKind::Full);
        let writer_header = header.clone();
        let writer = std::thread::spawn(move || {
            let sink = ChunkWriter { tx, bytes: 0 };
            let mut w = PackageWriter::new(sink, &writer_header).unwrap();
            w.table(1).unwrap();
            let mut row = vec![
                Value::Text(String::new()),
                Value::Integer(0),
                Value::Real(0.0),
            ];
            for i in 0..ROWS {
                row[0] = Value::Text(format!("ITEM{i:08}"));
                row[1] = Value::Integer(i as i64 % 97);
                row[2] = Value::Real(i as f64 / 4.0);
                w.upsert(&row).unwrap();
            }
            let (sink, written) = w.finish().unwrap();
            assert_eq!(sink.bytes, written.bytes);
            written
        });
        let source = ChunkReader {
            rx,
            chunk: io::Cursor::new(Vec::new()),
        };
        let mut reader = PackageReader::open(source).unwrap();
        let (mut upserts, mut last) = (0u64, None);
        while let Some(frame) = reader.next_frame().unwrap() {
            match frame {
                Frame::Upsert(row) => {
                    upserts += 1;
                    last = Some(row);
                }
                Frame::Table(1) => {}
                Frame::End { rows } => assert_eq!(rows, ROWS),
                other => panic!("{other:?}"),
            }
        }
        let written = writer.join().unwrap();
        assert_eq!((upserts, written.rows), (ROWS, ROWS));
        let last = last.unwrap();
        assert_eq!(last[0], Value::Text(format!("ITEM{:08}", ROWS - 1)));
        assert_eq!(reader.header(), &header);
    }
}
