//! One upload pass over every upload table.

use std::sync::{Arc, Mutex};

use actix::Addr;
use cdx::channel_db::{ChannelDb, ChannelDbError, RowBatch, UploadTable};
use cdx::config::UploadConfig;
use cdx::protocol::{UploadAck, UploadBatchRef};
use cdx::retry::{RetryDecision, RetryPolicy, Tries};
use cdx::status::UploadStatus;

use crate::applier::ChannelDbFactory;
use crate::error::ActorError;
use crate::hq::{HqClient, HqError};
use crate::journal::{Journal, OpenUploads, SaveUpload, UploadSession};
use crate::shutdown::Shutdown;
use crate::status::{Status, StatusEvent};
use crate::supervisor::blocking;

const NAME: &str = "uploader";
/// Batches sent and not yet acknowledged, at most: headquarters reads one
/// while it stores the one before.
const IN_FLIGHT: usize = 2;
/// Rows a read from the channel database takes, at most; a batch is one or
/// more reads.
const READ_ROWS: usize = 2_000;
/// Rows of a batch's first read: few, so that rows of any width stay far
/// below [`BATCH_BYTES`] and the server's body limit; the reads after are
/// sized from the row width seen.
const FIRST_READ_ROWS: usize = 16;
/// A batch stops growing once its values reach about this many bytes
/// (about its JSON's size), whatever `batch_rows` allows: wide rows keep
/// memory bounded. One batch is out while the next is encoded.
pub const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// An upload task that ended without an answer (it panicked).
fn panicked(message: String) -> ActorError {
    ActorError::Panicked {
        actor: NAME,
        message,
    }
}

/// A spawned upload, aborted when dropped: none outlives the pass that
/// started it, whatever way the pass ends.
struct Aborting<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Aborting<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How sending a batch ended.
enum Sent {
    Acknowledged(UploadSession, UploadAck),
    /// Refused until the try count was spent.
    GaveUp(UploadSession, ActorError),
}

/// A batch journaled and encoded, ready to send.
struct Ready {
    session: UploadSession,
    body: bytes::Bytes,
    compressed: bool,
}

/// `body` as the server takes it: compressed with zstd (level 3: a
/// fraction of the bytes for little CPU, docs/protocol.md 3.5) when it
/// accepts that, plain when it does not (decompressed again after a refusal).
async fn encoded(body: bytes::Bytes, compressed: bool, zstd: bool) -> (bytes::Bytes, bool) {
    if compressed == zstd {
        return (body, compressed);
    }
    blocking(NAME, move || {
        if zstd {
            match zstd::bulk::compress(&body, 3) {
                Ok(packed) => (packed.into(), true),
                Err(_) => (body, false),
            }
        } else {
            let mut plain = Vec::new();
            zstd::stream::copy_decode(&body[..], &mut plain)
                .expect("zstd decodes the frame it encoded in memory");
            (plain.into(), false)
        }
    })
    .await
}

/// Up to `limit` rows of `table` above `after`, until `limit` or
/// [`BATCH_BYTES`] is reached: a first read of [`FIRST_READ_ROWS`], then
/// reads of as many rows as the bytes left hold at the width seen so far.
fn read_batch(
    db: &mut dyn ChannelDb,
    table: &UploadTable,
    after: i64,
    limit: usize,
) -> Result<RowBatch, ChannelDbError> {
    let mut batch = db.read_upload_rows(table, after, limit.min(FIRST_READ_ROWS))?;
    let mut bytes: usize = batch.rows.iter().map(|r| row_bytes(r)).sum();
    while let Some((_, last)) = batch.counters {
        if batch.rows.len() >= limit || bytes >= BATCH_BYTES {
            break;
        }
        let width = (bytes / batch.rows.len()).max(1);
        let fit = ((BATCH_BYTES - bytes) / width).max(1);
        let take = (limit - batch.rows.len()).min(READ_ROWS).min(fit);
        let more = db.read_upload_rows(table, last, take)?;
        let Some((_, more_last)) = more.counters else {
            break;
        };
        bytes += more.rows.iter().map(|r| row_bytes(r)).sum::<usize>();
        batch.rows.extend(more.rows);
        batch.counters = batch.counters.map(|(first, _)| (first, more_last));
    }
    Ok(batch)
}

/// About how many bytes a row's values take as JSON.
fn row_bytes(row: &[cdx::package::Value]) -> usize {
    use cdx::package::Value;
    row.iter()
        .map(|v| match v {
            Value::Text(t) => t.len() + 3,
            Value::Blob(b) => b.len() * 4 / 3 + 16,
            _ => 12,
        })
        .sum()
}

