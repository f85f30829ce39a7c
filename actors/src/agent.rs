//! Wiring: builds the actors in dependency order, starts the status
//! endpoint, and shuts everything down in order.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use cdx::channel_db::{SqlServerChannelDb, SqlServerPool, SqliteChannelDb};
use cdx::config::{ChannelDbConfig, Config, SqlServerConfig};
use thiserror::Error;

use crate::applier::{Applier, ChannelDbFactory};
use crate::downloader::Downloader;
use crate::hq::{HqClient, HqError};
use crate::journal::{Flush, Journal, JournalError, JournalStore};
use crate::poller::{Pipeline, Poller};
use crate::reporter::Reporter;
use crate::scheduler::Scheduler;
use crate::shutdown::Shutdown;
use crate::status::{self, Identity, Status};
use crate::supervisor::Supervision;
use crate::uploader::{UploadPass, Uploader};

/// How long shutdown waits for the work in hand (an apply, an upload) to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum StartError {
    #[error("cannot create the working folder {path}: {source}")]
    WorkingFolder {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Hq(#[from] HqError),
    #[error("cannot listen for the status endpoint on {addr}: {source}")]
    StatusListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running agent. Build it inside an actix `System`.
pub struct Agent {
    pub supervision: Supervision,
    /// Where the status endpoint listens, if enabled.
    pub status_addr: Option<SocketAddr>,
    shutdown: Shutdown,
    journal: Addr<Journal>,
    actors: Actors,
    status_server: Option<actix_web::dev::ServerHandle>,
}

/// Held so that the supervised actors live as long as the agent.
struct Actors {
    _scheduler: Addr<Scheduler>,
    poller: Addr<Poller>,
    uploader: Addr<Uploader>,
    _status: Addr<Status>,
}

/// Opens SQLite channel databases at `path`.
pub fn sqlite_factory(path: std::path::PathBuf) -> ChannelDbFactory {
    Arc::new(move || Ok(Box::new(SqliteChannelDb::open(&path)?) as Box<_>))
}

/// The factory for the configured channel database.
pub fn channel_db_factory(config: &Config) -> ChannelDbFactory {
    match &config.channel_db {
        ChannelDbConfig::Sqlite { path } => sqlite_factory(path.clone()),
        ChannelDbConfig::SqlServer(config) => sqlserver_factory(config.clone()),
    }
}

/// Opens SQL Server channel databases sharing one connection pool.
pub fn sqlserver_factory(config: SqlServerConfig) -> ChannelDbFactory {
    match SqlServerPool::new(config) {
        Ok(pool) => Arc::new(move || Ok(Box::new(SqlServerChannelDb::new(pool.clone())) as Box<_>)),
        Err(e) => {
            let e = Arc::new(e.to_string());
            Arc::new(move || {
                Err(cdx::channel_db::ChannelDbError::Connect {
                    server: "sql server".into(),
                    detail: e.to_string(),
                    transient: false,
                })
            })
        }
    }
}

impl Agent {
    /// Starts every actor. `open_db` opens channel database connections
    /// (tests pass one that injects faults).
    pub async fn start(config: Config, open_db: ChannelDbFactory) -> Result<Self, StartError> {
        let downloads_dir = config.working_folder.join("downloads");
        std::fs::create_dir_all(&downloads_dir).map_err(|source| StartError::WorkingFolder {
            path: downloads_dir.clone(),
            source,
        })?;
        let supervision = Supervision::default();
        let shutdown = Shutdown::default();
        let hq = HqClient::new(&config.server)?;
        let (store, _) = JournalStore::open(&config.message_db)?;

        let reporter = Reporter::start(hq.clone(), &supervision);
        supervision.watch("reporter", watch(&reporter));
        let journal = Journal::start(store, Some(reporter.recipient()), &supervision);
        let status = Status::start(identity(&config), journal.clone(), &supervision);
        supervision.watch("status", watch(&status));
        let downloader = Downloader::start(
            hq.clone(),
            downloads_dir.clone(),
            config.download.clone(),
            status.clone(),
            shutdown.clone(),
            &supervision,
        );
        supervision.watch("downloader", watch(&downloader));
        let applier = Applier::start(open_db.clone(), &supervision);
        let poller = Poller::start(
            Pipeline {
                hq: hq.clone(),
                journal: journal.clone(),
                downloader,
                applier,
                status: status.clone(),
                config: config.download.clone(),
                retry: config.retry,
                shutdown: shutdown.clone(),
                downloads_dir,
            },
            &supervision,
        );
        supervision.watch("poller", watch(&poller));
        let uploader = Uploader::start(
            UploadPass {
                hq,
                journal: journal.clone(),
                status: status.clone(),
                config: config.upload.clone(),
                retry: config.retry,
                shutdown: shutdown.clone(),
                open_db,
                db: Arc::new(Mutex::new(None)),
            },
            &supervision,
        );
        supervision.watch("uploader", watch(&uploader));
        let scheduler = Scheduler {
            poller: poller.clone(),
            uploader: uploader.clone(),
            journal: journal.clone(),
            download_interval: config.download.interval,
            upload_interval: config.upload.interval,
            journal_retention: config.journal_retention,
            supervision: supervision.clone(),
        }
        .start();
        supervision.watch("scheduler", watch(&scheduler));

        let (status_addr, status_server) = match config.status_listen {
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .map_err(|source| StartError::StatusListen { addr, source })?;
                let bound = listener.local_addr().ok();
                let server = status::serve(
                    listener,
                    status.clone(),
                    poller.clone(),
                    supervision.clone(),
                )
                .map_err(|source| StartError::StatusListen { addr, source })?;
                let handle = server.handle();
                actix_rt::spawn(server);
                (bound, Some(handle))
            }
            None => (None, None),
        };
        tracing::info!(channel = %config.server.channel_id, server = %config.server.url,
            mode = ?config.download.mode, status = ?status_addr, "agent started");
        Ok(Self {
            supervision,
            status_addr,
            shutdown,
            journal,
            actors: Actors {
                _scheduler: scheduler,
                poller,
                uploader,
                _status: status,
            },
            status_server,
        })
    }

    /// Stops new work, lets the work in hand finish (an apply commits or
    /// rolls back as a whole; a reliable download keeps its confirmed
    /// chunks to resume), then makes the journal durable.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        self.shutdown.trigger();
        let started = Instant::now();
        while started.elapsed() < DRAIN_TIMEOUT && self.busy().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Err(e) = self.journal.send(Flush).await {
            tracing::error!(error = %e, "could not flush the message database");
        }
        if let Some(server) = self.status_server {
            server.stop(true).await;
        }
        tracing::info!("stopped");
    }

    /// Whether a pass is still in hand. A dead actor has nothing in hand.
    async fn busy(&self) -> bool {
        let poller = self.actors.poller.send(crate::poller::IsBusy).await;
        let uploader = self.actors.uploader.send(crate::uploader::IsBusy).await;
        poller.unwrap_or(false) || uploader.unwrap_or(false)
    }
}

fn identity(config: &Config) -> Identity {
    Identity {
        channel_id: config.server.channel_id.clone(),
        server_url: config.server.url.clone(),
        transfer_mode: format!("{:?}", config.download.mode).to_lowercase(),
    }
}

fn watch<A: actix::Actor>(addr: &Addr<A>) -> impl Fn() -> bool + Send + Sync + 'static {
    let addr = addr.clone();
    move || addr.connected()
}
