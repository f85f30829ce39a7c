//! `cdx-server`: the reference Async Server's command line. Thin: every
//! command is a call into `cdx_server`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use cdx::package::PackageKind;
use cdx::status::Direction;
use cdx_server::{
    self as server, report, CsvNull, ExportFormat, FleetFilter, PublishFiles, SessionFilter, Store,
};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// The reference Async Server (headquarters side) of cdx.
///
/// It keeps its state in a data directory: `server.db` (SQLite) and
/// `packages/`. Register channel databases with `channel add`, publish
/// packages with `publish`, and serve them to agents with `serve`.
#[derive(Debug, Parser)]
#[command(name = "cdx-server", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Register and list channel databases.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Publish a package for a data group from JSON Lines or CSV files.
    #[command(after_long_help = PUBLISH_EXAMPLE)]
    Publish(PublishArgs),
    /// Serve the data directory over HTTP (the /v1 protocol) until Ctrl-C.
    Serve(ServeArgs),
    /// Print download and upload sessions, like the Download/Upload sessions forms.
    Sessions(SessionsArgs),
    /// Print, per channel and table, the uploaded high-water counter and row count.
    Uploads(UploadsArgs),
    /// List published packages, with the withdrawn and superseded ones marked.
    Packages(PackagesArgs),
    /// Act on one published package.
    #[command(subcommand)]
    Package(PackageCommand),
    /// Prune the files of packages no store will download: superseded by a
    /// later full package of their job, or withdrawn. Each package's row
    /// stays (marked), so the order stays whole: a store behind passes over
    /// them and goes straight to the latest full package of each job and
    /// what followed it. Run it from cron, or let `serve --retain` do it.
    Compact(CompactArgs),
    /// The fleet, worst first: each channel's applied sequence against its
    /// group's latest, how long it has waited, failed or suspended sessions
    /// with their last error, and its uploads.
    Stores(StoresArgs),
}

#[derive(Debug, Args)]
struct StoresArgs {
    #[command(flatten)]
    data: DataDir,
    /// Only this data group.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Only channels with packages not applied.
    #[arg(long)]
    behind: bool,
    /// Only channels with a failed, suspended or canceled session, or a
    /// package applied and withdrawn afterwards.
    #[arg(long)]
    failing: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DataDir {
    /// The server's data directory (created when missing).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
}

impl DataDir {
    fn open(&self) -> anyhow::Result<Store> {
        Store::open(&self.data).with_context(|| format!("opening {}", self.data.display()))
    }
}

#[derive(Debug, Subcommand)]
enum ChannelCommand {
    /// Register a channel database id in a channel data group.
    ///
    /// The id is case-sensitive and unique; the agent sends it with the secret
    /// as HTTP Basic credentials. Only a salted SHA-256 of the secret is
    /// stored. Prefer --secret-env or --secret-file: --secret shows in the
    /// process list and the shell history.
    Add(ChannelAddArgs),
    /// List registered channel databases with their last connection.
    List(DataDir),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("secret_source").required(true)))]
struct ChannelAddArgs {
    #[command(flatten)]
    data: DataDir,
    /// The channel database id, e.g. store-0001.
    #[arg(long)]
    id: String,
    /// The channel data group it belongs to.
    #[arg(long)]
    group: String,
    /// Read the secret from this environment variable.
    #[arg(long, value_name = "VAR", group = "secret_source")]
    secret_env: Option<String>,
    /// Read the secret from this file (trailing newline removed).
    #[arg(long, value_name = "PATH", group = "secret_source")]
    secret_file: Option<PathBuf>,
    /// The secret itself.
    #[arg(long, value_name = "SECRET", group = "secret_source")]
    secret: Option<String>,
}

const PUBLISH_EXAMPLE: &str = "\
Inputs are JSON Lines (.jsonl, .ndjson: one object per line, keys are columns)
or CSV (.csv: a header row). Columns come from --columns (NAME:TYPE, TYPE one of
integer, real, text, text(N), blob, blob(N), boolean, decimal(P,S), date,
datetime, time, uuid; a `?` suffix makes a column nullable; quote the list for
the shell) or are inferred
from the first record (JSON: integer -> integer, other number -> real, string ->
text, null -> nullable text; CSV: every column text). Key columns cannot be
nullable. CSV has no null: an empty field is NULL in a nullable column, unless
--null-marker names the text that is (then an empty field is the empty string).
Datetimes may use `T` or a space and end in `Z` (UTC). A full package holds one
row per key. A record that does not fit fails the publish with its file, line and
column, and nothing is published. Sequences are per data group, from 1.

