use std::io::Read;

use tempfile::TempDir;
use uuid::Uuid;

use super::*;
use crate::channel_db::{ApplyReport, ChannelDb};
use crate::package::{
    Column, ColumnType, PackageHeader, PackageReader, PackageWriter, TableSchema, Value,
    FORMAT_VERSION,
};
use crate::plan::SchemaConflict;

const GROUP: &str = "store-0001";

fn col(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column {
        name: name.into(),
        ty,
        nullable,
    }
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

/// tags(product_id, tag): a table that is all key.
fn tags() -> TableSchema {
    TableSchema {
        name: "tags".into(),
        columns: vec![
            col("product_id", ColumnType::Integer, false),
            col("tag", ColumnType::Text, false),
        ],
        key: vec!["product_id".into(), "tag".into()],
    }
}

fn product(id: i64, name: &str, price: Option<f64>) -> Vec<Value> {
    vec![
        Value::Integer(id),
        Value::Text(name.into()),
        price.map_or(Value::Null, Value::Real),
    ]
}

enum Op {
    Up(Vec<Value>),
    Del(Vec<Value>),
}

/// A package under construction: kind, sequence, tables and their rows.
struct Pkg {
    header: PackageHeader,
    body: Vec<(u32, Vec<Op>)>,
}

impl Pkg {
    fn new(kind: PackageKind, sequence: u64, tables: Vec<TableSchema>) -> Self {
        Pkg {
            header: PackageHeader {
                format_version: FORMAT_VERSION,
                package_id: Uuid::new_v4(),
                data_group: GROUP.into(),
                job: "1040".into(),
                sequence,
                kind,
                created_at_ms: 1_700_000_000_000,
                tables,
            },
            body: Vec::new(),
        }
    }

    fn table(mut self, index: u32, ops: Vec<Op>) -> Self {
        self.body.push((index, ops));
        self
    }

    fn id(&self) -> Uuid {
        self.header.package_id
    }

    fn bytes(&self) -> Vec<u8> {
        let mut w = PackageWriter::new(Vec::new(), &self.header).unwrap();
        for (index, ops) in &self.body {
            w.table(*index).unwrap();
            for op in ops {
                match op {
                    Op::Up(row) => w.upsert(row).unwrap(),
                    Op::Del(key) => w.delete(key).unwrap(),
                }
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
        .map(|i| Op::Up(product(i, &format!("p{i}"), Some(i as f64))))
        .collect();
    Pkg::new(PackageKind::Full, sequence, vec![products()]).table(0, rows)
}

/// A full package creates the missing table and inserts its rows.
#[test]
fn full_package_creates_table_and_rows() {
    let (_dir, mut db) = temp_db();
    let pkg = full_products(1, 3);
    let report = applied(&mut db, &pkg);
    assert_eq!(
        report,
        ApplyReport {
            upserts: 3,
            deletes: 0,
            created_tables: vec!["products".into()]
        }
    );
    assert_eq!(
        product_rows(&db),
        vec![
            (1, "p1".into(), Some(1.0)),
            (2, "p2".into(), Some(2.0)),
            (3, "p3".into(), Some(3.0))
        ]
    );
    assert_eq!(db.row_count("products").unwrap(), 3);
    assert_eq!(db.last_applied_sequence(GROUP).unwrap(), 1);
    let log = db.applied_packages(GROUP).unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].package_id, log[0].sequence, log[0].kind, log[0].rows),
        (pkg.id(), 1, PackageKind::Full, 3)
    );
    assert_eq!(log[0].job, "1040");
}

/// A second full package replaces the rows: rows it lacks are gone.
#[test]
fn second_full_package_replaces_rows() {
    let (_dir, mut db) = temp_db();
    applied(&mut db, &full_products(1, 5));
    let second = Pkg::new(PackageKind::Full, 2, vec![products()]).table(
        0,
        vec![
            Op::Up(product(2, "two", None)),
            Op::Up(product(7, "seven", Some(7.5))),
        ],
    );
    let report = applied(&mut db, &second);
    assert!(report.created_tables.is_empty());
    assert_eq!(
        product_rows(&db),
        vec![(2, "two".into(), None), (7, "seven".into(), Some(7.5))]
    );
}

/// A full package that lists a table but sends no rows for it empties it.
#[test]
fn full_package_without_rows_empties_its_tables() {
    let (_dir, mut db) = temp_db();
    applied(&mut db, &full_products(1, 5));
    applied(&mut db, &Pkg::new(PackageKind::Full, 2, vec![products()]));
    assert_eq!(db.row_count("products").unwrap(), 0);
}

/// An incremental package inserts new keys, updates existing ones and
/// deletes by key; other rows stay.
#[test]
fn incremental_package_upserts_and_deletes_by_key() {
    let (_dir, mut db) = temp_db();
    applied(&mut db, &full_products(1, 4));
    let inc = Pkg::new(PackageKind::Incremental, 2, vec![products()]).table(
        0,
        vec![
            Op::Up(product(2, "two", Some(20.0))),
            Op::Up(product(9, "nine", None)),
            Op::Del(vec![Value::Integer(3)]),
            Op::Del(vec![Value::Integer(42)]),
        ],
    );
    let report = applied(&mut db, &inc);
    assert_eq!((report.upserts, report.deletes), (2, 2));
    assert_eq!(
        product_rows(&db),
        vec![
            (1, "p1".into(), Some(1.0)),
            (2, "two".into(), Some(20.0)),
            (4, "p4".into(), Some(4.0)),
            (9, "nine".into(), None)
        ]
    );
}

/// A key-only table takes rows that exist already without error and
/// deletes by the whole key.
#[test]
fn incremental_key_only_table() {
    let (_dir, mut db) = temp_db();
    let tag = |id: i64, t: &str| vec![Value::Integer(id), Value::Text(t.into())];
    let full = Pkg::new(PackageKind::Full, 1, vec![tags()])
        .table(0, vec![Op::Up(tag(1, "a")), Op::Up(tag(1, "b"))]);
    applied(&mut db, &full);
    let inc = Pkg::new(PackageKind::Incremental, 2, vec![tags()]).table(
        0,
        vec![
            Op::Up(tag(1, "a")),
            Op::Up(tag(2, "a")),
            Op::Del(tag(1, "b")),
        ],
    );
    applied(&mut db, &inc);
    let mut stmt = db
        .connection()
        .prepare("SELECT product_id, tag FROM tags ORDER BY 1, 2")
        .unwrap();
    let rows: Vec<(i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, vec![(1, "a".into()), (2, "a".into())]);
}

/// Applying the same package again reports AlreadyApplied and changes nothing.
#[test]
fn reapplied_package_is_already_applied() {
    let (_dir, mut db) = temp_db();
    let full = full_products(1, 3);
    applied(&mut db, &full);
    let inc = Pkg::new(PackageKind::Incremental, 2, vec![products()])
        .table(0, vec![Op::Up(product(1, "changed", None))]);
    applied(&mut db, &inc);
    let before = product_rows(&db);
    assert_eq!(apply(&mut db, &full).unwrap(), ApplyOutcome::AlreadyApplied);
    assert_eq!(apply(&mut db, &inc).unwrap(), ApplyOutcome::AlreadyApplied);
    assert_eq!(product_rows(&db), before);
    assert_eq!(db.applied_packages(GROUP).unwrap().len(), 2);
}

/// A package at or below the last applied sequence is refused.
#[test]
fn out_of_order_sequence_is_refused() {
    let (_dir, mut db) = temp_db();
    applied(&mut db, &full_products(1, 2));
    applied(&mut db, &full_products(3, 3));
    for sequence in [2, 3] {
        let pkg = full_products(sequence, 9);
        match apply(&mut db, &pkg) {
            Err(ChannelDbError::OutOfOrder {
                package_id,
                sequence: s,
                last_applied: 3,
                ..
            }) => assert_eq!((package_id, s), (pkg.id(), sequence)),
            other => panic!("expected OutOfOrder, got {other:?}"),
        }
    }
    assert_eq!(db.row_count("products").unwrap(), 3);
    // A gap is not this layer's business.
    applied(&mut db, &full_products(7, 1));
    assert_eq!(db.last_applied_sequence(GROUP).unwrap(), 7);
}

/// A table that does not fit is an error naming table and column, and
/// nothing changes.
#[test]
fn schema_conflict_changes_nothing() {
    let cases = [
        (
            "CREATE TABLE products (product_id INTEGER PRIMARY KEY, name TEXT, price TEXT)",
            "price",
        ),
        (
            "CREATE TABLE products (product_id INTEGER PRIMARY KEY, name TEXT)",
            "price",
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
            .execute(
                "INSERT INTO products (product_id, name) VALUES (1, 'old')",
                [],
            )
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
            conflict,
            SchemaConflict::RequiredExtraColumn { .. }
        ));
        assert_eq!(db.row_count("products").unwrap(), 1, "{ddl}");
        assert!(db.applied_packages(GROUP).unwrap().is_empty());
    }
}

