//! What only the SQLite backend does: its file, its own tables, tables a
//! point of sale made by hand in SQLite, its error type. What every
//! backend does is in the backend contract (`tests/contract/cases.rs`),
//! run against SQLite by `cargo test --test contract`.

use std::io::Read;

use tempfile::TempDir;
use uuid::Uuid;

use super::*;
use crate::channel_db::{ApplyReport, ChannelDb};
use crate::package::codec::fixtures::{raw_frames, raw_package};
use crate::package::{
    Column, ColumnType, PackageHeader, PackageReader, PackageWriter, TableSchema, Value,
    FORMAT_VERSION,
};
use crate::package::{Frame, PackageError};
use crate::plan::SchemaConflict;

const GROUP: &str = "store-0001";

fn col(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column::new(name, ty, nullable)
}

/// products(product_id INTEGER key, name TEXT, price REAL nullable).
fn products() -> TableSchema {
    TableSchema {
        name: "products".into(),
        columns: vec![
            col("product_id", ColumnType::Integer, false),
            col("name", ColumnType::Text, false),
            col("price", ColumnType::Real, true),
        ],
        key: vec!["product_id".into()],
    }
}

fn product(id: i64, name: &str, price: Option<f64>) -> Vec<Value> {
    vec![
        Value::Integer(id),
        Value::Text(name.into()),
        price.map_or(Value::Null, Value::Real),
    ]
}

/// A full package: its header and the rows of its first table.
struct Pkg {
    header: PackageHeader,
    rows: Vec<Vec<Value>>,
}

