//! Moving package files, against the plain tools that move files:
//!
//! - one store streaming a large package from headquarters (the agent's
//!   own download: the `.part` file, SHA-256 on the way, the final check
//!   and rename), against `curl -o` fetching the same URL;
//! - a fleet downloading one new package at once from headquarters,
//!   against nginx serving the same file to the same clients.
//!
//! The package is random bytes, so nothing compresses it away.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cdx::config::TransferMode;
use cdx::package::{Column, ColumnType, PackageKind, TableSchema, Value, MAX_BLOB_LEN};
use cdx::protocol::PackageInfo;
use cdx_actors::hq::HqClient;
use cdx_actors::transfer::{self, TransferContext};
use cdx_server::{self as server, PublishSpec};
use rand::{RngCore, SeedableRng};

use crate::live::{
    agent_config, fleet_auth, fleet_headquarters, headquarters, raise_open_files, GROUP,
};
use crate::stats::{megabytes_per_second, Spread};
use crate::wire::Conn;
use crate::Row;

/// Publishes a full package of at least `bytes` random bytes (blobs of
/// the largest size a value may have) to `store`.
fn publish_bytes(store: &server::Store, bytes: u64) -> anyhow::Result<PackageInfo> {
    let schema = TableSchema {
        name: "blobs".into(),
        columns: vec![
            Column::new("id", ColumnType::Integer, false),
            Column::new("data", ColumnType::Blob, false),
        ],
        key: vec!["id".into()],
    };
    let spec = PublishSpec {
        data_group: GROUP.into(),
        job: "1040".into(),
        kind: PackageKind::Full,
        tables: vec![schema],
        replaces: Vec::new(),
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut data = vec![0u8; MAX_BLOB_LEN as usize];
    Ok(store.publish(spec, |w| {
        w.table(0)?;
        let (mut written, mut id) = (0u64, 0i64);
        while written < bytes {
            rng.fill_bytes(&mut data);
            w.upsert(&[Value::Integer(id), Value::Blob(data.clone())])?;
            written += data.len() as u64;
            id += 1;
        }
        Ok(())
    })?)
}

/// `1181116006` as `1.1 GiB`, `4194304` as `4.0 MiB`.
fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    }
}

/// The first of `names` found on `PATH` or at an absolute path.
fn tool(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        let name = Path::new(name);
        if name.is_absolute() {
            return name.exists().then(|| name.to_owned());
        }
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.exists())
    })
}

/// One store downloading a package of `bytes` in streaming mode from
/// headquarters, as its downloader does, against `curl -o` from the same
/// URL with the same credentials: megabytes per second, each run taking
/// turns at going first.
pub fn stream(bytes: u64, runs: usize) -> anyhow::Result<Vec<Row>> {
    let what = format!(
        "streaming download of {}, one store (synced, SHA-256 checked), vs curl -o from the same server",
        size(bytes)
    );
    let durable = format!(
        "streaming download of {}, one store, vs curl -o then a sync of its file",
        size(bytes)
    );
    let goal = ">= 0.9x";
    let Some(curl) = tool(&["curl"]) else {
        return Ok(vec![Row::plain(
            &what,
            "skipped: curl is not installed".into(),
            goal,
        )]);
    };
    let dir = tempfile::tempdir()?;
    let server = headquarters(dir.path())?;
    let package = publish_bytes(server.store(), bytes)?;
    let config = agent_config(dir.path(), &server.url(), "")?;
    let url = HqClient::new(&config.server)?.url(&HqClient::content_path(package.id));
    let credentials = format!(
        "{}:{}",
        config.server.channel_id,
        config.server.secret.expose()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let work = dir.path().join("work");
    let copy = dir.path().join("curl.cdxpkg");
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut synced, mut synced_ratios) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let agent = || -> anyhow::Result<f64> {
            let _ = std::fs::remove_dir_all(&work);
            settle_disk();
            // A connection of its own, as curl has: a pooled one idle
            // since the last run may be closing as it is reused.
            let hq = HqClient::new(&config.server)?;
            let stop = AtomicBool::new(false);
            let mut progress = |_| {};
            let mut ctx = TransferContext {
                hq: &hq,
                dir: &work,
                mode: TransferMode::Streaming,
                chunk_bytes: 1 << 20,
                stop: &stop,
                progress: &mut progress,
            };
            let started = Instant::now();
            let done = runtime.block_on(transfer::download(&mut ctx, &package))?;
            let elapsed = started.elapsed();
            if done.bytes != package.bytes || done.resumed_from != 0 {
                bail!(
                    "the agent downloaded {} bytes of {}",
                    done.bytes,
                    package.bytes
                );
            }
            std::fs::remove_dir_all(&work)?;
            Ok(package.bytes as f64 / elapsed.as_secs_f64())
        };
        // curl's rate, and its rate counting a sync of its file after.
        let curl = || -> anyhow::Result<(f64, f64)> {
            settle_disk();
            let started = Instant::now();
            let status = Command::new(&curl)
                .args(["-sS", "--fail", "-o"])
                .arg(&copy)
                .args(["-u", &credentials, &url])
                .status()
                .context("running curl")?;
            let elapsed = started.elapsed();
            let got = std::fs::metadata(&copy).map_or(0, |m| m.len());
            if !status.success() || got != package.bytes {
                bail!("curl ({status}) fetched {got} bytes of {}", package.bytes);
            }
            std::fs::File::open(&copy)?.sync_all()?;
            let with_sync = started.elapsed();
            std::fs::remove_file(&copy)?;
            let rate = |d: Duration| package.bytes as f64 / d.as_secs_f64();
            Ok((rate(elapsed), rate(with_sync)))
        };
        let (a, c) = if run % 2 == 0 {
            let a = agent()?;
            (a, curl()?)
        } else {
            let c = curl()?;
            (agent()?, c)
        };
        let (c, cs) = c;
        ours.push(a);
        theirs.push(c);
        ratios.push(a / c);
        synced.push(cs);
        synced_ratios.push(a / cs);
    }
    let ours = Spread::of(&ours);
    Ok(vec![
        Row::compared(
            &what,
            [ours, Spread::of(&theirs), Spread::of(&ratios)],
            goal,
            megabytes_per_second,
        ),
        Row::compared(
            &durable,
            [ours, Spread::of(&synced), Spread::of(&synced_ratios)],
            "",
            megabytes_per_second,
        ),
    ])
}

