//! Reads a package's frames ahead on a helper thread while the database writes.
//!
//! Reading a package (zstd, SHA-256, decoding) costs about a third of
//! inserting its rows; on a two-core store PC the two overlap, so applying
//! a package runs near the speed of a plain insert loop (see
//! `examples/apply_speed.rs`). Memory stays bounded: at most
//! `BATCHES_IN_FLIGHT` batches of `BATCH` frames wait in the channel.

use std::panic;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread;

use crate::channel_db::{ChannelDbError, PackageSource};
use crate::package::{Frame, PackageError};

/// Frames handed over at a time: large enough that the channel costs
/// nothing per row, small enough that little is read in vain on an error.
const BATCH: usize = 256;
const BATCHES_IN_FLIGHT: usize = 4;

/// The frames of the package, in order, as the helper thread read them,
/// a batch at a time. The stream ends after `Frame::End`, or early when
/// reading failed, in which case [`read_ahead`] returns the read error
/// whatever the consumer returned.
///
/// A consumed batch goes back to the reader, which drops its frames and
/// refills the same buffer: the strings of a frame are freed on the thread
/// that allocated them, so the two threads never contend for one malloc
/// arena (which cost more than the read-ahead saved).
pub(crate) struct Frames {
    rx: Receiver<Vec<Frame>>,
    back: Sender<Vec<Frame>>,
    current: Vec<Frame>,
    /// Frames of `current` already moved out by `take_next`.
    taken: usize,
}

impl Frames {
    /// The next frames, in order; `None` once the stream ended.
    pub(crate) fn next_batch(&mut self) -> Option<&[Frame]> {
        let done = std::mem::take(&mut self.current);
        if done.capacity() > 0 {
            // A reader gone by now no longer needs buffers.
            let _ = self.back.send(done);
        }
        self.current = self.rx.recv().ok()?;
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
    let package_id = package.header().package_id;
    let package_err = |source| ChannelDbError::package(Some(package_id), source);
    let (tx, rx) = mpsc::sync_channel(BATCHES_IN_FLIGHT);
    // Unbounded, but at most BATCHES_IN_FLIGHT + 2 buffers circulate.
    let (back, recycled) = mpsc::channel();
    let (consumed, read) = thread::scope(|scope| {
        let reader = thread::Builder::new()
            .name("cdx-package-read".into())
            .spawn_scoped(scope, move || pump(package, tx, recycled))?;
        let mut frames = Frames {
            rx,
            back,
            current: Vec::new(),
            taken: 0,
        };
        let consumed = consume(&mut frames);
        // Closes the channel: a reader still going stops at its next send.
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
    tx: SyncSender<Vec<Frame>>,
    recycled: Receiver<Vec<Frame>>,
) -> Result<(), PackageError> {
    let buffer = || match recycled.try_recv() {
        Ok(mut batch) => {
            batch.clear();
            batch
        }
        Err(_) => Vec::with_capacity(BATCH),
    };
    let mut batch = buffer();
    while let Some(frame) = package.next_frame()? {
        batch.push(frame);
        if batch.len() == BATCH && tx.send(std::mem::replace(&mut batch, buffer())).is_err() {
            return Ok(());
        }
    }
    if !batch.is_empty() {
        // A consumer gone by now has nothing more to do with the frames.
        let _ = tx.send(batch);
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
