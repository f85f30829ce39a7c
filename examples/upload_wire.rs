//! Bytes on the wire per uploaded sales row, TPC-DS `store_sales` shaped
//! (23 columns: 11 integers, 12 `decimal(7,2)` amounts, plus the store's
//! counter), for the upload formats side by side:
//!
//! - untyped: what agents sent before typed uploads (amounts as the
//!   floats a POS's REAL columns hold, no column types);
//! - typed: `column_types` once a batch, amounts as canonical decimal text;
//! - typed + zstd: the same body with `Content-Encoding: zstd` (level 3),
//!   what the agent sends to a server whose ping lists `zstd`.
//!
//! `cargo run --release --example upload_wire [ROWS]` (default 1000, the
//! agent's default batch).

use cdx::package::{format_decimal, ColumnType};
use cdx::protocol::UploadBatch;
use rand::{Rng, SeedableRng};

use cdx::retail::tpcds::{STORE_SALES_AMOUNTS as AMOUNTS, STORE_SALES_INTEGERS as INTEGERS};

fn main() {
    let rows: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut columns = vec!["replication_counter".to_string()];
    columns.extend(INTEGERS.iter().map(|c| c.to_string()));
    columns.extend(AMOUNTS.iter().map(|c| c.to_string()));
    let mut untyped = Vec::with_capacity(rows);
    let mut typed = Vec::with_capacity(rows);
    for n in 0..rows {
        let ints: Vec<i64> = (0..INTEGERS.len())
            .map(|i| match i {
                0 => 2_450_816 + rng.gen_range(0..1823),
                1 => 28_800 + rng.gen_range(0..43_200),
                9 => 240_000 + n as i64 / 12,
                10 => rng.gen_range(1..100),
                _ => rng.gen_range(1..2_000_000),
            })
            .collect();
        // Cents, as TPC-DS generates them; some are whole or zero.
        let cents: Vec<i64> = (0..AMOUNTS.len())
            .map(|i| match i {
                3 | 8 if rng.gen_bool(0.6) => 0,
                _ => rng.gen_range(-500_000..2_000_000),
            })
            .collect();
        let counter = serde_json::json!(n as i64 + 1);
        let mut before = vec![counter.clone()];
        let mut after = vec![counter];
        for i in &ints {
            before.push(serde_json::json!(i));
            after.push(serde_json::json!(i));
        }
        for c in &cents {
            before.push(serde_json::json!(*c as f64 / 100.0));
            after.push(serde_json::json!(format_decimal(i128::from(*c), 2)));
        }
        untyped.push(before);
        typed.push(after);
    }
    let rows_len = rows as i64;
    let batch = |rows: Vec<Vec<serde_json::Value>>, types: bool| UploadBatch {
        upload_id: uuid::Uuid::nil(),
        table: "store_sales".into(),
        counter_column: "replication_counter".into(),
        columns: columns.clone(),
        column_types: if types {
            std::iter::once(ColumnType::Integer)
                .chain(INTEGERS.iter().map(|_| ColumnType::Integer))
                .chain(AMOUNTS.iter().map(|_| ColumnType::Decimal {
                    precision: 7,
                    scale: 2,
                }))
                .map(|t| Some(t.to_string()))
                .collect()
        } else {
            Vec::new()
        },
        rows,
        first_counter: 1,
        last_counter: rows_len,
    };
    let before = serde_json::to_vec(&batch(untyped, false)).unwrap();
    let after = serde_json::to_vec(&batch(typed, true)).unwrap();
    let packed = zstd::bulk::compress(&after, 3).unwrap();
    let per_row = |bytes: usize| bytes as f64 / rows as f64;
    println!("{rows} TPC-DS store_sales-shaped rows (23 columns and a counter) in one batch:");
    println!("| format | bytes | bytes/row | vs untyped |");
    println!("|---|---|---|---|");
    for (name, bytes) in [
        ("untyped JSON (before)", before.len()),
        ("typed JSON, exact decimals", after.len()),
        ("typed JSON + zstd (sent)", packed.len()),
    ] {
        println!(
            "| {name} | {bytes} | {:.1} | {:.2}x |",
            per_row(bytes),
            bytes as f64 / before.len() as f64
        );
    }
}
