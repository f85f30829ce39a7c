//! The agent as a real `cdx-client` process: signals, crashes, restarts,
//! and the demo.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cdx::retail::{expected_row_counts, DataSetSize};

use super::util::*;

pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status
}

/// SIGTERM stops the agent gracefully with exit code 0; started again on
/// the same folders it applies only what is new.
#[test]
fn agent_process_exits_zero_on_sigterm_and_carries_on_after_restart() {
    let hq = Hq::start();
    let first = hq.publish_initial(small());
    let store = StoreDir::new();
    let config = store.write_config(&hq.url(), "reliable", "");
    let mut child = spawn_client(&config);
    let last = first.last().unwrap().sequence;
    assert!(wait_until(Duration::from_secs(60), || store.applied() >= last));
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(30)).expect("the agent exits");
    assert!(status.success(), "exit status {status:?}");

    let more = hq.publish_round(small(), 1);
    let mut child = spawn_client(&config);
    let last = more.last().unwrap().sequence;
    assert!(wait_until(Duration::from_secs(60), || store.applied() >= last));
    signal(&child, "INT");
    assert!(wait_exit(&mut child, Duration::from_secs(30))
        .unwrap()
        .success());
    for (table, rows) in expected_row_counts(small(), 1) {
        assert_eq!(store.rows(&table), rows, "rows of {table}");
    }
}

/// An agent killed outright in the middle of a reliable download resumes
/// it when started again: the same journaled session, from the bytes on disk.
#[test]
fn agent_killed_mid_download_resumes_from_its_checkpoint() {
    let hq = Hq::start();
    let size = DataSetSize {
        products: 6000,
        customers: 100,
        stores: 4,
        staff: 10,
    };
    let published = hq.publish_initial(size);
    let largest = published.iter().max_by_key(|p| p.bytes).unwrap().clone();
    // About 1.6 MB/s, so the download of the largest package takes a while.
    let proxy =
        FaultyProxy::with_throttle(hq.server.addr(), u64::MAX, 0, Duration::from_millis(10));
    let store = StoreDir::new();
    let config = store.write_config(&proxy.url(), "reliable", "");
    let part = store
        .path()
        .join("work/downloads")
        .join(format!("{}.cdxpkg.part", largest.id));
    let mut child = spawn_client(&config);
    let halfway = wait_until(Duration::from_secs(60), || {
        std::fs::metadata(&part)
            .map(|m| m.len() > largest.bytes / 3)
            .unwrap_or(false)
    });
    assert!(halfway, "the download never got a third of the way");
    let mut session = None;
    wait_until(Duration::from_secs(10), || {
        session = hq.download_session(largest.id).and_then(|s| s.session_id);
        session.is_some()
    });
    assert!(session.is_some(), "the download session was never reported");
    signal(&child, "KILL");
    child.wait().unwrap();
    let kept = std::fs::metadata(&part)
        .expect("the checkpoint survives the kill")
        .len();
    assert!(kept > 0 && kept < largest.bytes);

    let before = proxy.bytes_forwarded.load(Ordering::Relaxed);
    let mut child = spawn_client(&config);
    let last = published.last().unwrap().sequence;
    assert!(
        wait_until(Duration::from_secs(120), || store.applied() >= last),
        "sync did not finish"
    );
    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(30))
        .unwrap()
        .success());
    let resumed = hq.download_session(largest.id).unwrap();
    assert_eq!(
        resumed.session_id, session,
        "the journal's session was not resumed"
    );
    assert_eq!(resumed.status, "Applied");
    let after_restart = proxy.bytes_forwarded.load(Ordering::Relaxed) - before;
    let total: u64 = published.iter().map(|p| p.bytes).sum();
    let remaining_packages = total - kept;
    assert!(
        after_restart < remaining_packages + 400_000,
        "after the restart {after_restart} bytes moved, but only {remaining_packages} were missing"
    );
    for (table, rows) in expected_row_counts(size, 0) {
        assert_eq!(store.rows(&table), rows, "rows of {table}");
    }
}

/// `cdx-client demo --once` syncs, sells, uploads, compares both sides and exits 0.
#[test]
fn demo_once_runs_the_whole_system_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(client_bin())
        .args([
            "demo",
            "--once",
            "--products",
            "1000",
            "--customers",
            "300",
            "--status-port",
            "0",
        ])
        .arg("--dir")
        .arg(dir.path().join("demo"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("row counts match on both sides"),
        "{stdout}"
    );
    assert!(stdout.contains("/status"), "{stdout}");
}

