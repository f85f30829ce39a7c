use std::io::Read;

use super::*;
use crate::channel_db::{ApplyOutcome, ChannelDb, PackageSource, SqliteChannelDb};
use crate::package::PackageReader;

fn small() -> DataSetSize {
    DataSetSize {
        products: 60,
        customers: 12,
        stores: 3,
        staff: 7,
    }
}

/// (upserts, deletes) per table name of `packages`.
fn count_rows(packages: Vec<GeneratedPackage>) -> BTreeMap<String, (u64, u64)> {
    let mut counts = BTreeMap::new();
    for p in packages {
        let names: Vec<String> = p.tables.iter().map(|t| t.name.clone()).collect();
        for (table, row) in p.rows {
            let entry = counts
                .entry(names[table as usize].clone())
                .or_insert((0, 0));
            match row {
                GeneratedRow::Upsert(_) => entry.0 += 1,
                GeneratedRow::Delete(_) => entry.1 += 1,
            }
        }
    }
    counts
}

fn all_rows(packages: Vec<GeneratedPackage>) -> Vec<(String, u32, GeneratedRow)> {
    packages
        .into_iter()
        .flat_map(|p| {
            let job = p.job;
            p.rows.map(move |(t, r)| (job.clone(), t, r))
        })
        .collect()
}

/// The same seed gives the same rows; another seed or round gives others.
#[test]
fn generators_are_deterministic() {
    let size = small();
    assert_eq!(
        all_rows(initial_packages(size, 7)),
        all_rows(initial_packages(size, 7))
    );
    assert_ne!(
        all_rows(initial_packages(size, 7)),
        all_rows(initial_packages(size, 8))
    );
    for round in 1..=3 {
        assert_eq!(
            all_rows(incremental_packages(size, 7, round)),
            all_rows(incremental_packages(size, 7, round))
        );
    }
    assert_ne!(
        all_rows(incremental_packages(size, 7, 1)),
        all_rows(incremental_packages(size, 7, 2))
    );
}

/// The initial packages hold exactly the expected rows, one full package
/// per job, rows grouped by table in table order.
#[test]
fn initial_packages_match_expected_counts() {
    let size = small();
    let packages = initial_packages(size, 1);
    let jobs: Vec<&str> = packages.iter().map(|p| p.job.as_str()).collect();
    assert_eq!(jobs, ["1070", "1060", "1040", "1010"]);
    assert!(packages.iter().all(|p| p.kind == PackageKind::Full));
    for p in initial_packages(size, 1) {
        let order: Vec<u32> = p.rows.map(|(t, _)| t).collect();
        assert!(order.windows(2).all(|w| w[0] <= w[1]), "job {}", p.job);
    }
    let expected = expected_row_counts(size, 0);
    assert_eq!(
        count_rows(packages),
        expected.into_iter().map(|(t, n)| (t, (n, 0))).collect()
    );
    assert_eq!(
        expected_row_counts(DataSetSize::default(), 0)["prices"],
        200_000
    );
}

/// Each round adds the new products (with prices and barcodes), changes
/// what it says, and deletes customers while any remain.
#[test]
fn incremental_rounds_add_and_delete_what_they_say() {
    let size = small();
    let k = NEW_PRODUCTS_PER_ROUND;
    for round in 1..=4 {
        let counts = count_rows(incremental_packages(size, 3, round));
        assert_eq!(counts["barcodes"], (k, 0));
        assert_eq!(counts["products"], (k + PRODUCT_CHANGES_PER_ROUND, 0));
        assert_eq!(
            counts["prices"],
            (k * size.stores + PRICE_CHANGES_PER_ROUND, 0)
        );
        // 12 customers, 5 deleted per round: 5, 5, 2, then none left.
        let deletes = [5, 5, 2, 0][round as usize - 1];
        let customers = counts.get("customers").copied().unwrap_or_default();
        assert_eq!(customers.1, deletes, "round {round}");
    }
    assert!(incremental_packages(size, 3, 0).is_empty());
}