impl Pkg {
    fn full(sequence: u64, tables: Vec<TableSchema>, rows: Vec<Vec<Value>>) -> Self {
        Pkg {
            header: PackageHeader {
                format_version: FORMAT_VERSION,
                package_id: Uuid::new_v4(),
                data_group: GROUP.into(),
                job: "1040".into(),
                sequence,
                kind: PackageKind::Full,
                created_at_ms: 1_700_000_000_000,
                replaces: Vec::new(),
                tables,
            },
            rows,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut w = PackageWriter::new(Vec::new(), &self.header).unwrap();
        if !self.rows.is_empty() {
            w.table(0).unwrap();
            for row in &self.rows {
                w.upsert(row).unwrap();
            }
        }
        w.finish().unwrap().0
    }
}

fn source(bytes: &[u8]) -> PackageSource<'_> {
    PackageReader::open(Box::new(bytes) as Box<dyn Read + Send + '_>).unwrap()
}

fn temp_db() -> (TempDir, SqliteChannelDb) {
    let dir = tempfile::tempdir().unwrap();
    let db = SqliteChannelDb::open(dir.path().join("channel.db")).unwrap();
    (dir, db)
}

fn apply(db: &mut SqliteChannelDb, pkg: &Pkg) -> Result<ApplyOutcome, ChannelDbError> {
    db.apply_package(source(&pkg.bytes()))
}

fn applied(db: &mut SqliteChannelDb, pkg: &Pkg) -> ApplyReport {
    match apply(db, pkg).unwrap() {
        ApplyOutcome::Applied(report) => report,
        ApplyOutcome::AlreadyApplied => panic!("package was applied already"),
    }
}

/// products' rows, ordered by key.
fn product_rows(db: &SqliteChannelDb) -> Vec<(i64, String, Option<f64>)> {
    let mut stmt = db
        .connection()
        .prepare("SELECT product_id, name, price FROM products ORDER BY product_id")
        .unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// Products 1..=n named `p{i}`, priced `i`.
fn full_products(sequence: u64, n: i64) -> Pkg {
    let rows = (1..=n)
        .map(|i| product(i, &format!("p{i}"), Some(i as f64)))
        .collect();
    Pkg::full(sequence, vec![products()], rows)
}

/// A table the point of sale created by hand, in SQLite's own DDL, that
/// does not fit is an error naming table and column, and nothing changes.
#[test]
fn schema_conflict_with_hand_made_tables() {
    let cases = [
        (
            "CREATE TABLE products (product_id INTEGER PRIMARY KEY, name TEXT, price TEXT)",
            "price",
        ),
        (
            "CREATE TABLE products (product_id INTEGER PRIMARY KEY, price REAL)",
            "name",
        ),
        (
            "CREATE TABLE products (product_id INTEGER, name TEXT, price REAL, \
             PRIMARY KEY (name))",
            "product_id",
        ),
    ];
    for (ddl, column) in cases {
        let (_dir, mut db) = temp_db();
        db.connection().execute(ddl, []).unwrap();
        db.connection()
            .execute("INSERT INTO products (product_id) VALUES (1)", [])
            .unwrap();
        let err = apply(&mut db, &full_products(1, 3)).unwrap_err();
        let ChannelDbError::SchemaConflict(conflict) = &err else {
            panic!("expected SchemaConflict for {ddl}, got {err:?}");
        };
        let text = err.to_string();
        assert!(
            text.contains("products") && text.contains(column),
            "{ddl}: {text}"
        );
        assert!(!matches!(
            **conflict,
            SchemaConflict::RequiredExtraColumn { .. }
        ));
        assert_eq!(db.row_count("products").unwrap(), 1, "{ddl}");
        assert!(db.applied_packages(GROUP).unwrap().is_empty());
    }
}

/// A row SQLite refuses (a duplicate key in a full package) is a
/// `ChannelDbError::Sqlite` whose context names the table. (That it rolls
/// back the package, wherever it comes, is in the contract.)
#[test]
fn failing_row_is_a_sqlite_error_naming_the_table() {
    let (_dir, mut db) = temp_db();
    applied(&mut db, &full_products(1, 3));
    let before = product_rows(&db);
    let rows = (1..=2000)
        .map(|i| product(if i == 1500 { 1 } else { i }, "x", None))
        .collect();
    let err = apply(&mut db, &Pkg::full(2, vec![products()], rows)).unwrap_err();
    assert!(
        matches!(&err, ChannelDbError::Sqlite { context, .. } if context.contains("products")),
        "{err:?}"
    );
    assert_eq!(product_rows(&db), before);
}

/// A package may not write to SQLite's own tables: the publisher cannot
/// write one, and the reader refuses one written by hand, before the
/// channel database sees it.
#[test]
fn sqlite_tables_are_reserved() {
    let schema = TableSchema {
        name: "SQLite_stat1".into(),
        columns: vec![col("tbl", ColumnType::Text, false)],
        key: vec!["tbl".into()],
    };
    let pkg = Pkg::full(1, vec![schema], vec![]);
    let refused = |e: PackageError| e.to_string().contains("`SQLite_stat1` is reserved");
    let written = PackageWriter::new(Vec::new(), &pkg.header).err();
    assert!(
        written.is_some_and(refused),
        "the writer took a sqlite_ table"
    );
    let end = raw_frames(&[Frame::End { rows: 0 }]);
    let bytes = raw_package(&pkg.header, &end, None);
    let read = PackageReader::open(&bytes[..]).err();
    assert!(read.is_some_and(refused), "the reader took a sqlite_ table");
}

/// Opening creates the file in WAL mode with the bookkeeping tables;
/// reopening keeps what was applied.
#[test]
fn open_creates_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("channel.db");
    let mut db = SqliteChannelDb::open(&path).unwrap();
    let mode: String = db
        .connection()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    applied(&mut db, &full_products(1, 2));
    db.advance_watermark("sales", 5).unwrap();
    drop(db);
    let mut db = SqliteChannelDb::open(&path).unwrap();
    assert_eq!(db.last_applied_sequence(GROUP).unwrap(), 1);
    assert_eq!(db.watermark("sales").unwrap(), 5);
    assert_eq!(db.row_count("products").unwrap(), 2);
    let missing_dir = dir.path().join("no/such/dir/channel.db");
    assert!(matches!(
        SqliteChannelDb::open(&missing_dir),
        Err(ChannelDbError::Open { path, .. }) if path == missing_dir
    ));
}

/// A consumer that panics while the reader waits for room (wide rows fill
/// the bytes in flight) does not hang the apply: the panic comes back.
#[test]
fn a_panicking_consumer_does_not_hang_the_reader() {
    let wide = "w".repeat(1 << 20);
    let rows = (1..=12)
        .map(|i| product(i, &wide, None))
        .collect::<Vec<_>>();
    let bytes = Pkg::full(1, vec![products()], rows).bytes();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut package = source(&bytes);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::channel_db::frames::read_ahead(&mut package, |frames| {
                frames.next_batch();
                panic!("the consumer failed");
                #[allow(unreachable_code)]
                Ok(())
            })
        }));
        let _ = tx.send(outcome.is_err());
    });
    let panicked = rx.recv_timeout(std::time::Duration::from_secs(30));
    assert_eq!(
        panicked,
        Ok(true),
        "the reader hung after the consumer panicked"
    );
}

