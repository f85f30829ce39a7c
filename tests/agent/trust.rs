//! The agent trusts nothing it has not checked: a package must be the one
//! listed and may not write the store's sales; the status endpoint obeys
//! only its own host and the control token.

use std::time::Duration;

use cdx::package::{Column, ColumnType, PackageKind, TableSchema, Value};
use cdx::status::DownloadStatus;

use super::util::*;

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

fn rows(n: i64) -> Vec<Vec<Value>> {
    (1..=n)
        .map(|i| vec![Value::Integer(i), Value::Text(format!("item {i}"))])
        .collect()
}

/// A package whose header contradicts its listing (sequence, data group or
/// id) is refused before a row is written, names both values, and holds
/// back the packages after it: nothing is applied, nothing skipped.
#[test]
fn a_header_that_contradicts_the_listing_is_refused() {
    type Tamper = fn(&mut cdx::package::PackageHeader);
    let cases: [(&str, Tamper, &str); 3] = [
        ("sequence", |h| h.sequence = 7, "header says sequence \"7\""),
        (
            "data group",
            |h| h.data_group = "other".into(),
            "header says data group \"other\"",
        ),
        (
            "package id",
            |h| h.package_id = uuid::Uuid::nil(),
            "header says package id \"00000000-0000-0000-0000-000000000000\"",
        ),
    ];
    for (field, tamper, says) in cases {
        let hq = Hq::start();
        let store = StoreDir::new();
        let first = hq.publish_table("1040", PackageKind::Full, items(), rows(10));
        let second = hq.publish_table("1040", PackageKind::Incremental, items(), rows(3));
        hq.tamper_header(first.id, tamper);
        let mut config = store.config(&hq.url(), "reliable", "");
        config.retry.try_count = 1;
        let agent = RunningAgent::start(config, sqlite(store.channel_db()));
        let suspended = wait_until(Duration::from_secs(30), || {
            agent.status().suspended.is_some()
        });
        assert!(suspended, "{field}: the package was not refused");
        let status = agent.status();
        let reason = status.suspended.unwrap().reason.unwrap_or_default();
        assert!(
            reason.contains(says) && reason.contains("server listed"),
            "{field}: {reason}"
        );
        assert_eq!(store.applied(), 0, "{field}: a package was applied");
        assert!(
            status
                .recent_downloads
                .iter()
                .all(|s| s.package.id != second.id || s.status != DownloadStatus::Applied),
            "{field}: the package after it was applied"
        );
        assert!(
            status.download_progress.is_none(),
            "{field}: a stale download progress: {:?}",
            status.download_progress
        );
        assert!(
            !status.healthy,
            "{field}: a suspended store calls itself healthy"
        );
        let (code, body) = http(agent.status_addr, "GET", "/health");
        assert_eq!(code, 503, "{field}: {body}");
        assert!(body.contains("suspended"), "{field}: {body}");
        agent.stop();
    }
}

/// A full package for an upload table would replace the store's sales: it
/// is refused, naming the table, and the sales stay and upload once.
#[test]
fn a_package_for_an_upload_table_is_refused() {
    let hq = Hq::start();
    let store = StoreDir::new();
    let mut pos = store.pos();
    let lines = pos.record_sales(20).unwrap();
    let sales = TableSchema {
        name: "retail_transaction".into(),
        columns: vec![
            Column::new("replication_counter", ColumnType::Integer, false),
            Column::new("transaction_id", ColumnType::Text, false),
        ],
        key: vec!["replication_counter".into()],
    };
    let hq_row = vec![vec![
        Value::Integer(1_000_000),
        Value::Text("HQ-ONLY".into()),
    ]];
    hq.publish_table("1070", PackageKind::Full, sales, hq_row);
    let mut config = store.config(&hq.url(), "reliable", "[upload]\ninterval = \"1s\"\n");
    config.retry.try_count = 1;
    let agent = RunningAgent::start(config, sqlite(store.channel_db()));
    let done = wait_until(Duration::from_secs(30), || {
        agent.status().suspended.is_some() && hq.uploaded("retail_transaction_sales_line") == lines
    });
    let status = agent.status();
    assert!(done, "status {:?}", status.suspended);
    let reason = status.suspended.unwrap().reason.unwrap_or_default();
    assert!(
        reason.contains("`retail_transaction`") && reason.contains("upload"),
        "{reason}"
    );
    assert_eq!(
        store.rows("retail_transaction"),
        20,
        "the store's sales changed"
    );
    assert_eq!(hq.uploaded("retail_transaction"), 20);
    assert_eq!(store.applied(), 0);
    agent.stop();
}

