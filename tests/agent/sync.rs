//! Full and incremental syncs, in both transfer modes.

use std::time::Duration;

use cdx::channel_db::ChannelDb;
use cdx::retail::expected_row_counts;
use cdx::status::DownloadStatus;

use super::util::*;

fn full_sync_in(mode: &str) {
    let hq = Hq::start();
    let published = hq.publish_initial(small());
    let store = StoreDir::new();
    let config = store.config(&hq.url(), mode, "");
    let last = published.last().unwrap().sequence;
    let run = run_agent(
        config,
        sqlite(store.channel_db()),
        Duration::from_secs(60),
        || store.applied() >= last,
    );
    assert!(run.reached, "the initial sync did not complete");
    for (table, rows) in expected_row_counts(small(), 0) {
        assert_eq!(store.rows(&table), rows, "rows of {table}");
    }
    let applied: Vec<_> = run
        .status
        .recent_downloads
        .iter()
        .filter(|s| s.status == DownloadStatus::Applied)
        .map(|s| s.package.id)
        .collect();
    for p in &published {
        assert!(
            applied.contains(&p.id),
            "package {} is not journaled Applied",
            p.id
        );
    }
    assert!(run.status.last_poll.ok == Some(true));
    assert!(run.status.healthy);
    assert_eq!(run.health.0, 200, "{}", run.health.1);
    assert!(
        !run.status_body.contains(SECRET),
        "the status document shows the secret"
    );
    assert!(run.status_body.contains(CHANNEL));
}

/// A streaming-mode agent applies every full package and the tables match what was published.
#[test]
fn full_sync_applies_every_package_in_streaming_mode() {
    full_sync_in("streaming");
}

/// A reliable-mode agent (64 KiB chunks) applies every full package too.
#[test]
fn full_sync_applies_every_package_in_reliable_mode() {
    full_sync_in("reliable");
}

/// Incremental packages apply after the full ones, in published order, and
/// their upserts and deletes leave the expected rows.
#[test]
fn incremental_packages_apply_in_published_order() {
    let hq = Hq::start();
    let mut published = hq.publish_initial(small());
    published.extend(hq.publish_round(small(), 1));
    published.extend(hq.publish_round(small(), 2));
    let store = StoreDir::new();
    let last = published.last().unwrap().sequence;
    let run = run_agent(
        store.config(&hq.url(), "reliable", ""),
        sqlite(store.channel_db()),
        Duration::from_secs(60),
        || store.applied() >= last,
    );
    assert!(run.reached);
    for (table, rows) in expected_row_counts(small(), 2) {
        assert_eq!(store.rows(&table), rows, "rows of {table}");
    }
    let applied = store.db().applied_packages(GROUP).unwrap();
    let order: Vec<_> = applied.iter().map(|a| a.package_id).collect();
    let expected: Vec<_> = published.iter().map(|p| p.id).collect();
    assert_eq!(
        order, expected,
        "applied set differs from the published set"
    );
    let times: Vec<_> = applied.iter().map(|a| a.applied_at_ms).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "applied out of order: {times:?}"
    );
}

/// A package published while the agent idles in a long poll is applied
/// without waiting for the download interval.
#[test]
fn package_published_while_idle_is_applied_by_the_long_poll() {
    let hq = Hq::start();
    let first = hq.publish_initial(small());
    let store = StoreDir::new();
    // An interval far longer than the test: only the long poll can deliver.
    let config = store.config(&hq.url(), "streaming", "");
    let mut config = config;
    config.download.interval = Duration::from_secs(3600);
    config.download.long_poll = Duration::from_secs(30);
    let initial = first.last().unwrap().sequence;
    let mut published_more = false;
    let mut target = u64::MAX;
    let run = run_agent(
        config,
        sqlite(store.channel_db()),
        Duration::from_secs(30),
        || {
            let applied = store.applied();
            if !published_more && applied >= initial {
                target = hq.publish_round(small(), 1).last().unwrap().sequence;
                published_more = true;
            }
            applied >= target
        },
    );
    assert!(
        run.reached,
        "the package published during the long poll was not applied"
    );
}

/// With its message database deleted, the agent carries on from what the
/// channel database and the server hold: nothing is downloaded, applied or
/// uploaded twice.
#[test]
fn lost_message_database_is_rebuilt_from_channel_database_and_server() {
    let hq = Hq::start();
    let first = hq.publish_initial(small());
    let store = StoreDir::new();
    let mut pos = store.pos();
    pos.record_sales(40).unwrap();
    let extra = "[upload]\ninterval = \"200ms\"\n";
    let (header, _) = cdx::retail::UPLOAD_TABLES[0];
    let last = first.last().unwrap().sequence;
    let run = run_agent(
        store.config(&hq.url(), "streaming", extra),
        sqlite(store.channel_db()),
        Duration::from_secs(60),
        || store.applied() >= last && hq.uploaded(header) == 40,
    );
    assert!(run.reached);

    std::fs::remove_dir_all(store.path().join("work/message-db")).unwrap();
    let round = hq.publish_round(small(), 1);
    pos.record_sales(10).unwrap();
    let last = round.last().unwrap().sequence;
    let run = run_agent(
        store.config(&hq.url(), "streaming", extra),
        sqlite(store.channel_db()),
        Duration::from_secs(60),
        || store.applied() >= last && hq.uploaded(header) == 50,
    );
    assert!(run.reached);
    let downloaded: Vec<_> = run
        .status
        .recent_downloads
        .iter()
        .map(|s| s.package.id)
        .collect();
    let expected: Vec<_> = round.iter().rev().map(|p| p.id).collect();
    assert_eq!(
        downloaded, expected,
        "only the new packages were downloaded"
    );
    let uploaded_rows: u64 = run
        .status
        .recent_uploads
        .iter()
        .filter(|u| u.table == header)
        .map(|u| u.rows)
        .sum();
    assert_eq!(uploaded_rows, 10, "only the new sales were uploaded");
    assert_eq!(hq.uploaded(header), 50);
    for (table, rows) in expected_row_counts(small(), 1) {
        assert_eq!(store.rows(&table), rows, "rows of {table}");
    }
}

/// An older headquarters, without `POST /v1/status/batch` (it answers 404),
/// still hears every status change: the agent sends its reports one by one
/// from then on, and each package's session reaches Applied there.
#[test]
fn reports_reach_a_server_without_batches_one_by_one() {
    let hq = Hq::start();
    let published = hq.publish_initial(small());
    let proxy = FaultyProxy::older_server(hq.server.addr());
    let store = StoreDir::new();
    let config = store.config(&proxy.url(), "streaming", "[upload]\ninterval = \"1h\"\n");
    let applied_at_hq = || {
        let filter = cdx_server::SessionFilter {
            channel: Some(CHANNEL.into()),
            direction: Some(cdx::status::Direction::Download),
        };
        let sessions = hq.server.store().sessions(&filter).unwrap();
        published.iter().all(|p| {
            sessions
                .download
                .iter()
                .any(|s| s.subject_id == p.id && s.status == "Applied")
        })
    };
    let run = run_agent(
        config,
        sqlite(store.channel_db()),
        Duration::from_secs(60),
        applied_at_hq,
    );
    assert!(
        run.reached,
        "headquarters did not hear that every package was applied"
    );
    assert_eq!(
        proxy
            .batches_hidden
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "the agent tried a batch once, then sent reports one by one"
    );
}
