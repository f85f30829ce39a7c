//! One upload pass over every upload table.

use std::sync::{Arc, Mutex};

use actix::Addr;
use cdx::channel_db::{ChannelDb, ChannelDbError, RowBatch, UploadTable};
use cdx::config::UploadConfig;
use cdx::protocol::{json_value, UploadBatch};
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
        let mut resumed = open.into_iter().filter(|s| s.table == table.name);
        loop {
            if self.shutdown.is_triggered() {
                return Ok(());
            }
            let (session, rows) = match resumed.next() {
                Some(s) => {
                    let rows = self.read_range(table, &s).await?;
                    (s, rows)
                }
                None => match self.next_batch(table).await? {
                    Some(next) => next,
                    None => return Ok(()),
                },
            };
            self.send(table, session, rows).await?;
        }
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

    /// Reads the next rows above the watermark and journals them as a new
    /// session before anything is sent.
    async fn next_batch(
        &self,
        table: &UploadTable,
    ) -> Result<Option<(UploadSession, RowBatch)>, ActorError> {
        let t = table.clone();
        let limit = self.config.batch_rows;
        let (watermark, rows) = self
            .with_db(move |db| {
                let watermark = db.watermark(&t.name)?;
                Ok((watermark, db.read_upload_rows(&t, watermark, limit)?))
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
        let mut session = UploadSession::new(&table.name, first, last, rows.rows.len() as u64);
        self.save(&session, false).await?;
        session.transition(UploadStatus::Available, None);
        self.save(&session, true).await?;
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
    /// try count is spent, then advances the watermark.
    async fn send(
        &self,
        table: &UploadTable,
        mut session: UploadSession,
        rows: RowBatch,
    ) -> Result<(), ActorError> {
        let batch = UploadBatch {
            upload_id: session.upload_id,
            table: table.name.clone(),
            counter_column: table.counter_column.clone(),
            columns: rows.columns,
            column_types: rows
                .types
                .iter()
                .map(|t| t.map(|t| t.to_string()))
                .collect(),
            rows: rows
                .rows
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .zip(rows.types.iter())
                        .map(|(v, ty)| json_value(&cdx::plan::exact_upload_value(*ty, v)))
                        .collect()
                })
                .collect(),
            first_counter: session.first_counter,
            last_counter: session.last_counter,
        };
        let batch = Arc::new(batch);
        let mut tries = Tries::default();
        let ack = loop {
            let sent = match self.accepts_zstd().await {
                Ok(zstd) => {
                    let sent = self.hq.upload(batch.clone(), zstd).await;
                    // A server (or a proxy before it) that turned down a
                    // compressed body gets the next try plain.
                    if zstd
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
                Ok((ack, bytes)) => {
                    session.bytes = bytes;
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
                        RetryDecision::GiveUp => {
                            let why = format!("tried too many times: {e}");
                            session.transition(UploadStatus::Canceled, Some(why));
                            self.save(&session, true).await?;
                            return Err(e);
                        }
                    }
                }
            }
        };
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
        session.transition(UploadStatus::Uploaded, Some(said));
        self.save(&session, false).await?;
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