/// Only the agent's own host reads the endpoint; control calls need the
/// token from a file only the agent's user can read, and are refused when
/// they come from another origin, as a cross-site form would.
#[test]
fn the_status_endpoint_obeys_only_its_host_and_token() {
    let hq = Hq::start();
    let store = StoreDir::new();
    let agent = RunningAgent::start(
        store.config(&hq.url(), "reliable", ""),
        sqlite(store.channel_db()),
    );
    let addr = agent.status_addr;
    let port = addr.port();
    let foreign = [("Host", "rebind.example.com")];
    assert_eq!(http_with(addr, "GET", "/status", &foreign).0, 403);
    assert_eq!(http_with(addr, "GET", "/health", &foreign).0, 403);
    let local = format!("localhost:{port}");
    assert_eq!(
        http_with(addr, "GET", "/status", &[("Host", &local)]).0,
        200
    );

    let token = std::fs::read_to_string(&agent.token_file).unwrap();
    let bearer = format!("Bearer {token}");
    let (code, body) = http(addr, "POST", "/control/resume");
    assert_eq!(code, 401, "a tokenless control call: {body}");
    let wrong = [("Authorization", "Bearer not-the-token")];
    assert_eq!(http_with(addr, "POST", "/control/resume", &wrong).0, 401);
    let cross_site_form = [
        ("Authorization", bearer.as_str()),
        ("Origin", "http://evil.example"),
        ("Content-Type", "text/plain"),
    ];
    let (code, body) = http_with(addr, "POST", "/control/resume", &cross_site_form);
    assert_eq!(code, 403, "a cross-origin control call: {body}");
    // With the token, from no browser: heard (nothing is suspended).
    let (code, body) = agent.resume();
    assert_eq!(code, 409, "{body}");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&agent.token_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the token file is readable by others");
    }
    agent.stop();
}

/// On start the working folder keeps only what an open session needs:
/// package files left by a crash are removed, other files stay.
#[test]
fn stray_package_files_are_removed_at_start() {
    let hq = Hq::start();
    let store = StoreDir::new();
    let downloads = store.path().join("work/downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let applied = downloads.join(format!("{}.cdxpkg", uuid::Uuid::new_v4()));
    let partial = downloads.join(format!("{}.cdxpkg.part", uuid::Uuid::new_v4()));
    let other = downloads.join("notes.txt");
    for file in [&applied, &partial, &other] {
        std::fs::write(file, b"left over").unwrap();
    }
    let agent = RunningAgent::start(
        store.config(&hq.url(), "reliable", ""),
        sqlite(store.channel_db()),
    );
    assert!(
        !applied.exists() && !partial.exists(),
        "stray package files stay"
    );
    assert!(other.exists(), "a file that is not a package was removed");
    agent.stop();
}

/// With long polling off, an idle pass waits for the interval: an agent
/// set to poll hourly lists once, not thousands of times.
#[test]
fn without_long_polling_an_idle_agent_waits_for_the_interval() {
    let hq = Hq::start();
    let proxy = FaultyProxy::start(hq.server.addr(), u64::MAX, 0);
    let store = StoreDir::new();
    let mut config = store.config(&proxy.url(), "reliable", "");
    config.download.long_poll = Duration::ZERO;
    config.download.interval = Duration::from_secs(3600);
    let agent = RunningAgent::start(config, sqlite(store.channel_db()));
    let listings = || proxy.listings.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(30), || listings() >= 1),
        "the agent never listed"
    );
    std::thread::sleep(Duration::from_secs(3));
    let listed = listings();
    agent.stop();
    assert!(
        listed <= 2,
        "{listed} listings in the 3 s after the first, with interval = 1h"
    );
}
