//! `cdx-client demo`: the whole system on embedded defaults, in one
//! process and nothing installed. A headquarters server publishes a
//! generated retail data set, this agent syncs a SQLite channel database,
//! and a point-of-sale simulator sells at the store while the agent
//! uploads the sales.

mod headquarters;
mod store;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cdx::config::Config;
use cdx::retail::DataSetSize;

use crate::agent::{sqlite_factory, Agent};
use headquarters::Headquarters;
use store::Store;

const CHANNEL_ID: &str = "store-0001";
const DATA_GROUP: &str = "default";
/// Marks a folder as the demo's own, so a rerun may clear it.
const MARKER: &str = ".cdx-demo";
const INCREMENTAL_ROUNDS: u64 = 3;
/// Seeds the generated data set, so that every demo run is the same.
pub(crate) const SEED: u64 = 2012;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Exit once the initial sync is applied and the sales are uploaded,
    /// after comparing row counts on both sides (non-zero if they differ).
    #[arg(long)]
    pub once: bool,
    /// Where the demo keeps its server data, channel database and working
    /// folder. Cleared at start if a previous demo made it.
    #[arg(long, default_value = "cdx-demo")]
    pub dir: PathBuf,
    /// Products in the generated catalogue.
    #[arg(long, default_value_t = 10_000)]
    pub products: u64,
    /// Customers in the generated data set.
    #[arg(long, default_value_t = 5_000)]
    pub customers: u64,
    /// Sales the point of sale records (with --once).
    #[arg(long, default_value_t = 1_200)]
    pub sales: u64,
    /// Transfer mode: reliable or streaming.
    #[arg(long, default_value = "reliable")]
    pub mode: String,
    /// Port of the agent's status endpoint on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 8090)]
    pub status_port: u16,
}

pub fn run(options: DemoOptions) -> anyhow::Result<()> {
    prepare_dir(&options.dir)?;
    let size = DataSetSize {
        products: options.products,
        customers: options.customers,
        ..DataSetSize::default()
    };
    let started = Instant::now();
    let hq = Headquarters::start(&options.dir.join("hq"), CHANNEL_ID, DATA_GROUP)?;
    println!("headquarters: cdx-server listening on {}", hq.url());
    let initial = hq.publish_initial(size)?;
    println!(
        "headquarters: published {} full packages ({} rows, {} bytes) in {:.1?}",
        initial.packages, initial.rows, initial.bytes, initial.elapsed
    );
    let store = Store::create(&options.dir.join("store"), size)?;
    let config = demo_config(&options, &hq, &store)?;
    actix_rt::System::new().block_on(async {
        let agent = Agent::start(config, sqlite_factory(store.channel_db.clone())).await?;
        match agent.status_addr {
            Some(addr) => println!("agent: status at http://{addr}/status (health at /health)"),
            None => println!("agent: status endpoint disabled"),
        }
        let outcome = drive(&options, &hq, &store, initial.packages, size, started).await;
        agent.shutdown().await;
        outcome
    })?;
    hq.stop()?;
    Ok(())
}

/// Runs the store's day: waits for the initial sync, publishes incremental
/// packages, sells, and (with --once) checks both sides agree.
async fn drive(
    options: &DemoOptions,
    hq: &Headquarters,
    store: &Store,
    initial_packages: u64,
    size: DataSetSize,
    started: Instant,
) -> anyhow::Result<()> {
    let pos = store.start_selling(if options.once {
        Some(options.sales)
    } else {
        None
    });
    store
        .wait_applied(initial_packages, hq, started, Duration::from_secs(300))
        .await?;
    println!(
        "store: initial sync applied after {:.1?}",
        started.elapsed()
    );
    let mut published = initial_packages;
    for round in 1..=INCREMENTAL_ROUNDS {
        let t = Instant::now();
        published += hq.publish_incremental(size, round)?;
        store
            .wait_applied(published, hq, started, Duration::from_secs(60))
            .await?;
        println!(
            "store: incremental round {round} applied {:.0?} after it was published",
            t.elapsed()
        );
    }
    if !options.once {
        run_until_ctrl_c(hq, store, size, published, started).await?;
        pos.stop();
        return Ok(());
    }
    let sold = pos.finish().await?;
    println!("store: the point of sale recorded {sold} sales");
    store
        .wait_uploaded(hq, started, Duration::from_secs(300))
        .await?;
    verify(hq, store, size, sold).await?;
    println!("demo: done in {:.1?}", started.elapsed());
    Ok(())
}

