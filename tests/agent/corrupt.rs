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

/// A disk can lose bytes of a downloaded package before its apply (a
/// failing disk, or a cache that lies about syncs). Made here by hand:
/// while the channel database is locked the downloaded file waits to be
/// applied, and half of it is overwritten with zeros. Its apply fails,
/// the file no longer matches its listing, and the agent downloads it
/// again and applies it, without an operator.
#[test]
fn a_downloaded_file_damaged_before_its_apply_is_downloaded_again() {
    let hq = Hq::start();
    let store = StoreDir::new();
    let first = hq.publish_table(
        "1040",
        PackageKind::Full,
        items_schema(),
        item_rows(20, "first"),
    );
    let agent = RunningAgent::start(
        store.config(&hq.url(), "streaming", ""),
        sqlite(store.channel_db()),
    );
    assert!(wait_until(Duration::from_secs(30), || store.applied()
        == first.sequence));

    let lock = rusqlite::Connection::open(store.channel_db()).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let second = hq.publish_table(
        "1040",
        PackageKind::Incremental,
        items_schema(),
        item_rows(3000, "second"),
    );
    let file = store
        .path()
        .join("work/downloads")
        .join(format!("{}.cdxpkg", second.id));
    // Each try of the apply waits 5 s for the lock, then fails as a
    // transient problem, and the next opens the file again.
    let busy_failures = || {
        agent
            .status()
            .problems
            .get("apply")
            .map_or(0, |p| p.failures)
    };
    assert!(
        wait_until(Duration::from_secs(30), || busy_failures() >= 1),
        "the apply did not wait for the locked channel database"
    );
    let mut bytes = std::fs::read(&file).unwrap();
    assert_eq!(bytes.len() as u64, second.bytes);
    let half = bytes.len() / 2;
    bytes[half..].fill(0);
    std::fs::write(&file, &bytes).unwrap();
    // The try under way may have read the file before it was damaged.
    let seen = busy_failures();
    assert!(
        wait_until(Duration::from_secs(30), || busy_failures() > seen),
        "the apply stopped trying"
    );
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);

    let applied = wait_until(Duration::from_secs(30), || {
        store.applied() == second.sequence
    });
    let status = agent.status();
    assert!(applied, "the damaged package was not applied: {status:?}");
    assert_eq!(store.rows("items"), 3000);
    assert!(names(&store).iter().all(|n| n.starts_with("second")));
    assert!(status.suspended.is_none());
    let session = status
        .recent_downloads
        .iter()
        .find(|s| s.package.id == second.id && s.status == DownloadStatus::Applied)
        .expect("the second package's session is Applied");
    let history: Vec<_> = session
        .history
        .iter()
        .map(|t| (t.status.as_str(), t.message.clone().unwrap_or_default()))
        .collect();
    let again = history
        .iter()
        .position(|(s, m)| *s == "Requested" && m.contains("no longer matches its listed SHA-256"))
        .unwrap_or_else(|| panic!("no download again in {history:?}"));
    assert_eq!(
        history[again - 1].0,
        "ApplyFailed",
        "the download again follows a failed apply: {history:?}"
    );
    assert!(
        history[again..].iter().any(|(s, _)| *s == "Downloaded"),
        "{history:?}"
    );
    agent.stop();
}
