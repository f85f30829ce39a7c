//! `cdx-client`: the Commerce Data Exchange agent installed at each store.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use cdx::config::{Config, LogFormat};
use cdx_actors::{channel_db_factory, demo, Agent};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cdx-client",
    version,
    about = "The store's Commerce Data Exchange agent: \
    downloads packages from headquarters into the channel database and uploads sales."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent until SIGINT or SIGTERM, then finish the work in hand and exit 0.
    Run {
        /// The configuration file (see config.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check the configuration, the server (credentials included) and the channel database.
    TestConnection {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The running agent on one screen: health and why not, the last poll,
    /// packages behind, a transfer in progress, a suspended package,
    /// uploads (from its status endpoint). When the agent is stopped, what
    /// its message database says (a suspended package, the last applied,
    /// each upload table's last batch), and exit status 1.
    Status {
        #[arg(long, short)]
        config: PathBuf,
        /// Print the status document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The agent's download and upload sessions, newest first, as the
    /// original's session forms; `sessions show ID` prints one with its
    /// status history (ID: a session, package or upload id, or a prefix).
    /// Asks the running agent; when it is stopped, reads its message
    /// database (under the agent's lock, so it cannot start meanwhile).
    Sessions {
        #[arg(long, short)]
        config: PathBuf,
        /// Only download sessions.
        #[arg(long)]
        downloads: bool,
        /// Only upload sessions.
        #[arg(long)]
        uploads: bool,
        /// Only sessions in this status (Applied, ApplyFailed, Suspended...).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// At most this many sessions of each direction.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
        /// `show ID`.
        #[arg(value_name = "show ID", num_args = 0..=2)]
        show: Vec<String>,
    },
    /// Ask the running agent to poll headquarters and upload now, instead of
    /// at the next intervals (through its status endpoint, with the control
    /// token from `status.control_token_file`).
    SyncNow {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Download and apply a package again, as the original's Rerun: a
    /// failed, suspended or waiting package at once (its downloaded file
    /// dropped); a full package even when applied, unless a later package
    /// of its job was applied after it (applying it again would roll that
    /// back). Waits until done and prints what was done.
    Rerun {
        #[arg(long, short)]
        config: PathBuf,
        /// The package id (`cdx-client sessions --downloads`).
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Give up on a failed, suspended or waiting package. Packages apply in
    /// order, so this is done only when headquarters has withdrawn the
    /// package or a later full package of its job supersedes it (then the
    /// agent would also pass over it by itself at its next poll); otherwise
    /// it is refused with the reason and the way out, and exits 1.
    Cancel {
        #[arg(long, short)]
        config: PathBuf,
        /// The package id (`cdx-client sessions --downloads`).
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Re-seed the store: the channel database forgets its position in its
    /// data group's order, and the agent applies headquarters' snapshot plan
    /// again from the start: the latest full package of each job and the
    /// packages after it, passing over superseded and withdrawn ones. For a
    /// channel database restored from a backup, or one whose tables were
    /// changed by hand. The tables keep their rows until the packages
    /// replace them. Refused while a package is suspended.
    FullSync {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the whole system on embedded defaults: a headquarters server with a
    /// generated retail data set, this agent with a SQLite channel database,
    /// and a point-of-sale simulator selling at the store.
    Demo(demo::DemoOptions),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and print it as the agent would run
    /// with it: every default filled in, relative paths resolved, every
    /// secret shown as "***". Exits 78 (EX_CONFIG) when the file is bad,
    /// naming the key.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// sysexits.h's EX_CONFIG: what `cdx-client` exits with on a bad
/// configuration, so a service manager can tell it from a crash.
const EX_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result =
        match cli.command {
            Command::Run { config } => run(&config),
            Command::TestConnection { config } => test_connection(&config),
            Command::SyncNow { config } => {
                control(&config, "sync-now").map(|body| println!("sync started: {body}"))
            }
            Command::Rerun { config, id } => control(&config, &format!("rerun/{id}"))
                .map(|body| println!("{}", done_text(&body))),
            Command::Cancel { config, id } => control(&config, &format!("cancel/{id}"))
                .map(|body| println!("{}", done_text(&body))),
            Command::FullSync { config } => {
                control(&config, "full-sync").map(|body| println!("{}", done_text(&body)))
            }
            Command::Status { config, json } => status(&config, json),
            Command::Sessions {
                config,
                downloads,
                uploads,
                status,
                limit,
                json,
                show,
            } => {
                let filter = cdx_actors::status::screen::SessionFilter {
                    downloads,
                    uploads,
                    status,
                    limit,
                };
                sessions(&config, &filter, json, &show)
            }
            Command::Demo(options) => {
                init_logging("warn", LogFormat::Text);
                demo::run(options)
            }
            Command::Config(ConfigCommand::Check { config }) => Config::load(&config)
                .map(|c| print!("{}", c.effective_toml()))
                .map_err(anyhow::Error::from),
        };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cdx-client: {e:#}");
            if e.downcast_ref::<cdx::config::ConfigError>().is_some() {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    init_logging(&config.log_level, config.log_format);
    let open_db = channel_db_factory(&config);
    actix_rt::System::new().block_on(async move {
        let agent = Agent::start(config, open_db).await?;
        let serving = match agent.status_addr {
            Some(addr) => {
                tracing::info!("status at http://{addr}/ (page), /status, /metrics");
                format!("syncing; status at http://{addr}/")
            }
            None => "syncing".to_owned(),
        };
        cdx::systemd::ready(&serving);
        match cdx::systemd::watchdog_interval() {
            Some(every) => {
                tokio::select! {
                    () = wait_for_signal() => {}
                    () = watchdog(&agent, every) => {}
                }
            }
            None => wait_for_signal().await,
        }
        cdx::systemd::stopping();
        agent.shutdown().await;
        Ok(())
    })
}

/// Tells systemd's watchdog every `every` that the agent is alive, for as
/// long as it is; a stuck or broken agent stops telling it, and systemd
/// restarts it (`WatchdogSec` in the unit).
async fn watchdog(agent: &Agent, every: std::time::Duration) {
    // Ticks at a fixed rate, however long a check took, and a check takes
    // at most half a tick: two pings are never further apart than
    // WatchdogSec.
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match agent.alive(every / 2).await {
            Ok(()) => cdx::systemd::watchdog(),
            Err(why) => tracing::error!(%why, "not telling systemd's watchdog the agent is alive"),
        }
    }
}

fn test_connection(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    println!("config {}: ok", path.display());
    let open_db = channel_db_factory(&config);
    let mut db = open_db().context("channel database")?;
    let group_probe = db.applied_packages("");
    group_probe.context("channel database: reading applied packages")?;
    println!("channel database: ok");
    // Each upload table must exist with its counter column: the agent never
    // creates them (the point of sale does).
    let mut missing = Vec::new();
    for table in &config.upload.tables {
        let probe = db
            .read_upload_rows(table, i64::MAX, 1)
            .and_then(|_| Ok((db.row_count(&table.name)?, db.watermark(&table.name)?)));
        match probe {
            Ok((rows, watermark)) => println!(
                "upload table {} (counter {}): ok, {rows} rows, uploaded up to {watermark}",
                table.name, table.counter_column
            ),
            Err(e) => {
                println!("upload table {}: FAILED: {e}", table.name);
                missing.push(table.name.clone());
            }
        }
    }
    actix_rt::System::new().block_on(async {
        let hq = cdx_actors::hq::HqClient::new(&config.server)?;
        let ping = hq.ping().await.context("server")?;
        println!(
            "server {}: ok (channel database {} in data group {})",
            config.server.url, ping.channel_id, ping.data_group
        );
        anyhow::Ok(())
    })?;
    if !missing.is_empty() {
        anyhow::bail!(
            "upload tables not usable: {} (uploads fail until the point of sale creates them, \
             or remove them from [[upload.tables]])",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Where the running agent of `config` answers: its status endpoint,
/// reached on loopback when it listens on every address.
fn agent_address(config: &Config) -> anyhow::Result<std::net::SocketAddr> {
    let mut addr = config
        .status_listen
        .context("the status endpoint is disabled (status.enabled = false)")?;
    if addr.port() == 0 {
        anyhow::bail!("status.listen has port 0: the running agent's port is not known");
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(addr)
}

/// How an error from [`agent_get`] starts when nothing answered.
const NOT_RUNNING: &str = "the agent is not running";

/// GETs `path` from the running agent's status endpoint and decodes the
/// JSON document it answers with.
fn agent_get<T: serde::de::DeserializeOwned>(config: &Config, path: &str) -> anyhow::Result<T> {
    let url = format!("http://{}{path}", agent_address(config)?);
    actix_rt::System::new().block_on(async {
        let response = reqwest::Client::new()
            .get(&url)
            .send()
            .await
            .with_context(|| format!("{NOT_RUNNING} (no answer at {url})"))?;
        if !response.status().is_success() {
            let status = response.status();
            anyhow::bail!(
                "{url}: HTTP {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        response
            .json()
            .await
            .with_context(|| format!("{url}: not the document expected"))
    })
}

fn status(path: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    let doc: cdx_actors::status::StatusDocument = match agent_get(&config, "/status") {
        Ok(doc) => doc,
        Err(e) if e.to_string().starts_with(NOT_RUNNING) => {
            // What the stopped agent left in its message database, then
            // the error: a stopped agent is not a healthy one.
            let (downloads, uploads) = cdx_actors::agent::stopped_agent_sessions(&config, 1_000)
                .with_context(|| format!("{e}; its message database"))?;
            let doc = cdx_actors::status::SessionsDocument { downloads, uploads };
            if json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print!(
                    "{}",
                    cdx_actors::status::screen::stopped(&doc, cdx::protocol::now_ms())
                );
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!(
            "{}",
            cdx_actors::status::screen::render(&doc, cdx::protocol::now_ms())
        );
    }
    Ok(())
}

fn sessions(
    path: &std::path::Path,
    filter: &cdx_actors::status::screen::SessionFilter,
    json: bool,
    show: &[String],
) -> anyhow::Result<()> {
    use cdx_actors::status::screen;
    let shown = match show {
        [] => None,
        [verb, id] if verb == "show" => Some(id.clone()),
        _ => anyhow::bail!("expected `sessions` or `sessions show ID`"),
    };
    let config = Config::load(path)?;
    // Enough to find an older session by id.
    let limit = if shown.is_some() {
        10_000
    } else {
        filter.limit.max(1)
    };
    let doc: cdx_actors::status::SessionsDocument =
        match agent_get(&config, &format!("/sessions?limit={limit}")) {
            Ok(doc) => doc,
            Err(e) if e.to_string().starts_with(NOT_RUNNING) => {
                // A stopped agent's message database, read under its lock.
                let (downloads, uploads) =
                    cdx_actors::agent::stopped_agent_sessions(&config, limit)
                        .with_context(|| format!("{e}; reading its message database instead"))?;
                eprintln!(
                    "the agent is not running: sessions from its message database {}",
                    config.message_db.display()
                );
                cdx_actors::status::SessionsDocument { downloads, uploads }
            }
            Err(e) => return Err(e),
        };
    match shown {
        Some(id) => match screen::session_detail(&doc, &id) {
            Some(text) => print!("{text}"),
            None => {
                anyhow::bail!("no session, package or upload `{id}` among the agent's sessions")
            }
        },
        None if json => println!("{}", serde_json::to_string_pretty(&doc)?),
        None => print!("{}", screen::sessions_table(&doc, filter)),
    }
    Ok(())
}

/// Posts to the running agent's control route `/control/ROUTE` with the
/// control token; answers the body of a success. An error names the route
/// and carries the agent's own sentence.
fn control(path: &std::path::Path, route: &str) -> anyhow::Result<String> {
    let config = Config::load(path)?;
    let addr = agent_address(&config)?;
    let token = match &config.control.token {
        Some(token) => token.expose().to_owned(),
        None => std::fs::read_to_string(&config.control.token_file)
            .with_context(|| {
                format!(
                    "reading the control token {} (is the agent running, and is this its user?)",
                    config.control.token_file.display()
                )
            })?
            .trim()
            .to_owned(),
    };
    actix_rt::System::new().block_on(async move {
        let url = format!("http://{addr}/control/{route}");
        let response = reqwest::Client::new()
            .post(&url)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("cannot reach the agent at {url}: is it running?"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let said = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or(body);
            anyhow::bail!("{said} (HTTP {status} from {url})");
        }
        anyhow::Ok(body)
    })
}

/// The `done` sentence of a rerun's or cancel's answer.
fn done_text(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("done").and_then(|d| d.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.to_owned())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colours only for a person at a terminal, not for journald or a file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
