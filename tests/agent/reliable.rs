//! Reliable mode against a network that drops connections midway.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cdx::retail::{expected_row_counts, DataSetSize};

use super::util::*;

fn bigger() -> DataSetSize {
    DataSetSize {
        products: 8000,
        customers: 500,
        stores: 4,
        staff: 20,
    }
}

/// Connections cut 60 KB into a download (64 KiB chunks) are resumed from
/// the bytes already on disk: the sync completes, and far fewer bytes cross the network than a
/// restart from zero after every cut would need.
#[test]
fn reliable_download_resumes_after_dropped_connections() {
    let hq = Hq::start();
    let published = hq.publish_initial(bigger());
    let total: u64 = published.iter().map(|p| p.bytes).sum();
    let largest = published.iter().map(|p| p.bytes).max().unwrap();
    assert!(
        largest > 300_000,
        "the test needs a package of several cuts ({largest} bytes)"
    );
    let cuts = 5;
    let proxy = FaultyProxy::start(hq.server.addr(), 60_000, cuts);
    let store = StoreDir::new();
    let extra = "[upload]\ninterval = \"1h\"\n";
    let config = store.config(&proxy.url(), "reliable", extra);
    let last = published.last().unwrap().sequence;
    let run = run_agent(
        config,
        sqlite(store.channel_db()),
        Duration::from_secs(60),
        || store.applied() >= last,
    );
    assert!(
        run.reached,
        "the sync did not complete through the faulty network"
    );
    assert_eq!(
        proxy.cuts_left.load(Ordering::SeqCst),
        0,
        "every cut was used"
    );
    for (table, rows) in expected_row_counts(bigger(), 0) {
        assert_eq!(store.rows(&table), rows, "rows of {table}");
    }
    // Each cut costs at most the chunk in flight (64 KiB) plus HTTP overhead.
    let forwarded = proxy.bytes_forwarded.load(Ordering::Relaxed);
    let budget = total + cuts as u64 * (65_536 + 16_384) + 200_000;
    assert!(
        forwarded < budget,
        "forwarded {forwarded} bytes for {total} of packages"
    );
}

/// Streaming mode keeps what it received: after connections cut 150 KB
/// into a download, each retry asks for the rest, so the bytes that cross
/// the network stay near the packages' size, whatever the cuts.
#[test]
fn streaming_download_resumes_after_drops() {
    let hq = Hq::start();
    let published = hq.publish_initial(bigger());
    let total: u64 = published.iter().map(|p| p.bytes).sum();
    let cuts = 3;
    let proxy = FaultyProxy::start(hq.server.addr(), 150_000, cuts);
    let store = StoreDir::new();
    let config = store.config(&proxy.url(), "streaming", "[upload]\ninterval = \"1h\"\n");
    let last = published.last().unwrap().sequence;
    let run = run_agent(
        config,
        sqlite(store.channel_db()),
        Duration::from_secs(60),
        || store.applied() >= last,
    );
    assert!(run.reached);
    let used = cuts - proxy.cuts_left.load(Ordering::SeqCst);
    assert!(used >= 2, "only {used} connections were cut");
    let retried = run
        .status
        .recent_downloads
        .iter()
        .any(|s| s.history.iter().any(|t| t.status == "DownloadFailed"));
    assert!(retried, "no download failed and was retried");
    for (table, rows) in expected_row_counts(bigger(), 0) {
        assert_eq!(store.rows(&table), rows, "rows of {table}");
    }
    // Starting over after every cut would cost up to 150 KB a cut again.
    let forwarded = proxy.bytes_forwarded.load(Ordering::Relaxed);
    let budget = total + used as u64 * 16_384 + 100_000;
    assert!(
        forwarded < budget,
        "forwarded {forwarded} bytes for {total} of packages"
    );
}
