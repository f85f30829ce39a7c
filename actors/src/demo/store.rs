//! The demo's store: the channel database, and a point of sale selling.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cdx::channel_db::{ChannelDb, SqliteChannelDb};
use cdx::retail::{DataSetSize, PosSimulator, UPLOAD_TABLES};

use super::headquarters::Headquarters;
use super::{DATA_GROUP, SEED};

/// The store's id in the generated data set.
const STORE_ID: u64 = 1;

/// Sales per point-of-sale transaction batch.
const SALES_PER_BATCH: u64 = 100;
const BATCH_PAUSE: Duration = Duration::from_millis(100);
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

pub struct Store {
    pub dir: PathBuf,
    pub channel_db: PathBuf,
    size: DataSetSize,
    sold: Arc<AtomicU64>,
    /// The last package sequence the demo printed as applied.
    shown: AtomicU64,
}

/// The point of sale's thread.
pub struct Pos {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<anyhow::Result<u64>>,
}

impl Store {
    pub fn create(dir: &Path, size: DataSetSize) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let channel_db = dir.join("channel.db");
        // The point-of-sale application owns its tables, as at a real store.
        PosSimulator::open(&channel_db, STORE_ID, size, SEED)?.create_tables()?;
        Ok(Self {
            dir: dir.to_owned(),
            channel_db,
            size,
            sold: Arc::default(),
            shown: AtomicU64::new(0),
        })
    }

    /// Starts selling: `limit` sales then stop, or until stopped.
    pub fn start_selling(&self, limit: Option<u64>) -> Pos {
        let stop = Arc::new(AtomicBool::new(false));
        let (path, sold, flag) = (self.channel_db.clone(), self.sold.clone(), stop.clone());
        let size = self.size;
        let thread = std::thread::spawn(move || {
            let mut pos = PosSimulator::open(&path, STORE_ID, size, SEED)?;
            while !flag.load(Ordering::Relaxed) {
                let done = sold.load(Ordering::Relaxed);
                let n = match limit {
                    Some(l) if done >= l => break,
                    Some(l) => SALES_PER_BATCH.min(l - done),
                    None => 5,
                };
                pos.record_sales(n)?;
                sold.fetch_add(n, Ordering::Relaxed);
                std::thread::sleep(if limit.is_some() {
                    BATCH_PAUSE
                } else {
                    Duration::from_secs(1)
                });
            }
            Ok(sold.load(Ordering::Relaxed))
        });
        Pos { stop, thread }
    }

    pub async fn row_count(&self, table: &str) -> anyhow::Result<u64> {
        let (path, table) = (self.channel_db.clone(), table.to_string());
        tokio::task::spawn_blocking(move || Ok(SqliteChannelDb::open(&path)?.row_count(&table)?))
            .await?
    }

    async fn applied(&self) -> anyhow::Result<u64> {
        let path = self.channel_db.clone();
        tokio::task::spawn_blocking(move || {
            Ok(SqliteChannelDb::open(&path)?.last_applied_sequence(DATA_GROUP)?)
        })
        .await?
    }

    /// Prints the packages applied since the last call; returns the last
    /// sequence applied.
    async fn show_newly_applied(&self, started: Instant) -> anyhow::Result<u64> {
        let (path, after) = (self.channel_db.clone(), self.shown.load(Ordering::Relaxed));
        let new = tokio::task::spawn_blocking(move || {
            let all = SqliteChannelDb::open(&path)?.applied_packages(DATA_GROUP)?;
            anyhow::Ok(
                all.into_iter()
                    .filter(|p| p.sequence > after)
                    .collect::<Vec<_>>(),
            )
        })
        .await??;
        for p in &new {
            println!(
                "[{:>5.1}s] store: applied package #{} (job {}, {:?}, {} rows)",
                started.elapsed().as_secs_f64(),
                p.sequence,
                p.job,
                p.kind,
                p.rows
            );
            self.shown.store(p.sequence, Ordering::Relaxed);
        }
        Ok(self.shown.load(Ordering::Relaxed))
    }

    /// Waits until the channel database has applied `sequence`, showing progress.
    pub async fn wait_applied(
        &self,
        sequence: u64,
        hq: &Headquarters,
        started: Instant,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut shown = Instant::now();
        loop {
            let applied = self.show_newly_applied(started).await?;
            if applied >= sequence {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the store applied {applied} of {sequence} packages within {timeout:?}");
            }
            if shown.elapsed() >= PROGRESS_EVERY {
                self.show(applied, sequence, hq, started).await?;
                shown = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until headquarters holds every sale the store recorded.
    pub async fn wait_uploaded(
        &self,
        hq: &Headquarters,
        started: Instant,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut behind = 0;
            for (table, _) in UPLOAD_TABLES {
                behind += self
                    .row_count(table)
                    .await?
                    .saturating_sub(hq.uploaded_rows(table)?);
            }
            if behind == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{behind} rows were still not uploaded after {timeout:?}");
            }
            println!(
                "[{:>5.1}s] upload: {behind} rows to go",
                started.elapsed().as_secs_f64()
            );
            tokio::time::sleep(PROGRESS_EVERY).await;
        }
    }

    pub async fn show_progress(
        &self,
        of: u64,
        hq: &Headquarters,
        started: Instant,
    ) -> anyhow::Result<()> {
        let applied = self.applied().await?;
        self.show(applied, of, hq, started).await
    }

    async fn show(
        &self,
        applied: u64,
        of: u64,
        hq: &Headquarters,
        started: Instant,
    ) -> anyhow::Result<()> {
        let uploaded = hq.uploaded_rows(UPLOAD_TABLES[0].0)?;
        println!(
            "[{:>5.1}s] packages applied {applied}/{of} · sales recorded {} · uploaded {uploaded}",
            started.elapsed().as_secs_f64(),
            self.sold.load(Ordering::Relaxed),
        );
        Ok(())
    }
}

impl Pos {
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }

    /// Waits for the point of sale to finish its sales; returns how many.
    pub async fn finish(self) -> anyhow::Result<u64> {
        tokio::task::spawn_blocking(move || match self.thread.join() {
            Ok(result) => result,
            Err(_) => bail!("the point-of-sale simulator panicked"),
        })
        .await?
        .context("point of sale")
    }
}
