//! A point-of-sale terminal that records sales in the channel database, on
//! a connection of its own, as the real POS does next to the agent.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::tables::rng_for;
use super::DataSetSize;

/// The point-of-sale tables uploaded to headquarters, with their counter columns.
pub const UPLOAD_TABLES: [(&str, &str); 2] = [
    ("retail_transaction", "replication_counter"),
    ("retail_transaction_sales_line", "replication_counter"),
];

/// The POS tables; `replication_counter` is AUTOINCREMENT, so it strictly
/// increases and is never reused, even after rows are purged.
const POS_TABLES: &str = "
CREATE TABLE IF NOT EXISTS retail_transaction (
    replication_counter INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT NOT NULL UNIQUE,
    store_id INTEGER,
    terminal_id TEXT,
    staff_id INTEGER,
    customer_id INTEGER,
    line_count INTEGER,
    total REAL,
    created_at_ms INTEGER
);
CREATE TABLE IF NOT EXISTS retail_transaction_sales_line (
    replication_counter INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT NOT NULL,
    line_number INTEGER,
    product_id INTEGER,
    quantity REAL,
    price REAL,
    amount REAL
);
";

/// Most lines a sale has.
const MAX_LINES: usize = 5;

/// A simulated POS terminal of one store.
pub struct PosSimulator {
    conn: Connection,
    rng: StdRng,
    size: DataSetSize,
    store_id: u64,
    terminal_id: String,
}

impl PosSimulator {
    /// Opens the channel database at `path` (WAL, 5 s busy timeout) as
    /// terminal 1 of `store_id`, selling from a data set of `size`.
    pub fn open(
        path: impl AsRef<Path>,
        store_id: u64,
        size: DataSetSize,
        seed: u64,
    ) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_millis(5000))?;
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(PosSimulator {
            conn,
            rng: rng_for(seed, 0x9053, store_id),
            size,
            store_id,
            terminal_id: format!("{store_id:04}-T01"),
        })
    }

    /// Creates the POS tables when missing.
    pub fn create_tables(&self) -> rusqlite::Result<()> {
        self.conn.execute_batch(POS_TABLES)
    }

    /// Records `n` sales of 1 to 5 lines each in one transaction; returns
    /// the number of lines.
    pub fn record_sales(&mut self, n: u64) -> rusqlite::Result<u64> {
        let (rng, size) = (&mut self.rng, self.size);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // The last counter ever assigned: transaction numbers follow it, so
        // they stay unique even after uploaded rows are purged.
        let last: i64 = tx
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'retail_transaction'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut lines_written = 0;
        {
            let mut head = tx.prepare(
                "INSERT INTO retail_transaction (transaction_id, store_id, terminal_id, \
                 staff_id, customer_id, line_count, total, created_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut line = tx.prepare(
                "INSERT INTO retail_transaction_sales_line (transaction_id, line_number, \
                 product_id, quantity, price, amount) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for k in 1..=n {
                let id = format!("{}-{:010}", self.terminal_id, last as u64 + k);
                let sale = Sale::random(rng, size);
                let total = cents(sale.lines.iter().map(|l| l.amount).sum());
                head.execute(params![
                    id,
                    self.store_id,
                    self.terminal_id,
                    sale.staff_id,
                    sale.customer_id,
                    sale.lines.len(),
                    total,
                    now_ms
                ])?;
                for (number, l) in sale.lines.iter().enumerate() {
                    line.execute(params![
                        id,
                        number + 1,
                        l.product_id,
                        l.quantity,
                        l.price,
                        l.amount
                    ])?;
                }
                lines_written += sale.lines.len() as u64;
            }
        }
        tx.commit()?;
        Ok(lines_written)
    }
}

struct Sale {
    staff_id: Option<u64>,
    customer_id: Option<u64>,
    lines: Vec<SaleLine>,
}

impl Sale {
    /// A random sale: who sold it, to whom, what.
    fn random(rng: &mut StdRng, size: DataSetSize) -> Sale {
        let staff_id = (size.staff > 0).then(|| rng.gen_range(1..=size.staff));
        // Three in ten customers are walk-ins without a loyalty account.
        let customer_id =
            (size.customers > 0 && rng.gen_bool(0.7)).then(|| rng.gen_range(1..=size.customers));
        let count = rng.gen_range(1..=MAX_LINES);
        let lines = (0..count)
            .map(|_| {
                let quantity = f64::from(rng.gen_range(1..=3u8));
                let price = cents(rng.gen_range(0.5..80.0));
                SaleLine {
                    product_id: rng.gen_range(1..=size.products.max(1)),
                    quantity,
                    price,
                    amount: cents(quantity * price),
                }
            })
            .collect();
        Sale {
            staff_id,
            customer_id,
            lines,
        }
    }
}

struct SaleLine {
    product_id: u64,
    quantity: f64,
    price: f64,
    amount: f64,
}

fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
