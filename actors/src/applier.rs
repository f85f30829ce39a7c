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
use cdx::channel_db::{ApplyOutcome, ChannelDb, ChannelDbError, PackageSource};
use cdx::package::PackageReader;

use crate::error::ActorError;
use crate::supervisor::{guard, Supervision};
use cdx::protocol::PackageInfo;

const NAME: &str = "applier";
/// Tries again after a deadlock, a lock timeout or a lost connection (not
/// the package's fault, so not counted against its try count), pausing
/// `FIRST_PAUSE`, then twice as long each time.
const TRANSIENT_RETRIES: u32 = 3;
const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

/// Opens a connection to the channel database.
pub type ChannelDbFactory =
    Arc<dyn Fn() -> Result<Box<dyn ChannelDb>, ChannelDbError> + Send + Sync>;

#[derive(Message)]
#[rtype(result = "Result<ApplyOutcome, ActorError>")]
pub struct Apply {
    pub package: PackageInfo,
    pub path: PathBuf,
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
    supervision: Supervision,
}

impl Applier {
    pub fn start(open: ChannelDbFactory, supervision: &Supervision) -> Addr<Self> {
        let sup = supervision.clone();
        let factory = supervision.counting_factory(NAME, move || Applier {
            open: open.clone(),
            db: None,
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
            let mut pause = FIRST_PAUSE;
            let mut tries = 0;
            let outcome = loop {
                match self.apply_once(&msg) {
                    Err(e) if e.is_transient() && tries < TRANSIENT_RETRIES => {
                        tries += 1;
                        tracing::warn!(package = %msg.package.id, error = %e, try_number = tries,
                            "channel database busy or unreachable; applying again");
                        std::thread::sleep(pause);
                        pause *= 2;
                    }
                    outcome => break outcome?,
                }
            };
            tracing::info!(package = %msg.package.id, sequence = msg.package.sequence,
                job = %msg.package.job, outcome = ?outcome,
                elapsed_ms = started.elapsed().as_millis() as u64, "package applied");
            Ok(outcome)
        })
    }
}

impl Applier {
    /// One try: the package file read from the start, in one transaction.
    fn apply_once(&mut self, msg: &Apply) -> Result<ApplyOutcome, ChannelDbError> {
        let package_err = |source| ChannelDbError::Package {
            package_id: Some(msg.package.id),
            source,
        };
        let file = std::fs::File::open(&msg.path).map_err(|e| package_err(e.into()))?;
        let input: Box<dyn std::io::Read + Send> =
            Box::new(BufReader::with_capacity(1 << 20, file));
        let source: PackageSource<'_> = PackageReader::open(input).map_err(package_err)?;
        let outcome = self.db()?.apply_package(source);
        if outcome.is_err() {
            // A failed transaction may leave the connection in any state.
            self.db = None;
        }
        outcome
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
