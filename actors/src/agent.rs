//! Wiring: builds the actors in dependency order, starts the status
//! endpoint, and shuts everything down in order.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use cdx::channel_db::{SqlServerChannelDb, SqlServerPool, SqliteChannelDb};
use cdx::config::{ChannelDbConfig, Config, Secret, SqlServerConfig};
use std::path::Path;
use thiserror::Error;

use crate::applier::{Applier, ChannelDbFactory};
use crate::downloader::Downloader;
use crate::hq::{HqClient, HqError};
use crate::journal::{DownloadSession, Flush, Journal, JournalError, JournalStore, UploadSession};
use crate::poller::{Pipeline, Poller};
use crate::reporter::Reporter;
use crate::scheduler::Scheduler;
use crate::shutdown::Shutdown;
use crate::status::{self, GetHealth, Identity, Status};
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
    #[error("cannot listen for the status endpoint on {addr} (status.listen): {source}")]
    StatusListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("another agent is already running (pid {pid}) on the message database {}", path.display())]
    AlreadyRunning {
        path: std::path::PathBuf,
        pid: String,
    },
    #[error("cannot lock the message database {}: {source}", path.display())]
    Lock {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the control token file {} (status.control_token_file): {source}", path.display())]
    ControlToken {
        path: std::path::PathBuf,
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
    /// Held while the agent runs: one agent per message database.
    _lock: std::fs::File,
}

/// Held so that the supervised actors live as long as the agent.
struct Actors {
    _scheduler: Addr<Scheduler>,
    poller: Addr<Poller>,
    uploader: Addr<Uploader>,
    status: Addr<Status>,
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
        // Everything that can refuse to start does so before any actor runs.
        let lock = lock_message_db(&config.message_db)?;
        let status_listener = match config.status_listen {
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .map_err(|source| StartError::StatusListen { addr, source })?;
                if !addr.ip().is_loopback() {
                    tracing::warn!(listen = %addr,
                        "the status endpoint listens beyond this machine; \
                         keep it behind a firewall (control calls still need the token)");
                }
                Some(listener)
            }
            None => None,
        };
        let access = status::ControlAccess {
            token: control_token(&config)?,
            allowed_hosts: config.control.allowed_hosts.clone(),
        };
        let supervision = Supervision::default();
        let shutdown = Shutdown::default();
        let hq = HqClient::new(&config.server)?;
        let (store, _) = JournalStore::open(&config.message_db)?;
        clean_working_folder(&downloads_dir, &store);

        let reporter = Reporter::start(hq.clone(), &supervision);
        supervision.watch("reporter", watch(&reporter));
        let journal = Journal::start(store, Some(reporter.recipient()), &supervision);
        crate::status::metrics::install();
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
        let applier = Applier::start(
            open_db.clone(),
            config.upload.tables.clone(),
            status.clone(),
            &supervision,
        );
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
                went_back: Default::default(),
                head: Default::default(),
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
                consulted: Arc::default(),
                zstd: Arc::default(),
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

        let (status_addr, status_server) = match status_listener {
            Some(listener) => {
                let bound = listener.local_addr().ok();
                let addr = bound.unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
                let server = status::serve(
                    listener,
                    status.clone(),
                    poller.clone(),
                    uploader.clone(),
                    journal.clone(),
                    access,
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
                status,
            },
            status_server,
            _lock: lock,
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

    /// Whether the agent is alive, for systemd's watchdog: the status actor
    /// answers within `within` and no actor is down. A failing stage (say,
    /// headquarters unreachable) is not a reason: `/health` reports it, and
    /// a restart would not fix it.
    pub async fn alive(&self, within: Duration) -> Result<(), String> {
        let down: Vec<&str> = self
            .supervision
            .snapshot()
            .into_iter()
            .filter(|(_, a)| !a.alive)
            .map(|(name, _)| name)
            .collect();
        if !down.is_empty() {
            return Err(format!("actors down: {}", down.join(", ")));
        }
        match tokio::time::timeout(within, self.actors.status.send(GetHealth)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err("the status actor is gone".into()),
            Err(_) => Err(format!("the status actor did not answer in {within:?}")),
        }
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
        stall_after: config.stall_after,
    }
}

/// The newest `limit` sessions of each direction, read from the message
/// database of a stopped agent (under its lock, so an agent cannot start
/// meanwhile); an error when the agent runs.
pub fn stopped_agent_sessions(
    config: &Config,
    limit: usize,
) -> Result<(Vec<DownloadSession>, Vec<UploadSession>), StartError> {
    let _lock = lock_message_db(&config.message_db)?;
    let store = JournalStore::open_existing(&config.message_db)?;
    Ok((store.recent_downloads(limit)?, store.recent_uploads(limit)?))
}

/// Takes the message database's lock file (`<message_db>.lock`, holding
/// the pid): a second agent on the same configuration refuses to start and
/// touches nothing.
fn lock_message_db(message_db: &Path) -> Result<std::fs::File, StartError> {
    let mut name = message_db.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let path = message_db.with_file_name(name);
    let lock_err = |source| StartError::Lock {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(lock_err)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(lock_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(StartError::AlreadyRunning {
                path: message_db.to_owned(),
                pid: pid.trim().to_string(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
    }
    use std::io::Write as _;
    file.set_len(0)
        .and_then(|()| write!(file, "{}", std::process::id()))
        .map_err(lock_err)?;
    Ok(file)
}

/// The control token: the configured one, or a new random one. Either is
/// written to the token file, readable by the agent's user only.
fn control_token(config: &Config) -> Result<Secret, StartError> {
    let token = config.control.token.clone().unwrap_or_else(|| {
        Secret::new(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ))
    });
    let path = &config.control.token_file;
    write_private(path, token.expose()).map_err(|source| StartError::ControlToken {
        path: path.clone(),
        source,
    })?;
    Ok(token)
}

/// Writes `text` to `path` with mode 0600, replacing what was there.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}

/// Removes package files the journal no longer needs: packages applied or
/// canceled (the agent was killed between the commit and the clean-up), and
/// partial downloads of sessions it does not know. Other files are left.
fn clean_working_folder(dir: &Path, store: &JournalStore) {
    let Ok(sessions) = store.downloads() else {
        return;
    };
    let open: std::collections::HashSet<uuid::Uuid> = sessions
        .into_iter()
        .filter(|s| !s.status.is_final())
        .map(|s| s.package.id)
        .collect();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.split('.').next())
            .and_then(|n| uuid::Uuid::parse_str(n).ok())
        else {
            continue;
        };
        let is_package = name.to_str().is_some_and(|n| n.contains(".cdxpkg"));
        if is_package && !open.contains(&id) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(file = %entry.path().display(),
                    "removed a package file no open session needs"),
                Err(e) => tracing::warn!(file = %entry.path().display(), error = %e,
                    "cannot remove a package file no open session needs"),
            }
        }
    }
}

fn watch<A: actix::Actor>(addr: &Addr<A>) -> impl Fn() -> bool + Send + Sync + 'static {
    let addr = addr.clone();
    move || addr.connected()
}
