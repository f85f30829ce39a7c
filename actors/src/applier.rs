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
use cdx::channel_db::{ApplyOutcome, ChannelDb, ChannelDbError, PackageSource, UploadTable};
use cdx::package::{Declared, PackageReader};
use cdx::plan;

use crate::error::ActorError;
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
    supervision: Supervision,
}

impl Applier {
    pub fn start(
        open: ChannelDbFactory,
        upload_tables: Vec<UploadTable>,
        supervision: &Supervision,
    ) -> Addr<Self> {
        let sup = supervision.clone();
        let upload_tables: Arc<[UploadTable]> = upload_tables.into();
        let factory = supervision.counting_factory(NAME, move || Applier {
            open: open.clone(),
            db: None,
            upload_tables: upload_tables.clone(),
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
            let outcome = self.apply_once(&msg)?;
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
        let source: PackageSource<'_> =
            PackageReader::open(input)
                .map_err(package_err)?
                .expect(Declared {
                    rows: listed.rows,
                    content_bytes: listed.content_bytes,
                });
        plan::check_listed(source.header(), listed, &self.upload_tables)?;
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
