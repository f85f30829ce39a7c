//! Reads a package's frames ahead on a helper thread while the database writes.
//!
//! Reading a package (zstd, SHA-256, decoding) costs about 40 % of
//! inserting its rows (`cdx-bench apply`'s CPU row: 415 to 461 ns a narrow
//! row on the reader against 860 to 1,390 ns on the writing thread); on a
//! two-core store PC the two overlap, so applying a package runs near the
//! speed of a plain insert loop (`cdx-bench apply`, `cdx-bench tpcds`).
//!
//! Memory is bounded by bytes, whatever the row width: a batch closes at
//! `BATCH` frames or `BATCH_BYTES` of encoded frames, and the reader waits
//! while the batches handed over and not yet given back hold more than
//! `BYTES_IN_FLIGHT` (one batch always passes, so a single wide row is
//! never stuck).

use std::panic;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use crate::channel_db::{ChannelDbError, PackageSource};
use crate::package::{Frame, PackageError};

/// Frames handed over at a time: large enough that the channel costs
/// nothing per row, small enough that little is read in vain on an error.
/// Each batch handed over may wake the other thread, and on a VM a wake-up
/// is dear: at 256 a batch, waking the reader took 6 % of an upsert's
/// samples (`perf record`). `perf stat` on `cdx-bench upsert --runs 1`
/// counted 6,709 context switches at 256 a batch and 1,102 at 4,096; the
/// ratios of interleaved runs moved within this machine's noise (0.59 to
/// 1.10x at 256, 0.71 to 1.01x at 4,096). Decoded narrow rows cost little:
/// 300,000 rows of 40 bytes peaked at 33.7 MiB at 256 a batch and 35.1 MiB
/// at 4,096 (`tests/agent/resources.rs`).
const BATCH: usize = 4096;
/// Encoded bytes handed over at a time, at most (or one frame, if larger).
const BATCH_BYTES: u64 = 1 << 20;
/// Encoded bytes of the batches between the threads, at most (or one batch).
const BYTES_IN_FLIGHT: u64 = 4 << 20;
const BATCHES_IN_FLIGHT: usize = 4;

/// The encoded bytes of the batches the reader handed over and the
/// consumer has not given back yet; `None` once the consumer is gone.
struct InFlight {
    bytes: Mutex<Option<u64>>,
    returned: Condvar,
}

impl InFlight {
    fn new() -> Self {
        InFlight {
            bytes: Mutex::new(Some(0)),
            returned: Condvar::new(),
        }
    }

