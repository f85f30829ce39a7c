//! The channel database backend contract: one suite of cases, written
//! once, run against every backend. SQLite always; SQL Server when
//! `CDX_TEST_SQLSERVER` holds a connection string, and otherwise a line
//! saying the SQL Server run was skipped and why.
//!
//! Each case is a plain `fn(&dyn Fixture)` in `contract/cases.rs` and gets
//! a fresh database; `contract/harness.rs` runs them all, one line per
//! case, and fails listing every case that failed. Set `CDX_CONTRACT_ONLY`
//! to a comma-separated list of name fragments to run only those cases.
//!
//! ```text
//! cargo test -p cdx --test contract -- --nocapture
//! ```

mod contract {
    pub mod cases;
    pub mod harness;
    pub mod packages;
    pub mod sqlite;
    pub mod sqlserver;
}

use contract::harness;

#[test]
fn sqlite_backend_meets_the_contract() {
    harness::run(&contract::sqlite::Sqlite);
}

/// Skipped, saying so, without `CDX_TEST_SQLSERVER`.
#[test]
fn sqlserver_backend_meets_the_contract() {
    if let Some(backend) = contract::sqlserver::backend() {
        harness::run(&*backend);
    }
}
