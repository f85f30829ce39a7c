//! The applier applies a downloaded package to the channel database, in
//! one transaction, and answers what the channel database has applied.
//!
//! It runs on a `SyncArbiter` thread: applying is blocking database work
//! and never runs on the network actors' event loop. A panic restarts it
//! with a fresh connection from the factory.

use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;

use actix::prelude::*;
use cdx::channel_db::{
    AppliedPackage, ApplyOutcome, ChannelDb, ChannelDbError, PackageSource, PassedOver, UploadTable,
};
use cdx::package::{Declared, PackageReader};
use cdx::plan;

use crate::error::ActorError;
use crate::status::metrics::{APPLY_DURATION, PACKAGES_APPLIED, ROWS_APPLIED};
use crate::status::{Status, StatusEvent};
use crate::supervisor::{guard, Supervision};
use cdx::protocol::PackageInfo;

const NAME: &str = "applier";

/// Opens a connection to the channel database.
pub type ChannelDbFactory =
    Arc<dyn Fn() -> Result<Box<dyn ChannelDb>, ChannelDbError> + Send + Sync>;

#[derive(Message)]
#[rtype(result = "Result<ApplyOutcome, ActorError>")]
pub struct Apply {
    pub package: PackageInfo,
    pub path: PathBuf,
    /// The channel database holds the package already and applies it again
    /// over itself (an operator's rerun of a full package).
    pub reapply: bool,
}

/// The highest sequence the channel database has applied for a data group.
#[derive(Message)]
#[rtype(result = "Result<u64, ActorError>")]
pub struct LastApplied {
    pub data_group: String,
}

pub struct Applier {
    open: ChannelDbFactory,
    db: Option<Box<dyn ChannelDb>>,
    /// The store's upload tables: no package may write them.
    upload_tables: Arc<[UploadTable]>,
    status: Addr<Status>,
    supervision: Supervision,
}

/// How often a long apply tells the status actor how far it is.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// How often a long apply says so in the log.
const LOG_PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl Applier {
    pub fn start(
        open: ChannelDbFactory,
        upload_tables: Vec<UploadTable>,
        status: Addr<Status>,
        supervision: &Supervision,
    ) -> Addr<Self> {
        let sup = supervision.clone();
        let upload_tables: Arc<[UploadTable]> = upload_tables.into();
        let factory = supervision.counting_factory(NAME, move || Applier {
            open: open.clone(),
            db: None,
            upload_tables: upload_tables.clone(),
            status: status.clone(),
            supervision: sup.clone(),
        });
        let addr = SyncArbiter::start(1, factory);
        let watched = addr.clone();
        supervision.watch(NAME, move || watched.connected());
        addr
    }

    /// The connection, opened on first use and after a failed apply.
    fn db(&mut self) -> Result<&mut dyn ChannelDb, ChannelDbError> {
        if self.db.is_none() {
            self.db = Some((self.open)()?);
        }
        Ok(self.db.as_deref_mut().expect("opened above"))
    }
}

impl Actor for Applier {
    type Context = SyncContext<Self>;
}

impl Handler<Apply> for Applier {
    type Result = Result<ApplyOutcome, ActorError>;

    fn handle(&mut self, msg: Apply, ctx: &mut Self::Context) -> Self::Result {
        let supervision = self.supervision.clone();
        guard(ctx, &supervision, NAME, || {
            let started = std::time::Instant::now();
            // A busy or unreachable database is retried by the poller, as
            // a transient failure that costs no try.
            let outcome = self.apply_once(&msg);
            self.status.do_send(StatusEvent::ApplyEnded);
            let outcome = outcome?;
            if let ApplyOutcome::Applied(r) = &outcome {
                metrics::counter!(PACKAGES_APPLIED).increment(1);
                metrics::counter!(ROWS_APPLIED).increment(r.upserts + r.deletes);
                metrics::histogram!(APPLY_DURATION).record(started.elapsed().as_secs_f64());
            }
            tracing::info!(package = %msg.package.id, sequence = msg.package.sequence,
                job = %msg.package.job, outcome = ?outcome,
                elapsed_ms = started.elapsed().as_millis() as u64, "package applied");
            Ok(outcome)
        })
    }
}

