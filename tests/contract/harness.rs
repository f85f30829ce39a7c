//! What a backend provides to the contract, and the runner that puts every
//! case to it.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use cdx::channel_db::ChannelDb;
use cdx::package::Value;

use super::cases;

/// One case's database, fresh and empty (no tables but what the backend
/// itself keeps), and what a case needs beyond the [`ChannelDb`] trait.
pub trait Fixture {
    /// A new connection to this case's database.
    fn open(&self) -> Box<dyn ChannelDb>;

    /// Creates an upload table `name` as a point of sale has one: a counter
    /// column `counter` that the database assigns at insert, strictly
    /// increasing from 1 (SQLite: `INTEGER PRIMARY KEY AUTOINCREMENT`; SQL
    /// Server: `bigint IDENTITY(1,1)`), then `receipt`, text, not null, then
    /// `amount`, `decimal(19,4)`, nullable. In that column order.
    fn create_upload_table(&self, name: &str, counter: &str);

    /// Inserts rows into `table` as the point of sale would, one per sale,
    /// in order, counters assigned by the database: `(receipt, amount)`,
    /// the amount in canonical `decimal(19,4)` text (`"12.5000"`) or `None`
    /// for NULL.
    fn insert_sales(&self, table: &str, sales: &[(&str, Option<&str>)]);

    /// Every row of `table`, ordered by the `order_by` columns, as package
    /// values in their canonical form, columns in table order; read with
    /// the backend's own client, not through [`ChannelDb`].
    fn rows(&self, table: &str, order_by: &[&str]) -> Vec<Vec<Value>>;
}

/// A channel database backend under test.
pub trait Backend {
    /// Short name for the output: `sqlite`, `sqlserver`.
    fn name(&self) -> &str;

    /// A fresh, empty database for the case `case`.
    fn fresh(&self, case: &str) -> Box<dyn Fixture>;
}

/// A contract case: takes a fresh database, panics when the backend breaks
/// the contract.
pub type Case = fn(&dyn Fixture);

/// Names the cases to run, by substring, comma-separated; unset runs all.
pub const ONLY: &str = "CDX_CONTRACT_ONLY";

/// Runs every case of [`cases::ALL`] against `backend`, each on a fresh
/// database, one line per case; panics at the end listing every case that
/// failed, so one failure does not hide the others.
pub fn run(backend: &dyn Backend) {
    let name = backend.name();
    let only: Vec<String> = std::env::var(ONLY)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let selected: Vec<&(&str, Case)> = cases::ALL
        .iter()
        .filter(|(case, _)| only.is_empty() || only.iter().any(|o| case.contains(o.as_str())))
        .collect();
    assert!(
        !selected.is_empty(),
        "contract[{name}]: {ONLY}={only:?} selects none of the cases"
    );

    let mut failed = Vec::new();
    for (case, run_case) in &selected {
        let started = Instant::now();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            let fixture = backend.fresh(case);
            run_case(&*fixture);
        }));
        let took = started.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => println!("contract[{name}] {case} ... ok ({took:.2} s)"),
            Err(payload) => {
                let message = panic_message(&*payload);
                println!("contract[{name}] {case} ... FAILED ({took:.2} s): {message}");
                failed.push(format!("  {case}: {message}"));
            }
        }
    }

    let left_out = cases::ALL.len() - selected.len();
    let filtered = if left_out > 0 {
        format!(", {left_out} left out by {ONLY}")
    } else {
        String::new()
    };
    println!(
        "contract[{name}]: {} passed, {} failed{filtered}",
        selected.len() - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        panic!(
            "contract[{name}]: {} of {} cases failed:\n{}",
            failed.len(),
            selected.len(),
            failed.join("\n")
        );
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}