/// `test-connection` checks every upload table and its counter: missing
/// ones fail it, naming them; once the point of sale made them, it passes.
#[test]
fn test_connection_checks_the_upload_tables() {
    let hq = Hq::start();
    let store = StoreDir::new();
    let config = store.write_config(&hq.url(), "streaming", "");
    let run = || {
        let out = std::process::Command::new(client_bin())
            .args(["test-connection", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = run();
    assert!(!ok, "{text}");
    for (table, _) in cdx::retail::UPLOAD_TABLES {
        assert!(
            text.contains(&format!("upload table {table}: FAILED")),
            "{text}"
        );
    }
    assert!(text.contains("upload tables not usable"), "{text}");
    let mut pos = store.pos();
    pos.record_sales(3).unwrap();
    let (ok, text) = run();
    assert!(ok, "{text}");
    let (header, counter) = cdx::retail::UPLOAD_TABLES[0];
    assert!(
        text.contains(&format!(
            "upload table {header} (counter {counter}): ok, 3 rows, uploaded up to 0"
        )),
        "{text}"
    );
}

/// `cdx-client sync-now` makes a running agent poll and upload at once:
/// with hour-long intervals and no long poll, a package published after
/// the start is applied and a sale uploaded only when asked.
#[test]
fn sync_now_polls_and_uploads_at_once() {
    let hq = Hq::start();
    let store = StoreDir::new();
    let mut pos = store.pos();
    pos.record_sales(1).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = store.write_config(&hq.url(), "streaming", "[upload]\ninterval = \"1h\"\n");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("interval = \"1s\"", "interval = \"1h\"")
        .replace("long_poll = \"2s\"", "long_poll = \"0s\"")
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
    std::fs::write(&path, text).unwrap();
    let (header, _) = cdx::retail::UPLOAD_TABLES[0];
    let client = |args: &[&str]| {
        let out = std::process::Command::new(client_bin())
            .args(args)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), said)
    };
    let (ok, said) = client(&["status"]);
    assert!(!ok && said.contains("the agent is not running"), "{said}");
    let agent = spawn_client(&path);
    // The first poll and upload run at start.
    assert!(
        wait_until(Duration::from_secs(30), || hq.uploaded(header) == 1),
        "the first upload did not run"
    );
    let size = small();
    let published = hq.publish_initial(size);
    pos.record_sales(1).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(store.applied(), 0, "the agent polled without being asked");
    assert_eq!(
        hq.uploaded(header),
        1,
        "the agent uploaded without being asked"
    );

    let (ok, said) = client(&["sync-now"]);
    assert!(ok, "{said}");
    assert!(said.contains("sync started"), "{said}");
    assert!(
        wait_until(Duration::from_secs(30), || {
            store.applied() == published.len() as u64 && hq.uploaded(header) == 2
        }),
        "sync-now did not poll and upload: applied {}, uploaded {}",
        store.applied(),
        hq.uploaded(header)
    );
    // `cdx-client status` shows it on one screen.
    let (ok, said) = client(&["status"]);
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("{CHANNEL} -> {}", hq.url())),
        "{said}"
    );
    assert!(said.contains("health: OK"), "{said}");
    assert!(
        said.contains(&format!("applied up to #{}", published.len())),
        "{said}"
    );
    assert!(
        said.contains(&format!("uploads of {header}: sent up to counter 2")),
        "{said}"
    );
    eprintln!("cdx-client status:\n{said}");
    // The sessions, as tables and one with its history.
    let (ok, said) = client(&["sessions", "--downloads", "--status", "applied"]);
    assert!(ok, "{said}");
    assert!(said.starts_with("Download sessions\nSESSION"), "{said}");
    for p in &published {
        assert!(said.contains(&p.id.to_string()), "{said}");
    }
    assert!(!said.contains("Upload sessions"), "{said}");
    let id = published[0].id.to_string();
    let (ok, said) = client(&["sessions", "show", &id[..8]]);
    assert!(ok, "{said}");
    assert!(said.contains(&format!("package {id}")), "{said}");
    assert!(
        said.contains("history:") && said.contains("  Applied"),
        "{said}"
    );
    eprintln!("cdx-client sessions show:\n{said}");
    let (ok, said) = client(&["sessions", "show", "ffffffff"]);
    assert!(
        !ok && said.contains("no session, package or upload `ffffffff`"),
        "{said}"
    );
    // Stopped, the agent's sessions are read from its message database.
    let mut agent = agent;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    assert!(
        wait_until(Duration::from_secs(20), || agent
            .try_wait()
            .unwrap()
            .is_some()),
        "the agent did not stop"
    );
    let (ok, said) = client(&["sessions", "--downloads"]);
    assert!(ok, "{said}");
    assert!(
        said.contains("the agent is not running: sessions from its message database"),
        "{said}"
    );
    for p in &published {
        assert!(said.contains(&p.id.to_string()), "{said}");
    }
    let (ok, said) = client(&["status"]);
    assert!(!ok, "a stopped agent's status exits 0: {said}");
    let last = published.iter().max_by_key(|p| p.sequence).unwrap();
    assert!(
        said.contains("from its message database:")
            && said.contains(&format!(
                "last applied: package {} (#{} job {})",
                last.id, last.sequence, last.job
            ))
            && said.contains(&format!(
                "uploads of {header}: last batch up to counter 2, acknowledged"
            ))
            && said.contains("the agent is not running"),
        "{said}"
    );
    eprintln!("cdx-client status of a stopped agent:\n{said}");
}
