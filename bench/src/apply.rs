//! Applying packages to SQLite, against raw rusqlite doing the same inserts
//! or upserts. Fair by construction: the baseline's rows are generated
//! before its clock starts (the package is written before cdx's starts),
//! both databases are fresh files with the same pragmas (WAL,
//! `synchronous=NORMAL`) and the same table (`plan::create_table_sql`), and
//! both write one transaction. cdx's time includes reading the package
//! (zstd, SHA-256, decoding), which is its job.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cdx::channel_db::{ApplyOutcome, ChannelDb, SqliteChannelDb};
use cdx::package::{
    format_decimal, Column, ColumnType, PackageHeader, PackageKind, PackageReader, PackageWriter,
    TableSchema, Value, FORMAT_VERSION,
};
use cdx::plan;
use rand::{Rng, SeedableRng};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection};

use crate::stats::{self, rate, Spread};
use crate::Row;

/// One run: cdx's side and the baseline's.
struct Run {
    ours: Side,
    baseline: Side,
}

/// One side's timed section: its rate, and where its CPU went.
struct Side {
    /// Rows per second.
    rate: f64,
    /// CPU of the thread that writes the database, in nanoseconds a row.
    thread_ns: f64,
    /// The part of it spent in the kernel (the WAL's writes, mostly).
    thread_sys_ns: f64,
    /// That thread's CPU over the wall time: its share of a core.
    share: f64,
    /// CPU of the process's other threads (cdx's package reader; not the
    /// spinner of the busy rows), in nanoseconds a row.
    others_ns: f64,
}

