//! The journal actor: the only writer of the message database.
//!
//! It runs on a `SyncArbiter` thread of its own, so sled's blocking calls
//! never stall the network actors. Every saved session is also passed to
//! the reporter, which tells the server: each status change reaches
//! headquarters from this one place.

mod model;
mod store;

use actix::prelude::*;
pub use model::{DownloadSession, Transition, UploadSession};
pub use store::{JournalError, JournalStore};

use crate::error::ActorError;
use crate::reporter::Report;
use crate::supervisor::{guard, Supervision};

const NAME: &str = "journal";

pub struct Journal {
    store: JournalStore,
    reporter: Option<Recipient<Report>>,
    supervision: Supervision,
}

impl Journal {
    /// Starts the journal on its own thread. `store` is opened once by the
    /// caller (sled allows one open per process) and shared by restarts.
    pub fn start(
        store: JournalStore,
        reporter: Option<Recipient<Report>>,
        supervision: &Supervision,
    ) -> Addr<Self> {
        let sup = supervision.clone();
        let factory = supervision.counting_factory(NAME, move || Journal {
            store: store.clone(),
            reporter: reporter.clone(),
            supervision: sup.clone(),
        });
        let addr = SyncArbiter::start(1, factory);
        let watched = addr.clone();
        supervision.watch(NAME, move || watched.connected());
        addr
    }

    fn report(&self, report: cdx::protocol::StatusReport) {
        if let Some(r) = &self.reporter {
            r.do_send(Report(report));
        }
    }
}

impl Actor for Journal {
    type Context = SyncContext<Self>;
}

/// Stores a download session's current state (durably when `flush`).
#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct SaveDownload {
    pub session: DownloadSession,
    pub flush: bool,
}

#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct SaveUpload {
    pub session: UploadSession,
    pub flush: bool,
}

/// Every download session not yet Applied or Canceled, oldest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<DownloadSession>, ActorError>")]
pub struct OpenDownloads;

#[derive(Message)]
#[rtype(result = "Result<Vec<UploadSession>, ActorError>")]
pub struct OpenUploads;

/// Every download session of one package, newest first (for an operator's
/// rerun or cancel).
#[derive(Message)]
#[rtype(result = "Result<Vec<DownloadSession>, ActorError>")]
pub struct PackageSessions {
    pub package_id: uuid::Uuid,
}

/// The newest sessions of each direction, newest first.
#[derive(Message)]
#[rtype(result = "Result<(Vec<DownloadSession>, Vec<UploadSession>), ActorError>")]
pub struct Recent {
    pub limit: usize,
}

/// How many sessions there are, by direction and status (for `/metrics`).
#[derive(Message)]
#[rtype(result = "Result<crate::status::metrics::SessionCounts, ActorError>")]
pub struct CountSessions;

/// Makes every write so far durable.
#[derive(Message)]
#[rtype(result = "Result<(), ActorError>")]
pub struct Flush;

/// Removes finished sessions older than `before_ms`.
#[derive(Message)]
#[rtype(result = "Result<usize, ActorError>")]
pub struct Prune {
    pub before_ms: i64,
}

impl Journal {
    /// Stores a session with `put`, durably when `flush`, then reports it.
    fn save(
        &self,
        ctx: &mut SyncContext<Self>,
        put: impl FnOnce(&JournalStore) -> Result<(), JournalError>,
        flush: bool,
        report: cdx::protocol::StatusReport,
    ) -> Result<(), ActorError> {
        let store = self.store.clone();
        guard(ctx, &self.supervision, NAME, || {
            put(&store)?;
            if flush {
                store.flush()?;
            }
            Ok(())
        })?;
        self.report(report);
        Ok(())
    }
}

impl Handler<SaveDownload> for Journal {
    type Result = Result<(), ActorError>;
    fn handle(&mut self, msg: SaveDownload, ctx: &mut Self::Context) -> Self::Result {
        let report = msg.session.report();
        self.save(
            ctx,
            |store| store.put_download(&msg.session),
            msg.flush,
            report,
        )
    }
}

impl Handler<SaveUpload> for Journal {
    type Result = Result<(), ActorError>;
    fn handle(&mut self, msg: SaveUpload, ctx: &mut Self::Context) -> Self::Result {
        let report = msg.session.report();
        self.save(
            ctx,
            |store| store.put_upload(&msg.session),
            msg.flush,
            report,
        )
    }
}

/// The sessions of `newest_first` that are not final, oldest first.
fn open_sessions<S>(
    newest_first: Result<Vec<S>, JournalError>,
    is_final: impl Fn(&S) -> bool,
) -> Result<Vec<S>, ActorError> {
    let mut open = newest_first?;
    open.retain(|s| !is_final(s));
    open.reverse();
    Ok(open)
}

impl Handler<OpenDownloads> for Journal {
    type Result = Result<Vec<DownloadSession>, ActorError>;
    fn handle(&mut self, _: OpenDownloads, ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        guard(ctx, &self.supervision.clone(), NAME, || {
            open_sessions(store.downloads(), |s| s.status.is_final())
        })
    }
}

impl Handler<PackageSessions> for Journal {
    type Result = Result<Vec<DownloadSession>, ActorError>;
    fn handle(&mut self, msg: PackageSessions, ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        guard(ctx, &self.supervision.clone(), NAME, || {
            let mut all = store.downloads()?;
            all.retain(|s| s.package.id == msg.package_id);
            Ok(all)
        })
    }
}

impl Handler<OpenUploads> for Journal {
    type Result = Result<Vec<UploadSession>, ActorError>;
    fn handle(&mut self, _: OpenUploads, ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        guard(ctx, &self.supervision.clone(), NAME, || {
            open_sessions(store.uploads(), |s| s.status.is_final())
        })
    }
}

impl Handler<Recent> for Journal {
    type Result = Result<(Vec<DownloadSession>, Vec<UploadSession>), ActorError>;
    fn handle(&mut self, msg: Recent, ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        guard(ctx, &self.supervision.clone(), NAME, || {
            let downloads = store.recent_downloads(msg.limit)?;
            let uploads = store.recent_uploads(msg.limit)?;
            Ok((downloads, uploads))
        })
    }
}

impl Handler<CountSessions> for Journal {
    type Result = Result<crate::status::metrics::SessionCounts, ActorError>;
    fn handle(&mut self, _: CountSessions, ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        guard(ctx, &self.supervision.clone(), NAME, || {
            let mut counts = crate::status::metrics::SessionCounts::new();
            for s in store.downloads()? {
                *counts
                    .entry(("download", format!("{:?}", s.status)))
                    .or_default() += 1;
            }
            for s in store.uploads()? {
                *counts
                    .entry(("upload", format!("{:?}", s.status)))
                    .or_default() += 1;
            }
            Ok(counts)
        })
    }
}

impl Handler<Flush> for Journal {
    type Result = Result<(), ActorError>;
    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        guard(ctx, &self.supervision.clone(), NAME, || Ok(store.flush()?))
    }
}

impl Handler<Prune> for Journal {
    type Result = Result<usize, ActorError>;
    fn handle(&mut self, msg: Prune, ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        guard(ctx, &self.supervision.clone(), NAME, || {
            Ok(store.prune(msg.before_ms)?)
        })
    }
}
