//! A generated retail data set, deterministic from a seed, for the demo and
//! the tests: the master data headquarters publishes (stores, staff,
//! products with prices and barcodes, customers) as full and incremental
//! packages, and a point-of-sale simulator that records sales in the
//! channel database for upload.
//!
//! Rows are generated on demand, never collected, so a data set of any size
//! costs no memory. [`expected_row_counts`] says what a channel holds after
//! the initial packages and some incremental rounds.

mod pos;
mod tables;
pub mod tpcds;

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::RangeInclusive;

use rand::seq::index::sample;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use pos::{PosSimulator, UPLOAD_TABLES};
pub use tables::*;

use crate::package::{
    PackageError, PackageHeader, PackageKind, PackageWriter, TableSchema, Value, WrittenPackage,
    FORMAT_VERSION,
};

/// Products each incremental round adds (with their prices and barcodes).
pub const NEW_PRODUCTS_PER_ROUND: u64 = 10;
/// Existing products whose price each incremental round changes (at most
/// all of them).
pub const PRODUCT_CHANGES_PER_ROUND: u64 = 25;
/// Store prices each incremental round changes (at most all of them).
pub const PRICE_CHANGES_PER_ROUND: u64 = 50;
/// Customers each incremental round updates (at most all that remain).
pub const CUSTOMER_CHANGES_PER_ROUND: u64 = 20;
/// Customers each incremental round deletes, oldest first, while any remain.
pub const CUSTOMER_DELETES_PER_ROUND: u64 = 5;

/// How big a data set to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataSetSize {
    pub products: u64,
    pub customers: u64,
    pub stores: u64,
    pub staff: u64,
}

impl Default for DataSetSize {
    /// A mid-size retailer: 10,000 products, 5,000 customers, 20 stores
    /// and 200 staff (so 200,000 store prices).
    fn default() -> Self {
        DataSetSize {
            products: 10_000,
            customers: 5_000,
            stores: 20,
            staff: 200,
        }
    }
}

/// One row of a generated package.
#[derive(Debug, Clone, PartialEq)]
pub enum GeneratedRow {
    Upsert(Vec<Value>),
    /// Key values, in key order.
    Delete(Vec<Value>),
}

/// The rows of a generated package: (index in `tables`, row), grouped by
/// table in table order.
pub type GeneratedRows = Box<dyn Iterator<Item = (u32, GeneratedRow)> + Send>;

/// A package the data set publishes, its rows still to be generated.
pub struct GeneratedPackage {
    /// The scheduler job, such as "1040".
    pub job: String,
    pub kind: PackageKind,
    pub tables: Vec<TableSchema>,
    pub rows: GeneratedRows,
}

impl std::fmt::Debug for GeneratedPackage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tables: Vec<&str> = self.tables.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("GeneratedPackage")
            .field("job", &self.job)
            .field("kind", &self.kind)
            .field("tables", &tables)
            .finish_non_exhaustive()
    }
}

impl GeneratedPackage {
    /// The header of this package as published for `data_group` at `sequence`.
    pub fn header(
        &self,
        package_id: Uuid,
        data_group: &str,
        sequence: u64,
        created_at_ms: i64,
    ) -> PackageHeader {
        PackageHeader {
            format_version: FORMAT_VERSION,
            package_id,
            data_group: data_group.to_owned(),
            job: self.job.clone(),
            sequence,
            kind: self.kind,
            created_at_ms,
            replaces: Vec::new(),
            tables: self.tables.clone(),
        }
    }

    /// Streams the rows into `writer` (made with [`header`](Self::header))
    /// and finishes the package.
    pub fn write<W: Write>(
        self,
        mut writer: PackageWriter<W>,
    ) -> Result<(W, WrittenPackage), PackageError> {
        write_rows(self.rows, &mut writer)?;
        writer.finish()
    }
}

/// Streams `rows` into `writer`, opening each table's section as it comes.
pub fn write_rows<W: Write>(
    rows: GeneratedRows,
    writer: &mut PackageWriter<W>,
) -> Result<(), PackageError> {
    let mut open = None;
    for (table, row) in rows {
        if open != Some(table) {
            writer.table(table)?;
            open = Some(table);
        }
        match row {
            GeneratedRow::Upsert(values) => writer.upsert(&values)?,
            GeneratedRow::Delete(key) => writer.delete(&key)?,
        }
    }
    Ok(())
}

/// Rows of table `index`, all upserts.
fn upserts(
    index: u32,
    rows: impl Iterator<Item = Vec<Value>> + Send + 'static,
) -> impl Iterator<Item = (u32, GeneratedRow)> + Send {
    rows.map(move |row| (index, GeneratedRow::Upsert(row)))
}

fn package(
    job: &str,
    kind: PackageKind,
    tables: Vec<TableSchema>,
    rows: impl Iterator<Item = (u32, GeneratedRow)> + Send + 'static,
) -> GeneratedPackage {
    GeneratedPackage {
        job: job.to_owned(),
        kind,
        tables,
        rows: Box::new(rows),
    }
}

