//! A full disk under the working folder (and the message database, as in
//! the default layout): the agent says so on `/health`, and once space is
//! freed it carries on by itself, applying nothing twice and losing no sale.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cdx::retail::expected_row_counts;

use super::util::*;

/// A small tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` at `path`; `None` (with one line saying
    /// why) when not root.
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("SKIPPED: mounting a small filesystem needs root");
            return None;
        }
        std::fs::create_dir_all(path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs failed");
        Some(Tmpfs(path.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes to `path` until the disk is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0x55u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

/// The disk fills up while packages arrive and sales are made: `/health`
/// answers 503 naming the full disk; once space is freed the agent applies
/// the packages and uploads every sale once, without a restart.
#[test]
fn a_full_disk_is_reported_and_healed_without_a_restart() {
    let store = StoreDir::new();
    let work = store.path().join("work");
    let Some(_tmpfs) = Tmpfs::mount(&work, "32m") else {
        return;
    };
    let hq = Hq::start();
    let initial = hq.publish_initial(small());
    let config = store.config(
        &hq.url(),
        "reliable",
        "stall_after = \"3s\"\n\n[upload]\ninterval = \"1s\"\nbatch_rows = 20\n",
    );
    let agent = RunningAgent::start(config, sqlite(store.channel_db()));
    let mut pos = store.pos();
    let mut sold = pos.record_sales(10).unwrap();
    let synced = wait_until(Duration::from_secs(60), || {
        store.applied() >= initial.last().unwrap().sequence
            && hq.uploaded("retail_transaction_sales_line") == sold
    });
    assert!(synced, "the initial sync did not finish");

    let filler = work.join("filler");
    fill(&filler);
    let round = hq.publish_round(small(), 1);
    let mut health = (0, String::new());
    let reported = wait_until(Duration::from_secs(60), || {
        sold += pos.record_sales(1).unwrap();
        health = http(agent.status_addr, "GET", "/health");
        health.0 == 503 && health.1.contains("space")
    });
    assert!(reported, "a full disk is not named on /health: {health:?}");

    std::fs::remove_file(&filler).unwrap();
    let freed = std::time::Instant::now();
    sold += pos.record_sales(5).unwrap();
    let last = round.last().unwrap().sequence;
    let healed = wait_until(Duration::from_secs(90), || {
        store.applied() >= last && hq.uploaded("retail_transaction_sales_line") == sold
    });
    eprintln!(
        "full disk: healed {:?} after space was freed",
        freed.elapsed()
    );
    let status = agent.status();
    assert!(
        healed,
        "after space was freed: applied {} of {last}, uploaded {} of {sold}; {:?}",
        store.applied(),
        hq.uploaded("retail_transaction_sales_line"),
        status.problems
    );
    for (table, rows) in expected_row_counts(small(), 1) {
        assert_eq!(store.rows(&table), rows, "rows of {table}");
    }
    let healthy = wait_until(Duration::from_secs(10), || {
        http(agent.status_addr, "GET", "/health").0 == 200
    });
    assert!(healthy, "{:?}", agent.status().health_reasons);
    agent.stop();
}
