//! Supervision: actors that panic are restarted and the sync completes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cdx::channel_db::{
    AppliedPackage, ApplyOutcome, ChannelDb, ChannelDbError, PackageSource, PassedOver, RowBatch,
    SqliteChannelDb, UploadTable,
};
use cdx::retail::{expected_row_counts, UPLOAD_TABLES};
use cdx_actors::applier::ChannelDbFactory;

use super::util::*;

/// Runs before a call; may panic or fail it, as a driver's bug or a busy
/// database would.
type Hook = Arc<dyn Fn() -> Result<(), ChannelDbError> + Send + Sync>;

/// A SQLite channel database with faults injected before apply and before
/// the upload read.
struct Injected {
    inner: SqliteChannelDb,
    before_apply: Hook,
    before_read: Hook,
}

impl Injected {
    fn factory(path: PathBuf, before_apply: Hook, before_read: Hook) -> ChannelDbFactory {
        Arc::new(move || {
            Ok(Box::new(Injected {
                inner: SqliteChannelDb::open(&path)?,
                before_apply: before_apply.clone(),
                before_read: before_read.clone(),
            }) as Box<dyn ChannelDb>)
        })
    }
}

impl ChannelDb for Injected {
    fn applied_packages(&mut self, g: &str) -> Result<Vec<AppliedPackage>, ChannelDbError> {
        self.inner.applied_packages(g)
    }
    fn last_applied_sequence(&mut self, g: &str) -> Result<u64, ChannelDbError> {
        self.inner.last_applied_sequence(g)
    }
    fn apply_package(&mut self, p: PackageSource<'_>) -> Result<ApplyOutcome, ChannelDbError> {
        (self.before_apply)()?;
        self.inner.apply_package(p)
    }
    fn reapply_package(&mut self, p: PackageSource<'_>) -> Result<ApplyOutcome, ChannelDbError> {
        (self.before_apply)()?;
        self.inner.reapply_package(p)
    }
    fn pass_over(&mut self, p: &PassedOver) -> Result<(), ChannelDbError> {
        self.inner.pass_over(p)
    }
    fn forget_applied(&mut self, g: &str) -> Result<u64, ChannelDbError> {
        self.inner.forget_applied(g)
    }
    fn read_upload_rows(
        &mut self,
        t: &UploadTable,
        after: i64,
        limit: usize,
    ) -> Result<RowBatch, ChannelDbError> {
        (self.before_read)()?;
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
    fn rows_above(&mut self, t: &UploadTable, after: i64) -> Result<u64, ChannelDbError> {
        self.inner.rows_above(t, after)
    }
}

/// A hook that panics the first time, and sets `hit`.
fn panics_once(what: &'static str, hit: &Arc<AtomicBool>) -> Hook {
    let hit = hit.clone();
    Arc::new(move || {
        if !hit.swap(true, Ordering::SeqCst) {
            panic!("injected panic in {what}");
        }
        Ok(())
    })
}

fn no_fault() -> Hook {
    Arc::new(|| Ok(()))
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
    let open = Injected::factory(
        store.channel_db(),
        panics_once("apply_package", &apply),
        panics_once("read_upload_rows", &read),
    );
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

/// A database that is busy (a deadlock victim, a timeout: a transient
/// error) for the first two applies: the applier applies again from the
/// file, and since the package is not at fault the tries it has are not
/// used: with a try count of 1 it is still applied, never suspended.
#[test]
fn a_transient_database_error_is_retried_without_using_the_package_tries() {
    let hq = Hq::start();
    let published = hq.publish_initial(small());
    let store = StoreDir::new();
    let failures = Arc::new(AtomicU32::new(2));
    let left = failures.clone();
    let busy: Hook = Arc::new(move || {
        let before = left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match before {
            Ok(_) => Err(ChannelDbError::SqlServerTimeout {
                context: "injected: upsert into products".into(),
                timeout: Duration::from_millis(1),
            }),
            Err(_) => Ok(()),
        }
    });
    let open = Injected::factory(store.channel_db(), busy, no_fault());
    let mut config = store.config(&hq.url(), "streaming", "");
    config.retry.try_count = 1;
    let last = published.last().unwrap().sequence;
    let run = run_agent(config, open, Duration::from_secs(60), || {
        store.applied() >= last
    });
    assert!(
        run.reached,
        "the packages were not applied after the transient errors: {:?}",
        run.status.suspended
    );
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "the faults were not hit"
    );
    for package in &published {
        assert_eq!(hq.download_status(package.id).as_deref(), Some("Applied"));
    }
    assert!(run.status.suspended.is_none(), "{:?}", run.status.suspended);
}
