//! Test helpers: a headquarters server, agent configurations, running an
//! agent in process until a condition holds, a fault-injecting proxy.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown as NetShutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdx::channel_db::{ChannelDb, SqliteChannelDb};
use cdx::config::Config;
use cdx::package::{Column, ColumnType, PackageKind, TableSchema, Value};
use cdx::protocol::PackageInfo;
use cdx::retail::{DataSetSize, GeneratedPackage, GeneratedRow};
use cdx_actors::agent::Agent;
use cdx_actors::applier::ChannelDbFactory;
use cdx_actors::status::StatusDocument;
use cdx_server::{self as server, PublishSpec, RunningServer};

pub const CHANNEL: &str = "store-0001";
pub const GROUP: &str = "default";
pub const SECRET: &str = "correct horse battery staple";
pub const SEED: u64 = 7;

/// A small data set, so a test syncs in well under a second.
pub fn small() -> DataSetSize {
    DataSetSize {
        products: 300,
        customers: 120,
        stores: 3,
        staff: 10,
    }
}

/// Headquarters: a real server on its own thread and its data folder.
pub struct Hq {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
}

impl Hq {
    pub fn start() -> Hq {
        let dir = tempfile::tempdir().unwrap();
        let server = server::spawn(dir.path().join("hq"), "127.0.0.1:0").unwrap();
        server.store().add_channel(CHANNEL, GROUP, SECRET).unwrap();
        Hq { server, dir }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn publish(&self, package: GeneratedPackage) -> PackageInfo {
        publish_to(self.server.store(), package)
    }

    /// Publishes the initial full packages of `size`; returns them.
    pub fn publish_initial(&self, size: DataSetSize) -> Vec<PackageInfo> {
        cdx::retail::initial_packages(size, SEED)
            .into_iter()
            .map(|p| self.publish(p))
            .collect()
    }

    pub fn publish_round(&self, size: DataSetSize, round: u64) -> Vec<PackageInfo> {
        cdx::retail::incremental_packages(size, SEED, round)
            .into_iter()
            .map(|p| self.publish(p))
            .collect()
    }

    /// Publishes one table of rows as a package of its own.
    pub fn publish_table(
        &self,
        job: &str,
        kind: PackageKind,
        table: TableSchema,
        rows: Vec<Vec<Value>>,
    ) -> PackageInfo {
        let rows = rows.into_iter().map(|r| (0u32, GeneratedRow::Upsert(r)));
        self.publish(GeneratedPackage {
            job: job.into(),
            kind,
            tables: vec![table],
            rows: Box::new(rows.collect::<Vec<_>>().into_iter()),
        })
    }

    pub fn package_file(&self, id: uuid::Uuid) -> PathBuf {
        self.server.store().package_path(id)
    }

    /// Makes the server list `bytes` as the package's content (its size and
    /// SHA-256, its uncompressed size unknown), as if the package had been
    /// corrupted before it was listed.
    pub fn relist(&self, id: uuid::Uuid, bytes: &[u8]) {
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(bytes));
        let conn = rusqlite::Connection::open(self.dir.path().join("hq/server.db")).unwrap();
        let n = conn
            .execute(
                "UPDATE packages SET sha256 = ?1, bytes = ?2, content_bytes = NULL WHERE id = ?3",
                rusqlite::params![sha, bytes.len() as i64, id.to_string()],
            )
            .unwrap();
        assert_eq!(n, 1, "package {id} not found in server.db");
    }

    /// Replaces package `id`'s file with one of the same rows whose header
    /// `tamper` changed, and lists it as is.
    pub fn tamper_header(
        &self,
        id: uuid::Uuid,
        tamper: impl FnOnce(&mut cdx::package::PackageHeader),
    ) {
        let file = self.package_file(id);
        let reader =
            cdx::package::PackageReader::open(std::fs::File::open(&file).unwrap()).unwrap();
        let mut header = reader.header().clone();
        let mut frames = Vec::new();
        let mut reader = reader;
        while let Some(frame) = reader.next_frame().unwrap() {
            frames.push(frame);
        }
        tamper(&mut header);
        let mut w = cdx::package::PackageWriter::new(Vec::new(), &header).unwrap();
        for frame in frames {
            match frame {
                cdx::package::Frame::Table(i) => w.table(i).unwrap(),
                cdx::package::Frame::Upsert(row) => w.upsert(&row).unwrap(),
                cdx::package::Frame::Delete(key) => w.delete(&key).unwrap(),
                cdx::package::Frame::End { .. } => {}
            }
        }
        let (bytes, _) = w.finish().unwrap();
        std::fs::write(&file, &bytes).unwrap();
        self.relist(id, &bytes);
    }

