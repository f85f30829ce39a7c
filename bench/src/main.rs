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
mod transfer;
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
        Row::compared(what, [ours, baseline, ratio], goal, stats::per_second)
    }

    /// A figure with a baseline, `[ours, baseline, ratio]`, the first two
    /// shown in `unit`.
    fn compared(what: &str, spreads: [Spread; 3], goal: &str, unit: fn(f64) -> String) -> Row {
        let [ours, baseline, ratio] = spreads;
        Row {
            what: what.into(),
            ours: ours.show(unit),
            baseline: baseline.show(unit),
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
        /// With another thread keeping a core busy meanwhile.
        #[arg(long)]
        busy: bool,
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
    /// One store streaming a large package, against curl -o.
    Stream {
        /// The package's size (1.1 GiB).
        #[arg(long, default_value_t = 1_181_116_006)]
        bytes: u64,
    },
    /// Agents downloading one new package at once, against nginx.
    Download {
        #[arg(long, default_value_t = 1000)]
        agents: usize,
        /// The package's size (4 MiB).
        #[arg(long, default_value_t = 4 << 20)]
        bytes: u64,
    },
    /// One idle agent: its CPU and memory.
    IdleAgent {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// The agent of `idle-agent`, in a process of its own (run by it).
    #[command(hide = true)]
    IdleAgentProcess {
        #[arg(long)]
        config: std::path::PathBuf,
        #[arg(long)]
        channel_db: std::path::PathBuf,
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
        Command::IdleAgentProcess { config, channel_db } => {
            return live::idle_agent_process(config, channel_db)
        }
        _ => {}
    }
    if cfg!(debug_assertions) {
        eprintln!("cdx-bench: a debug build; its figures mean nothing (use --release)");
    }
    println!("cdx-bench, {runs} run(s) of each figure; {}", stats::load());
    let rows = match cli.command {
        Command::All => {
            let mut rows = apply::narrow(1_000_000, runs, false)?;
            rows.extend(apply::narrow(1_000_000, runs, true)?);
            rows.extend(apply::tpcds(500_000, runs)?);
            rows.extend(apply::upsert(1_000_000, runs)?);
            rows.push(live::upload(1_000_000, 10_000, runs)?);
            rows.extend(live::latency(100, runs, false)?);
            rows.extend(live::latency(100, runs, true)?);
            rows.extend(live::fleet(1000, 10, runs)?);
            rows.extend(live::idle(10_000, 10, runs)?);
            rows.push(transfer::fleet_download(1000, 4 << 20, runs)?);
            rows.extend(transfer::stream(1_181_116_006, runs)?);
            rows.extend(live::idle_agent(10, runs)?);
            rows
        }
        Command::Apply { rows, busy } => apply::narrow(rows, runs, busy)?,
        Command::Tpcds { rows } => apply::tpcds(rows, runs)?,
        Command::Upsert { rows } => apply::upsert(rows, runs)?,
        Command::Upload { lines, batch_rows } => vec![live::upload(lines, batch_rows, runs)?],
        Command::Latency { trials } => {
            let mut rows = live::latency(trials, runs, false)?;
            rows.extend(live::latency(trials, runs, true)?);
            rows
        }
        Command::Fleet { agents, seconds } => live::fleet(agents, seconds, runs)?,
        Command::Idle { agents, seconds } => live::idle(agents, seconds, runs)?,
        Command::Stream { bytes } => transfer::stream(bytes, runs)?,
        Command::Download { agents, bytes } => {
            vec![transfer::fleet_download(agents, bytes, runs)?]
        }
        Command::IdleAgent { seconds } => live::idle_agent(seconds, runs)?,
        Command::IdleClients { .. }
        | Command::IdleServer { .. }
        | Command::IdleAgentProcess { .. } => {
            unreachable!("answered above")
        }
    };
    print(&rows);
    Ok(())
}