fn apply_all(db: &mut SqliteChannelDb, packages: Vec<GeneratedPackage>, sequence: &mut u64) {
    for p in packages {
        *sequence += 1;
        let header = p.header(Uuid::new_v4(), "store-0001", *sequence, 0);
        let writer = PackageWriter::new(Vec::new(), &header).unwrap();
        let (bytes, _) = p.write(writer).unwrap();
        let source: PackageSource<'_> =
            PackageReader::open(Box::new(&bytes[..]) as Box<dyn Read + Send + '_>).unwrap();
        let outcome = db.apply_package(source).unwrap();
        assert!(matches!(outcome, ApplyOutcome::Applied(_)));
    }
}

fn db_counts(db: &mut SqliteChannelDb) -> BTreeMap<String, u64> {
    expected_row_counts(small(), 0)
        .keys()
        .map(|t| (t.clone(), db.row_count(t).unwrap()))
        .collect()
}

/// A channel that applied the initial packages and some rounds holds
/// `expected_row_counts` rows per table.
#[test]
fn applied_data_set_has_expected_row_counts() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = SqliteChannelDb::open(dir.path().join("channel.db")).unwrap();
    let size = small();
    let mut sequence = 0;
    apply_all(&mut db, initial_packages(size, 11), &mut sequence);
    assert_eq!(db_counts(&mut db), expected_row_counts(size, 0));
    for round in 1..=4 {
        apply_all(
            &mut db,
            incremental_packages(size, 11, round),
            &mut sequence,
        );
        assert_eq!(
            db_counts(&mut db),
            expected_row_counts(size, round),
            "round {round}"
        );
    }
}

/// Barcodes are valid EAN-13s.
#[test]
fn ean13_check_digit() {
    assert_eq!(ean13(1), "2000000000015");
    assert_eq!(ean13(123_456), "2000001234563");
}

fn counters(conn: &rusqlite::Connection, table: &str, counter: &str) -> Vec<i64> {
    conn.prepare(&format!("SELECT {counter} FROM {table} ORDER BY rowid"))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// POS counters strictly increase across calls; every sale has 1 to 5
/// lines and the line count returned matches the tables.
#[test]
fn pos_counters_strictly_increase() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("channel.db");
    let mut pos = PosSimulator::open(&path, 2, small(), 5).unwrap();
    pos.create_tables().unwrap();
    let mut lines = pos.record_sales(10).unwrap();
    lines += pos.record_sales(15).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    for (table, counter) in UPLOAD_TABLES {
        let counters = counters(&conn, table, counter);
        assert!(!counters.is_empty(), "{table}");
        assert!(counters.windows(2).all(|w| w[0] < w[1]), "{table}");
    }
    let (sales, line_sum, min, max): (u64, u64, u64, u64) = conn
        .query_row(
            "SELECT COUNT(*), SUM(line_count), MIN(line_count), MAX(line_count) \
             FROM retail_transaction",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((sales, line_sum), (25, lines));
    assert!(min >= 1 && max <= 5);
    let stored: u64 = conn
        .query_row(
            "SELECT COUNT(*) FROM retail_transaction_sales_line",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, lines);
    assert_eq!(pos.record_sales(0).unwrap(), 0);
}

/// Transaction ids follow the counter and stay unique after uploaded rows
/// are purged.
#[test]
fn pos_transaction_ids_survive_purges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("channel.db");
    let mut pos = PosSimulator::open(&path, 1, small(), 5).unwrap();
    pos.create_tables().unwrap();
    pos.record_sales(3).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("DELETE FROM retail_transaction", []).unwrap();
    pos.record_sales(3).unwrap();
    let first: (i64, String) = conn
        .query_row(
            "SELECT replication_counter, transaction_id FROM retail_transaction \
             ORDER BY replication_counter",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(first, (4, "0001-T01-0000000004".to_owned()));
}

/// The POS writes next to a channel database the agent holds open, and
/// the agent reads its rows for upload.
#[test]
fn pos_rows_are_readable_for_upload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("channel.db");
    let mut db = SqliteChannelDb::open(&path).unwrap();
    let mut pos = PosSimulator::open(&path, 1, small(), 9).unwrap();
    pos.create_tables().unwrap();
    pos.record_sales(4).unwrap();
    let table = crate::channel_db::UploadTable {
        name: UPLOAD_TABLES[0].0.into(),
        counter_column: UPLOAD_TABLES[0].1.into(),
    };
    let batch = db.read_upload_rows(&table, 1, 10).unwrap();
    assert_eq!(batch.counters, Some((2, 4)));
    assert_eq!(batch.columns[0], "replication_counter");
}