/// Keeps the store's day going: a new incremental round at headquarters
/// every half minute, progress every few seconds.
async fn run_until_ctrl_c(
    hq: &Headquarters,
    store: &Store,
    size: DataSetSize,
    mut published: u64,
    started: Instant,
) -> anyhow::Result<()> {
    println!("demo: running until Ctrl-C; the point of sale keeps selling, headquarters keeps publishing");
    let mut round = INCREMENTAL_ROUNDS;
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = ticks.tick() => {}
        }
        let elapsed = started.elapsed().as_secs();
        if elapsed / 30 > round.saturating_sub(INCREMENTAL_ROUNDS) {
            round += 1;
            published += hq.publish_incremental(size, round)?;
        }
        store.show_progress(published, hq, started).await?;
    }
}

/// Compares what the channel holds with what headquarters published, and
/// what headquarters received with what the channel sold.
async fn verify(
    hq: &Headquarters,
    store: &Store,
    size: DataSetSize,
    sold: u64,
) -> anyhow::Result<()> {
    let expected = cdx::retail::expected_row_counts(size, INCREMENTAL_ROUNDS);
    let mut mismatches = Vec::new();
    println!("{:<32} {:>12} {:>12}", "table", "headquarters", "store");
    for (table, want) in &expected {
        let have = store.row_count(table).await?;
        println!("{table:<32} {want:>12} {have:>12}");
        if have != *want {
            mismatches.push(format!(
                "{table}: headquarters published {want}, the store has {have}"
            ));
        }
    }
    for (table, _) in cdx::retail::UPLOAD_TABLES {
        let at_store = store.row_count(table).await?;
        let at_hq = hq.uploaded_rows(table)?;
        println!("{table:<32} {at_hq:>12} {at_store:>12}");
        if at_hq != at_store {
            mismatches.push(format!(
                "{table}: the store has {at_store}, headquarters received {at_hq}"
            ));
        }
    }
    if sold < 1000 {
        mismatches.push(format!(
            "only {sold} sales were recorded; the demo needs at least 1000"
        ));
    }
    if !mismatches.is_empty() {
        bail!("row counts differ:\n  {}", mismatches.join("\n  "));
    }
    println!("demo: row counts match on both sides");
    Ok(())
}

fn demo_config(options: &DemoOptions, hq: &Headquarters, store: &Store) -> anyhow::Result<Config> {
    let status_port = free_or_any(options.status_port);
    let text = format!(
        r#"
[server]
url = "{url}"
channel_id = "{CHANNEL_ID}"
secret = "{secret}"

[storage]
working_folder = "work"

[channel_db]
kind = "sqlite"
path = "channel.db"

[download]
mode = "{mode}"
interval = "10s"
long_poll = "20s"

[upload]
interval = "1s"
batch_rows = 500

[status]
listen = "127.0.0.1:{status_port}"
"#,
        url = hq.url(),
        secret = hq.secret(),
        mode = options.mode,
    );
    Config::parse(&text, Path::new("demo config"), &store.dir, &|_| None)
        .context("the demo's configuration")
}

/// The status port asked for, or any free one if it is taken.
fn free_or_any(port: u16) -> u16 {
    match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => port,
        Err(_) => 0,
    }
}

fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let ours = dir.join(MARKER).exists();
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !ours && !empty {
            bail!(
                "{} exists and was not made by the demo; choose another --dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(MARKER), b"made by cdx-client demo\n")?;
    Ok(())
}
