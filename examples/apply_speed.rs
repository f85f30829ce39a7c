//! How fast `SqliteChannelDb::apply_package` applies a full package, against
//! a plain rusqlite loop inserting the same rows with a prepared statement in
//! one transaction.
//!
//! ```text
//! cargo run --release --example apply_speed [ROWS]
//! ```
//!
//! Both runs start from a fresh database file with the same pragmas (WAL,
//! `synchronous=NORMAL`) and the same table (`plan::create_table_sql`),
//! keys in ascending order, no index but the primary key. The apply time
//! includes reading the package file (zstd, bincode, SHA-256); the plain loop
//! includes generating its rows, so each side pays for making its values.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::time::{Duration, Instant};

use cdx::channel_db::{ApplyOutcome, ChannelDb, SqliteChannelDb};
use cdx::package::{
    Column, ColumnType, PackageHeader, PackageKind, PackageReader, PackageWriter, TableSchema,
    Value, FORMAT_VERSION,
};
use cdx::plan;
use rusqlite::{params, Connection};
use uuid::Uuid;

const CATEGORIES: [&str; 8] = [
    "Dairy",
    "Bakery",
    "Produce",
    "Beverages",
    "Household",
    "Snacks",
    "Frozen",
    "Pantry",
];

fn schema() -> TableSchema {
    let column = |name: &str, ty| Column {
        name: name.into(),
        ty,
        nullable: false,
    };
    TableSchema {
        name: "products".into(),
        columns: vec![
            column("id", ColumnType::Integer),
            column("sku", ColumnType::Text),
            column("name", ColumnType::Text),
            column("price", ColumnType::Real),
            column("category", ColumnType::Text),
            column("updated_at", ColumnType::Integer),
        ],
        key: vec!["id".into()],
    }
}

/// Row `i`: (id, sku, name, price, category, updated_at).
fn row(i: i64) -> (i64, String, String, f64, &'static str, i64) {
    (
        i,
        format!("SKU-{i:08}"),
        format!("Product number {i} of the generated range"),
        (i % 10_000) as f64 / 100.0 + 0.99,
        CATEGORIES[(i % 8) as usize],
        1_704_067_200_000 + i,
    )
}

fn values(i: i64) -> [Value; 6] {
    let (id, sku, name, price, category, updated_at) = row(i);
    [
        Value::Integer(id),
        Value::Text(sku),
        Value::Text(name),
        Value::Real(price),
        Value::Text(category.into()),
        Value::Integer(updated_at),
    ]
}

fn rate(rows: i64, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let rows: i64 = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 1_000_000,
    };
    let dir = tempfile::tempdir()?;

    // The package.
    let path = dir.path().join("products.cdxpkg");
    let header = PackageHeader {
        format_version: FORMAT_VERSION,
        package_id: Uuid::new_v4(),
        data_group: "bench".into(),
        job: "1040".into(),
        sequence: 1,
        kind: PackageKind::Full,
        created_at_ms: 0,
        replaces: Vec::new(),
        tables: vec![schema()],
    };
    let started = Instant::now();
    let mut writer = PackageWriter::new(BufWriter::new(File::create(&path)?), &header)?;
    writer.table(0)?;
    for i in 1..=rows {
        writer.upsert(&values(i))?;
    }
    let (_, written) = writer.finish()?;
    let write = started.elapsed();
    println!(
        "package: {rows} rows, {:.1} MB, written in {:.2} s ({:.0} rows/s)",
        written.bytes as f64 / 1e6,
        write.as_secs_f64(),
        rate(rows, write)
    );

    // Reading alone, for the record.
    let started = Instant::now();
    let summary = PackageReader::open(File::open(&path)?)?.verify()?;
    let read = started.elapsed();
    println!(
        "read+verify only: {:.2} s ({:.0} rows/s)",
        read.as_secs_f64(),
        rate(summary.upserts as i64, read)
    );

    // apply_package.
    let mut db = SqliteChannelDb::open(dir.path().join("apply.db"))?;
    let started = Instant::now();
    let source = PackageReader::open(Box::new(File::open(&path)?) as Box<dyn Read + Send>)?;
    let outcome = db.apply_package(source)?;
    let apply = started.elapsed();
    let ApplyOutcome::Applied(report) = outcome else {
        anyhow::bail!("package reported as applied already");
    };
    assert_eq!(report.upserts, rows as u64);
    assert_eq!(db.row_count("products")?, rows as u64);
    let apply_rate = rate(rows, apply);
    println!(
        "apply_package: {:.2} s ({apply_rate:.0} rows/s)",
        apply.as_secs_f64()
    );

    // The plain loop.
    let mut conn = Connection::open(dir.path().join("plain.db"))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute(&plan::create_table_sql(&schema())?, [])?;
    let started = Instant::now();
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(
            "INSERT INTO products (id, sku, name, price, category, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for i in 1..=rows {
            let (id, sku, name, price, category, updated_at) = row(i);
            stmt.execute(params![id, sku, name, price, category, updated_at])?;
        }
    }
    tx.commit()?;
    let plain = started.elapsed();
    let plain_rate = rate(rows, plain);
    println!(
        "plain rusqlite loop: {:.2} s ({plain_rate:.0} rows/s)",
        plain.as_secs_f64()
    );
    println!("ratio apply/plain: {:.2}", apply_rate / plain_rate);
    Ok(())
}