/// Everything a pass needs; cheap to clone into the pass's future.
#[derive(Clone)]
pub struct UploadPass {
    pub hq: HqClient,
    pub journal: Addr<Journal>,
    pub status: Addr<Status>,
    pub config: UploadConfig,
    pub retry: RetryPolicy,
    pub shutdown: Shutdown,
    pub open_db: ChannelDbFactory,
    /// The uploader's own connection, opened on first use and kept.
    pub db: Arc<Mutex<Option<Box<dyn ChannelDb>>>>,
    /// Tables whose missing watermark was checked against headquarters'
    /// high-water mark in this run.
    pub consulted: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Whether headquarters takes zstd-compressed batches, asked once a
    /// run (`GET /v1/ping`).
    pub zstd: Arc<Mutex<Option<bool>>>,
}

impl UploadPass {
    pub async fn run(&self) {
        for table in &self.config.tables {
            match self.drain(table).await {
                Ok(()) => {}
                Err(ActorError::ShuttingDown) => return,
                Err(e) => {
                    tracing::warn!(table = %table.name, error = %e,
                        "upload stopped; retrying at the next interval");
                    self.failing(&e);
                    return;
                }
            }
        }
        if !self.shutdown.is_triggered() {
            self.status
                .do_send(StatusEvent::Recovered { stage: "upload" });
        }
    }

    fn failing(&self, e: &ActorError) {
        self.status.do_send(StatusEvent::Failing {
            stage: "upload",
            component: e.component(),
            error: e.to_string(),
            class: e.class(),
        });
    }

    /// Uploads batches of `table` until none is left.
    async fn drain(&self, table: &UploadTable) -> Result<(), ActorError> {
        self.recover_watermark(table).await?;
        // What waits, for status and metrics only: a failure here costs
        // the pass nothing.
        let t = table.clone();
        let waiting = self
            .with_db(move |db| {
                let watermark = db.watermark(&t.name)?;
                Ok(db.rows_above(&t, watermark)?)
            })
            .await;
        match waiting {
            Ok(rows) => self.status.do_send(StatusEvent::Waiting {
                table: table.name.clone(),
                rows,
            }),
            Err(e) => tracing::warn!(table = %table.name, error = %e,
                "could not count the rows waiting to upload"),
        }
        let open: Vec<UploadSession> = self.journal.send(OpenUploads).await??;
        let mut resumed: Vec<UploadSession> =
            open.into_iter().filter(|s| s.table == table.name).collect();
        // In counter order, whatever order the journal lists them in: the
        // watermark moves in that order.
        resumed.sort_by_key(|s| s.first_counter);
        let mut resumed = std::collections::VecDeque::from(resumed);
        // New batches start above the watermark and above every batch
        // resumed (those are sent first, in order).
        let mut after = resumed.iter().map(|s| s.last_counter).max().unwrap_or(0);
        // Pipelined: up to IN_FLIGHT batches are out while the next is
        // read, journaled and encoded and the oldest acknowledged one is
        // finished (watermark, journal): acknowledgements and the watermark
        // stay in order. A batch that fails leaves those after it open in
        // the journal, to be sent again (and found held).
        // Uploads left behind (an error, a panic) are aborted when dropped.
        let mut in_flight: std::collections::VecDeque<Aborting<_>> =
            std::collections::VecDeque::new();
        if self.shutdown.is_triggered() {
            return Err(ActorError::ShuttingDown);
        }
        let mut next = self.prepare(table, resumed.pop_front(), &mut after).await?;
        loop {
            while in_flight.len() < IN_FLIGHT && !self.shutdown.is_triggered() {
                let Some(ready) = next.take() else { break };
                let pass = self.clone();
                in_flight.push_back(Aborting(actix_rt::spawn(async move {
                    pass.upload(ready).await
                })));
                next = self.prepare(table, resumed.pop_front(), &mut after).await?;
            }
            let Some(mut oldest) = in_flight.pop_front() else {
                // Work left only when stopping: the next pass takes it up.
                return match next {
                    Some(_) => Err(ActorError::ShuttingDown),
                    None => Ok(()),
                };
            };
            match (&mut oldest.0)
                .await
                .map_err(|e| panicked(e.to_string()))??
            {
                Sent::Acknowledged(session, ack) => self.finish(table, session, ack).await?,
                Sent::GaveUp(session, e) => {
                    // Nothing of a later batch may be journaled after this.
                    for mut upload in in_flight.drain(..) {
                        upload.0.abort();
                        let _ = (&mut upload.0).await;
                    }
                    return self.give_up(table, session, e).await;
                }
            }
        }
    }