/// Writes every dirty page back, so that neither side of a comparison
/// pays for the disk writing the other's file (or the package published).
fn settle_disk() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// nginx serving a folder on 127.0.0.1, as an operator would run it
/// (`sendfile on`, a worker per core), until dropped.
struct Nginx {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(bin: &Path, root: &Path) -> anyhow::Result<Nginx> {
        let dir = tempfile::tempdir()?;
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let d = dir.path().display();
        // As root, nginx's workers would run as `nobody`, who cannot read
        // a temporary folder.
        // SAFETY: geteuid reads the process's effective user id.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        let conf = format!(
            "daemon off;\n{user}\nworker_processes auto;\nworker_rlimit_nofile 16384;\n\
             pid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 8192; }}\n\
             http {{\n\
               access_log off;\n\
               sendfile on;\n\
               tcp_nopush on;\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               server {{ listen {addr} backlog=4096; root {}; location / {{ }} }}\n\
             }}\n",
            root.display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting nginx")?;
        let nginx = Nginx {
            child,
            addr,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > deadline {
                bail!("nginx did not listen on {addr} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, which SIGKILL would orphan.
        // SAFETY: kill sends a signal to our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// What a fleet's downloads came to.
struct Fleet {
    /// From the first request to the last byte of the last answer.
    elapsed: Duration,
    /// Answers of 200 with the whole file.
    whole: u64,
    failed: u64,
}

/// Every connection of `conns` opened, then each `GET` sent at once and
/// its answer read to the end.
async fn download_all(mut conns: Vec<Conn>, bytes: u64) -> Fleet {
    let mut failed = 0;
    for conn in &mut conns {
        if conn.connect().await.is_err() {
            failed += 1;
        }
    }
    let started = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            tokio::spawn(async move {
                let answer = tokio::time::timeout(Duration::from_secs(120), conn.send()).await;
                let whole = matches!(answer, Ok(Ok(200))) && conn.body_len() as u64 == bytes;
                (whole, Instant::now())
            })
        })
        .collect();
    let (mut whole, mut last) = (0, started);
    for task in tasks {
        match task.await {
            Ok((true, done)) => {
                whole += 1;
                last = last.max(done);
            }
            Ok((false, done)) => {
                failed += 1;
                last = last.max(done);
            }
            Err(_) => failed += 1,
        }
    }
    Fleet {
        elapsed: last - started,
        whole,
        failed,
    }
}

/// `agents` stores downloading one new package of `bytes` at the same
/// moment, each on a connection of its own opened before the clock starts
/// (a fleet keeps its connections between polls): from headquarters with
/// each store's credentials, against nginx serving the same file to as
/// many clients. Aggregate megabytes per second of whole files, and
/// downloads that failed.
pub fn fleet_download(agents: usize, bytes: u64, runs: usize) -> anyhow::Result<Row> {
    let what = format!(
        "{agents} agents download one new {} package at once, aggregate, vs nginx serving the same file",
        size(bytes)
    );
    let goal = ">= 0.8x, 0 errors";
    let Some(nginx_bin) = tool(&["/usr/sbin/nginx", "/usr/local/sbin/nginx", "nginx"]) else {
        return Ok(Row::plain(
            &what,
            "skipped: nginx is not installed".into(),
            goal,
        ));
    };
    raise_open_files();
    let dir = tempfile::tempdir()?;
    let server = fleet_headquarters(dir.path(), agents)?;
    let package = publish_bytes(server.store(), bytes)?;
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::copy(
        server.store().package_path(package.id),
        www.join("package.cdxpkg"),
    )
    .context("copying the package file for nginx")?;
    let nginx = Nginx::start(&nginx_bin, &www)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let path = HqClient::content_path(package.id);
    let (mut ours, mut theirs, mut ratios, mut failed) =
        (Vec::new(), Vec::new(), Vec::new(), (0u64, 0u64));
    let rate = |f: &Fleet| (f.whole * package.bytes) as f64 / f.elapsed.as_secs_f64().max(1e-9);
    for run in 0..runs {
        let cdx = || {
            let conns = (0..agents)
                .map(|a| Conn::get(server.addr(), &path, Some(&fleet_auth(a))))
                .collect();
            runtime.block_on(download_all(conns, package.bytes))
        };
        let plain = || {
            let conns = (0..agents)
                .map(|_| Conn::get(nginx.addr, "/package.cdxpkg", None))
                .collect();
            runtime.block_on(download_all(conns, package.bytes))
        };
        let (a, n) = if run % 2 == 0 {
            let a = cdx();
            (a, plain())
        } else {
            let n = plain();
            (cdx(), n)
        };
        failed.0 += a.failed;
        failed.1 += n.failed;
        ours.push(rate(&a));
        theirs.push(rate(&n));
        ratios.push(rate(&a) / rate(&n));
    }
    Ok(Row::compared(
        &format!(
            "{what} ({} failed from headquarters, {} from nginx, in {runs} runs)",
            failed.0, failed.1
        ),
        [Spread::of(&ours), Spread::of(&theirs), Spread::of(&ratios)],
        goal,
        megabytes_per_second,
    ))
}
