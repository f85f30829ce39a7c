//! Headquarters goes away and comes back: a real `cdx-server` process
//! killed in the middle of a download and of uploads, and started again on
//! the same port. The store catches up by itself, with a try count of 1.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cdx::retail::{expected_row_counts, DataSetSize};

use super::util::*;

const OUTAGE: Duration = Duration::from_secs(10);

fn outage_mid_download_and_upload(mode: &str) {
    let mut hq = HqProcess::start();
    let size = DataSetSize {
        products: 4000,
        customers: 100,
        stores: 3,
        staff: 10,
    };
    let published: Vec<_> = cdx::retail::initial_packages(size, SEED)
        .into_iter()
        .map(|p| hq.publish(p))
        .collect();
    let largest = published.iter().max_by_key(|p| p.bytes).unwrap().clone();
    // About 1.6 MB/s, so the outage starts in the middle of the download.
    let proxy = FaultyProxy::with_throttle(hq.addr, u64::MAX, 0, Duration::from_millis(10));
    let store = StoreDir::new();
    let mut pos = store.pos();
    let mut config = store.config(
        &proxy.url(),
        mode,
        "[upload]\ninterval = \"1s\"\nbatch_rows = 50\n",
    );
    config.retry.try_count = 1;
    let agent = RunningAgent::start(config, sqlite(store.channel_db()));
    // Packages download in sequence order: a third into the largest one.
    let before: u64 = published
        .iter()
        .filter(|p| p.sequence < largest.sequence)
        .map(|p| p.bytes)
        .sum();
    let mid = wait_until(Duration::from_secs(60), || {
        pos.record_sales(3).unwrap();
        proxy.bytes_forwarded.load(Ordering::Relaxed) > before + largest.bytes / 3
    });
    assert!(
        mid,
        "the download of the largest package ({} bytes) never got going: {} bytes forwarded, \
         headquarters shows it {:?}",
        largest.bytes,
        proxy.bytes_forwarded.load(Ordering::Relaxed),
        hq.download_status(largest.id)
    );

    hq.kill();
    let down = Instant::now();
    while down.elapsed() < OUTAGE {
        pos.record_sales(5).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    hq.restart();
    let back = Instant::now();

    let last = published.last().unwrap().sequence;
    let sold = store.rows("retail_transaction_sales_line");
    let caught_up = wait_until(Duration::from_secs(90), || {
        store.applied() >= last && hq.uploaded("retail_transaction_sales_line") >= sold
    });
    eprintln!(
        "{mode}: {}s outage; caught up {:?} after headquarters came back",
        OUTAGE.as_secs(),
        back.elapsed()
    );
    let status = agent.status();
    assert!(
        caught_up,
        "after the outage: applied {} of {last}, uploaded {} of {sold} sales lines; status {:?}",
        store.applied(),
        hq.uploaded("retail_transaction_sales_line"),
        status.problems
    );
    assert!(status.suspended.is_none(), "{:?}", status.suspended);
    for (table, rows) in expected_row_counts(size, 0) {
        assert_eq!(store.rows(&table), rows, "rows of {table}");
    }
    assert_eq!(
        hq.uploaded("retail_transaction_sales_line"),
        sold,
        "a sale was lost or stored twice"
    );
    let canceled = status
        .recent_downloads
        .iter()
        .filter(|s| s.status == cdx::status::DownloadStatus::Canceled)
        .count();
    assert_eq!(canceled, 0, "the outage canceled a download session");
    agent.stop();
}

/// A 10 s outage in the middle of a reliable download and of uploads costs
/// no try: the package applies and every sale arrives once, with no
/// operator, although the try count is 1.
#[test]
fn headquarters_outage_in_reliable_mode_needs_no_operator() {
    outage_mid_download_and_upload("reliable");
}

/// The same in streaming mode, which resumes from the bytes it received.
#[test]
fn headquarters_outage_in_streaming_mode_needs_no_operator() {
    outage_mid_download_and_upload("streaming");
}