    /// The next batch to send, read, journaled and encoded: `resumed` (a
    /// batch journaled before) read again, or else the rows above the
    /// watermark and `after`; `None` when no row waits.
    async fn prepare(
        &self,
        table: &UploadTable,
        resumed: Option<UploadSession>,
        after: &mut i64,
    ) -> Result<Option<Ready>, ActorError> {
        let (session, rows) = match resumed {
            Some(s) => {
                let rows = self.read_range(table, &s).await?;
                (s, rows)
            }
            None => match self.next_batch(table, *after).await? {
                Some(next) => next,
                None => return Ok(None),
            },
        };
        *after = (*after).max(session.last_counter);
        let t = table.clone();
        let upload_id = session.upload_id;
        let (first, last) = (session.first_counter, session.last_counter);
        // Encoding up to a few MiB is CPU work: off the event loop.
        let plain = blocking(NAME, move || {
            let types: Vec<Option<String>> = rows
                .types
                .iter()
                .map(|t| t.map(|t| t.to_string()))
                .collect();
            let mut values = rows.rows;
            for row in &mut values {
                for (v, ty) in row.iter_mut().zip(&rows.types) {
                    let value = std::mem::replace(v, cdx::package::Value::Null);
                    *v = cdx::plan::exact_upload_value(*ty, value);
                }
            }
            let batch = UploadBatchRef {
                upload_id,
                table: &t.name,
                counter_column: &t.counter_column,
                columns: &rows.columns,
                column_types: &types,
                rows: &values,
                first_counter: first,
                last_counter: last,
            };
            serde_json::to_vec(&batch).expect("an upload batch always serializes")
        })
        .await;
        Ok(Some(Ready {
            session,
            body: plain.into(),
            compressed: false,
        }))
    }

    /// Whether headquarters said it takes zstd-compressed batches; asked
    /// once a run.
    async fn accepts_zstd(&self) -> Result<bool, HqError> {
        if let Some(known) = self.zstd.lock().ok().and_then(|k| *k) {
            return Ok(known);
        }
        let ping = self.hq.ping().await?;
        let zstd = ping.upload_encodings.iter().any(|e| e == "zstd");
        if let Ok(mut known) = self.zstd.lock() {
            *known = Some(zstd);
        }
        Ok(zstd)
    }

