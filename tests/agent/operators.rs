//! What operators use: `/metrics` on the agent and on headquarters, read
//! through a strict Prometheus parser, as real processes.

use std::net::SocketAddr;
use std::time::Duration;

use super::prometheus::{parse, Exposition};
use super::util::*;

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The agent's config for `url`, its status endpoint on a known port.
pub fn config_on_port(
    store: &StoreDir,
    url: &str,
    extra: &str,
) -> (std::path::PathBuf, SocketAddr) {
    let port = free_port();
    let path = store.write_config(url, "streaming", extra);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(&path, text).unwrap();
    (path, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn scrape(addr: SocketAddr, headers: &[(&str, &str)]) -> Exposition {
    let (code, body) = http_with(addr, "GET", "/metrics", headers);
    assert_eq!(code, 200, "{body}");
    parse(&body).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{body}"))
}

const AGENT_FAMILIES: &[(&str, &str)] = &[
    ("cdx_packages_applied_total", "counter"),
    ("cdx_rows_applied_total", "counter"),
    ("cdx_downloaded_bytes_total", "counter"),
    ("cdx_uploaded_rows_total", "counter"),
    ("cdx_download_duration_seconds", "histogram"),
    ("cdx_apply_duration_seconds", "histogram"),
    ("cdx_last_successful_poll_timestamp_seconds", "gauge"),
    ("cdx_lag_packages", "gauge"),
    ("cdx_lag_seconds", "gauge"),
    ("cdx_sales_rows_waiting", "gauge"),
    ("cdx_sessions", "gauge"),
    ("cdx_actor_restarts_total", "counter"),
    ("cdx_suspended", "gauge"),
    ("cdx_healthy", "gauge"),
];

const SERVER_FAMILIES: &[(&str, &str)] = &[
    ("cdx_server_requests_total", "counter"),
    ("cdx_server_request_duration_seconds", "histogram"),
    ("cdx_server_long_polls_waiting", "gauge"),
    ("cdx_server_upload_rows_stored_total", "counter"),
    ("cdx_server_upload_rows_duplicate_total", "counter"),
    ("cdx_server_channels", "gauge"),
    ("cdx_server_channel_applied_sequence", "gauge"),
    ("cdx_server_channel_behind_packages", "gauge"),
    (
        "cdx_server_channel_last_connection_timestamp_seconds",
        "gauge",
    ),
];

/// Both `/metrics` parse as Prometheus text with a help text and a type per
/// family, and their counters move when packages apply and sales upload.
#[test]
fn metrics_parse_and_move_when_packages_apply_and_sales_upload() {
    let mut hq = HqProcess::new();
    let token = "operators-only-0123456789";
    let token_file = hq.dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    hq.args = vec![
        "--admin-token-file".into(),
        token_file.display().to_string(),
    ];
    hq.restart();
    let store = StoreDir::new();
    let mut pos = store.pos();
    // Uploads every second: the sales below are written after the first
    // upload pass, and at the default minute the next pass could come at
    // the very end of the 60 s this test waits.
    let (config, status) = config_on_port(&store, &hq.url(), "[upload]\ninterval = \"1s\"\n");
    let mut agent = spawn_client(&config);
    assert!(
        wait_until(Duration::from_secs(30), || std::net::TcpStream::connect(
            status
        )
        .is_ok()),
        "the status endpoint did not listen"
    );

    let started = std::time::Instant::now();
    let before = scrape(status, &[]);
    assert_eq!(before.value("cdx_packages_applied_total", &[]), Some(0.0));
    assert!(
        wait_until(Duration::from_secs(30), || scrape(status, &[])
            .value("cdx_last_successful_poll_timestamp_seconds", &[])
            .is_some_and(|t| t > 0.0)),
        "no successful poll in the metrics"
    );

    let published = hq.publish_initial(small());
    let rows: u64 = published.iter().map(|p| p.rows).sum();
    pos.record_sales(3).unwrap();
    let (header, _) = cdx::retail::UPLOAD_TABLES[0];
    assert!(
        wait_until(Duration::from_secs(60), || {
            store.applied() == published.len() as u64 && hq.uploaded(header) == 3
        }),
        "not applied and uploaded: applied {}, uploaded {}",
        store.applied(),
        hq.uploaded(header)
    );
    // Every upload table drained: the status actor hears of each batch just
    // after headquarters stored it.
    let stored = || -> u64 {
        cdx::retail::UPLOAD_TABLES
            .iter()
            .map(|(t, _)| hq.uploaded(t))
            .sum()
    };
    let mut after = scrape(status, &[]);
    let drained = wait_until(Duration::from_secs(30), || {
        after = scrape(status, &[]);
        cdx::retail::UPLOAD_TABLES
            .iter()
            .all(|(t, _)| after.value("cdx_sales_rows_waiting", &[("table", t)]) == Some(0.0))
            && after.value("cdx_uploaded_rows_total", &[]) == Some(stored() as f64)
    });
    assert!(drained, "the uploaded sales never showed in the metrics");
    eprintln!("applied and uploaded after {:?}", started.elapsed());
    for (family, kind) in AGENT_FAMILIES {
        assert_eq!(
            after.kind(family),
            Some(*kind),
            "{family}: no help text or wrong type"
        );
    }
    let n = published.len() as f64;
    assert_eq!(after.value("cdx_packages_applied_total", &[]), Some(n));
    assert_eq!(
        after.value("cdx_rows_applied_total", &[]),
        Some(rows as f64)
    );
    assert_eq!(
        after.value("cdx_apply_duration_seconds_count", &[]),
        Some(n)
    );
    assert_eq!(
        after.value("cdx_download_duration_seconds_count", &[]),
        Some(n)
    );
    let bytes: u64 = published.iter().map(|p| p.bytes).sum();
    assert_eq!(
        after.value("cdx_downloaded_bytes_total", &[]),
        Some(bytes as f64)
    );
    assert_eq!(
        after.value(
            "cdx_sessions",
            &[("direction", "download"), ("status", "Applied")]
        ),
        Some(n)
    );
    assert_eq!(after.value("cdx_lag_packages", &[]), Some(0.0));
    assert_eq!(after.value("cdx_healthy", &[]), Some(1.0));
    assert_eq!(after.value("cdx_suspended", &[]), Some(0.0));
    assert_eq!(
        after.value("cdx_actor_restarts_total", &[("actor", "applier")]),
        Some(0.0)
    );

    // Headquarters: the admin token, or nothing.
    let (code, body) = http_with(hq.addr, "GET", "/metrics", &[]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("admin token"), "{body}");
    let (code, _) = http_with(
        hq.addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer wrong")],
    );
    assert_eq!(code, 401);
    let bearer = format!("Bearer {token}");
    let server = scrape(hq.addr, &[("Authorization", &bearer)]);
    for (family, kind) in SERVER_FAMILIES {
        assert_eq!(
            server.kind(family),
            Some(*kind),
            "{family}: no help text or wrong type"
        );
    }
    let listed = server
        .value(
            "cdx_server_requests_total",
            &[("route", "/v1/packages"), ("code", "200")],
        )
        .unwrap_or(0.0);
    assert!(listed >= 1.0, "no listing counted");
    let stored = stored();
    assert!(stored > 3, "the sales lines were not uploaded: {stored}");
    assert_eq!(
        server.value("cdx_server_upload_rows_stored_total", &[]),
        Some(stored as f64)
    );
    let last = published.iter().map(|p| p.sequence).max().unwrap() as f64;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let m = scrape(hq.addr, &[("Authorization", &bearer)]);
            m.value(
                "cdx_server_channel_applied_sequence",
                &[("channel", CHANNEL), ("data_group", GROUP)],
            ) == Some(last)
                && m.value("cdx_server_channels", &[("state", "in_sync")]) == Some(1.0)
        }),
        "headquarters' metrics never showed the channel in sync at #{last}"
    );
    let m = scrape(hq.addr, &[("Authorization", &bearer)]);
    assert_eq!(
        m.value("cdx_server_channels", &[("state", "failing")]),
        Some(0.0)
    );
    // The idle agent long-polls: one listing waits at headquarters, never two.
    let mut waiting = Vec::new();
    let seen_one = wait_until(Duration::from_secs(20), || {
        let now = scrape(hq.addr, &[("Authorization", &bearer)])
            .value("cdx_server_long_polls_waiting", &[])
            .unwrap();
        waiting.push(now);
        now == 1.0
    });
    assert!(seen_one && waiting.iter().all(|w| *w <= 1.0), "{waiting:?}");
    agent.kill().unwrap();
}

