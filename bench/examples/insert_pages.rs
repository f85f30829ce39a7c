//! Why headquarters' database uses 16 KiB pages: inserting uploaded rows
//! (about 150 bytes of JSON each, 10,000 a transaction, the server's
//! pragmas) into `uploaded_rows`'s shape with SQLite's default 4 KiB pages,
//! with 16 KiB pages, and as a rowid table with a unique index.
//!
//! ```text
//! cargo run --release -p cdx-bench --example insert_pages
//! ```

use std::time::Instant;
fn main() {
    for (name, ddl, page) in [
        ("without rowid 4k", "CREATE TABLE u (channel TEXT NOT NULL, table_name TEXT NOT NULL, counter INTEGER NOT NULL, upload_id TEXT NOT NULL, row_json TEXT NOT NULL, PRIMARY KEY (channel, table_name, counter)) WITHOUT ROWID", 4096),
        ("without rowid 16k", "CREATE TABLE u (channel TEXT NOT NULL, table_name TEXT NOT NULL, counter INTEGER NOT NULL, upload_id TEXT NOT NULL, row_json TEXT NOT NULL, PRIMARY KEY (channel, table_name, counter)) WITHOUT ROWID", 16384),
        ("rowid + unique", "CREATE TABLE u (channel TEXT NOT NULL, table_name TEXT NOT NULL, counter INTEGER NOT NULL, upload_id TEXT NOT NULL, row_json TEXT NOT NULL, UNIQUE (channel, table_name, counter))", 4096),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("x.db")).unwrap();
        conn.execute_batch(&format!("PRAGMA page_size={page}; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")).unwrap();
        conn.execute_batch(ddl).unwrap();
        let json = format!("{{\"a\":{}}}", "x".repeat(140));
        let t = Instant::now();
        let n = 300_000;
        for b in 0..(n / 10000) {
            let tx = conn.unchecked_transaction().unwrap();
            {
                let mut st = tx.prepare_cached("INSERT OR IGNORE INTO u VALUES (?1, ?2, ?3, ?4, ?5)").unwrap();
                st.raw_bind_parameter(1, "store-0001").unwrap();
                st.raw_bind_parameter(2, "retail_transaction_sales_line").unwrap();
                st.raw_bind_parameter(4, "6b0c5a0e-4d4d-4a4a-9a9a-123456789012").unwrap();
                for i in 0..10000 {
                    st.raw_bind_parameter(3, (b * 10000 + i) as i64).unwrap();
                    st.raw_bind_parameter(5, json.as_str()).unwrap();
                    st.raw_execute().unwrap();
                }
            }
            tx.commit().unwrap();
        }
        let e = t.elapsed();
        println!("{name}: {:.2} us/row", e.as_secs_f64() * 1e6 / n as f64);
    }
}