    /// The channel's download session of `package`, as headquarters shows it.
    pub fn download_session(&self, package: uuid::Uuid) -> Option<cdx::protocol::SessionInfo> {
        download_session_in(self.server.store(), package)
    }

    pub fn download_status(&self, package: uuid::Uuid) -> Option<String> {
        self.download_session(package).map(|s| s.status)
    }

    pub fn uploaded(&self, table: &str) -> u64 {
        self.server
            .store()
            .uploaded_row_count(CHANNEL, table)
            .unwrap()
    }
}

/// A store: its folder, channel database and agent configuration.
pub struct StoreDir {
    pub dir: tempfile::TempDir,
}

impl StoreDir {
    pub fn new() -> StoreDir {
        StoreDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn channel_db(&self) -> PathBuf {
        self.dir.path().join("channel.db")
    }

    /// Writes `agent.toml` for `url`, with `extra` TOML appended, and
    /// returns its path.
    pub fn write_config(&self, url: &str, mode: &str, extra: &str) -> PathBuf {
        let text = format!(
            r#"
[server]
url = "{url}"
channel_id = "{CHANNEL}"
secret = "{SECRET}"
request_timeout = "5s"

[storage]
working_folder = "work"

[channel_db]
path = "channel.db"

[download]
mode = "{mode}"
interval = "1s"
long_poll = "2s"
chunk_bytes = 65536

[retry]
try_count = 3
initial_backoff = "50ms"
max_backoff = "200ms"

[status]
listen = "127.0.0.1:0"
{extra}
"#
        );
        let path = self.dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn config(&self, url: &str, mode: &str, extra: &str) -> Config {
        Config::load(&self.write_config(url, mode, extra)).unwrap()
    }

    pub fn db(&self) -> SqliteChannelDb {
        SqliteChannelDb::open(self.channel_db()).unwrap()
    }

    pub fn applied(&self) -> u64 {
        self.db().last_applied_sequence(GROUP).unwrap()
    }

    pub fn rows(&self, table: &str) -> u64 {
        self.db().row_count(table).unwrap()
    }

    pub fn pos(&self) -> cdx::retail::PosSimulator {
        let pos = cdx::retail::PosSimulator::open(self.channel_db(), 1, small(), SEED).unwrap();
        pos.create_tables().unwrap();
        pos
    }
}

/// What an in-process agent run ended with.
pub struct Run {
    pub status: StatusDocument,
    /// `GET /status` as the agent sent it.
    pub status_body: String,
    /// `GET /health`'s code and body.
    pub health: (u16, String),
    pub reached: bool,
}

/// Runs an agent until `done` holds (checked every 20 ms) or `timeout`
/// passes, then shuts it down gracefully.
pub fn run_agent(
    config: Config,
    open_db: ChannelDbFactory,
    timeout: Duration,
    done: impl FnMut() -> bool,
) -> Run {
    let agent = RunningAgent::start(config, open_db);
    let reached = wait_until(timeout, done);
    let status = agent.status();
    let (_, status_body) = http(agent.status_addr, "GET", "/status");
    let health = http(agent.status_addr, "GET", "/health");
    agent.stop();
    Run {
        status,
        status_body,
        health,
        reached,
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// An agent running in process, on a thread with its own actix `System`.
pub struct RunningAgent {
    pub status_addr: SocketAddr,
    /// Where the agent wrote its control token.
    pub token_file: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RunningAgent {
    pub fn start(config: Config, open_db: ChannelDbFactory) -> RunningAgent {
        init_logging();
        let token_file = config.control.token_file.clone();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let agent = Agent::start(config, open_db).await.expect("agent starts");
                addr_tx
                    .send(agent.status_addr.expect("status enabled"))
                    .unwrap();
                let _ = stop_rx.await;
                agent.shutdown().await;
            })
        });
        let status_addr = addr_rx.recv().expect("the agent started");
        RunningAgent {
            status_addr,
            token_file,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn status(&self) -> StatusDocument {
        let (code, body) = http(self.status_addr, "GET", "/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad status document {e}: {body}"))
    }

    /// `POST /control/resume` with the control token.
    pub fn resume(&self) -> (u16, String) {
        let token = std::fs::read_to_string(&self.token_file).unwrap();
        http_with(
            self.status_addr,
            "POST",
            "/control/resume",
            &[("Authorization", &format!("Bearer {token}"))],
        )
    }

    pub fn status_json(&self) -> serde_json::Value {
        let (_, body) = http(self.status_addr, "GET", "/status");
        serde_json::from_str(&body).unwrap()
    }

    /// Stops the agent gracefully and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("the agent thread panicked");
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.shutdown();
        }
    }
}