Example: a full products package, then an incremental one with deletes.

  $ cat products.jsonl
  {\"id\": 1, \"name\": \"Coffee\", \"price\": 2.5, \"note\": null}
  {\"id\": 2, \"name\": \"Tea\", \"price\": 1.75, \"note\": \"green\"}
  $ cat prices.csv
  product_id,store_id,price
  1,store-0001,2.45
  $ cdx-server publish --data hq --group default --job 1040 --kind full \\
      --table products=products.jsonl --key products=id \\
      --columns 'products=id:integer,name:text(60),price:decimal(19,4),note:text?' \\
      --table prices=prices.csv --key prices=product_id,store_id \\
      --columns prices=product_id:integer,store_id:text,price:real
  published package 761d80a8-... (default #1, job 1040, Full): 3 rows, 493 bytes, sha256 bf8944a7...

  $ echo '{\"id\": 2}' > deleted.jsonl
  $ cdx-server publish --data hq --group default --job 1040 --kind incremental \\
      --table products=changed.jsonl --key products=id \\
      --delete products=deleted.jsonl";

#[derive(Debug, Args)]
struct PublishArgs {
    #[command(flatten)]
    data: DataDir,
    /// The channel data group to publish for.
    #[arg(long)]
    group: String,
    /// The scheduler job, e.g. 1040 (products).
    #[arg(long)]
    job: String,
    /// Full packages replace the tables' rows; incremental ones upsert and delete by key.
    #[arg(long, value_enum)]
    kind: Kind,
    /// TABLE=FILE: a table and its rows (.jsonl or .csv). Repeat for more tables.
    #[arg(long = "table", value_name = "TABLE=FILE", required = true)]
    tables: Vec<String>,
    /// TABLE=COL[,COL...]: the table's primary-key columns, in order.
    #[arg(long = "key", value_name = "TABLE=COLS", required = true)]
    keys: Vec<String>,
    /// TABLE=NAME:TYPE[?][,...]: the table's columns, instead of inferring them.
    #[arg(long = "columns", value_name = "TABLE=SPEC")]
    columns: Vec<String>,
    /// TABLE=FILE: key values of rows to delete (incremental only).
    #[arg(long = "delete", value_name = "TABLE=FILE")]
    deletes: Vec<String>,
    /// The CSV field that means NULL, e.g. '\N'; an empty field is then the
    /// empty string. Without it an empty field is NULL in a nullable column.
    #[arg(long, value_name = "TEXT")]
    null_marker: Option<String>,
    /// TABLE: this full package replaces the table's definition: each store
    /// drops the table and creates it as the package says, in the package's
    /// transaction. The way out of a schema change a store refuses to make
    /// in place (a column changing kind, a new key). Repeat for more tables.
    #[arg(long = "replace-definition", value_name = "TABLE")]
    replace_definitions: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Full,
    Incremental,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataDir,
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Also list each package at URL<sha256>.cdxpkg, for agents to download
    /// without their credentials from a CDN or HTTP server whose origin is
    /// DATA/content (every package is linked there).
    #[arg(long, value_name = "URL")]
    content_url_base: Option<String>,
    /// A file holding the token operators' routes (`/metrics`) require as
    /// `Authorization: Bearer TOKEN`; the environment variable
    /// CDX_ADMIN_TOKEN may hold it instead. Never a channel's secret.
    /// Without one, those routes answer only clients on this machine.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Compact on its own: every hour (and at start), prune the files of
    /// packages superseded or withdrawn longer than this ago, as `compact
    /// --keep-for` (e.g. `7d`). Off when absent.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    retain: Option<std::time::Duration>,
}

#[derive(Debug, Args)]
struct CompactArgs {
    #[command(flatten)]
    data: DataDir,
    /// Only this data group.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Keep a file this long after its package was superseded or withdrawn,
    /// so a store downloading it finishes (e.g. `7d`, `12h`, `0s`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
          default_value = "7d")]
    keep_for: std::time::Duration,
    /// Print what would be pruned, and prune nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
struct SessionsArgs {
    #[command(flatten)]
    data: DataDir,
    /// Only this channel database's sessions.
    #[arg(long, value_name = "ID")]
    channel: Option<String>,
    /// Only download or only upload sessions.
    #[arg(long, value_enum)]
    direction: Option<Dir>,
    /// Print JSON ({"download": [...], "upload": [...]}) instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Dir {
    Download,
    Upload,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct UploadsArgs {
    #[command(subcommand)]
    export: Option<UploadsCommand>,
    #[command(flatten)]
    data: Option<DataDir>,
    /// Only this channel database.
    #[arg(long, value_name = "ID")]
    channel: Option<String>,
}

#[derive(Debug, Subcommand)]
enum UploadsCommand {
    /// Write what a channel uploaded for one table, in counter order, as
    /// JSON Lines (as received: decimals as exact text, blobs as
    /// {"base64": ...}) or CSV (a header row; NULL as --null-marker, empty
    /// by default; blobs as base64), for the next system in line.
    Export(ExportArgs),
    /// Rows a channel uploaded under counters the server held already with
    /// other values (its counters went back: a channel database restored
    /// from a backup), kept apart instead of dropped, beside the row held.
    Conflicts(ConflictsArgs),
}

#[derive(Debug, Args)]
struct ConflictsArgs {
    #[command(flatten)]
    data: DataDir,
    /// Only this channel database.
    #[arg(long, value_name = "ID")]
    channel: Option<String>,
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    data: DataDir,
    /// The channel database.
    #[arg(long, value_name = "ID")]
    channel: String,
    /// The upload table, as the store names it.
    #[arg(long, value_name = "NAME")]
    table: String,
    /// jsonl or csv.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: ExportKind,
    /// The CSV field written for NULL.
    #[arg(long, value_name = "TEXT", default_value = "")]
    null_marker: String,
    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportKind {
    Jsonl,
    Csv,
}

#[derive(Debug, Subcommand)]
enum PackageCommand {
    /// Take a package back: no store applies it any more.
    ///
    /// Stores that have not applied it pass over it at their next poll and
    /// record why (Canceled, with the reason, at the store and here); a store
    /// suspended on it resumes by itself, and the packages after it follow.
    /// Stores that had already applied it are listed, and shown by
    /// `stores --failing`, so that a correcting package can be sent. The
    /// withdrawal is journaled with who (--by, else $SUDO_USER or $USER) and
    /// when. It cannot be undone: publish the package's data again instead.
    Withdraw(WithdrawArgs),
}

#[derive(Debug, Args)]
struct WithdrawArgs {
    #[command(flatten)]
    data: DataDir,
    /// The package id (from `cdx-server packages`).
    #[arg(value_name = "ID")]
    id: uuid::Uuid,
    /// Why: every store records it with the package.
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Who withdraws it, for the journal (default: $SUDO_USER, else $USER).
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
}

#[derive(Debug, Args)]
struct PackagesArgs {
    #[command(flatten)]
    data: DataDir,
    /// Only this data group.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(matches!(cli.command, Command::Serve(_)));
    let printed = run(cli).and_then(|output| {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(output.as_bytes())?;
        stdout.flush()?;
        Ok(())
    });
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        // `cdx-server sessions ... | head` closing the pipe is not a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs go to stderr; `RUST_LOG` overrides the level (info when serving,
/// warn otherwise).
fn init_tracing(serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// Runs a command; returns what it prints on stdout.
fn run(cli: Cli) -> anyhow::Result<String> {
    let mut out = String::new();
    match cli.command {
        Command::Channel(ChannelCommand::Add(args)) => {
            let secret = read_secret(&args)?;
            args.data
                .open()?
                .add_channel(&args.id, &args.group, &secret)?;
            writeln!(
                out,
                "added channel database {} to data group {}",
                args.id, args.group
            )?;
        }
        Command::Channel(ChannelCommand::List(data)) => {
            out = report::channels(&data.open()?.channels()?);
        }
        Command::Publish(args) => {
            let kind = match args.kind {
                Kind::Full => PackageKind::Full,
                Kind::Incremental => PackageKind::Incremental,
            };
            let mut files = PublishFiles::from_args(
                &args.group,
                &args.job,
                kind,
                &args.tables,
                &args.keys,
                &args.columns,
                &args.deletes,
            )?;
            files.csv_null = CsvNull::from_arg(args.null_marker.as_deref());
            files.replace_definitions(&args.replace_definitions)?;
            let store = args.data.open()?;
            let mut shown = PublishShown::new();
            let info = server::publish_files_with_progress(&store, &files, &mut |p| shown.tell(p));
            shown.finish();
            let info = info?;
            writeln!(
                out,
                "published package {} ({} #{}, job {}, {:?}): {} rows, {} bytes, sha256 {}",
                info.id,
                info.data_group,
                info.sequence,
                info.job,
                info.kind,
                info.rows,
                info.bytes,
                info.sha256
            )?;
        }
        Command::Serve(args) => serve(args)?,
        Command::Sessions(args) => {
            let filter = SessionFilter {
                channel: args.channel,
                direction: args.direction.map(|d| match d {
                    Dir::Download => Direction::Download,
                    Dir::Upload => Direction::Upload,
                }),
            };
            let sessions = args.data.open()?.sessions(&filter)?;
            if args.json {
                out = serde_json::to_string_pretty(&sessions)? + "\n";
            } else {
                if filter.direction != Some(Direction::Upload) {
                    out += "Download sessions\n";
                    out += &report::download_sessions(&sessions.download);
                }
                if filter.direction.is_none() {
                    out += "\n";
                }
                if filter.direction != Some(Direction::Download) {
                    out += "Upload sessions\n";
                    out += &report::upload_sessions(&sessions.upload);
                }
            }
        }
        Command::Uploads(UploadsArgs {
            export: Some(UploadsCommand::Export(args)),
            ..
        }) => {
            let format = match args.format {
                ExportKind::Jsonl => ExportFormat::JsonLines,
                ExportKind::Csv => ExportFormat::Csv {
                    null_marker: args.null_marker.clone(),
                },
            };
            let store = args.data.open()?;
            let mut sink: Box<dyn std::io::Write> = match &args.output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let rows = store.export_uploads(&args.channel, &args.table, &format, &mut *sink)?;
            sink.flush()?;
            if rows == 0 {
                eprintln!(
                    "no rows of table `{}` uploaded by channel `{}`",
                    args.table, args.channel
                );
            }
        }
        Command::Uploads(UploadsArgs {
            export: Some(UploadsCommand::Conflicts(args)),
            ..
        }) => {
            let conflicts = args
                .data
                .open()?
                .upload_conflicts(args.channel.as_deref())?;
            out = report::upload_conflicts(&conflicts);
        }
        Command::Uploads(args) => {
            let data = args
                .data
                .context("--data is required (the server's data directory)")?;
            let tables = data.open()?.upload_tables(args.channel.as_deref())?;
            out = report::upload_tables(&tables);
        }
        Command::Stores(args) => {
            let filter = FleetFilter {
                group: args.group,
                behind: args.behind,
                failing: args.failing,
            };
            let fleet = args.data.open()?.fleet(&filter)?;
            out = if args.json {
                serde_json::to_string_pretty(&fleet)? + "\n"
            } else {
                report::stores(&fleet)
            };
        }
        Command::Packages(args) => {
            let packages = args.data.open()?.listed_packages(args.group.as_deref())?;
            out = report::packages(&packages);
        }
        Command::Compact(args) => {
            let done =
                args.data
                    .open()?
                    .compact(args.group.as_deref(), args.keep_for, args.dry_run)?;
            out = report::compacted(&done, args.dry_run);
        }
        Command::Package(PackageCommand::Withdraw(args)) => {
            let by = args
                .by
                .or_else(|| std::env::var("SUDO_USER").ok())
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "unknown".into());
            let done = args.data.open()?.withdraw(args.id, &by, &args.reason)?;
            out = report::withdrawn(&done);
        }
    }
    Ok(out)
}

fn read_secret(args: &ChannelAddArgs) -> anyhow::Result<String> {
    let secret = if let Some(var) = &args.secret_env {
        std::env::var(var).with_context(|| format!("reading the secret from ${var}"))?
    } else if let Some(path) = &args.secret_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the secret from {}", path.display()))?;
        text.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        args.secret.clone().unwrap_or_default()
    };
    if secret.is_empty() {
        bail!("the secret is empty");
    }
    Ok(secret)
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let store = args.data.open()?;
    if let Some(base) = &args.content_url_base {
        let linked = store.serve_content_from(base)?;
        tracing::info!(base = %base, packages = linked,
            "listing packages with a content_url; their files are linked in content/");
    }
    if let Some(token) = admin_token(args.admin_token_file.as_deref())? {
        store.set_admin_token(token)?;
    }
    if let Some(keep_for) = args.retain {
        compact_every_hour(store.clone(), keep_for);
    }
    let listener = std::net::TcpListener::bind(&args.listen)
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, data = %args.data.data.display(), "serving");
    let addr = listener.local_addr()?;
    actix_rt::System::new().block_on(async move {
        let server = server::serve(store, listener)?;
        let handle = server.handle();
        actix_rt::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping");
            cdx::systemd::stopping();
            handle.stop(true).await;
        });
        cdx::systemd::ready(&format!("serving on {addr}"));
        if let Some(every) = cdx::systemd::watchdog_interval() {
            // Ticks only while the event loop runs: a stuck server stops
            // telling the watchdog, and systemd restarts it.
            actix_rt::spawn(async move {
                loop {
                    cdx::systemd::watchdog();
                    tokio::time::sleep(every).await;
                }
            });
        }
        server.await
    })?;
    Ok(())
}

/// `serve --retain`: compacts at start and then every hour, on a thread of
/// its own (file and database work never runs on the event loop). A
/// failure is logged and tried again at the next hour.
fn compact_every_hour(store: Store, keep_for: std::time::Duration) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
    let spawned = std::thread::Builder::new()
        .name("cdx-compact".into())
        .spawn(move || loop {
            match store.compact(None, keep_for, false) {
                Ok(done) if done.pruned.is_empty() => {}
                Ok(done) => tracing::info!(
                    packages = done.pruned.len(),
                    bytes = done.bytes,
                    "compacted: pruned the files of superseded and withdrawn packages"
                ),
                Err(e) => tracing::error!(error = %e, "compaction failed; trying again in an hour"),
            }
            std::thread::sleep(EVERY);
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the compaction thread; --retain is off");
    }
}

/// The admin token from `file` (its first line) or from CDX_ADMIN_TOKEN.
fn admin_token(file: Option<&std::path::Path>) -> anyhow::Result<Option<cdx::config::Secret>> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the admin token file {}", path.display()))?
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_owned(),
        None => match std::env::var("CDX_ADMIN_TOKEN") {
            Ok(token) => token.trim().to_owned(),
            Err(_) => return Ok(None),
        },
    };
    if token.len() < 16 {
        anyhow::bail!(
            "the admin token (from {}) must be at least 16 characters",
            file.map_or("CDX_ADMIN_TOKEN".to_owned(), |p| p.display().to_string())
        );
    }
    Ok(Some(cdx::config::Secret::new(token)))
}