    /// Waits until `more` bytes fit (or nothing is in flight), then counts
    /// them. False once the consumer is gone.
    fn reserve(&self, more: u64) -> bool {
        let mut bytes = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match *bytes {
                None => return false,
                Some(held) if held == 0 || held + more <= BYTES_IN_FLIGHT => {
                    *bytes = Some(held + more);
                    return true;
                }
                Some(_) => bytes = self.returned.wait(bytes).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    fn release(&self, less: u64) {
        let mut bytes = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = bytes.as_mut() {
            *held = held.saturating_sub(less);
        }
        self.returned.notify_all();
    }

    /// The consumer is gone (returned, failed or panicked): wakes the reader.
    fn close(&self) {
        *self.bytes.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.returned.notify_all();
    }
}

/// Frames and their encoded size.
type Batch = (Vec<Frame>, u64);

/// The frames of the package, in order, as the helper thread read them,
/// a batch at a time. The stream ends after `Frame::End`, or early when
/// reading failed, in which case [`read_ahead`] returns the read error
/// whatever the consumer returned.
///
/// A consumed batch goes back to the reader, which decodes the next frames
/// into the same frames: their vectors and strings are reused, allocated
/// and freed only on the reader's thread, so the two threads never contend
/// for one malloc arena (which cost more than the read-ahead saved).
pub(crate) struct Frames {
    rx: Receiver<Batch>,
    back: Sender<Vec<Frame>>,
    in_flight: Arc<InFlight>,
    current: Vec<Frame>,
    /// Encoded bytes of `current`, released when it is given back.
    current_bytes: u64,
    /// Frames of `current` already moved out by `take_next`.
    taken: usize,
}

impl Drop for Frames {
    /// However the consumer ends, even by a panic, a reader waiting for
    /// room stops, so the scope that joins it does not hang.
    fn drop(&mut self) {
        self.in_flight.close();
    }
}

impl Frames {
    /// The next frames, in order; `None` once the stream ended.
    pub(crate) fn next_batch(&mut self) -> Option<&[Frame]> {
        let done = std::mem::take(&mut self.current);
        if done.capacity() > 0 {
            // A reader gone by now no longer needs buffers.
            let _ = self.back.send(done);
        }
        self.in_flight
            .release(std::mem::take(&mut self.current_bytes));
        let (batch, bytes) = self.rx.recv().ok()?;
        self.current = batch;
        self.current_bytes = bytes;
        Some(&self.current)
    }

    /// The next frame, moved out, for a consumer that keeps its values
    /// (the batch still goes back to the reader, to be refilled).
    pub(crate) fn take_next(&mut self) -> Option<Frame> {
        while self.taken >= self.current.len() {
            self.next_batch()?;
            self.taken = 0;
        }
        let frame = std::mem::replace(&mut self.current[self.taken], Frame::End { rows: 0 });
        self.taken += 1;
        Some(frame)
    }
}

/// Runs `consume` over the frames of `package` while a scoped thread reads
/// them. Returns once the reader stopped: with the read error if reading
/// failed (the package must not be committed), else with what `consume`
/// returned. When `consume` returns early, the reader stops at its next
/// batch and `package` is left part-read.
pub(crate) fn read_ahead<T>(
    package: &mut PackageSource<'_>,
    consume: impl FnOnce(&mut Frames) -> Result<T, ChannelDbError>,
) -> Result<T, ChannelDbError> {
    read_ahead_prepared(package, |_| {}, consume)
}

/// [`read_ahead`], with `prepare` run on each frame on the reader's thread
/// once it is checked: work the writer would do frame by frame (turning a
/// decimal's text into the number a column holds) runs beside the
/// database's, not before it.
pub(crate) fn read_ahead_prepared<T>(
    package: &mut PackageSource<'_>,
    prepare: impl FnMut(&mut Frame) + Send,
    consume: impl FnOnce(&mut Frames) -> Result<T, ChannelDbError>,
) -> Result<T, ChannelDbError> {
    let package_id = package.header().package_id;
    let package_err = |source| ChannelDbError::package(Some(package_id), source);
    let (tx, rx) = mpsc::sync_channel(BATCHES_IN_FLIGHT);
    // Unbounded, but at most BATCHES_IN_FLIGHT + 2 buffers circulate.
    let (back, recycled) = mpsc::channel();
    let in_flight = Arc::new(InFlight::new());
    let (consumed, read) = thread::scope(|scope| {
        let pump_in_flight = in_flight.clone();
        let reader = thread::Builder::new()
            .name("cdx-package-read".into())
            .spawn_scoped(scope, move || {
                pump(package, prepare, tx, recycled, &pump_in_flight)
            })?;
        let mut frames = Frames {
            rx,
            back,
            in_flight,
            current: Vec::new(),
            current_bytes: 0,
            taken: 0,
        };
        let consumed = consume(&mut frames);
        // Closes the channel (a reader still going stops at its next send)
        // and wakes a reader waiting for room.
        drop(frames);
        let read = reader
            .join()
            .unwrap_or_else(|panic| panic::resume_unwind(panic));
        Ok((consumed, read))
    })
    .map_err(|e| package_err(PackageError::Io(e)))?;
    read.map_err(package_err)?;
    consumed
}

/// Reads frames to the end (checksum verified) and sends them in batches,
/// reusing the buffers the consumer sent back; stops early, without error,
/// when the consumer went away.
fn pump(
    package: &mut PackageSource<'_>,
    mut prepare: impl FnMut(&mut Frame),
    tx: SyncSender<Batch>,
    recycled: Receiver<Vec<Frame>>,
    in_flight: &InFlight,
) -> Result<(), PackageError> {
    // A batch given back keeps its frames: the next are decoded into them,
    // reusing their rows' vectors and strings.
    let buffer = || {
        recycled
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH))
    };
    let send =
        |batch: Vec<Frame>, bytes: u64| in_flight.reserve(bytes) && tx.send((batch, bytes)).is_ok();
    let mut batch = buffer();
    let mut filled = 0;
    let mut started_at = package.content_read();
    loop {
        if filled == batch.len() {
            batch.push(Frame::End { rows: 0 });
        }
        if !package.next_frame_into(&mut batch[filled])? {
            break;
        }
        prepare(&mut batch[filled]);
        filled += 1;
        let bytes = package.content_read() - started_at;
        if filled == BATCH || bytes >= BATCH_BYTES {
            batch.truncate(filled);
            if !send(std::mem::replace(&mut batch, buffer()), bytes) {
                return Ok(());
            }
            filled = 0;
            started_at = package.content_read();
        }
    }
    if filled > 0 {
        batch.truncate(filled);
        // A consumer gone by now has nothing more to do with the frames.
        send(batch, package.content_read() - started_at);
    }
    Ok(())
}

/// After the transaction rolled back because of `error`: when the rest of
/// the package does not verify, the corruption is the cause to report (a
/// flipped byte can decode into a duplicate key or a different column
/// type long before the checksum is reached), else `error` stands.
pub(crate) fn blame_corruption(
    package: &mut PackageSource<'_>,
    error: ChannelDbError,
) -> ChannelDbError {
    loop {
        match package.next_frame() {
            Ok(Some(_)) => {}
            Ok(None) => return error,
            Err(source) => {
                return ChannelDbError::package(Some(package.header().package_id), source)
            }
        }
    }
}