/// A plain HTTP/1.1 request; returns the status code and body.
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    http_with(addr, method, path, &[])
}

/// A plain HTTP/1.1 request with extra headers (a `Host` among them
/// replaces the default one).
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

pub fn sqlite(path: PathBuf) -> ChannelDbFactory {
    cdx_actors::sqlite_factory(path)
}

/// A TCP proxy between agent and server. The first `cuts` connections
/// that carry a package download (`/content`) are cut after `after_bytes`
/// bytes of it; other calls pass untouched.
pub struct FaultyProxy {
    pub addr: SocketAddr,
    pub cuts_left: Arc<AtomicU32>,
    pub bytes_forwarded: Arc<AtomicU64>,
    /// Listing requests (`GET /v1/packages?...`) seen.
    pub listings: Arc<AtomicU64>,
    /// Batches of status reports turned into 404s (see [`FaultyProxy::older_server`]).
    pub batches_hidden: Arc<AtomicU64>,
}

struct Faults {
    after_bytes: u64,
    cuts_left: Arc<AtomicU32>,
    forwarded: Arc<AtomicU64>,
    listings: Arc<AtomicU64>,
    throttle: Duration,
    hide_batches: bool,
    batches_hidden: Arc<AtomicU64>,
}

/// The request line of a batch of status reports, and the same length of
/// a route no server has.
const STATUS_BATCH_LINE: &[u8] = b"POST /v1/status/batch ";
const NO_ROUTE_LINE: &[u8] = b"POST /v1/status/xxxxx ";

impl FaultyProxy {
    pub fn start(upstream: SocketAddr, after_bytes: u64, cuts: u32) -> FaultyProxy {
        Self::with_throttle(upstream, after_bytes, cuts, Duration::ZERO)
    }

    /// A proxy that makes the server look older: `POST /v1/status/batch`
    /// goes to a route the server does not have, so it answers 404.
    pub fn older_server(upstream: SocketAddr) -> FaultyProxy {
        Self::build(upstream, 0, 0, Duration::ZERO, true)
    }

    /// A proxy that also waits `throttle` after every 16 KiB it forwards.
    pub fn with_throttle(
        upstream: SocketAddr,
        after_bytes: u64,
        cuts: u32,
        throttle: Duration,
    ) -> FaultyProxy {
        Self::build(upstream, after_bytes, cuts, throttle, false)
    }

