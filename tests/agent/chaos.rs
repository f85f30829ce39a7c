//! Chaos: the agent killed outright (SIGKILL) at random moments while
//! headquarters publishes and the point of sale sells. Afterwards every
//! sale is at headquarters exactly once and the channel database holds
//! exactly what was published.

use std::time::{Duration, Instant};

use cdx::retail::expected_row_counts;
use rand::{Rng, SeedableRng};

use super::process::{signal, wait_exit};
use super::util::*;

const KILLS: u32 = 20;

/// 20 `kill -9` at random moments (seeded, so a failure replays) lose and
/// duplicate nothing.
#[test]
fn twenty_kills_at_random_moments_lose_and_duplicate_nothing() {
    let hq = Hq::start();
    let size = small();
    hq.publish_initial(size);
    let store = StoreDir::new();
    let config = store.write_config(
        &hq.url(),
        "reliable",
        "\n[upload]\ninterval = \"1s\"\nbatch_rows = 25\n",
    );
    let mut pos = store.pos();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xc0ffee);
    let mut rounds = 0;
    for kill in 0..KILLS {
        let mut child = spawn_client(&config);
        let until = Instant::now() + Duration::from_millis(rng.gen_range(150..1500));
        while Instant::now() < until {
            pos.record_sales(2).unwrap();
            std::thread::sleep(Duration::from_millis(rng.gen_range(5..60)));
        }
        if kill % 4 == 1 {
            rounds += 1;
            hq.publish_round(size, rounds);
        }
        signal(&child, "KILL");
        child.wait().unwrap();
    }

    let last = hq
        .server
        .store()
        .packages(None)
        .unwrap()
        .last()
        .unwrap()
        .sequence;
    let mut child = spawn_client(&config);
    let tables = ["retail_transaction", "retail_transaction_sales_line"];
    let converged = wait_until(Duration::from_secs(120), || {
        store.applied() >= last && tables.iter().all(|t| hq.uploaded(t) >= store.rows(t))
    });
    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(30))
        .unwrap()
        .success());
    assert!(
        converged,
        "after {KILLS} kills: applied {} of {last}, uploaded {:?} of {:?}",
        store.applied(),
        tables.map(|t| hq.uploaded(t)),
        tables.map(|t| store.rows(t))
    );
    for table in tables {
        assert_eq!(hq.uploaded(table), store.rows(table), "sales of {table}");
    }
    for (table, rows) in expected_row_counts(size, rounds) {
        assert_eq!(store.rows(&table), rows, "rows of {table}");
    }
}
