//! Broken packages: rejected whole, the channel database untouched, later
//! packages held back until an operator resumes.

use std::time::Duration;

use cdx::package::PackageKind;
use cdx::status::DownloadStatus;

use super::util::*;

fn names(store: &StoreDir) -> Vec<String> {
    let conn = rusqlite::Connection::open(store.channel_db()).unwrap();
    let mut stmt = conn.prepare("SELECT name FROM items ORDER BY id").unwrap();
    let names = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    names
}

/// A package corrupted at headquarters fails verification on every try, is
/// Canceled after the try count, and suspends the package after it; the
/// channel database keeps its previous rows. Once the file is repaired and
/// an operator resumes, both apply in order.
#[test]
fn corrupt_package_is_rejected_and_later_packages_wait_for_an_operator() {
    let hq = Hq::start();
    let store = StoreDir::new();
    let start = || {
        RunningAgent::start(
            store.config(&hq.url(), "reliable", ""),
            sqlite(store.channel_db()),
        )
    };
    // The store has the first package before the broken full package is
    // published (a store that had not would pass over the first, which
    // the broken one supersedes: docs/protocol.md section 3.2).
    let agent = start();
    let good = hq.publish_table(
        "1040",
        PackageKind::Full,
        items_schema(),
        item_rows(50, "first"),
    );
    assert!(wait_until(Duration::from_secs(30), || store.applied() == good.sequence));
    // Stopped while the broken package is published and then corrupted, so
    // that it never sees it intact.
    agent.stop();
    let packages = BrokenInTheMiddle::follow(&hq, good);
    let agent = start();
    let (good, broken, after) = (&packages.good, &packages.broken, &packages.after);
    let suspended = wait_until(Duration::from_secs(30), || {
        agent.status().suspended.is_some()
    });
    assert!(
        suspended,
        "the broken package did not suspend the downloads"
    );
    let status = agent.status();
    assert_eq!(
        store.applied(),
        good.sequence,
        "a package after the broken one was applied"
    );
    assert_eq!(store.rows("items"), 50, "the channel database changed");
    assert!(names(&store).iter().all(|n| n.starts_with("first")));
    let canceled = status
        .recent_downloads
        .iter()
        .find(|s| s.package.id == broken.id && s.status == DownloadStatus::Canceled)
        .expect("the broken package's session is Canceled");
    assert_eq!(canceled.attempts, 3, "the try count bounds the tries");
    let error = canceled.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("SHA-256") && error.contains(&broken.id.to_string()),
        "{error}"
    );
    assert_eq!(status.suspended.unwrap().package_id, Some(broken.id));
    let reported = wait_until(Duration::from_secs(10), || {
        hq.download_status(broken.id).as_deref() == Some("Suspended")
    });
    assert!(
        reported,
        "headquarters shows {:?}",
        hq.download_status(broken.id)
    );

    // Repaired, the package still waits for the operator.
    packages.repair();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        store.applied(),
        good.sequence,
        "the suspension lifted by itself"
    );

    let (code, body) = agent.resume();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&broken.id.to_string()), "{body}");
    let done = wait_until(Duration::from_secs(30), || {
        store.applied() >= after.sequence
    });
    assert!(done, "resuming did not apply the held packages");
    assert_eq!(store.rows("items"), 80);
    assert!(names(&store).contains(&"third 1".to_string()));
    assert!(agent.status().suspended.is_none());
    let reported = wait_until(Duration::from_secs(10), || {
        hq.download_status(broken.id).as_deref() == Some("Applied")
    });
    assert!(
        reported,
        "headquarters shows {:?}",
        hq.download_status(broken.id)
    );
    agent.stop();
}

/// A package whose content is corrupt but whose listed checksum matches
/// (corrupted before it was listed) gets past the download and is refused
/// by the applier: nothing of it reaches the channel database.
#[test]
fn package_with_bad_inner_checksum_is_never_applied() {
    let hq = Hq::start();
    let store = StoreDir::new();
    let good = hq.publish_table(
        "1040",
        PackageKind::Full,
        items_schema(),
        item_rows(20, "first"),
    );
    // Incremental: a full package would supersede the first one.
    let broken = hq.publish_table(
        "1040",
        PackageKind::Incremental,
        items_schema(),
        item_rows(2000, "second"),
    );
    let file = hq.package_file(broken.id);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x01;
    std::fs::write(&file, &bytes).unwrap();
    hq.relist(broken.id, &bytes);

    let agent = RunningAgent::start(
        store.config(&hq.url(), "streaming", ""),
        sqlite(store.channel_db()),
    );
    let suspended = wait_until(Duration::from_secs(30), || {
        agent.status().suspended.is_some()
    });
    assert!(suspended, "the corrupt package was not refused");
    let status = agent.status();
    let canceled = status
        .recent_downloads
        .iter()
        .find(|s| s.package.id == broken.id && s.status == DownloadStatus::Canceled)
        .expect("the corrupt package's session is Canceled");
    assert!(
        canceled.history.iter().any(|t| t.status == "ApplyFailed"),
        "it failed at apply: {:?}",
        canceled.history
    );
    assert_eq!(store.applied(), good.sequence);
    assert_eq!(
        store.rows("items"),
        20,
        "part of the corrupt package was applied"
    );
    agent.stop();
}