/// A byte flipped in the middle of the body fails the apply; the rows from
/// before stay and no package is recorded.
#[test]
fn corrupted_package_leaves_database_untouched() {
    let (_dir, mut db) = temp_db();
    applied(&mut db, &full_products(1, 3));
    let before = product_rows(&db);
    let mut bytes = full_products(2, 2000).bytes();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    let result = match PackageReader::open(Box::new(&bytes[..]) as Box<dyn Read + Send + '_>) {
        Ok(source) => db.apply_package(source),
        Err(e) => panic!("the header should still read: {e}"),
    };
    assert!(
        matches!(
            result,
            Err(ChannelDbError::Package {
                package_id: Some(_),
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(product_rows(&db), before);
    assert_eq!(db.applied_packages(GROUP).unwrap().len(), 1);
    assert_eq!(db.last_applied_sequence(GROUP).unwrap(), 1);
}

/// A package cut short fails and applies nothing.
#[test]
fn truncated_package_applies_nothing() {
    let (_dir, mut db) = temp_db();
    let bytes = full_products(1, 500).bytes();
    let cut = &bytes[..bytes.len() - 10];
    let result = db.apply_package(source(cut));
    assert!(
        matches!(result, Err(ChannelDbError::Package { .. })),
        "{result:?}"
    );
    assert!(matches!(
        db.row_count("products"),
        Err(ChannelDbError::UnknownTable { .. })
    ));
}

/// When the package's second table conflicts, the first table's rows are
/// not applied either (all or nothing); neither is its creation.
#[test]
fn conflict_in_second_table_applies_nothing() {
    let (_dir, mut db) = temp_db();
    db.connection()
        .execute("CREATE TABLE tags (product_id INTEGER, tag INTEGER)", [])
        .unwrap();
    let pkg = Pkg::new(PackageKind::Full, 1, vec![products(), tags()])
        .table(0, vec![Op::Up(product(1, "p1", None))])
        .table(
            1,
            vec![Op::Up(vec![Value::Integer(1), Value::Text("x".into())])],
        );
    let err = apply(&mut db, &pkg).unwrap_err();
    assert!(err.to_string().contains("tags.tag"), "{err}");
    assert!(matches!(
        db.row_count("products"),
        Err(ChannelDbError::UnknownTable { .. })
    ));
}

/// A row that fails in SQLite (a duplicate key in a full package) rolls
/// back every row before it, however many batches were read ahead; the
/// error names the table.
#[test]
fn failing_row_rolls_back_the_package() {
    let (_dir, mut db) = temp_db();
    applied(&mut db, &full_products(1, 3));
    let before = product_rows(&db);
    for duplicate_at in [2, 1500, 4999] {
        let rows = (1..=5000)
            .map(|i| {
                let id = if i == duplicate_at { 1 } else { i };
                Op::Up(product(id, "x", None))
            })
            .collect();
        let pkg = Pkg::new(PackageKind::Full, 2, vec![products()]).table(0, rows);
        let err = apply(&mut db, &pkg).unwrap_err();
        assert!(
            matches!(&err, ChannelDbError::Sqlite { context, .. } if context.contains("products")),
            "{err:?}"
        );
        assert_eq!(product_rows(&db), before);
    }
}

/// A package may not write to SQLite's own tables.
#[test]
fn sqlite_tables_are_reserved() {
    let (_dir, mut db) = temp_db();
    let schema = TableSchema {
        name: "sqlite_stat1".into(),
        columns: vec![col("tbl", ColumnType::Text, false)],
        key: vec!["tbl".into()],
    };
    let pkg = Pkg::new(PackageKind::Full, 1, vec![schema]);
    let err = apply(&mut db, &pkg).unwrap_err();
    assert!(
        matches!(err, ChannelDbError::ReservedTable { ref table, .. } if table == "sqlite_stat1")
    );
}

fn sales_db() -> (TempDir, SqliteChannelDb, UploadTable) {
    let (dir, db) = temp_db();
    db.connection()
        .execute_batch(
            "CREATE TABLE sales (counter INTEGER PRIMARY KEY AUTOINCREMENT, \
             txn TEXT NOT NULL, amount REAL, note BLOB);",
        )
        .unwrap();
    for i in 1..=10 {
        db.connection()
            .execute(
                "INSERT INTO sales (txn, amount, note) VALUES (?1, ?2, ?3)",
                rusqlite::params![
                    format!("t{i}"),
                    i as f64 / 2.0,
                    (i % 2 == 0).then_some(vec![i as u8])
                ],
            )
            .unwrap();
    }
    let table = UploadTable {
        name: "sales".into(),
        counter_column: "counter".into(),
    };
    (dir, db, table)
}

/// Upload rows come above the watermark, in counter order, at most `limit`.
#[test]
fn upload_rows_in_counter_order_with_limits() {
    let (_dir, mut db, table) = sales_db();
    let batch = db.read_upload_rows(&table, 0, 4).unwrap();
    assert_eq!(batch.columns, ["counter", "txn", "amount", "note"]);
    assert_eq!(batch.counters, Some((1, 4)));
    assert_eq!(batch.rows.len(), 4);
    assert_eq!(
        batch.rows[1],
        vec![
            Value::Integer(2),
            Value::Text("t2".into()),
            Value::Real(1.0),
            Value::Blob(vec![2])
        ]
    );
    assert_eq!(batch.rows[0][3], Value::Null);
    let batch = db.read_upload_rows(&table, 4, 100).unwrap();
    assert_eq!(batch.counters, Some((5, 10)));
    let counters: Vec<_> = batch.rows.iter().map(|r| r[0].clone()).collect();
    assert_eq!(counters, (5..=10).map(Value::Integer).collect::<Vec<_>>());
    let batch = db.read_upload_rows(&table, 10, 100).unwrap();
    assert_eq!((batch.rows.len(), batch.counters), (0, None));
    assert!(db.read_upload_rows(&table, 0, 0).unwrap().rows.is_empty());
}

/// Reading from a missing table or counter column names it.
#[test]
fn upload_rows_of_unknown_table_or_column() {
    let (_dir, mut db, table) = sales_db();
    let missing = UploadTable {
        name: "nope".into(),
        counter_column: "counter".into(),
    };
    assert!(matches!(
        db.read_upload_rows(&missing, 0, 1),
        Err(ChannelDbError::UnknownTable { table }) if table == "nope"
    ));
    let bad_column = UploadTable {
        counter_column: "rowversion".into(),
        ..table
    };
    assert!(matches!(
        db.read_upload_rows(&bad_column, 0, 1),
        Err(ChannelDbError::UnknownColumn { column, .. }) if column == "rowversion"
    ));
}

/// The watermark starts at 0, moves forward, and never back.
#[test]
fn watermark_never_moves_back() {
    let (_dir, mut db) = temp_db();
    assert_eq!(db.watermark("sales").unwrap(), 0);
    db.advance_watermark("sales", 10).unwrap();
    assert_eq!(db.watermark("sales").unwrap(), 10);
    db.advance_watermark("sales", 4).unwrap();
    assert_eq!(db.watermark("sales").unwrap(), 10);
    db.advance_watermark("sales", 11).unwrap();
    assert_eq!(db.watermark("sales").unwrap(), 11);
    assert_eq!(db.watermark("lines").unwrap(), 0);
}

/// Names that are not identifiers never reach SQL.
#[test]
fn hostile_identifiers_are_refused() {
    let (_dir, mut db, table) = sales_db();
    let hostile = "x; DROP TABLE sales";
    let is_invalid = |r: &ChannelDbError| matches!(r, ChannelDbError::InvalidIdentifier { name } if name == hostile);
    let t = UploadTable {
        name: hostile.into(),
        counter_column: "counter".into(),
    };
    assert!(is_invalid(&db.read_upload_rows(&t, 0, 1).unwrap_err()));
    let c = UploadTable {
        counter_column: hostile.into(),
        ..table.clone()
    };
    assert!(is_invalid(&db.read_upload_rows(&c, 0, 1).unwrap_err()));
    assert!(is_invalid(&db.row_count(hostile).unwrap_err()));
    assert!(is_invalid(&db.watermark(hostile).unwrap_err()));
    assert!(is_invalid(&db.advance_watermark(hostile, 1).unwrap_err()));
    assert_eq!(db.read_upload_rows(&table, 0, 100).unwrap().rows.len(), 10);
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

/// Data groups keep separate sequences; the log lists in sequence order.
#[test]
fn data_groups_are_independent() {
    let (_dir, mut db) = temp_db();
    applied(&mut db, &full_products(2, 1));
    let mut other = full_products(1, 1);
    other.header.data_group = "store-0002".into();
    applied(&mut db, &other);
    applied(&mut db, &full_products(5, 1));
    let log = db.applied_packages(GROUP).unwrap();
    assert_eq!(log.iter().map(|p| p.sequence).collect::<Vec<_>>(), [2, 5]);
    assert_eq!(db.last_applied_sequence("store-0002").unwrap(), 1);
    assert_eq!(db.last_applied_sequence("store-0003").unwrap(), 0);
}