    /// Once a run, a table's watermark against the highest counter
    /// headquarters holds (`GET /v1/uploads/high-water`). With no watermark
    /// (a new store, or a channel database rebuilt) it starts there, so
    /// rows already uploaded are not sent again. Below it, the channel
    /// database went back (restored from a backup): said in the log and the
    /// status; the rows above it are sent again, and headquarters ignores
    /// the same rows and keeps different ones apart (`upload_conflicts`),
    /// so no sale is lost.
    async fn recover_watermark(&self, table: &UploadTable) -> Result<(), ActorError> {
        if self.consulted.lock().is_ok_and(|s| s.contains(&table.name)) {
            return Ok(());
        }
        let name = table.name.clone();
        let local = self.with_db(move |db| Ok(db.watermark(&name)?)).await?;
        let high_water = match self.hq.high_water().await {
            Ok(h) => h,
            // Only a store without a watermark needs the answer to upload;
            // for one with a watermark it is a check that can wait a run.
            Err(e) if local > 0 => {
                tracing::debug!(table = %table.name, error = %e,
                    "could not ask headquarters' high water; not checked this run");
                return Ok(());
            }
            Err(e) => return Err(ActorError::Hq(e)),
        };
        let held = high_water
            .tables
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(&table.name))
            .map_or(0, |(_, c)| *c);
        if local == 0 && held > 0 {
            tracing::warn!(table = %table.name, counter = held,
                "no upload watermark here (a new or restored channel database); \
                 headquarters holds rows up to this counter, uploading from after it. \
                 If the point of sale's counters started over, rows up to it are not sent");
            let name = table.name.clone();
            self.with_db(move |db| Ok(db.advance_watermark(&name, held)?))
                .await?;
        } else if local < held && self.journaled_up_to(table).await? < held {
            let message = format!(
                "the channel database's upload watermark of {} is {local}, and headquarters \
                 holds its rows up to {held}: it went back (restored from a backup). The rows \
                 above {local} are sent again: the same rows are ignored, different ones \
                 (new sales under reused counters) are kept apart at headquarters as conflicts",
                table.name
            );
            tracing::warn!(table = %table.name, watermark = local, headquarters = held, "{message}");
            self.status.do_send(StatusEvent::WentBack {
                what: crate::status::upload_key(&table.name),
                here: local,
                headquarters: held,
                message,
            });
        }
        if let Ok(mut set) = self.consulted.lock() {
            set.insert(table.name.clone());
        }
        Ok(())
    }

    /// The highest counter of `table`'s batches journaled and not yet
    /// marked: a batch acknowledged before the agent stopped, its watermark
    /// not yet advanced, is sent again first; below it is no restore.
    async fn journaled_up_to(&self, table: &UploadTable) -> Result<i64, ActorError> {
        let open = self.journal.send(OpenUploads).await??;
        Ok(open
            .iter()
            .filter(|s| s.table == table.name)
            .map(|s| s.last_counter)
            .max()
            .unwrap_or(0))
    }

    /// Reads the next rows above the watermark and `after` (up to
    /// `batch_rows` rows and about [`BATCH_BYTES`]) and journals them as a
    /// new session before anything is sent.
    async fn next_batch(
        &self,
        table: &UploadTable,
        after: i64,
    ) -> Result<Option<(UploadSession, RowBatch)>, ActorError> {
        let t = table.clone();
        let limit = self.config.batch_rows;
        let (watermark, rows) = self
            .with_db(move |db| {
                let watermark = db.watermark(&t.name)?;
                Ok((watermark, read_batch(db, &t, watermark.max(after), limit)?))
            })
            .await?;
        let Some((first, last)) = rows.counters else {
            self.status.do_send(StatusEvent::Waiting {
                table: table.name.clone(),
                rows: 0,
            });
            self.status.do_send(StatusEvent::Watermark {
                table: table.name.clone(),
                counter: watermark,
                server_high_water: None,
                acknowledged_rows: 0,
            });
            return Ok(None);
        };
        // Journaled once, unflushed: headquarters stores each counter once,
        // so a batch the journal lost in a crash is read and sent again as
        // a new one, and changes nothing there.
        let mut session = UploadSession::new(&table.name, first, last, rows.rows.len() as u64);
        session.transition(UploadStatus::Available, None);
        self.save(&session, false).await?;
        Ok(Some((session, rows)))
    }

    /// The rows of a session journaled earlier, read again for a re-send.
    async fn read_range(
        &self,
        table: &UploadTable,
        s: &UploadSession,
    ) -> Result<RowBatch, ActorError> {
        let t = table.clone();
        let (first, last) = (s.first_counter, s.last_counter);
        let limit = (s.rows as usize).max(1);
        let counter = table.counter_column.clone();
        self.with_db(move |db| {
            let mut batch = db.read_upload_rows(&t, first - 1, limit)?;
            // Names compare as SQL does: a counter configured in another
            // case than the table's must not filter every row out.
            let at = batch
                .columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(&counter))
                .ok_or_else(|| ChannelDbError::UnknownColumn {
                    table: t.name.clone(),
                    column: counter.clone(),
                })?;
            batch.rows.retain(|row| match &row[at] {
                cdx::package::Value::Integer(c) => *c <= last,
                _ => false,
            });
            Ok(batch)
        })
        .await
    }

    /// Sends a journaled batch until the server acknowledges it or the
    /// try count is spent.
    async fn upload(&self, ready: Ready) -> Result<Sent, ActorError> {
        let Ready {
            mut session,
            mut body,
            mut compressed,
        } = ready;
        let mut tries = Tries::default();
        let ack = loop {
            let sent = match self.accepts_zstd().await {
                Ok(zstd) => {
                    (body, compressed) = encoded(body, compressed, zstd).await;
                    let sent = self.hq.upload(body.clone(), compressed).await;
                    // A server (or a proxy before it) that turned down a
                    // compressed body gets the next try plain.
                    if compressed
                        && matches!(
                            sent,
                            Err(HqError::Status {
                                status: 400 | 415,
                                ..
                            })
                        )
                    {
                        if let Ok(mut known) = self.zstd.lock() {
                            *known = Some(false);
                        }
                    }
                    sent
                }
                Err(e) => Err(e),
            };
            match sent {
                Ok(ack) => {
                    session.bytes = body.len() as u64;
                    break ack;
                }
                Err(e) => {
                    let e = ActorError::Hq(e);
                    session.transition(UploadStatus::UploadFailed, Some(e.to_string()));
                    self.failing(&e);
                    self.save(&session, false).await?;
                    // Only a batch the server refuses counts against the try
                    // count; an unreachable server is waited out.
                    match tries.failed(&self.retry, e.class(), rand::random()) {
                        RetryDecision::RetryAfter(d) => {
                            if !self.shutdown.sleep(d).await {
                                return Err(ActorError::ShuttingDown);
                            }
                        }
                        // Canceled by the pass, after the batches behind it.
                        RetryDecision::GiveUp => return Ok(Sent::GaveUp(session, e)),
                    }
                }
            }
        };
        Ok(Sent::Acknowledged(session, ack))
    }

    /// A batch given up: the batches journaled after it are canceled first
    /// (their rows are read again as new batches, never skipped), then it.
    async fn give_up(
        &self,
        table: &UploadTable,
        mut session: UploadSession,
        e: ActorError,
    ) -> Result<(), ActorError> {
        let open = self.journal.send(OpenUploads).await??;
        for mut later in open
            .into_iter()
            .filter(|s| s.table == table.name && s.first_counter > session.last_counter)
        {
            later.transition(
                UploadStatus::Canceled,
                Some(format!(
                    "batch {} before it was given up; its rows are sent again",
                    session.upload_id
                )),
            );
            self.save(&later, false).await?;
        }
        session.transition(
            UploadStatus::Canceled,
            Some(format!("tried too many times: {e}")),
        );
        self.save(&session, true).await?;
        Err(e)
    }

    /// After an acknowledgement: advances the watermark, journals the batch
    /// as Applied and says so.
    async fn finish(
        &self,
        table: &UploadTable,
        mut session: UploadSession,
        ack: UploadAck,
    ) -> Result<(), ActorError> {
        let mut said = format!("{} stored, {} already held", ack.stored, ack.duplicates);
        if ack.conflicts > 0 {
            // Not lost: headquarters keeps them apart for an operator.
            tracing::error!(table = %table.name, upload = %session.upload_id,
                conflicts = ack.conflicts,
                "headquarters held other rows under some of these counters: this channel \
                 database's counters went back (restored from a backup?); it kept these \
                 rows apart (cdx-server uploads conflicts)");
            said.push_str(&format!(
                ", {} under counters held with other rows (kept apart at headquarters: the \
                 counters went back)",
                ack.conflicts
            ));
        }
        // Uploaded and Applied journaled together, once the watermark moved:
        // a stop before leaves the batch open, to be sent again (and
        // found held).
        session.transition(UploadStatus::Uploaded, Some(said));
        let (name, last) = (table.name.clone(), session.last_counter);
        self.with_db(move |db| Ok(db.advance_watermark(&name, last)?))
            .await?;
        session.transition(UploadStatus::Applied, None);
        self.save(&session, true).await?;
        self.status.do_send(StatusEvent::Watermark {
            table: table.name.clone(),
            counter: session.last_counter,
            server_high_water: Some(ack.high_water),
            acknowledged_rows: session.rows,
        });
        metrics::counter!(crate::status::metrics::UPLOADED_ROWS).increment(session.rows);
        // Each acknowledged batch is progress: a long backlog is not a stall.
        self.status
            .do_send(StatusEvent::Recovered { stage: "upload" });
        Ok(())
    }

    /// Runs `work` on the uploader's connection, in the blocking pool.
    async fn with_db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut dyn ChannelDb) -> Result<T, ActorError> + Send + 'static,
    ) -> Result<T, ActorError> {
        let slot = self.db.clone();
        let open = self.open_db.clone();
        blocking(NAME, move || {
            let mut guard = match slot.lock() {
                Ok(g) => g,
                // A panic mid-call: the connection may be in any state.
                Err(poisoned) => {
                    let mut g = poisoned.into_inner();
                    *g = None;
                    slot.clear_poison();
                    g
                }
            };
            if guard.is_none() {
                *guard = Some(open()?);
            }
            let result = work(guard.as_deref_mut().expect("opened above"));
            if result.is_err() {
                *guard = None;
            }
            result
        })
        .await
    }

    async fn save(&self, session: &UploadSession, flush: bool) -> Result<(), ActorError> {
        self.journal
            .send(SaveUpload {
                session: session.clone(),
                flush,
            })
            .await?
    }
}