/// Frames cross in batches bounded by bytes: 1 MiB rows come one or two
/// at a time, not 256.
#[test]
fn wide_rows_cross_in_small_batches() {
    let wide = "w".repeat(1 << 20);
    let rows = (1..=8).map(|i| product(i, &wide, None)).collect::<Vec<_>>();
    let bytes = Pkg::full(1, vec![products()], rows).bytes();
    let mut package = source(&bytes);
    let largest = crate::channel_db::frames::read_ahead(&mut package, |frames| {
        let mut largest = 0;
        while let Some(batch) = frames.next_batch() {
            largest = largest.max(batch.len());
        }
        Ok(largest)
    })
    .unwrap();
    assert!(largest <= 2, "a batch of {largest} rows of 1 MiB");
}

/// items(id key, price decimal(7,2), factor decimal(32,16)).
fn items() -> TableSchema {
    TableSchema {
        name: "items".into(),
        columns: vec![
            col("id", ColumnType::Integer, false),
            col(
                "price",
                ColumnType::Decimal {
                    precision: 7,
                    scale: 2,
                },
                true,
            ),
            col(
                "factor",
                ColumnType::Decimal {
                    precision: 32,
                    scale: 16,
                },
                true,
            ),
        ],
        key: vec!["id".into()],
    }
}

