//! The downloader fetches one package at a time into the working folder,
//! in the configured transfer mode, and verifies it (size and SHA-256).
//! Retrying is the poller's decision; this actor just tries.

use std::path::PathBuf;

use actix::prelude::*;
use cdx::config::DownloadConfig;

use crate::error::ActorError;
use crate::hq::HqClient;
use crate::shutdown::Shutdown;
use crate::status::{Status, StatusEvent};
use crate::supervisor::{guard_future, Supervision};
use crate::transfer::{self, Downloaded, TransferContext};
use cdx::protocol::PackageInfo;

const NAME: &str = "downloader";
const PROGRESS_STEP: u64 = 1 << 20;

#[derive(Message)]
#[rtype(result = "Result<Downloaded, ActorError>")]
pub struct Fetch {
    pub package: PackageInfo,
}

pub struct Downloader {
    hq: HqClient,
    dir: PathBuf,
    config: DownloadConfig,
    status: Addr<Status>,
    shutdown: Shutdown,
    supervision: Supervision,
}

impl Downloader {
    pub fn start(
        hq: HqClient,
        dir: PathBuf,
        config: DownloadConfig,
        status: Addr<Status>,
        shutdown: Shutdown,
        supervision: &Supervision,
    ) -> Addr<Self> {
        let supervision = supervision.clone();
        Supervisor::start(move |_| Downloader {
            hq,
            dir,
            config,
            status,
            shutdown,
            supervision,
        })
    }
}

impl Actor for Downloader {
    type Context = Context<Self>;
}

impl Supervised for Downloader {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.supervision.restarted(NAME);
    }
}

impl Handler<Fetch> for Downloader {
    type Result = ResponseActFuture<Self, Result<Downloaded, ActorError>>;

    fn handle(&mut self, msg: Fetch, _: &mut Self::Context) -> Self::Result {
        let hq = self.hq.clone();
        let dir = self.dir.clone();
        let config = self.config.clone();
        let status = self.status.clone();
        let shutdown = self.shutdown.clone();
        let work = async move {
            let package = msg.package;
            let (id, total) = (package.id, package.bytes);
            // One status event per MiB, not per network read.
            let mut reported = 0u64;
            let mut progress = |bytes: u64| {
                if bytes - reported.min(bytes) >= PROGRESS_STEP || bytes == total {
                    reported = bytes;
                    status.do_send(StatusEvent::DownloadProgress {
                        package_id: id,
                        bytes,
                        total,
                    })
                }
            };
            let mut ctx = TransferContext {
                hq: &hq,
                dir: &dir,
                mode: config.mode,
                chunk_bytes: config.chunk_bytes,
                stop: shutdown.flag(),
                progress: &mut progress,
            };
            let started = std::time::Instant::now();
            let done = transfer::download(&mut ctx, &package).await;
            status.do_send(StatusEvent::DownloadEnded);
            let done = done?;
            metrics::counter!(crate::status::metrics::DOWNLOADED_BYTES)
                .increment(done.bytes.saturating_sub(done.resumed_from));
            metrics::histogram!(crate::status::metrics::DOWNLOAD_DURATION)
                .record(started.elapsed().as_secs_f64());
            tracing::info!(package = %id, bytes = done.bytes, resumed_from = done.resumed_from,
                elapsed_ms = started.elapsed().as_millis() as u64, mode = ?config.mode, "package downloaded");
            Ok(done)
        };
        guard_future(&self.supervision, NAME, work)
    }
}