/// One full package per job, in publication order: 1070 (stores), 1060
/// (staff), 1040 (products, prices, barcodes), 1010 (customers).
pub fn initial_packages(size: DataSetSize, seed: u64) -> Vec<GeneratedPackage> {
    let DataSetSize {
        products,
        customers,
        stores,
        staff,
    } = size;
    let full = PackageKind::Full;
    vec![
        package(
            "1070",
            full,
            vec![stores_table()],
            upserts(0, store_rows(seed, stores)),
        ),
        package(
            "1060",
            full,
            vec![staff_table()],
            upserts(0, staff_rows(seed, staff, stores)),
        ),
        package(
            "1040",
            full,
            vec![products_table(), prices_table(), barcodes_table()],
            upserts(0, product_rows(seed, 1..=products, 0))
                .chain(upserts(1, price_rows(seed, 1..=products, stores)))
                .chain(upserts(2, barcode_rows(1..=products))),
        ),
        package(
            "1010",
            full,
            vec![customers_table()],
            upserts(0, customer_rows(seed, 1..=customers, 0)),
        ),
    ]
}

/// `count` distinct numbers of `range`, ascending, chosen by `rng`.
fn choose(rng: &mut rand::rngs::StdRng, range: RangeInclusive<u64>, count: u64) -> Vec<u64> {
    let (start, end) = (*range.start(), *range.end());
    if end < start {
        return Vec::new();
    }
    let len = usize::try_from(end - start + 1).unwrap_or(usize::MAX);
    let count = usize::try_from(count).unwrap_or(usize::MAX).min(len);
    let mut picked: Vec<u64> = sample(rng, len, count)
        .into_iter()
        .map(|i| start + i as u64)
        .collect();
    picked.sort_unstable();
    picked
}

/// Customers deleted by the end of `round`: ids `1..=deleted_through(..)`.
fn deleted_through(size: DataSetSize, round: u64) -> u64 {
    round
        .saturating_mul(CUSTOMER_DELETES_PER_ROUND)
        .min(size.customers)
}

/// Products once `round` incremental rounds were applied.
fn products_after(size: DataSetSize, round: u64) -> u64 {
    size.products + round * NEW_PRODUCTS_PER_ROUND
}

/// The incremental packages of `round` (1, 2, ...; 0 has none), to apply
/// after those of every earlier round: 1040 changes the prices of some
/// products and store prices and adds [`NEW_PRODUCTS_PER_ROUND`] products;
/// 1010 updates some customers and deletes [`CUSTOMER_DELETES_PER_ROUND`].
pub fn incremental_packages(size: DataSetSize, seed: u64, round: u64) -> Vec<GeneratedPackage> {
    if round == 0 {
        return Vec::new();
    }
    let mut rng = tables::rng_for(seed, 0xC0FFEE, round);
    let new = products_after(size, round - 1) + 1..=products_after(size, round);
    let changed = choose(&mut rng, 1..=size.products, PRODUCT_CHANGES_PER_ROUND);
    let price_changes: Vec<(u64, u64)> = if size.stores == 0 {
        Vec::new()
    } else {
        let pairs = size.products.saturating_mul(size.stores);
        choose(
            &mut rng,
            0..=pairs.saturating_sub(1),
            PRICE_CHANGES_PER_ROUND.min(pairs),
        )
        .into_iter()
        .map(|i| (i / size.stores + 1, i % size.stores + 1))
        .collect()
    };
    let stores = size.stores;
    let products = changed
        .into_iter()
        .map(move |id| product_row(seed, id, round))
        .chain(product_rows(seed, new.clone(), round));
    let prices = price_changes
        .into_iter()
        .map(move |(product, store)| price_row(seed, product, store, round))
        .chain(price_rows(seed, new.clone(), stores));

    let gone = deleted_through(size, round - 1) + 1..=deleted_through(size, round);
    let remaining = deleted_through(size, round) + 1..=size.customers;
    let updated = choose(&mut rng, remaining, CUSTOMER_CHANGES_PER_ROUND);
    let customers = upserts(
        0,
        updated
            .into_iter()
            .map(move |id| customer_row(seed, id, round)),
    )
    .chain(gone.map(|id| (0, GeneratedRow::Delete(vec![Value::Integer(id as i64)]))));

    let incremental = PackageKind::Incremental;
    vec![
        package(
            "1040",
            incremental,
            vec![products_table(), prices_table(), barcodes_table()],
            upserts(0, products)
                .chain(upserts(1, prices))
                .chain(upserts(2, barcode_rows(new))),
        ),
        package("1010", incremental, vec![customers_table()], customers),
    ]
}

/// Rows per table a channel holds after the initial packages and the
/// incremental rounds `1..=rounds`.
pub fn expected_row_counts(size: DataSetSize, rounds: u64) -> BTreeMap<String, u64> {
    let products = products_after(size, rounds);
    [
        ("stores", size.stores),
        ("staff", size.staff),
        ("products", products),
        ("prices", products * size.stores),
        ("barcodes", products),
        ("customers", size.customers - deleted_through(size, rounds)),
    ]
    .into_iter()
    .map(|(table, rows)| (table.to_owned(), rows))
    .collect()
}

#[cfg(test)]
mod tests;
