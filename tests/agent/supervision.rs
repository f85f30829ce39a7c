//! Supervision: actors that panic are restarted and the sync completes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cdx::channel_db::{
    AppliedPackage, ApplyOutcome, ChannelDb, ChannelDbError, PackageSource, RowBatch,
    SqliteChannelDb, UploadTable,
};
use cdx::retail::{expected_row_counts, UPLOAD_TABLES};

use super::util::*;

/// A channel database whose first apply and first upload read panic, as a
/// bug in a driver would.
struct PanicsOnce {
    inner: SqliteChannelDb,
    apply_panicked: Arc<AtomicBool>,
    read_panicked: Arc<AtomicBool>,
}

impl ChannelDb for PanicsOnce {
    fn applied_packages(&mut self, g: &str) -> Result<Vec<AppliedPackage>, ChannelDbError> {
        self.inner.applied_packages(g)
    }
    fn last_applied_sequence(&mut self, g: &str) -> Result<u64, ChannelDbError> {
        self.inner.last_applied_sequence(g)
    }
    fn apply_package(&mut self, p: PackageSource<'_>) -> Result<ApplyOutcome, ChannelDbError> {
        if !self.apply_panicked.swap(true, Ordering::SeqCst) {
            panic!("injected panic in apply_package");
        }
        self.inner.apply_package(p)
    }
    fn read_upload_rows(
        &mut self,
        t: &UploadTable,
        after: i64,
        limit: usize,
    ) -> Result<RowBatch, ChannelDbError> {
        if !self.read_panicked.swap(true, Ordering::SeqCst) {
            panic!("injected panic in read_upload_rows");
        }
        self.inner.read_upload_rows(t, after, limit)
    }
    fn watermark(&mut self, t: &str) -> Result<i64, ChannelDbError> {
        self.inner.watermark(t)
    }
    fn advance_watermark(&mut self, t: &str, c: i64) -> Result<(), ChannelDbError> {
        self.inner.advance_watermark(t, c)
    }
    fn row_count(&mut self, t: &str) -> Result<u64, ChannelDbError> {
        self.inner.row_count(t)
    }
}

/// The applier (a sync actor) and the uploader (an async actor) each panic
/// once; the supervisor restarts both, the restarts show in /status, and
/// every package and every sale still gets through.
#[test]
fn panicking_actors_are_restarted_and_the_sync_completes() {
    let hq = Hq::start();
    let published = hq.publish_initial(small());
    let store = StoreDir::new();
    store.pos().record_sales(120).unwrap();
    let (apply, read) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (a, r, path) = (apply.clone(), read.clone(), store.channel_db());
    let open: cdx_actors::applier::ChannelDbFactory = Arc::new(move || {
        Ok(Box::new(PanicsOnce {
            inner: SqliteChannelDb::open(&path)?,
            apply_panicked: a.clone(),
            read_panicked: r.clone(),
        }) as Box<dyn ChannelDb>)
    });
    let extra = "[upload]\ninterval = \"200ms\"\n";
    let last = published.last().unwrap().sequence;
    let run = run_agent(
        store.config(&hq.url(), "streaming", extra),
        open,
        Duration::from_secs(60),
        || {
            store.applied() >= last
                && UPLOAD_TABLES
                    .iter()
                    .all(|(t, _)| hq.uploaded(t) == store.rows(t))
        },
    );
    assert!(
        apply.load(Ordering::SeqCst) && read.load(Ordering::SeqCst),
        "the faults were not hit"
    );
    assert!(run.reached, "the sync did not complete after the panics");
    for (table, rows) in expected_row_counts(small(), 0) {
        assert_eq!(store.rows(&table), rows, "rows of {table}");
    }
    let actors = &run.status.actors;
    assert!(
        actors["applier"].restarts >= 1 && actors["applier"].panics >= 1,
        "{actors:?}"
    );
    assert!(
        actors["uploader"].restarts >= 1 && actors["uploader"].panics >= 1,
        "{actors:?}"
    );
    assert!(actors.values().all(|a| a.alive), "{actors:?}");
    assert!(run.status.healthy);
}
