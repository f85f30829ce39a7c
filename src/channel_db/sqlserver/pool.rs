//! Connections to SQL Server: a small pool on a runtime of its own.
//!
//! The `ChannelDb` trait is blocking (the agent calls it from blocking
//! threads), tiberius is async, and a tiberius connection belongs to the
//! runtime that opened it. So the pool owns one runtime, every call blocks
//! on it, and every connection lives and dies there.
//!
//! A connection goes back to the pool only after a call succeeded: after
//! an error, a timeout or a dropped future, tiberius's connection may be
//! mid-response (the next query would read the old answer), and inside a
//! transaction only closing it makes the server roll back at once.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tiberius::{AuthMethod, Client, EncryptionLevel};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

use super::tsql;
use crate::channel_db::ChannelDbError;
use crate::config::{Encrypt, SqlServerConfig};

pub type Connection = Client<Compat<TcpStream>>;

/// Retries of an idempotent call after a transient error, and the pause
/// before the first (doubling after each).
const RETRIES: u32 = 3;
const FIRST_PAUSE: Duration = Duration::from_millis(200);

/// SQL Server error numbers worth another try: deadlock victim, lock
/// request timeout, and Azure SQL's "busy, try again" family.
const TRANSIENT_CODES: &[u32] = &[1205, 1222, 40197, 40501, 40613, 49918, 49919, 49920];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reuse {
    IfOk,
    Never,
}

/// A pool of connections to one channel database. Cheap to clone.
#[derive(Clone)]
pub struct SqlServerPool {
    inner: Arc<Inner>,
    /// How long one statement may run through this handle.
    timeout: Duration,
}

struct Inner {
    config: SqlServerConfig,
    runtime: Option<tokio::runtime::Runtime>,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    /// Whether the bookkeeping tables were made sure of; the lock keeps
    /// two first connections from creating them at once.
    bookkeeping_ready: tokio::sync::Mutex<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics on an async thread; the
        // last handle may go on one (the agent's factory closure).
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl SqlServerPool {
    /// A pool for `config`. Connects lazily: the first call connects.
    ///
    /// # Errors
    /// The runtime could not be built (no threads left).
    pub fn new(config: SqlServerConfig) -> Result<Self, ChannelDbError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cdx-sqlserver")
            .enable_all()
            .build()
            .map_err(|e| ChannelDbError::Connect {
                server: server_name(&config),
                detail: format!("cannot start the connection runtime: {e}"),
                transient: false,
            })?;
        let permits = Arc::new(Semaphore::new(config.pool_size as usize));
        Ok(SqlServerPool {
            timeout: config.query_timeout,
            inner: Arc::new(Inner {
                config,
                runtime: Some(runtime),
                idle: Mutex::new(Vec::new()),
                permits,
                bookkeeping_ready: tokio::sync::Mutex::new(false),
            }),
        })
    }

    pub fn config(&self) -> &SqlServerConfig {
        &self.inner.config
    }

    /// The same pool, its statements bounded by `apply_timeout`: an apply's
    /// statements (a full package's delete, a batch's merge) take longer
    /// than a read, and a timeout drops the connection, rolling back all
    /// the package's work so far.
    pub(super) fn for_apply(&self) -> SqlServerPool {
        SqlServerPool {
            inner: self.inner.clone(),
            timeout: self.inner.config.apply_timeout,
        }
    }