impl Applier {
    /// One try: the package file read from the start, checked against its
    /// listing before a row is written, applied in one transaction.
    fn apply_once(&mut self, msg: &Apply) -> Result<ApplyOutcome, ChannelDbError> {
        let listed = &msg.package;
        let package_err = |source| ChannelDbError::Package {
            package_id: Some(listed.id),
            source,
        };
        let file = std::fs::File::open(&msg.path).map_err(|e| package_err(e.into()))?;
        let input: Box<dyn std::io::Read + Send> =
            Box::new(BufReader::with_capacity(1 << 20, file));
        let source: PackageSource<'_> = PackageReader::open(input)
            .map_err(package_err)?
            .expect(Declared {
                rows: listed.rows,
                content_bytes: listed.content_bytes,
            })
            .on_progress(progress_hook(self.status.clone(), listed));
        plan::check_listed(source.header(), listed, &self.upload_tables)?;
        let db = self.db()?;
        let outcome = if msg.reapply {
            db.reapply_package(source)
        } else {
            db.apply_package(source)
        };
        if outcome.is_err() {
            // A failed transaction may leave the connection in any state.
            self.db = None;
        }
        outcome
    }
}

/// Tells the status actor every [`PROGRESS_EVERY`], and the log every
/// [`LOG_PROGRESS_EVERY`], how many rows of the package are applied.
fn progress_hook(status: Addr<Status>, listed: &PackageInfo) -> impl FnMut(u64) + Send {
    let (package_id, total) = (listed.id, listed.rows);
    let started = std::time::Instant::now();
    let (mut told, mut logged) = (None::<std::time::Instant>, started);
    move |rows| {
        let now = std::time::Instant::now();
        if told.is_none_or(|t| now - t >= PROGRESS_EVERY) {
            told = Some(now);
            status.do_send(StatusEvent::ApplyProgress {
                package_id,
                rows,
                total,
            });
        }
        if now - logged >= LOG_PROGRESS_EVERY {
            logged = now;
            tracing::info!(package = %package_id, rows, total,
                elapsed_s = (now - started).as_secs(), "applying package");
        }
    }
}

impl Handler<LastApplied> for Applier {
    type Result = Result<u64, ActorError>;

    fn handle(&mut self, msg: LastApplied, ctx: &mut Self::Context) -> Self::Result {
        let supervision = self.supervision.clone();
        guard(ctx, &supervision, NAME, || {
            Ok(self.db()?.last_applied_sequence(&msg.data_group)?)
        })
    }
}

/// Records in the channel database that a package is passed over (withdrawn
/// or superseded at headquarters) instead of applied, in its place in the
/// order.
#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct PassOver {
    pub package: PackageInfo,
    pub reason: String,
}

impl Handler<PassOver> for Applier {
    type Result = Result<(), ActorError>;

    fn handle(&mut self, msg: PassOver, ctx: &mut Self::Context) -> Self::Result {
        let supervision = self.supervision.clone();
        guard(ctx, &supervision, NAME, || {
            let p = &msg.package;
            self.db()?.pass_over(&PassedOver {
                package_id: p.id,
                data_group: p.data_group.clone(),
                job: p.job.clone(),
                sequence: p.sequence,
                kind: p.kind,
                reason: msg.reason.clone(),
            })?;
            tracing::info!(package = %p.id, sequence = p.sequence, job = %p.job,
                reason = %msg.reason, "package passed over");
            Ok(())
        })
    }
}

/// Forgets the packages the channel database recorded for a data group (a
/// full sync): the position goes back to 0. Answers how many it forgot.
#[derive(Message)]
#[rtype(result = "Result<u64, ActorError>")]
pub struct ForgetApplied {
    pub data_group: String,
}

impl Handler<ForgetApplied> for Applier {
    type Result = Result<u64, ActorError>;

    fn handle(&mut self, msg: ForgetApplied, ctx: &mut Self::Context) -> Self::Result {
        let supervision = self.supervision.clone();
        guard(ctx, &supervision, NAME, || {
            let forgotten = self.db()?.forget_applied(&msg.data_group)?;
            tracing::warn!(data_group = %msg.data_group, forgotten,
                "full sync: the channel database's position in the order went back to 0");
            Ok(forgotten)
        })
    }
}

/// The packages the channel database holds for a data group, in order.
#[derive(Message)]
#[rtype(result = "Result<Vec<AppliedPackage>, ActorError>")]
pub struct AppliedPackages {
    pub data_group: String,
}

impl Handler<AppliedPackages> for Applier {
    type Result = Result<Vec<AppliedPackage>, ActorError>;

    fn handle(&mut self, msg: AppliedPackages, ctx: &mut Self::Context) -> Self::Result {
        let supervision = self.supervision.clone();
        guard(ctx, &supervision, NAME, || {
            Ok(self.db()?.applied_packages(&msg.data_group)?)
        })
    }
}