    fn build(
        upstream: SocketAddr,
        after_bytes: u64,
        cuts: u32,
        throttle: Duration,
        hide_batches: bool,
    ) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let faults = Arc::new(Faults {
            after_bytes,
            cuts_left: Arc::new(AtomicU32::new(cuts)),
            forwarded: Arc::new(AtomicU64::new(0)),
            listings: Arc::new(AtomicU64::new(0)),
            throttle,
            hide_batches,
            batches_hidden: Arc::new(AtomicU64::new(0)),
        });
        let proxy = FaultyProxy {
            addr,
            cuts_left: faults.cuts_left.clone(),
            bytes_forwarded: faults.forwarded.clone(),
            listings: faults.listings.clone(),
            batches_hidden: faults.batches_hidden.clone(),
        };
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                // Headquarters down: the connection is reset at once.
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                pipe(client, server, faults.clone());
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Copies both ways. From the first package download (`/content`) on the
/// connection, the connection is cut after `after_bytes` bytes from the
/// server, if a cut is left then.
fn pipe(client: TcpStream, server: TcpStream, faults: Arc<Faults>) {
    let budget = Arc::new(AtomicU64::new(u64::MAX));
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (arm, f) = (budget.clone(), faults.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        let mut armed = false;
        loop {
            let n = match c_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let listings = buf[..n]
                .windows(17)
                .filter(|w| w == b"GET /v1/packages?")
                .count();
            f.listings.fetch_add(listings as u64, Ordering::Relaxed);
            // A download from the API, or of a content URL (`<sha256>.cdxpkg`).
            let download = buf[..n].windows(8).any(|w| w == b"/content")
                || buf[..n].windows(7).any(|w| w == b".cdxpkg");
            if !armed && download {
                arm.store(f.after_bytes, Ordering::SeqCst);
                armed = true;
            }
            if f.hide_batches {
                if let Some(at) = buf[..n]
                    .windows(STATUS_BATCH_LINE.len())
                    .position(|w| w == STATUS_BATCH_LINE)
                {
                    buf[at..at + NO_ROUTE_LINE.len()].copy_from_slice(NO_ROUTE_LINE);
                    f.batches_hidden.fetch_add(1, Ordering::Relaxed);
                }
            }
            if s_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(NetShutdown::Write);
    });
    std::thread::spawn(move || {
        let (mut s_read, mut c_write) = (server, client);
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match s_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n as u64,
            };
            let left = budget.load(Ordering::SeqCst);
            let armed = left != u64::MAX;
            let cut = armed && left <= n && take_cut(&faults.cuts_left);
            let n = if cut { left } else { n };
            if c_write.write_all(&buf[..n as usize]).is_err() {
                break;
            }
            faults.forwarded.fetch_add(n, Ordering::Relaxed);
            if cut {
                break;
            }
            if armed {
                // Past the budget with no cut left, the download passes.
                let rest = if left <= n { u64::MAX } else { left - n };
                let _ = budget.compare_exchange(left, rest, Ordering::SeqCst, Ordering::SeqCst);
            }
            if !faults.throttle.is_zero() {
                std::thread::sleep(faults.throttle);
            }
        }
        let _ = c_write.shutdown(NetShutdown::Both);
        let _ = s_read.shutdown(NetShutdown::Both);
    });
}

fn take_cut(cuts_left: &AtomicU32) -> bool {
    cuts_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
        .is_ok()
}

/// The `cdx-client` binary, built once if the test run did not build it.
pub fn client_bin() -> PathBuf {
    built_bin("cdx-client")
}

/// The `cdx-server` binary, built once if the test run did not build it.
pub fn server_bin() -> PathBuf {
    built_bin("cdx-server")
}

/// Builds the workspace's binaries once per test run. With
/// `--all-targets` the dependencies resolve with the same features as the
/// test build's, so its artifacts are reused and only the binaries link;
/// `--bin` alone would build every dependency a second time.
fn built_bin(name: &str) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    BUILT.call_once(|| {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--workspace", "--all-targets"])
            .status()
            .unwrap();
        assert!(status.success(), "building the binaries failed");
    });
    bin
}

/// A child process, killed if the test ends without stopping it.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Child {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Child {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

/// `cdx-client run --config CONFIG`, logging warnings to the test's stderr.
pub fn spawn_client(config: &Path) -> Child {
    let child = std::process::Command::new(client_bin())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    Child(child)
}

/// The peak resident set of process `pid` so far (`VmHWM`), in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// Headquarters as a real `cdx-server serve` process on a fixed port, so
/// that it can be killed and started again on the same address.
pub struct HqProcess {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub store: cdx_server::Store,
    /// Extra arguments of `serve`.
    pub args: Vec<String>,
    child: Option<Child>,
}

impl HqProcess {
    pub fn start() -> HqProcess {
        let mut hq = HqProcess::new();
        hq.restart();
        hq
    }