    /// Runs `future` to completion on the pool's runtime.
    pub(super) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.inner
            .runtime
            .as_ref()
            .expect("the runtime lives until the pool is dropped")
            .block_on(future)
    }

    /// `future`, failing with `SqlServerTimeout` after this handle's
    /// statement timeout.
    pub(super) async fn timed<T>(
        &self,
        context: impl FnOnce() -> String,
        future: impl Future<Output = Result<T, tiberius::error::Error>>,
    ) -> Result<T, ChannelDbError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, future).await {
            Ok(result) => result.map_err(|e| sql_error(context(), e)),
            Err(_) => Err(ChannelDbError::SqlServerTimeout {
                context: context(),
                timeout,
            }),
        }
    }

    /// Runs `work` on a pooled connection, connecting when none is idle.
    /// The connection goes back to the pool only when `work` succeeded.
    pub(super) fn with_connection<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, ChannelDbError>,
    ) -> Result<T, ChannelDbError> {
        self.run(work, Reuse::IfOk)
    }

    /// [`with_connection`](Self::with_connection) for SQL the backend did
    /// not write: the connection is closed after, whatever state (an open
    /// transaction, a session setting) the SQL left it in.
    pub(super) fn with_throwaway_connection<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, ChannelDbError>,
    ) -> Result<T, ChannelDbError> {
        self.run(work, Reuse::Never)
    }

    fn run<T>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, ChannelDbError>,
        reuse: Reuse,
    ) -> Result<T, ChannelDbError> {
        let _permit =
            self.block_on(self.inner.permits.acquire())
                .map_err(|_| ChannelDbError::Connect {
                    server: server_name(&self.inner.config),
                    detail: "the pool is closed".into(),
                    transient: false,
                })?;
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.block_on(self.connect())?,
        };
        let result = work(&mut connection);
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(_) if reuse == Reuse::IfOk => idle.push(connection),
            Ok(_) => {}
            // The server restarted, or the network failed: every idle
            // connection is as suspect as this one.
            Err(e) if lost_connection(e) => idle.clear(),
            Err(_) => {}
        }
        result
    }

    /// [`with_connection`](Self::with_connection), tried again with a new
    /// connection after a transient error: only for calls that can safely
    /// run twice.
    pub(super) fn retrying<T>(
        &self,
        work: impl Fn(&mut Connection) -> Result<T, ChannelDbError>,
    ) -> Result<T, ChannelDbError> {
        let mut pause = FIRST_PAUSE;
        let mut tries = 0;
        loop {
            match self.with_connection(&work) {
                Err(e) if e.is_transient() && tries < RETRIES => {
                    tries += 1;
                    tracing::warn!(error = %e, try_number = tries, "sql server call failed; trying again");
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                result => return result,
            }
        }
    }

    /// A new connection, logged in, with the session set up and the
    /// bookkeeping tables made sure of.
    async fn connect(&self) -> Result<Connection, ChannelDbError> {
        let config = &self.inner.config;
        let server = server_name(config);
        // Unreachable or slow: may pass. Refused at login: will not, and
        // trying again may lock the login out.
        let fail = |detail: String, transient: bool| ChannelDbError::Connect {
            server: server.clone(),
            detail,
            transient,
        };
        let tds = tds_config(config);
        let login = async {
            let tcp = match (&config.instance, config.port) {
                (Some(_), None) => {
                    use tiberius::SqlBrowser;
                    TcpStream::connect_named(&tds)
                        .await
                        .map_err(|e| fail(e.to_string(), true))?
                }
                _ => TcpStream::connect(tds.get_addr())
                    .await
                    .map_err(|e| fail(e.to_string(), true))?,
            };
            tcp.set_nodelay(true)
                .map_err(|e| fail(e.to_string(), true))?;
            Client::connect(tds.clone(), tcp.compat_write())
                .await
                .map_err(|e| {
                    let transient = is_transient(&e);
                    fail(login_error(e), transient)
                })
        };
        let mut connection = tokio::time::timeout(config.connect_timeout, login)
            .await
            .map_err(|_| {
                let waited = humantime::format_duration(config.connect_timeout);
                fail(format!("no answer within {waited}"), true)
            })??;
        // XACT_ABORT: any error inside a transaction rolls all of it back,
        // rather than leaving it open with some statements done.
        self.timed(|| "set up the session".into(), async {
            connection
                .simple_query("SET XACT_ABORT ON; SET NOCOUNT ON")
                .await?
                .into_results()
                .await
        })
        .await?;
        self.ensure_bookkeeping(&mut connection).await?;
        Ok(connection)
    }

    async fn ensure_bookkeeping(&self, connection: &mut Connection) -> Result<(), ChannelDbError> {
        let mut ready = self.inner.bookkeeping_ready.lock().await;
        if *ready {
            return Ok(());
        }
        let schema = &self.inner.config.schema;
        let ddl = tsql::bookkeeping(schema)?;
        self.timed(
            || format!("create the bookkeeping tables in schema {schema}"),
            async { connection.simple_query(ddl).await?.into_results().await },
        )
        .await?;
        *ready = true;
        Ok(())
    }
}

/// `host`, `host,port` or `host\instance`, for messages.
pub(super) fn server_name(config: &SqlServerConfig) -> String {
    match (&config.instance, config.port) {
        (_, Some(port)) => format!("{},{port}", config.host),
        (Some(instance), None) => format!("{}\\{instance}", config.host),
        (None, None) => config.host.clone(),
    }
}

fn tds_config(config: &SqlServerConfig) -> tiberius::Config {
    let mut tds = tiberius::Config::new();
    tds.host(&config.host);
    if let Some(port) = config.port {
        tds.port(port);
    }
    if let Some(instance) = &config.instance {
        tds.instance_name(instance);
    }
    tds.database(&config.database);
    tds.application_name(&config.application_name);
    tds.authentication(AuthMethod::sql_server(
        &config.user,
        config.password.expose(),
    ));
    tds.encryption(match config.encrypt {
        Encrypt::Required => EncryptionLevel::Required,
        Encrypt::Off => EncryptionLevel::Off,
        Encrypt::Plaintext => EncryptionLevel::NotSupported,
    });
    if config.trust_server_certificate {
        tds.trust_cert();
    }
    if let Some(ca) = &config.trust_server_certificate_ca {
        tds.trust_cert_ca(ca.display());
    }
    tds
}

/// A login failure in words an operator can act on.
fn login_error(e: tiberius::error::Error) -> String {
    match &e {
        tiberius::error::Error::Server(token) if token.code() == 18456 => format!(
            "login failed for the user (SQL Server error 18456): check User Id and the password; {}",
            token.message()
        ),
        tiberius::error::Error::Server(token) if token.code() == 4060 => format!(
            "cannot open the database (SQL Server error 4060): check Database and the user's access; {}",
            token.message()
        ),
        tiberius::error::Error::Routing { host, port } => format!(
            "the server redirects to {host},{port}; put that address in the connection string"
        ),
        _ => e.to_string(),
    }
}

/// A tiberius error with its context, classified.
pub(super) fn sql_error(context: String, source: tiberius::error::Error) -> ChannelDbError {
    ChannelDbError::SqlServer {
        transient: is_transient(&source),
        context,
        source,
    }
}

/// Whether trying again may help: a lost connection, or a server error of
/// the "busy, try again" kind; not a refused login or a broken statement.
fn is_transient(e: &tiberius::error::Error) -> bool {
    match e {
        tiberius::error::Error::Io { .. } => true,
        tiberius::error::Error::Server(token) => is_transient_code(token.code()),
        _ => false,
    }
}

/// Whether SQL Server error `code` is of the "busy, try again" kind.
pub(super) fn is_transient_code(code: u32) -> bool {
    TRANSIENT_CODES.contains(&code)
}

/// Whether `e` says the connection itself failed, not the statement (a
/// timeout says only that one statement was slow).
fn lost_connection(e: &ChannelDbError) -> bool {
    matches!(
        e,
        ChannelDbError::Connect { .. }
            | ChannelDbError::SqlServer {
                source: tiberius::error::Error::Io { .. },
                ..
            }
    )
}