/// Times `f`, which writes `rows` rows on this thread, reading the CPU
/// clocks of this thread, of the process and of `spinner` around it.
fn timed(
    rows: usize,
    spinner: Option<&Spinner>,
    f: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Side> {
    let spun = || spinner.map_or(Duration::ZERO, Spinner::cpu);
    let (thread, sys, process, spin) = (thread_cpu(), thread_sys(), process_cpu(), spun());
    let started = Instant::now();
    f()?;
    let wall = started.elapsed();
    let thread = thread_cpu().saturating_sub(thread);
    let sys = thread_sys().saturating_sub(sys);
    let others = process_cpu()
        .saturating_sub(process)
        .saturating_sub(thread)
        .saturating_sub(spun().saturating_sub(spin));
    let per_row = |d: Duration| d.as_nanos() as f64 / rows as f64;
    Ok(Side {
        rate: rate(rows as u64, wall),
        thread_ns: per_row(thread),
        thread_sys_ns: per_row(sys),
        share: thread.as_secs_f64() / wall.as_secs_f64(),
        others_ns: per_row(others),
    })
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// This thread's CPU in the kernel (`getrusage`, microseconds).
fn thread_sys() -> Duration {
    // SAFETY: rusage is plain data; zeroed is a valid value for the call
    // to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid rusage for the call to fill.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let t = usage.ru_stime;
    Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000)
}

fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// The rates' row, then a row of where each side's CPU went.
fn rows_of(what: &str, runs: &[Run], goal: &str) -> Vec<Row> {
    let rates = Row::rates(
        what,
        spread(runs, |r| r.ours.rate),
        spread(runs, |r| r.baseline.rate),
        spread(runs, |r| r.ours.rate / r.baseline.rate),
        goal,
    );
    let mut cpu = Row::plain(
        "CPU a row in the row above (medians): the thread writing the database \
         (of it in the kernel), its share of a core; the process's other threads \
         (cdx: the package reader)",
        cpu_of(runs, |r| &r.ours),
        "",
    );
    cpu.baseline = cpu_of(runs, |r| &r.baseline);
    let writing = spread(runs, |r| r.ours.thread_ns / r.baseline.thread_ns);
    cpu.ratio = format!("{} (writing thread)", stats::ratio(writing.median));
    vec![rates, cpu]
}

/// `f` of every run, spread.
fn spread(runs: &[Run], f: impl Fn(&Run) -> f64) -> Spread {
    Spread::of(&runs.iter().map(f).collect::<Vec<_>>())
}

/// One side's CPU figures, medians over `runs`.
fn cpu_of(runs: &[Run], side: fn(&Run) -> &Side) -> String {
    let median = |f: fn(&Side) -> f64| spread(runs, |r| f(side(r))).median;
    format!(
        "{:.0} ns ({:.0} ns), {:.0} %; {:.0} ns",
        median(|s| s.thread_ns),
        median(|s| s.thread_sys_ns),
        100.0 * median(|s| s.share),
        median(|s| s.others_ns)
    )
}

/// A table's rows twice: as package values, and as what the baseline binds
/// (the same values SQLite stores).
struct Data {
    schema: TableSchema,
    package: Vec<Vec<Value>>,
    raw: Vec<Vec<SqlValue>>,
}

fn column(name: &str, ty: ColumnType, nullable: bool) -> Column {
    Column::new(name, ty, nullable)
}

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

/// products(id, sku, name, price, category, updated_at): 6 narrow columns,
/// integer key. Row `i` of `first..first + n`, its text prefixed `tag`.
fn products(first: i64, n: i64, tag: &str) -> Data {
    let schema = TableSchema {
        name: "products".into(),
        columns: vec![
            column("id", ColumnType::Integer, false),
            column("sku", ColumnType::Text, false),
            column("name", ColumnType::Text, false),
            column("price", ColumnType::Real, false),
            column("category", ColumnType::Text, false),
            column("updated_at", ColumnType::Integer, false),
        ],
        key: vec!["id".into()],
    };
    let mut package = Vec::with_capacity(n as usize);
    let mut raw = Vec::with_capacity(n as usize);
    for i in first..first + n {
        let sku = format!("SKU-{i:08}");
        let name = format!("{tag} product number {i} of the generated range");
        let price = (i % 10_000) as f64 / 100.0 + 0.99;
        let category = CATEGORIES[(i % 8) as usize];
        let updated = 1_704_067_200_000 + i;
        package.push(vec![
            Value::Integer(i),
            Value::Text(sku.clone()),
            Value::Text(name.clone()),
            Value::Real(price),
            Value::Text(category.into()),
            Value::Integer(updated),
        ]);
        raw.push(vec![
            SqlValue::Integer(i),
            SqlValue::Text(sku),
            SqlValue::Text(name),
            SqlValue::Real(price),
            SqlValue::Text(category.into()),
            SqlValue::Integer(updated),
        ]);
    }
    Data {
        schema,
        package,
        raw,
    }
}

/// TPC-DS `store_sales`: 23 columns, 11 integers (`ss_item_sk` and
/// `ss_ticket_number` the key) and 12 `decimal(7,2)` amounts, nullable as
/// in TPC-DS, values in its ranges. `n` rows from a fixed seed.
pub fn store_sales(n: usize) -> (TableSchema, Vec<Vec<Value>>, Vec<Vec<SqlValue>>) {
    use cdx::retail::tpcds::{STORE_SALES_AMOUNTS as AMOUNTS, STORE_SALES_INTEGERS as INTEGERS};
    let key = cdx::retail::tpcds::STORE_SALES_KEY;
    let mut columns: Vec<Column> = INTEGERS
        .iter()
        .map(|c| column(c, ColumnType::Integer, !key.contains(c)))
        .collect();
    columns.extend(AMOUNTS.iter().map(|c| {
        column(
            c,
            ColumnType::Decimal {
                precision: 7,
                scale: 2,
            },
            true,
        )
    }));
    let schema = TableSchema {
        name: "store_sales".into(),
        columns,
        key: key.iter().map(|k| (*k).to_owned()).collect(),
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let (mut package, mut raw) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for r in 0..n {
        // About 12 lines a ticket, items distinct within a ticket.
        let ticket = 1 + (r / 12) as i64;
        let item = 1 + (r % 12) as i64 * 1_000 + rng.gen_range(0..1_000);
        let ints: [i64; 11] = [
            2_450_816 + rng.gen_range(0..1823),
            28_800 + rng.gen_range(0..43_200),
            item,
            rng.gen_range(1..2_000_000),
            rng.gen_range(1..1_920_800),
            rng.gen_range(1..7_200),
            rng.gen_range(1..1_000_000),
            rng.gen_range(1..400),
            rng.gen_range(1..1_000),
            ticket,
            rng.gen_range(1..100),
        ];
        let (mut p, mut q) = (Vec::with_capacity(23), Vec::with_capacity(23));
        for v in ints {
            p.push(Value::Integer(v));
            q.push(SqlValue::Integer(v));
        }
        for a in 0..12 {
            let cents: i64 = match a {
                3 | 8 if rng.gen_bool(0.6) => 0,
                _ => rng.gen_range(-500_000..2_000_000),
            };
            p.push(Value::Text(format_decimal(i128::from(cents), 2)));
            // What SQLite stores for a DECIMAL(7,2): an integer when whole,
            // otherwise the nearest float.
            q.push(if cents % 100 == 0 {
                SqlValue::Integer(cents / 100)
            } else {
                SqlValue::Real(cents as f64 / 100.0)
            });
        }
        package.push(p);
        raw.push(q);
    }
    (schema, package, raw)
}

fn header(kind: PackageKind, sequence: u64, schema: &TableSchema) -> PackageHeader {
    PackageHeader {
        format_version: FORMAT_VERSION,
        package_id: uuid::Uuid::new_v4(),
        data_group: "bench".into(),
        job: "1040".into(),
        sequence,
        kind,
        created_at_ms: 0,
        replaces: Vec::new(),
        tables: vec![schema.clone()],
    }
}

fn write_package(path: &Path, header: &PackageHeader, rows: &[Vec<Value>]) -> anyhow::Result<()> {
    let mut writer = PackageWriter::new(BufWriter::new(File::create(path)?), header)?;
    writer.table(0)?;
    for row in rows {
        writer.upsert(row)?;
    }
    writer.finish()?;
    Ok(())
}

/// Applies the package at `path` to the database at `db`; rows per second.
fn apply(db: &Path, path: &Path, rows: usize, spinner: Option<&Spinner>) -> anyhow::Result<Side> {
    let mut db = SqliteChannelDb::open(db)?;
    timed(rows, spinner, || {
        let source = PackageReader::open(Box::new(File::open(path)?) as Box<dyn Read + Send>)?;
        let ApplyOutcome::Applied(report) = db.apply_package(source)? else {
            bail!("the package was applied already");
        };
        if report.upserts != rows as u64 {
            bail!("applied {} rows of {rows}", report.upserts);
        }
        Ok(())
    })
}

/// A database as the baseline uses it: cdx's pragmas.
fn raw_db(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Runs `sql` once per row of `rows` with a prepared statement, in one
/// transaction; rows per second.
fn raw_write(
    conn: &mut Connection,
    sql: &str,
    rows: &[Vec<SqlValue>],
    spinner: Option<&Spinner>,
) -> anyhow::Result<Side> {
    timed(rows.len(), spinner, || {
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare(sql)?;
            for row in rows {
                stmt.execute(params_from_iter(row.iter()))?;
            }
        }
        tx.commit()?;
        Ok(())
    })
}

fn insert_sql(schema: &TableSchema) -> anyhow::Result<String> {
    let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    let marks: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
    Ok(format!(
        "INSERT INTO {} ({}) VALUES ({})",
        plan::quote_ident(&schema.name)?,
        plan::quote_list(&names)?,
        marks.join(", ")
    ))
}

/// A full package of `package` rows into an empty table against the raw
/// insert of `raw`, `runs` times.
fn full_apply(
    what: &str,
    goal: &str,
    schema: &TableSchema,
    package: &[Vec<Value>],
    raw: &[Vec<SqlValue>],
    runs: usize,
    spinner: Option<&Spinner>,
) -> anyhow::Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("full.cdxpkg");
    write_package(&path, &header(PackageKind::Full, 1, schema), package)?;
    let insert = insert_sql(schema)?;
    let mut results = Vec::with_capacity(runs);
    for run in 0..runs {
        // Alternate who goes first, so neither always gets the cooler cache.
        let ours_db = dir.path().join(format!("cdx-{run}.db"));
        let raw_path = dir.path().join(format!("raw-{run}.db"));
        let mut conn = raw_db(&raw_path)?;
        conn.execute(&plan::create_table_sql(schema)?, [])?;
        let (ours, baseline) = if run % 2 == 0 {
            let ours = apply(&ours_db, &path, package.len(), spinner)?;
            (ours, raw_write(&mut conn, &insert, raw, spinner)?)
        } else {
            let baseline = raw_write(&mut conn, &insert, raw, spinner)?;
            (apply(&ours_db, &path, package.len(), spinner)?, baseline)
        };
        drop(conn);
        for p in [&ours_db, &raw_path] {
            remove_db(p);
        }
        results.push(Run { ours, baseline });
    }
    Ok(rows_of(what, &results, goal))
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Row 1: a full package of `rows` narrow rows; with `busy`, while
/// another thread keeps a core busy (both sides alike), as a store's
/// point of sale or antivirus would.
pub fn narrow(rows: usize, runs: usize, busy: bool) -> anyhow::Result<Vec<Row>> {
    let data = products(1, rows as i64, "A");
    let spinner = busy.then(Spinner::start);
    let (busy, goal) = if busy {
        (", the other core busy", ">= 0.85x")
    } else {
        ("", ">= 0.95x")
    };
    full_apply(
        &format!(
            "full apply, {} narrow rows, vs raw prepared insert{busy}",
            count(rows)
        ),
        goal,
        &data.schema,
        &data.package,
        &data.raw,
        runs,
        spinner.as_ref(),
    )
}

/// A thread spinning on a core until dropped.
struct Spinner {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    fn start() -> Spinner {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut x = 1u64;
            while !flag.load(Ordering::Relaxed) {
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                }
            }
        });
        Spinner {
            stop,
            thread: Some(thread),
        }
    }

    /// The CPU the spinning thread has used so far.
    fn cpu(&self) -> Duration {
        use std::os::unix::thread::JoinHandleExt;
        let Some(thread) = &self.thread else {
            return Duration::ZERO;
        };
        let mut clock: libc::clockid_t = 0;
        // SAFETY: the thread is alive (joined only on drop), and `clock`
        // is a valid place for its clock id.
        if unsafe { libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock) } != 0 {
            return Duration::ZERO;
        }
        cpu_clock(clock)
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Row 2: a full package of TPC-DS `store_sales` rows.
pub fn tpcds(rows: usize, runs: usize) -> anyhow::Result<Vec<Row>> {
    let (schema, package, raw) = store_sales(rows);
    full_apply(
        &format!(
            "full apply, {} TPC-DS store_sales rows (23 columns), vs raw insert",
            count(rows)
        ),
        ">= 0.9x",
        &schema,
        &package,
        &raw,
        runs,
        None,
    )
}