    /// Its data folder and address, not started yet.
    pub fn new() -> HqProcess {
        let dir = tempfile::tempdir().unwrap();
        let store = cdx_server::Store::open(dir.path().join("hq")).unwrap();
        store.add_channel(CHANNEL, GROUP, SECRET).unwrap();
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        HqProcess {
            dir,
            addr,
            store,
            args: Vec::new(),
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Kills the server outright (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts the server on the same address and waits until it answers.
    pub fn restart(&mut self) {
        let child = std::process::Command::new(server_bin())
            .args(["serve", "--data"])
            .arg(self.dir.path().join("hq"))
            .args(["--listen", &self.addr.to_string()])
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        self.child = Some(Child(child));
        let up = wait_until(Duration::from_secs(20), || {
            TcpStream::connect(self.addr).is_ok()
        });
        assert!(up, "cdx-server did not listen on {}", self.addr);
    }

    pub fn publish(&self, package: GeneratedPackage) -> PackageInfo {
        publish_to(&self.store, package)
    }

    /// Publishes the initial full packages of `size`; returns them.
    pub fn publish_initial(&self, size: DataSetSize) -> Vec<PackageInfo> {
        cdx::retail::initial_packages(size, SEED)
            .into_iter()
            .map(|p| self.publish(p))
            .collect()
    }

    pub fn publish_round(&self, size: DataSetSize, round: u64) -> Vec<PackageInfo> {
        cdx::retail::incremental_packages(size, SEED, round)
            .into_iter()
            .map(|p| self.publish(p))
            .collect()
    }

    pub fn uploaded(&self, table: &str) -> u64 {
        self.store.uploaded_row_count(CHANNEL, table).unwrap()
    }

    pub fn download_status(&self, package: uuid::Uuid) -> Option<String> {
        download_session_in(&self.store, package).map(|s| s.status)
    }
}

/// Publishes a generated package of the test group through `store`.
fn publish_to(store: &cdx_server::Store, package: GeneratedPackage) -> PackageInfo {
    let spec = PublishSpec {
        data_group: GROUP.into(),
        job: package.job,
        replaces: Vec::new(),
        kind: package.kind,
        tables: package.tables,
    };
    let rows = package.rows;
    store
        .publish(spec, |w| Ok(cdx::retail::write_rows(rows, w)?))
        .unwrap()
}

/// The test channel's download session of `package` in `store`.
fn download_session_in(
    store: &cdx_server::Store,
    package: uuid::Uuid,
) -> Option<cdx::protocol::SessionInfo> {
    let filter = server::SessionFilter {
        channel: Some(CHANNEL.into()),
        direction: Some(cdx::status::Direction::Download),
    };
    let sessions = store.sessions(&filter).unwrap();
    sessions
        .download
        .into_iter()
        .find(|s| s.subject_id == package)
}

/// Logs of in-process agents go to the test's output (`RUST_LOG`, default warn).
pub fn init_logging() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// A table of items: `id` (the key) and `name`.
pub fn items_schema() -> TableSchema {
    let column = |name: &str, ty| Column {
        name: name.into(),
        ty,
        nullable: false,
    };
    TableSchema {
        name: "items".into(),
        columns: vec![
            column("id", ColumnType::Integer),
            column("name", ColumnType::Text),
        ],
        key: vec!["id".into()],
    }
}

/// Items 1..=n named `"{name} {i}"`.
pub fn item_rows(n: i64, name: &str) -> Vec<Vec<Value>> {
    (1..=n)
        .map(|i| vec![Value::Integer(i), Value::Text(format!("{name} {i}"))])
        .collect()
}

/// Runs `command`, which must succeed, and returns what it printed.
pub fn stdout_of(command: &mut std::process::Command) -> String {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Three packages of job 1040 (50 items, then 80, then 3 more), the middle
/// one corrupted at headquarters after it was listed: a byte flipped in
/// the middle of its file, so its download fails the SHA-256 check until
/// [`Self::repair`].
pub struct BrokenInTheMiddle {
    pub good: PackageInfo,
    pub broken: PackageInfo,
    pub after: PackageInfo,
    file: PathBuf,
}

impl BrokenInTheMiddle {
    pub fn publish(hq: &Hq) -> BrokenInTheMiddle {
        let good = hq.publish_table(
            "1040",
            PackageKind::Full,
            items_schema(),
            item_rows(50, "first"),
        );
        Self::follow(hq, good)
    }

    /// The broken package and the one after it, following `good`. The
    /// broken one is listed intact for a moment before it is corrupted: no
    /// agent may be polling meanwhile.
    pub fn follow(hq: &Hq, good: PackageInfo) -> BrokenInTheMiddle {
        let publish =
            |kind, n, name| hq.publish_table("1040", kind, items_schema(), item_rows(n, name));
        let broken = publish(PackageKind::Full, 80, "second");
        let after = publish(PackageKind::Incremental, 3, "third");
        let file = hq.package_file(broken.id);
        let this = BrokenInTheMiddle {
            good,
            broken,
            after,
            file,
        };
        this.flip();
        this
    }

    /// Flips the byte back: the file is as listed again.
    pub fn repair(&self) {
        self.flip();
    }

    fn flip(&self) {
        let mut bytes = std::fs::read(&self.file).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x5a;
        std::fs::write(&self.file, &bytes).unwrap();
    }
}
