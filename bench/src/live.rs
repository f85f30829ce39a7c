//! Benchmarks with a real headquarters (`cdx_server`, in this process,
//! on 127.0.0.1) and, where a store is needed, a real agent (its actors in
//! an actix system on a thread of its own), as the agent tests run them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use cdx::config::Config;
use cdx::package::{Column, ColumnType, PackageKind, TableSchema, Value};
use cdx_server::{self as server, PublishSpec, RunningServer};

use crate::stats::{millis, per_second, percentile, rate, Spread};
use crate::wire::Conn;
use crate::Row;

pub(crate) const GROUP: &str = "default";
const CHANNEL: &str = "store-0001";
const SECRET: &str = "bench-secret";

/// A headquarters with one channel.
pub(crate) fn headquarters(dir: &Path) -> anyhow::Result<RunningServer> {
    let server = server::spawn(dir.join("hq"), "127.0.0.1:0")?;
    server.store().add_channel(CHANNEL, GROUP, SECRET)?;
    Ok(server)
}

/// An agent running until dropped.
struct Agent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    fn start(config: Config, channel_db: PathBuf) -> anyhow::Result<Agent> {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let factory = cdx_actors::agent::sqlite_factory(channel_db);
                match cdx_actors::agent::Agent::start(config, factory).await {
                    Ok(agent) => {
                        let _ = started_tx.send(Ok(()));
                        let _ = stopped.await;
                        agent.shutdown().await;
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(e.to_string()));
                    }
                }
            });
        });
        match started_rx.recv() {
            Ok(Ok(())) => Ok(Agent {
                stop: Some(stop),
                thread: Some(thread),
            }),
            Ok(Err(e)) => bail!("the agent did not start: {e}"),
            Err(_) => bail!("the agent's thread ended before it started"),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The agent's configuration in `dir`, `upload` its `[upload]` section.
pub(crate) fn agent_config(dir: &Path, url: &str, upload: &str) -> anyhow::Result<Config> {
    let text = format!(
        r#"
[server]
url = "{url}"
channel_id = "{CHANNEL}"
secret = "{SECRET}"

[storage]
working_folder = "work"

[channel_db]
path = "channel.db"

[download]
mode = "streaming"
interval = "1s"
long_poll = "30s"

{upload}
"#
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text)?;
    Ok(Config::load(&path)?)
}

fn items() -> TableSchema {
    TableSchema {
        name: "items".into(),
        columns: vec![
            Column::new("id", ColumnType::Integer, false),
            Column::new("name", ColumnType::Text, false),
        ],
        key: vec!["id".into()],
    }
}

fn publish_one(server: &RunningServer, kind: PackageKind, id: i64) -> anyhow::Result<u64> {
    publish_to(server.store(), kind, id)
}

fn publish_to(store: &server::Store, kind: PackageKind, id: i64) -> anyhow::Result<u64> {
    let spec = PublishSpec {
        data_group: GROUP.into(),
        job: "1040".into(),
        kind,
        tables: vec![items()],
        replaces: Vec::new(),
    };
    let info = store.publish(spec, |w| {
        w.table(0)?;
        w.upsert(&[Value::Integer(id), Value::Text(format!("item {id}"))])?;
        Ok(())
    })?;
    Ok(info.sequence)
}

/// The channel database's highest applied sequence, 0 when none yet.
fn applied(conn: &rusqlite::Connection) -> u64 {
    conn.query_row(
        "SELECT COALESCE(MAX(sequence), 0) FROM cdx_applied_packages",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map_or(0, |n| n as u64)
}

/// Publish → applied at an idle agent, `trials` one-row packages, the
/// agent long polling; published by the server's own process
/// (`other_process` false: it wakes the long poll at once) or through a
/// store of its own on the same data directory, as `cdx-server publish`
/// does from another process. Returns p50 and p99 rows: each the spread
/// over `runs` runs.
pub fn latency(trials: usize, runs: usize, other_process: bool) -> anyhow::Result<Vec<Row>> {
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let server = headquarters(dir.path())?;
        let publisher = if other_process {
            server::Store::open(dir.path().join("hq"))?
        } else {
            server.store().clone()
        };
        let first = publish_one(&server, PackageKind::Full, 0)?;
        let config = agent_config(dir.path(), &server.url(), "")?;
        let db = dir.path().join("channel.db");
        let _agent = Agent::start(config, db.clone())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let conn = loop {
            if let Ok(conn) = rusqlite::Connection::open(&db) {
                if applied(&conn) >= first {
                    break conn;
                }
            }
            if Instant::now() > deadline {
                bail!("the agent did not apply the first package within 60 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut times = Vec::with_capacity(trials);
        for t in 0..trials {
            // Idle: the agent is back in its long poll.
            std::thread::sleep(Duration::from_millis(50));
            let started = Instant::now();
            let sequence = publish_to(&publisher, PackageKind::Incremental, t as i64 + 1)?;
            while applied(&conn) < sequence {
                if started.elapsed() > Duration::from_secs(30) {
                    bail!("package #{sequence} was not applied within 30 s");
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        p50s.push(percentile(&times, 50.0));
        p99s.push(percentile(&times, 99.0));
    }
    let by = if other_process {
        "published by another process"
    } else {
        "published in the server's process"
    };
    Ok(vec![
        Row::plain(
            &format!("publish -> applied, 1-row package, idle agent, {by}, p50 of {trials}"),
            Spread::of(&p50s).show(millis),
            "",
        ),
        Row::plain(
            &format!("publish -> applied, 1-row package, idle agent, {by}, p99 of {trials}"),
            Spread::of(&p99s).show(millis),
            "p99 <= 20 ms",
        ),
    ])
}

/// Uploads `lines` sales lines (and their sales) from a store's channel
/// database to headquarters, acknowledged: lines per second, from the
/// agent's start to headquarters holding every line.
pub fn upload(lines: u64, batch_rows: usize, runs: usize) -> anyhow::Result<Row> {
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let server = headquarters(dir.path())?;
        let db = dir.path().join("channel.db");
        let mut pos = cdx::retail::PosSimulator::open(&db, 1, Default::default(), 11)?;
        pos.create_tables()?;
        let mut written = 0;
        while written < lines {
            written += pos.record_sales(10_000)?;
        }
        drop(pos);
        let config = agent_config(
            dir.path(),
            &server.url(),
            &format!(
                "[upload]\ninterval = \"1s\"\nbatch_rows = {batch_rows}\n\n[[upload.tables]]\n\
                 name = \"retail_transaction_sales_line\"\ncounter = \"replication_counter\"\n"
            ),
        )?;
        let started = Instant::now();
        let _agent = Agent::start(config, db)?;
        loop {
            let held: u64 = server
                .store()
                .upload_tables(Some(CHANNEL))?
                .iter()
                .map(|t| t.rows)
                .sum();
            if held >= written {
                break;
            }
            if started.elapsed() > Duration::from_secs(600) {
                bail!("{held} of {written} lines uploaded in 600 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        rates.push(rate(written, started.elapsed()));
    }
    Ok(Row::plain(
        &format!(
            "upload {lines} sales lines, store -> headquarters acknowledged, {batch_rows} a batch"
        ),
        Spread::of(&rates).show(per_second),
        ">= 250k lines/s",
    ))
}

/// A headquarters with `agents` channels (`store-00000`, ...) of one
/// group, and one package for them.
pub(crate) fn fleet_headquarters(dir: &Path, agents: usize) -> anyhow::Result<RunningServer> {
    let server = server::spawn(dir.join("hq"), "127.0.0.1:0")?;
    for a in 0..agents {
        server
            .store()
            .add_channel(&format!("store-{a:05}"), GROUP, SECRET)?;
    }
    publish_one(&server, PackageKind::Full, 0)?;
    Ok(server)
}

/// The `Authorization` header of agent `a` of [`fleet_headquarters`].
pub(crate) fn fleet_auth(a: usize) -> String {
    let credentials = format!("store-{a:05}:{SECRET}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// `agents` clients polling one headquarters as fast as they can (each
/// `GET /v1/packages` with `wait_ms=0` on a connection of its own, its next
/// the moment the last answers) for `seconds`: latency p50 and p99,
/// answers per second, and answers that were not 200; then the same for
/// their group's head (`GET /v1/groups/{group}/head`). The clients are
/// [`Conn`]s, light enough to leave the server most of the machine, on two
/// threads: on one, the thousand clients queued behind each other and the
/// tail measured the load generator (`perf sched`: the server's two
/// workers never waited more than 9 ms for a core; two runs each, one
/// thread against two: p99 65.2 and 64.8 ms against 25.4 and 24.3 ms,
/// 90k answers/s against 97k and 107k).
pub fn fleet(agents: usize, seconds: u64, runs: usize) -> anyhow::Result<Vec<Row>> {
    let mut rows = busy(agents, seconds, runs, Busy::Listing)?;
    rows.extend(busy(agents, seconds, runs, Busy::Head)?);
    Ok(rows)
}

/// What the busy agents of [`fleet`] ask.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Busy {
    /// Their packages, authenticated, as an agent lists.
    Listing,
    /// Their group's head, without credentials, as a CDN asks on their
    /// behalf (`download.head_url`).
    Head,
}

fn busy(agents: usize, seconds: u64, runs: usize, what: Busy) -> anyhow::Result<Vec<Row>> {
    let (mut p50s, mut p99s, mut rps, mut failed) = (Vec::new(), Vec::new(), Vec::new(), 0u64);
    let mut server_errors = 0u64;
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let server = fleet_headquarters(dir.path(), agents)?;
        let addr = server.addr();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let (times, errors, fives) = runtime.block_on(async move {
            // Every agent connects and polls once before the clock starts:
            // a fleet keeps its connections, and a thousand connecting at
            // once is not what a poll costs.
            let warm = Instant::now() + Duration::from_secs(1);
            let until = warm + Duration::from_secs(seconds);
            let errors = Arc::new(AtomicU64::new(0));
            let fives = Arc::new(AtomicU64::new(0));
            let mut tasks = Vec::with_capacity(agents);
            for a in 0..agents {
                let (errors, fives) = (errors.clone(), fives.clone());
                let mut conn = match what {
                    Busy::Listing => {
                        Conn::get(addr, "/v1/packages?after=1&wait_ms=0", Some(&fleet_auth(a)))
                    }
                    Busy::Head => Conn::get(addr, &cdx::protocol::group_head_path(GROUP), None),
                };
                tasks.push(tokio::spawn(async move {
                    let mut times = Vec::new();
                    while Instant::now() < until {
                        let started = Instant::now();
                        let answer =
                            tokio::time::timeout(Duration::from_secs(30), conn.send()).await;
                        if started < warm {
                            continue;
                        }
                        match answer {
                            Ok(Ok(200)) => times.push(started.elapsed().as_secs_f64() * 1e3),
                            Ok(Ok(status)) => {
                                if status >= 500 {
                                    fives.fetch_add(1, Ordering::Relaxed);
                                }
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Err(_)) | Err(_) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    times
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap_or_default());
            }
            anyhow::Ok((
                all,
                errors.load(Ordering::Relaxed),
                fives.load(Ordering::Relaxed),
            ))
        })?;
        p50s.push(percentile(&times, 50.0));
        p99s.push(percentile(&times, 99.0));
        rps.push(times.len() as f64 / seconds as f64);
        failed += errors;
        server_errors += fives;
    }
    let note = format!("{failed} failed answers, {server_errors} of them 5xx, in {runs} runs");
    let (who, goal) = match what {
        Busy::Listing => (
            format!("{agents} agents busy-polling one server"),
            "p99 <= 50 ms, no 5xx",
        ),
        Busy::Head => (
            format!(
                "{agents} agents busy-polling their group's head (no credentials, as a CDN asks)"
            ),
            "",
        ),
    };
    Ok(vec![
        Row::plain(
            &format!("{who}, latency p50"),
            Spread::of(&p50s).show(millis),
            "",
        ),
        Row::plain(
            &format!("{who}, latency p99 ({note})"),
            Spread::of(&p99s).show(millis),
            goal,
        ),
        Row::plain(
            &format!("{who}, answers per second"),
            Spread::of(&rps).show(|r| format!("{r:.0}/s")),
            "",
        ),
    ])
}

/// `agents` idle agents long polling one headquarters (each
/// `GET /v1/packages` with `wait_ms=60000`, as an agent waits for news):
/// the server's CPU, as a share of one core, over `seconds` once they all
/// wait, and its resident memory then. Server and agents are processes of
/// their own (`cdx-bench idle-server` and `idle-clients`, this binary), so
/// the figures are the server's alone, whatever ran before in this one.
pub fn idle(agents: usize, seconds: u64, runs: usize) -> anyhow::Result<Vec<Row>> {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let (mut cpu, mut rss, mut failed) = (Vec::new(), Vec::new(), 0u64);
    let exe = std::env::current_exe()?;
    for _ in 0..runs {
        let mut server = Command::new(&exe)
            .args(["idle-server", "--agents"])
            .arg(agents.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the idle server")?;
        let pid = server.id();
        let mut said = BufReader::new(server.stdout.take().context("its output")?).lines();
        let url = match said.next() {
            Some(Ok(line)) if line.starts_with("http://") => line,
            other => bail!("the idle server did not start: {other:?}"),
        };
        let mut clients = Command::new(&exe)
            .args(["idle-clients", "--url", &url, "--agents"])
            .arg(agents.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the idle clients")?;
        let mut lines = BufReader::new(clients.stdout.take().context("their output")?).lines();
        match lines.next() {
            Some(Ok(line)) if line == "waiting" => {}
            other => bail!("the idle clients did not start: {other:?}"),
        }
        // Every poll is in; let connection set-up settle before measuring.
        std::thread::sleep(Duration::from_secs(3));
        cpu.push(cpu_share(pid, seconds)?);
        rss.push(resident_mib(pid)?);
        // A line on their input stops both; the clients say how their
        // polls went.
        for stdin in [clients.stdin.take(), server.stdin.take()]
            .into_iter()
            .flatten()
        {
            let mut stdin = stdin;
            let _ = stdin.write_all(b"stop\n");
        }
        let summary = lines.next().and_then(Result::ok).unwrap_or_default();
        let _ = clients.wait();
        let _ = server.wait();
        let errors = summary
            .strip_prefix("errors ")
            .and_then(|n| n.trim().parse::<u64>().ok())
            .with_context(|| format!("the idle clients' summary: {summary:?}"))?;
        failed += errors;
    }
    let note = format!("{failed} failed polls in {runs} runs");
    Ok(vec![
        Row::plain(
            &format!("{agents} idle agents long polling one server, server CPU ({note})"),
            Spread::of(&cpu).show(|c| format!("{c:.1} % of a core")),
            "<= 5 % of one core",
        ),
        Row::plain(
            &format!("{agents} idle agents long polling one server, server resident memory"),
            Spread::of(&rss).show(|m| format!("{m:.0} MiB")),
            "<= 256 MiB",
        ),
    ])
}

/// The server of [`idle`]: a headquarters on a fresh data directory with
/// `agents` channels and one package; prints its URL, then serves until a
/// line arrives on standard input.
pub fn idle_server(agents: usize) -> anyhow::Result<()> {
    raise_open_files();
    let dir = tempfile::tempdir()?;
    let server = fleet_headquarters(dir.path(), agents)?;
    println!("{}", server.url());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(server);
    Ok(())
}

/// The other side of [`idle`]: `agents` long polls held open against
/// `url`, each polling again when answered, until a line arrives on
/// standard input. Prints `waiting` once every poll is sent, and at the end
/// `errors N`: polls that failed or answered other than 200.
pub fn idle_clients(url: &str, agents: usize) -> anyhow::Result<()> {
    raise_open_files();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("{url}/v1/packages?after=1&wait_ms=60000");
    let errors = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(agents)
            .timeout(Duration::from_secs(90))
            .build()
            .context("an HTTP client")?;
        for a in 0..agents {
            let (client, url) = (client.clone(), url.clone());
            let (errors, sent) = (errors.clone(), sent.clone());
            let auth = fleet_auth(a);
            tokio::spawn(async move {
                loop {
                    let poll = client.get(&url).header("Authorization", &auth).send();
                    sent.fetch_add(1, Ordering::Relaxed);
                    match poll.await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                        }
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            });
            // Connect a few at a time, as a fleet does, not all in one burst.
            if a % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        while sent.load(Ordering::Relaxed) < agents as u64 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!("waiting");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            let _ = stop_tx.send(());
        });
        let _ = stop_rx.await;
        println!("errors {}", errors.load(Ordering::Relaxed));
        anyhow::Ok(())
    })
}

/// One idle agent, in a process of its own (`cdx-bench idle-agent-process`,
/// this binary: the agent's actors as `cdx-agent` starts them), long
/// polling a headquarters with nothing new once it has applied the one
/// package there: its CPU, as a share of one core, over `seconds`, and its
/// resident memory then and at its peak.
pub fn idle_agent(seconds: u64, runs: usize) -> anyhow::Result<Vec<Row>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let (mut cpu, mut rss, mut peak) = (Vec::new(), Vec::new(), Vec::new());
    let exe = std::env::current_exe()?;
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let server = headquarters(dir.path())?;
        let first = publish_one(&server, PackageKind::Full, 0)?;
        agent_config(dir.path(), &server.url(), "")?;
        let db = dir.path().join("channel.db");
        let mut agent = Command::new(&exe)
            .arg("idle-agent-process")
            .arg("--config")
            .arg(dir.path().join("agent.toml"))
            .arg("--channel-db")
            .arg(&db)
            .stdin(Stdio::piped())
            .spawn()
            .context("starting the idle agent")?;
        let pid = agent.id();
        let deadline = Instant::now() + Duration::from_secs(60);
        while rusqlite::Connection::open(&db).map_or(0, |c| applied(&c)) < first {
            if Instant::now() > deadline {
                let _ = agent.kill();
                bail!("the idle agent did not apply the first package within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Applied, reported, and back in its long poll.
        std::thread::sleep(Duration::from_secs(3));
        cpu.push(cpu_share(pid, seconds)?);
        rss.push(resident_mib(pid)?);
        peak.push(peak_mib(pid)?);
        if let Some(mut stdin) = agent.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let _ = agent.wait();
    }
    Ok(vec![
        Row::plain(
            &format!("idle agent long polling, CPU over {seconds} s"),
            Spread::of(&cpu).show(|c| format!("{c:.2} % of a core")),
            "keep (0.1 %)",
        ),
        Row::plain(
            "idle agent long polling, resident memory (VmRSS)",
            Spread::of(&rss).show(|m| format!("{m:.1} MiB")),
            "keep (16 MB)",
        ),
        Row::plain(
            "idle agent, peak resident memory since its start (VmHWM; it applied one package)",
            Spread::of(&peak).show(|m| format!("{m:.1} MiB")),
            "<= 64 MiB",
        ),
    ])
}

/// The agent of [`idle_agent`]: starts on `config` and `channel_db`, and
/// runs until a line arrives on standard input.
pub fn idle_agent_process(config: &Path, channel_db: &Path) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let agent = Agent::start(config, channel_db.to_owned())?;
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(agent);
    Ok(())
}

/// Lets this process open as many files as its hard limit allows (10,000
/// sockets are more than the usual soft limit of 1,024).
pub(crate) fn raise_open_files() {
    // SAFETY: getrlimit and setrlimit write and read only the struct given.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The CPU process `pid` uses over the next `seconds`, as a percentage of
/// one core.
fn cpu_share(pid: u32, seconds: u64) -> anyhow::Result<f64> {
    let (ticks, started) = (process_ticks(pid)?, Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let used = (process_ticks(pid)? - ticks) as f64 / clock_ticks_per_second();
    Ok(used / started.elapsed().as_secs_f64() * 100.0)
}

/// CPU process `pid` used so far (user and system), in clock ticks.
fn process_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the whole line.
    let rest = stat.rsplit_once(')').context("/proc/PID/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Process `pid`'s resident memory now, in MiB.
fn resident_mib(pid: u32) -> anyhow::Result<f64> {
    status_mib(pid, "VmRSS")
}

/// Process `pid`'s peak resident memory, in MiB.
fn peak_mib(pid: u32) -> anyhow::Result<f64> {
    status_mib(pid, "VmHWM")
}

/// Field `field` (in kB) of `/proc/PID/status`, in MiB.
fn status_mib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .with_context(|| format!("{field} in /proc/{pid}/status"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
}