/// Row 3: an incremental package of `rows` rows onto a table of `rows`,
/// half of them updates of rows there, half new, against raw
/// `INSERT ... ON CONFLICT DO UPDATE` of the same rows onto a copy of the
/// same table.
pub fn upsert(rows: usize, runs: usize) -> anyhow::Result<Vec<Row>> {
    let n = rows as i64;
    let base = products(1, n, "A");
    // Keys n/2+1 ..= 3n/2: the first half are updates, the second inserts.
    let change = products(n / 2 + 1, n, "B");
    let dir = tempfile::tempdir()?;
    let full = dir.path().join("full.cdxpkg");
    write_package(
        &full,
        &header(PackageKind::Full, 1, &base.schema),
        &base.package,
    )?;
    let incremental = dir.path().join("incremental.cdxpkg");
    write_package(
        &incremental,
        &header(PackageKind::Incremental, 2, &change.schema),
        &change.package,
    )?;
    // One seeded database, copied for every run and both sides.
    let seed = dir.path().join("seed.db");
    apply(&seed, &full, rows, None)?;
    {
        // Checkpointed, so that the copy is the whole database.
        let conn = Connection::open(&seed)?;
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    }
    let names: Vec<&str> = change
        .schema
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let sets: Vec<String> = names[1..]
        .iter()
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let upsert_sql = format!(
        "{} ON CONFLICT (id) DO UPDATE SET {}",
        insert_sql(&change.schema)?,
        sets.join(", ")
    );
    let mut results = Vec::with_capacity(runs);
    for run in 0..runs {
        let ours_db = dir.path().join(format!("cdx-{run}.db"));
        let raw_path = dir.path().join(format!("raw-{run}.db"));
        std::fs::copy(&seed, &ours_db).context("copying the seeded database")?;
        std::fs::copy(&seed, &raw_path).context("copying the seeded database")?;
        let mut conn = raw_db(&raw_path)?;
        let (ours, baseline) = if run % 2 == 0 {
            let ours = apply(&ours_db, &incremental, rows, None)?;
            (ours, raw_write(&mut conn, &upsert_sql, &change.raw, None)?)
        } else {
            let baseline = raw_write(&mut conn, &upsert_sql, &change.raw, None)?;
            (apply(&ours_db, &incremental, rows, None)?, baseline)
        };
        drop(conn);
        for p in [&ours_db, &raw_path] {
            remove_db(p);
        }
        results.push(Run { ours, baseline });
    }
    Ok(rows_of(
        &format!(
            "incremental upsert, {} rows onto {} (half updates), vs raw ON CONFLICT DO UPDATE",
            count(rows),
            count(rows)
        ),
        &results,
        ">= 0.85x",
    ))
}

/// `1000000` as `1M`, `200000` as `200k`.
pub fn count(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}