/// A point of sale queries prices in plain SQL: decimals of up to 15
/// digits compare, sort and sum as numbers, and still read back exact.
#[test]
fn decimals_compare_sort_and_sum_as_numbers() {
    let (_dir, mut db) = temp_db();
    let prices = [
        "9.99", "50.00", "50.01", "100.00", "7.50", "-0.01", "49.99", "99999.99", "0.00", "12.30",
    ];
    let factor = "0.3333333333333333";
    let rows = prices
        .iter()
        .enumerate()
        .map(|(i, p)| {
            vec![
                Value::Integer(i as i64),
                Value::Text((*p).into()),
                Value::Text(factor.into()),
            ]
        })
        .collect();
    applied(&mut db, &Pkg::full(1, vec![items()], rows));
    let conn = db.connection();
    let declared: String = conn
        .query_row(
            "SELECT type FROM pragma_table_info('items') WHERE name = 'price'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(declared, "DECIMAL(7,2)");
    let above: i64 = conn
        .query_row("SELECT count(*) FROM items WHERE price > 50", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(above, 3, "50.01, 100.00 and 99999.99");
    let order: Vec<i64> = conn
        .prepare("SELECT id FROM items ORDER BY price, id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(order, [5, 8, 4, 0, 9, 6, 1, 2, 3, 7]);
    let (sum, max): (String, String) = conn
        .query_row(
            "SELECT printf('%.2f', SUM(price)), printf('%.2f', MAX(price)) FROM items",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((sum.as_str(), max.as_str()), ("100279.77", "99999.99"));
    // The exact values come back through the library's reader; the wide
    // decimal stays exact text.
    let mut stmt = conn
        .prepare("SELECT price, factor FROM items ORDER BY id")
        .unwrap();
    let read: Vec<(Value, Value)> = stmt
        .query_map([], |r| {
            Ok((
                SqliteChannelDb::exact_value("DECIMAL(7,2)", r.get_ref(0)?)?,
                SqliteChannelDb::exact_value("DECIMAL_TEXT(32,16)", r.get_ref(1)?)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (i, (price, f)) in read.iter().enumerate() {
        assert_eq!(price, &Value::Text(prices[i].into()), "row {i}");
        assert_eq!(f, &Value::Text(factor.into()), "row {i}");
    }
}

/// A hand-made NUMERIC column wider than a float's 15 digits refuses a
/// value it would change, naming table, column and key.
#[test]
fn numeric_column_refuses_a_value_it_would_round() {
    let (_dir, mut db) = temp_db();
    db.connection()
        .execute_batch(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, price DECIMAL(7,2), \
             factor NUMERIC(32,16))",
        )
        .unwrap();
    let row = |f: &str| {
        vec![
            Value::Integer(1),
            Value::Text("1.00".into()),
            Value::Text(f.into()),
        ]
    };
    applied(
        &mut db,
        &Pkg::full(1, vec![items()], vec![row("0.5000000000000000")]),
    );
    let err = apply(
        &mut db,
        &Pkg::full(2, vec![items()], vec![row("0.3333333333333333")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("items") && err.contains("factor") && err.contains("id=1"),
        "{err}"
    );
    assert!(err.contains("0.3333333333333333"), "{err}");
}

/// The declared type of `table.column`, as a fresh connection reads it.
fn declared_type(path: &std::path::Path, table: &str, column: &str) -> String {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row(
            "SELECT type FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |r| r.get(0),
        )
        .unwrap()
}

/// A widening rewrites the column's declared type and nothing else of the
/// table's statement; a package that fails after it rolls it back; another
/// connection, and the database's integrity check, see the new statement.
#[test]
fn a_widened_column_is_declared_wider_and_a_failed_package_rolls_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("channel.db");
    let mut db = SqliteChannelDb::open(&path).unwrap();
    let items = |name: ColumnType| TableSchema {
        name: "items".into(),
        columns: vec![
            col("id", ColumnType::Integer, false),
            col("name", name, true),
        ],
        key: vec!["id".into()],
    };
    // A hand-made index on the column stays usable.
    applied(
        &mut db,
        &Pkg::full(
            1,
            vec![items(ColumnType::BoundedText { max_len: 5 })],
            vec![vec![Value::Integer(1), Value::Text("one".into())]],
        ),
    );
    db.connection()
        .execute_batch("CREATE INDEX items_by_name ON items (name)")
        .unwrap();
    assert_eq!(declared_type(&path, "items", "name"), "VARCHAR(5)");

    // Widened, then a second table's conflict rolls everything back.
    db.connection()
        .execute_batch("CREATE TABLE other (id TEXT PRIMARY KEY)")
        .unwrap();
    let other = TableSchema {
        name: "other".into(),
        columns: vec![col("id", ColumnType::Integer, false)],
        key: vec!["id".into()],
    };
    let mut failing = Pkg::full(
        2,
        vec![items(ColumnType::BoundedText { max_len: 60 }), other],
        vec![vec![
            Value::Integer(2),
            Value::Text("twenty-two chars long".into()),
        ]],
    );
    failing.header.kind = PackageKind::Incremental;
    assert!(matches!(
        apply(&mut db, &failing),
        Err(ChannelDbError::SchemaConflict(conflict))
            if matches!(*conflict, SchemaConflict::TypeMismatch { .. })
    ));
    assert_eq!(declared_type(&path, "items", "name"), "VARCHAR(5)");

    let mut wider = Pkg::full(
        2,
        vec![items(ColumnType::BoundedText { max_len: 60 })],
        vec![vec![
            Value::Integer(2),
            Value::Text("twenty-two chars long".into()),
        ]],
    );
    wider.header.kind = PackageKind::Incremental;
    applied(&mut db, &wider);
    assert_eq!(declared_type(&path, "items", "name"), "VARCHAR(60)");
    let sql: String = db
        .connection()
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE name = 'items'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        sql,
        "CREATE TABLE \"items\" (\"id\" INTEGER NOT NULL, \"name\" VARCHAR(60), PRIMARY KEY (\"id\"))"
    );
    let check: String = db
        .connection()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let by_index: i64 = db
        .connection()
        .query_row(
            "SELECT id FROM items INDEXED BY items_by_name WHERE name = 'twenty-two chars long'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(by_index, 2);
}
