//! Building packages for the contract cases: schemas, rows, and a small
//! builder over `PackageWriter`.

use std::io::Read;

use cdx::channel_db::{ApplyOutcome, ApplyReport, ChannelDb, ChannelDbError, PackageSource};
use cdx::package::{
    Column, ColumnType, PackageHeader, PackageKind, PackageReader, PackageWriter, TableSchema,
    Value, FORMAT_VERSION,
};
use uuid::Uuid;

/// The data group of every package unless a case says otherwise.
pub const GROUP: &str = "store-0001";
/// The job of every package unless a case says otherwise.
pub const JOB: &str = "1040";

pub fn col(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column::new(name, ty, nullable)
}

pub fn table(name: &str, columns: Vec<Column>, key: &[&str]) -> TableSchema {
    TableSchema {
        name: name.into(),
        columns,
        key: key.iter().map(|k| (*k).to_owned()).collect(),
    }
}

/// products(product_id integer key, name text, price real nullable).
pub fn products() -> TableSchema {
    table(
        "products",
        vec![
            col("product_id", ColumnType::Integer, false),
            col("name", ColumnType::Text, false),
            col("price", ColumnType::Real, true),
        ],
        &["product_id"],
    )
}

/// tags(product_id, tag): a table that is all key.
pub fn tags() -> TableSchema {
    table(
        "tags",
        vec![
            col("product_id", ColumnType::Integer, false),
            col("tag", ColumnType::Text, false),
        ],
        &["product_id", "tag"],
    )
}

pub fn int(i: i64) -> Value {
    Value::Integer(i)
}

pub fn text(s: &str) -> Value {
    Value::Text(s.into())
}

pub fn product(id: i64, name: &str, price: Option<f64>) -> Vec<Value> {
    vec![int(id), text(name), price.map_or(Value::Null, Value::Real)]
}

pub fn tag(id: i64, t: &str) -> Vec<Value> {
    vec![int(id), text(t)]
}

/// One row frame of a package body.
pub enum Op {
    Up(Vec<Value>),
    Del(Vec<Value>),
}

/// A package under construction: its header and, per table opened, its
/// row frames in order.
pub struct Pkg {
    pub header: PackageHeader,
    body: Vec<(u32, Vec<Op>)>,
}

impl Pkg {
    pub fn new(kind: PackageKind, sequence: u64, tables: Vec<TableSchema>) -> Self {
        Pkg {
            header: PackageHeader {
                format_version: FORMAT_VERSION,
                package_id: Uuid::new_v4(),
                data_group: GROUP.into(),
                job: JOB.into(),
                sequence,
                kind,
                created_at_ms: 1_700_000_000_000,
                replaces: Vec::new(),
                tables,
            },
            body: Vec::new(),
        }
    }

    pub fn full(sequence: u64, tables: Vec<TableSchema>) -> Self {
        Pkg::new(PackageKind::Full, sequence, tables)
    }

    pub fn incremental(sequence: u64, tables: Vec<TableSchema>) -> Self {
        Pkg::new(PackageKind::Incremental, sequence, tables)
    }

    pub fn in_group(mut self, data_group: &str) -> Self {
        self.header.data_group = data_group.into();
        self
    }

    /// Replaces the definitions of `tables` (a full package's version 3).
    pub fn replacing(mut self, tables: &[&str]) -> Self {
        self.header.replaces = tables.iter().map(|t| (*t).to_owned()).collect();
        self.header.format_version = self.header.needed_version();
        self
    }

    pub fn with_job(mut self, job: &str) -> Self {
        self.header.job = job.into();
        self
    }

    /// Opens the header's table `index` and writes `ops` into it.
    pub fn table(mut self, index: u32, ops: Vec<Op>) -> Self {
        self.body.push((index, ops));
        self
    }

    /// Upserts `rows` into the header's table `index`.
    pub fn rows(self, index: u32, rows: Vec<Vec<Value>>) -> Self {
        self.table(index, rows.into_iter().map(Op::Up).collect())
    }

    pub fn id(&self) -> Uuid {
        self.header.package_id
    }

    /// The package file.
    pub fn bytes(&self) -> Vec<u8> {
        let mut w = PackageWriter::new(Vec::new(), &self.header).expect("package header");
        for (index, ops) in &self.body {
            w.table(*index).expect("Table frame");
            for op in ops {
                match op {
                    Op::Up(row) => w.upsert(row).expect("Upsert frame"),
                    Op::Del(key) => w.delete(key).expect("Delete frame"),
                }
            }
        }
        w.finish().expect("finish package").0
    }
}

/// A reader over `bytes`, its header read.
pub fn source(bytes: &[u8]) -> PackageSource<'_> {
    PackageReader::open(Box::new(bytes) as Box<dyn Read + Send + '_>)
        .expect("the package header should read")
}

pub fn apply(db: &mut dyn ChannelDb, pkg: &Pkg) -> Result<ApplyOutcome, ChannelDbError> {
    db.apply_package(source(&pkg.bytes()))
}

/// Applies `pkg`, which must apply.
pub fn applied(db: &mut dyn ChannelDb, pkg: &Pkg) -> ApplyReport {
    match apply(db, pkg) {
        Ok(ApplyOutcome::Applied(report)) => report,
        Ok(ApplyOutcome::AlreadyApplied) => panic!(
            "package {} (sequence {}) was reported applied already",
            pkg.id(),
            pkg.header.sequence
        ),
        Err(e) => panic!(
            "package {} (sequence {}) failed: {e}\n{e:?}",
            pkg.id(),
            pkg.header.sequence
        ),
    }
}

/// Applies `pkg`, which must fail; the error.
pub fn refused(db: &mut dyn ChannelDb, pkg: &Pkg) -> ChannelDbError {
    match apply(db, pkg) {
        Err(e) => e,
        Ok(outcome) => panic!(
            "package {} (sequence {}) should have failed, got {outcome:?}",
            pkg.id(),
            pkg.header.sequence
        ),
    }
}

/// Products 1..=n named `p{i}`, priced `i`, in a full package.
pub fn full_products(sequence: u64, n: i64) -> Pkg {
    Pkg::full(sequence, vec![products()]).rows(0, products_rows(1..=n))
}

/// Products of `ids` named `p{i}`, priced `i`.
pub fn products_rows(ids: impl IntoIterator<Item = i64>) -> Vec<Vec<Value>> {
    ids.into_iter()
        .map(|i| product(i, &format!("p{i}"), Some(i as f64)))
        .collect()
}