/// A publication's progress on stderr: a bar on a terminal (input bytes
/// read, records, package bytes encoded), plain lines every 5 seconds
/// otherwise (a log, a pipe), nothing for a publication shorter than that.
struct PublishShown {
    bar: Option<indicatif::ProgressBar>,
    started: std::time::Instant,
    last_line: std::time::Instant,
}

impl PublishShown {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(5);

    fn new() -> Self {
        use std::io::IsTerminal as _;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {percent:>3}% {bytes}/{total_bytes} read, {msg} ({elapsed})",
                )
                .expect("a valid template"),
            );
            bar
        });
        let now = std::time::Instant::now();
        PublishShown {
            bar,
            started: now,
            last_line: now,
        }
    }

    fn tell(&mut self, p: server::PublishProgress) {
        let encoded = indicatif::HumanBytes(p.encoded);
        match &self.bar {
            Some(bar) => {
                bar.set_length(p.input_total);
                bar.set_position(p.input_read);
                bar.set_message(format!(
                    "{} records, {encoded} before compression",
                    p.records
                ));
            }
            None if self.last_line.elapsed() >= Self::EVERY => {
                self.last_line = std::time::Instant::now();
                eprintln!(
                    "publish: {} records, {} of {} read, {encoded} before compression, {}s",
                    p.records,
                    indicatif::HumanBytes(p.input_read),
                    indicatif::HumanBytes(p.input_total),
                    self.started.elapsed().as_secs()
                );
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
