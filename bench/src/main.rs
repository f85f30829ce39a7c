//! `cdx-bench`: the figures of the speed issue, each side by side with its
//! baseline in the same run, repeated, min / median / max, the machine's
//! load beside. Build it in release:
//!
//! ```text
//! cargo run --release -p cdx-bench -- all
//! cargo run --release -p cdx-bench -- apply --rows 1000000 --runs 5
//! ```
//!
//! Speed is proven here, never by timed asserts in tests.

mod apply;
mod live;
mod stats;
mod wire;

use clap::{Parser, Subcommand};

use stats::Spread;

/// One line of the report.
pub struct Row {
    what: String,
    ours: String,
    baseline: String,
    ratio: String,
    goal: String,
    load: String,
}

impl Row {
    /// A figure with a baseline: rates (per second) and their ratio.
    fn rates(what: &str, ours: Spread, baseline: Spread, ratio: Spread, goal: &str) -> Row {
        Row {
            what: what.into(),
            ours: ours.show(stats::per_second),
            baseline: baseline.show(stats::per_second),
            ratio: ratio.show(stats::ratio),
            goal: goal.into(),
            load: stats::load(),
        }
    }

    /// A figure measured against a goal rather than a baseline.
    fn plain(what: &str, ours: String, goal: &str) -> Row {
        Row {
            what: what.into(),
            ours,
            baseline: "-".into(),
            ratio: "-".into(),
            goal: goal.into(),
            load: stats::load(),
        }
    }
}

fn print(rows: &[Row]) {
    println!(
        "| what | cdx (min / median / max) | baseline (min / median / max) | ratio | goal | machine |"
    );
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.what, r.ours, r.baseline, r.ratio, r.goal, r.load
        );
    }
}

#[derive(Parser)]
#[command(
    version,
    about = "The cdx benchmark suite: every figure beside its baseline"
)]
struct Cli {
    /// Runs of each figure (min / median / max over them).
    #[arg(long, default_value_t = 3, global = true)]
    runs: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Every figure, with the default sizes.
    All,
    /// A full package of narrow rows against a raw prepared insert.
    Apply {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
    },
    /// A full package of TPC-DS store_sales rows against a raw insert.
    Tpcds {
        #[arg(long, default_value_t = 500_000)]
        rows: usize,
    },
    /// An incremental package onto as many rows, half updates, against a raw
    /// INSERT ... ON CONFLICT DO UPDATE.
    Upsert {
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
    },
    /// Sales lines from a store to headquarters, acknowledged.
    Upload {
        #[arg(long, default_value_t = 1_000_000)]
        lines: u64,
        /// Rows per batch (the agent's `upload.batch_rows`).
        #[arg(long, default_value_t = 10_000)]
        batch_rows: usize,
    },
    /// Publish -> applied at an idle agent.
    Latency {
        #[arg(long, default_value_t = 100)]
        trials: usize,
    },
    /// Idle agents long polling one server: its CPU and memory.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        agents: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// The server of `idle`, in a process of its own (run by `idle`).
    #[command(hide = true)]
    IdleServer {
        #[arg(long)]
        agents: usize,
    },
    /// The agents of `idle`, in a process of their own (run by `idle`).
    #[command(hide = true)]
    IdleClients {
        #[arg(long)]
        url: String,
        #[arg(long)]
        agents: usize,
    },
    /// Agents busy-polling one server.
    Fleet {
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runs = cli.runs.max(1);
    match &cli.command {
        Command::IdleClients { url, agents } => return live::idle_clients(url, *agents),
        Command::IdleServer { agents } => return live::idle_server(*agents),
        _ => {}
    }
    if cfg!(debug_assertions) {
        eprintln!("cdx-bench: a debug build; its figures mean nothing (use --release)");
    }
    println!("cdx-bench, {runs} run(s) of each figure; {}", stats::load());
    let rows = match cli.command {
        Command::All => {
            let mut rows = vec![
                apply::narrow(1_000_000, runs)?,
                apply::tpcds(500_000, runs)?,
                apply::upsert(1_000_000, runs)?,
                live::upload(1_000_000, 10_000, runs)?,
            ];
            rows.extend(live::latency(100, runs, false)?);
            rows.extend(live::latency(100, runs, true)?);
            rows.extend(live::fleet(1000, 10, runs)?);
            rows.extend(live::idle(10_000, 10, runs)?);
            rows
        }
        Command::Apply { rows } => vec![apply::narrow(rows, runs)?],
        Command::Tpcds { rows } => vec![apply::tpcds(rows, runs)?],
        Command::Upsert { rows } => vec![apply::upsert(rows, runs)?],
        Command::Upload { lines, batch_rows } => vec![live::upload(lines, batch_rows, runs)?],
        Command::Latency { trials } => {
            let mut rows = live::latency(trials, runs, false)?;
            rows.extend(live::latency(trials, runs, true)?);
            rows
        }
        Command::Fleet { agents, seconds } => live::fleet(agents, seconds, runs)?,
        Command::Idle { agents, seconds } => live::idle(agents, seconds, runs)?,
        Command::IdleClients { .. } | Command::IdleServer { .. } => {
            unreachable!("answered above")
        }
    };
    print(&rows);
    Ok(())
}
