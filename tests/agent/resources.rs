//! The agent's memory and disk follow bounds, not the package: wide rows
//! and a decompression bomb, measured on a real `cdx-client` process.

use std::time::Duration;

use cdx::package::{Column, ColumnType, PackageKind, TableSchema, Value};

use super::process::{signal, wait_exit};
use super::util::*;

/// The bound the field-hardening issue sets for any package.
const MAX_AGENT_RSS: u64 = 64 << 20;

fn docs() -> TableSchema {
    TableSchema {
        name: "docs".into(),
        columns: vec![
            Column::new("id", ColumnType::Integer, false),
            Column::new("body", ColumnType::Text, false),
        ],
        key: vec!["id".into()],
    }
}

/// `n` rows of `width` bytes of text: pseudo-random letters (they barely
/// compress) or one letter repeated (a bomb).
fn wide_rows(n: i64, width: usize, random: bool) -> Vec<Vec<Value>> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (1..=n)
        .map(|i| {
            let body: String = (0..width)
                .map(|_| {
                    if !random {
                        return 'a';
                    }
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (b'a' + (state % 26) as u8) as char
                })
                .collect();
            vec![Value::Integer(i), Value::Text(body)]
        })
        .collect()
}

/// Bytes of the channel database with its WAL.
fn db_bytes(store: &StoreDir) -> u64 {
    let wal = store.channel_db().with_extension("db-wal");
    [store.channel_db(), wal]
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

/// Publishes `rows` of `docs` as a full package and runs a real
/// `cdx-client` in transfer `mode` until it applied them (or `within`
/// passed), then stops it: whether it applied them, the rows of `docs` the
/// store holds, and the agent's peak RSS.
fn apply_in_a_real_agent(rows: Vec<Vec<Value>>, mode: &str, within: Duration) -> (bool, u64, u64) {
    let hq = Hq::start();
    let package = hq.publish_table("1040", PackageKind::Full, docs(), rows);
    let store = StoreDir::new();
    let config = store.write_config(&hq.url(), mode, "");
    let mut agent = spawn_client(&config);
    let applied = wait_until(within, || store.applied() >= package.sequence);
    let peak = peak_rss(agent.id());
    signal(&agent, "TERM");
    wait_exit(&mut agent, Duration::from_secs(30));
    (applied, store.rows("docs"), peak)
}

/// A package of 1 MiB rows applies with the agent's peak RSS under 64 MiB.
#[test]
fn a_package_of_1_mib_rows_applies_in_bounded_memory() {
    let (applied, rows, peak) = apply_in_a_real_agent(
        wide_rows(48, 1 << 20, true),
        "reliable",
        Duration::from_secs(120),
    );
    assert!(applied, "the package of wide rows was not applied");
    assert_eq!(rows, 48);
    eprintln!("peak RSS applying 48 rows of 1 MiB: {} KiB", peak / 1024);
    assert!(
        peak <= MAX_AGENT_RSS,
        "peak RSS {} MiB applying 1 MiB rows",
        peak >> 20
    );
}

/// A package of 300,000 narrow rows (the frames between the package's
/// reader and the database are counted in thousands a batch, each row a
/// vector and a string) applies with the agent's peak RSS under 64 MiB.
#[test]
fn a_package_of_many_narrow_rows_applies_in_bounded_memory() {
    let (applied, rows, peak) = apply_in_a_real_agent(
        wide_rows(300_000, 40, true),
        "streaming",
        Duration::from_secs(180),
    );
    assert!(applied, "the package of narrow rows was not applied");
    assert_eq!(rows, 300_000);
    eprintln!(
        "peak RSS applying 300,000 rows of 40 bytes: {} KiB",
        peak / 1024
    );
    assert!(
        peak <= MAX_AGENT_RSS,
        "peak RSS {} MiB applying narrow rows",
        peak >> 20
    );
}

/// A package that expands beyond the size its listing declares (a zstd
/// bomb: kilobytes that decompress to 64 MiB) fails at the declared size:
/// nothing is applied, the channel database barely grows, memory stays bounded.
#[test]
fn a_decompression_bomb_fails_at_its_declared_size() {
    let hq = Hq::start();
    let bomb = hq.publish_table(
        "1040",
        PackageKind::Full,
        docs(),
        wide_rows(64, 1 << 20, false),
    );
    assert!(bomb.bytes < 1 << 20, "not a bomb: {} bytes", bomb.bytes);
    let conn = rusqlite::Connection::open(hq.dir.path().join("hq/server.db")).unwrap();
    conn.execute(
        "UPDATE packages SET content_bytes = 2097152 WHERE id = ?1",
        [bomb.id.to_string()],
    )
    .unwrap();
    let store = StoreDir::new();
    let config = store.write_config(&hq.url(), "reliable", "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("try_count = 3", "try_count = 1");
    std::fs::write(&config, text).unwrap();
    let before = db_bytes(&store);
    let mut agent = spawn_client(&config);
    let refused = wait_until(Duration::from_secs(60), || {
        hq.download_status(bomb.id).as_deref() == Some("Suspended")
    });
    let peak = peak_rss(agent.id());
    signal(&agent, "TERM");
    wait_exit(&mut agent, Duration::from_secs(30));
    assert!(
        refused,
        "the bomb was not refused: {:?}",
        hq.download_session(bomb.id)
    );
    let session = hq.download_session(bomb.id).unwrap();
    let message = session.message.unwrap_or_default();
    assert!(
        message.contains("content bytes") && message.contains("2097152"),
        "{message}"
    );
    assert_eq!(store.applied(), 0);
    let grown = db_bytes(&store).saturating_sub(before);
    eprintln!(
        "bomb: peak RSS {} KiB, channel database grew {grown} bytes",
        peak / 1024
    );
    assert!(grown < 8 << 20, "the channel database grew {grown} bytes");
    assert!(peak <= MAX_AGENT_RSS, "peak RSS {} MiB", peak >> 20);
}