/// Reads systemd notifications sent to a datagram socket of the test.
fn notifications(socket: &std::os::unix::net::UnixDatagram, want: &str) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = message.lines().any(|l| l == want);
            got.push(message);
            if done {
                return got;
            }
        }
    }
    panic!("no {want} within 30 s; got {got:?}");
}

/// Under systemd (`Type=notify`, `WatchdogSec`), both binaries say
/// `READY=1` once they serve, then `WATCHDOG=1` while alive, and
/// `STOPPING=1` on SIGTERM.
#[test]
fn both_binaries_notify_systemd_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    // One socket per process, so each one's messages are its own.
    let bind = |name: &str| {
        let path = dir.path().join(name);
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        (path, socket)
    };
    let (path, socket) = bind("server.sock");
    let (agent_path, agent_socket) = bind("agent.sock");

    let hq = HqProcess::new();
    let mut server = Child(
        std::process::Command::new(server_bin())
            .args(["serve", "--data"])
            .arg(hq.dir.path().join("hq"))
            .args(["--listen", &hq.addr.to_string()])
            .env("NOTIFY_SOCKET", &path)
            .env("WATCHDOG_USEC", "1000000")
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let got = notifications(&socket, "READY=1");
    assert!(
        std::net::TcpStream::connect(hq.addr).is_ok(),
        "READY=1 before the server listens"
    );
    assert!(got.last().unwrap().contains("STATUS=serving on"), "{got:?}");
    notifications(&socket, "WATCHDOG=1");

    let store = StoreDir::new();
    let _pos = store.pos();
    let (config, status) = config_on_port(&store, &hq.url(), "");
    let mut agent = Child(
        std::process::Command::new(client_bin())
            .args(["run", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &agent_path)
            .env("WATCHDOG_USEC", "1000000")
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let got = notifications(&agent_socket, "READY=1");
    assert!(
        got.last()
            .unwrap()
            .contains(&format!("status at http://{status}/")),
        "{got:?}"
    );
    let (code, _) = http(status, "GET", "/health");
    assert!(
        code == 200 || code == 503,
        "READY=1 before the status endpoint serves"
    );
    // Two watchdog pings in a row: the loop keeps running.
    notifications(&agent_socket, "WATCHDOG=1");
    notifications(&agent_socket, "WATCHDOG=1");

    for (child, socket) in [(&mut agent, &agent_socket), (&mut server, &socket)] {
        sigterm(child.id());
        notifications(socket, "STOPPING=1");
        let exited = wait_until(Duration::from_secs(20), || {
            child.try_wait().unwrap().is_some()
        });
        assert!(exited, "SIGTERM did not stop it");
    }
}

/// SIGTERM, as systemd stops a service.
fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The units in `contrib/` are valid for systemd (`systemd-analyze verify`,
/// with `ExecStart` pointed at the binaries just built).
#[test]
fn the_systemd_units_verify() {
    let analyze = std::path::Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("skipped: systemd-analyze is not installed here");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bin = client_bin();
    let bin_dir = bin.parent().unwrap().display().to_string();
    let _ = server_bin();
    for unit in ["cdx-client.service", "cdx-server.service"] {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("contrib")
                .join(unit),
        )
        .unwrap()
        .replace("/usr/local/bin", &bin_dir);
        let path = dir.path().join(unit);
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(analyze)
            .arg("verify")
            .arg(&path)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{unit}: {said}"
        );
    }
}
