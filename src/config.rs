//! The agent's configuration: a TOML file, validated into [`Config`].
//!
//! Every key is documented in `config.example.toml`. Unknown keys and bad
//! values are errors naming the key; every key but the server's address and
//! credentials has a default that serves a first run.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::channel_db::UploadTable;
use crate::package::is_identifier;
use crate::retry::RetryPolicy;

mod effective;
pub mod sqlserver;

pub use effective::REDACTED;
pub use sqlserver::{
    parse_connection_string, ConnectionString, ConnectionStringError, Encrypt, SqlServerConfig,
};

const DEFAULT_WORKING_FOLDER: &str = "cdx-work";
/// 15 minutes is the original's interval; we long-poll, so the interval is
/// only the backstop after an error or with long polling off.
const DEFAULT_DOWNLOAD_INTERVAL: Duration = Duration::from_secs(30);
/// Below common proxy idle timeouts (60 s), so a held request is not cut.
const DEFAULT_LONG_POLL: Duration = Duration::from_secs(25);
const DEFAULT_UPLOAD_INTERVAL: Duration = Duration::from_secs(60);
/// A request per chunk costs a few milliseconds, so chunks are large: on
/// loopback 8 MiB chunks ran at 0.5-0.6x of streaming and 64 MiB ones at
/// 0.85x (examples/transfer_speed.rs). A drop loses nothing of a chunk
/// either way: every byte received is kept to resume from.
const DEFAULT_CHUNK_BYTES: u64 = 64 * 1024 * 1024;
const DEFAULT_BATCH_ROWS: usize = 10_000;
/// Microsoft recommends a Try count of 3.
const DEFAULT_TRY_COUNT: u32 = 3;
const DEFAULT_STATUS_LISTEN: &str = "127.0.0.1:8090";
const DEFAULT_JOURNAL_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Five quiet minutes are far beyond a long poll (25 s) and the upload
/// interval (1 min), and well inside what a store notices at the till.
/// Longer intervals raise it to twice the slowest.
const DEFAULT_STALL_AFTER: Duration = Duration::from_secs(5 * 60);
/// Inside the working folder, written at start, readable by the agent's user only.
const DEFAULT_CONTROL_TOKEN_FILE: &str = "control-token";
/// The log levels a `log.level` directive may name.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Compares without an early exit, so the time taken does not tell how many
/// leading bytes matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A secret that never shows in logs, debug output or status documents.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Whether `given` is this secret, compared in constant time.
    pub fn matches(&self, given: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), given.as_bytes())
    }
    /// Whether an `Authorization` header's value is `Bearer <this secret>`
    /// (compared in constant time; surrounding spaces ignored).
    pub fn matches_bearer(&self, authorization: Option<&str>) -> bool {
        let given = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        self.matches(given.trim())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferMode {
    /// Chunks confirmed one by one with HTTP Range, resumed after a drop.
    Reliable,
    /// One HTTP GET streamed to the working folder; a drop restarts it.
    Streaming,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Built once per agent, so a large variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelDbConfig {
    Sqlite { path: PathBuf },
    SqlServer(SqlServerConfig),
}

/// The validated configuration of one agent.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub working_folder: PathBuf,
    pub message_db: PathBuf,
    pub journal_retention: Duration,
    pub channel_db: ChannelDbConfig,
    pub download: DownloadConfig,
    pub upload: UploadConfig,
    pub retry: RetryPolicy,
    pub status_listen: Option<SocketAddr>,
    /// How long a stage may fail, or the agent go without progress, before
    /// `/health` answers 503.
    pub stall_after: Duration,
    pub control: ControlConfig,
    pub log_level: String,
    pub log_format: LogFormat,
}

/// Who may steer the agent through its status endpoint.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// A token set in the configuration; else one is generated at start.
    pub token: Option<Secret>,
    /// Where the agent writes the token (mode 0600) for `cdx-client` and
    /// operators to read.
    pub token_file: PathBuf,
    /// `Host` names the endpoint answers for besides the loopback ones.
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub url: String,
    pub channel_id: String,
    pub secret: Secret,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct DownloadConfig {
    pub mode: TransferMode,
    pub interval: Duration,
    /// How long the server may hold a poll open; zero turns long polling off.
    pub long_poll: Duration,
    pub chunk_bytes: u64,
    /// Where to ask whether the data group's listing moved before each poll
    /// (`GET {head_url}/v1/groups/{group}/head`, no credentials): a CDN or
    /// caching proxy in front of headquarters, or headquarters itself.
    /// With it, polls run every `interval` without long polling, and list
    /// (authenticated) only when the head moved, or at least every
    /// [`crate::head::HEAD_TRUSTED_FOR`].
    pub head_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UploadConfig {
    pub interval: Duration,
    pub batch_rows: usize,
    pub tables: Vec<UploadTable>,
}

impl Config {
    /// Reads and validates the file at `path`. Relative paths in it are
    /// relative to the file's folder; secrets named by `secret_env` come from
    /// the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base, &|name| std::env::var(name).ok())
    }

    /// Parses `text`; `env` looks up environment variables (injectable for tests).
    pub fn parse(
        text: &str,
        path: &Path,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: raw::File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        raw.validate(base, env)
    }
}

mod raw {
    //! The file as written; `validate` turns it into a [`super::Config`].

    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct File {
        server: Server,
        #[serde(default)]
        storage: Storage,
        #[serde(default)]
        channel_db: ChannelDb,
        #[serde(default)]
        download: Download,
        #[serde(default)]
        upload: Upload,
        #[serde(default)]
        retry: Retry,
        #[serde(default)]
        status: Status,
        #[serde(default)]
        log: Log,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Server {
        url: String,
        channel_id: String,
        secret: Option<String>,
        secret_file: Option<PathBuf>,
        secret_env: Option<String>,
        #[serde(default = "d_connect_timeout", with = "humantime_serde")]
        connect_timeout: Duration,
        #[serde(default = "d_request_timeout", with = "humantime_serde")]
        request_timeout: Duration,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Storage {
        working_folder: PathBuf,
        message_db: Option<PathBuf>,
        #[serde(with = "humantime_serde")]
        journal_retention: Duration,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct ChannelDb {
        kind: String,
        /// sqlite only; `None` when not given, so sqlserver can refuse it.
        path: Option<PathBuf>,
        // sqlserver only:
        connection_string: Option<String>,
        password_env: Option<String>,
        password_file: Option<PathBuf>,
        schema: Option<String>,
        pool_size: Option<u32>,
        #[serde(with = "humantime_serde")]
        connect_timeout: Option<Duration>,
        #[serde(with = "humantime_serde")]
        query_timeout: Option<Duration>,
        #[serde(with = "humantime_serde")]
        apply_timeout: Option<Duration>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Download {
        mode: TransferMode,
        #[serde(with = "humantime_serde")]
        interval: Duration,
        #[serde(with = "humantime_serde")]
        long_poll: Duration,
        chunk_bytes: u64,
        head_url: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Upload {
        #[serde(with = "humantime_serde")]
        interval: Duration,
        batch_rows: usize,
        tables: Vec<UploadTableRaw>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct UploadTableRaw {
        name: String,
        counter: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Retry {
        try_count: u32,
        #[serde(with = "humantime_serde")]
        initial_backoff: Duration,
        #[serde(with = "humantime_serde")]
        max_backoff: Duration,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Status {
        enabled: bool,
        listen: String,
        #[serde(with = "humantime_serde")]
        stall_after: Option<Duration>,
        control_token: Option<String>,
        control_token_file: Option<PathBuf>,
        allowed_hosts: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Log {
        level: String,
        format: LogFormat,
    }

    fn d_connect_timeout() -> Duration {
        Duration::from_secs(10)
    }
    fn d_request_timeout() -> Duration {
        Duration::from_secs(30)
    }

    impl Default for Storage {
        fn default() -> Self {
            Self {
                working_folder: DEFAULT_WORKING_FOLDER.into(),
                message_db: None,
                journal_retention: DEFAULT_JOURNAL_RETENTION,
            }
        }
    }
    impl Default for ChannelDb {
        fn default() -> Self {
            Self {
                kind: "sqlite".into(),
                path: None,
                connection_string: None,
                password_env: None,
                password_file: None,
                schema: None,
                pool_size: None,
                connect_timeout: None,
                query_timeout: None,
                apply_timeout: None,
            }
        }
    }
    impl Default for Download {
        fn default() -> Self {
            Self {
                mode: TransferMode::Reliable,
                interval: DEFAULT_DOWNLOAD_INTERVAL,
                long_poll: DEFAULT_LONG_POLL,
                chunk_bytes: DEFAULT_CHUNK_BYTES,
                head_url: None,
            }
        }
    }
    impl Default for Upload {
        fn default() -> Self {
            Self {
                interval: DEFAULT_UPLOAD_INTERVAL,
                batch_rows: DEFAULT_BATCH_ROWS,
                tables: crate::retail::UPLOAD_TABLES
                    .iter()
                    .map(|(name, counter)| UploadTableRaw {
                        name: name.to_string(),
                        counter: counter.to_string(),
                    })
                    .collect(),
            }
        }
    }
    impl Default for Retry {
        fn default() -> Self {
            Self {
                try_count: DEFAULT_TRY_COUNT,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(300),
            }
        }
    }
    impl Default for Status {
        fn default() -> Self {
            Self {
                enabled: true,
                listen: DEFAULT_STATUS_LISTEN.into(),
                stall_after: None,
                control_token: None,
                control_token_file: None,
                allowed_hosts: Vec::new(),
            }
        }
    }
    impl Default for Log {
        fn default() -> Self {
            Self {
                level: "info".into(),
                format: LogFormat::Text,
            }
        }
    }

    impl File {
        pub fn validate(
            self,
            base: &Path,
            env: &dyn Fn(&str) -> Option<String>,
        ) -> Result<Config, ConfigError> {
            let working_folder = base.join(&self.storage.working_folder);
            let message_db = match &self.storage.message_db {
                Some(p) => base.join(p),
                None => working_folder.join("message-db"),
            };
            let download = self.download.validate()?;
            let upload = self.upload.validate()?;
            let slowest = [download.interval, download.long_poll, upload.interval]
                .into_iter()
                .max()
                .unwrap_or_default();
            // Unless given, twice the slowest interval, and at least the default.
            let stall_after = self
                .status
                .stall_after
                .unwrap_or_else(|| DEFAULT_STALL_AFTER.max(slowest * 2));
            if stall_after <= slowest {
                return Err(invalid(
                    "status.stall_after",
                    format!(
                        "must be longer than download.interval, download.long_poll and \
                         upload.interval ({}), or a healthy agent would look stalled",
                        humantime::format_duration(slowest)
                    ),
                ));
            }
            let control = ControlConfig {
                token: self.status.control_token.clone().map(Secret),
                token_file: match &self.status.control_token_file {
                    Some(p) => base.join(p),
                    None => working_folder.join(DEFAULT_CONTROL_TOKEN_FILE),
                },
                allowed_hosts: self.status.allowed_hosts.clone(),
            };
            if control.token.as_ref().is_some_and(|t| t.0.len() < 16) {
                return Err(invalid(
                    "status.control_token",
                    "must be at least 16 characters",
                ));
            }
            Ok(Config {
                server: self.server.validate(base, env)?,
                message_db,
                working_folder,
                journal_retention: self.storage.journal_retention,
                channel_db: self.channel_db.validate(base, env)?,
                download,
                upload,
                retry: self.retry.validate()?,
                stall_after,
                control,
                status_listen: self.status.validate()?,
                log_level: validate_log_level(self.log.level)?,
                log_format: self.log.format,
            })
        }
    }

    /// A tracing filter whose every directive names a level: `info`, or
    /// `target=level`. A bare word would be read as a target and silence
    /// every other log line.
    fn validate_log_level(level: String) -> Result<String, ConfigError> {
        for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let named = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
            if !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(named)) {
                return Err(invalid(
                    "log.level",
                    format!(
                        "`{directive}` names no level; use one of {} or `target=level`",
                        LOG_LEVELS.join(", ")
                    ),
                ));
            }
        }
        Ok(level)
    }

    impl Server {
        fn validate(
            self,
            base: &Path,
            env: &dyn Fn(&str) -> Option<String>,
        ) -> Result<ServerConfig, ConfigError> {
            if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
                return Err(invalid(
                    "server.url",
                    format!("`{}` is not an http:// or https:// URL", self.url),
                ));
            }
            let authority = self.url.split_once("://").map_or("", |(_, rest)| {
                rest.split(['/', '?', '#']).next().unwrap_or("")
            });
            if authority.contains('@') {
                return Err(invalid(
                    "server.url",
                    "must not hold a user name or password (`user:pass@`): the channel's \
                     credentials are `server.channel_id` and one of `secret`, `secret_file` \
                     or `secret_env`",
                ));
            }
            if self.channel_id.trim().is_empty() {
                return Err(invalid("server.channel_id", "must not be empty"));
            }
            let secret = match (self.secret, self.secret_file, self.secret_env) {
                (Some(s), None, None) => s,
                (None, Some(file), None) => secret_from_file("server.secret_file", base, &file)?,
                (None, None, Some(var)) => secret_from_env("server.secret_env", env, &var)?,
                _ => {
                    return Err(invalid(
                        "server.secret",
                        "give exactly one of `secret`, `secret_file` or `secret_env`",
                    ))
                }
            };
            if secret.is_empty() {
                return Err(invalid("server.secret", "the secret is empty"));
            }
            Ok(ServerConfig {
                url: self.url.trim_end_matches('/').to_string(),
                channel_id: self.channel_id,
                secret: Secret(secret),
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
            })
        }
    }

    impl ChannelDb {
        fn validate(
            self,
            base: &Path,
            env: &dyn Fn(&str) -> Option<String>,
        ) -> Result<ChannelDbConfig, ConfigError> {
            match self.kind.as_str() {
                "sqlite" => self.validate_sqlite(base),
                "sqlserver" => self.validate_sqlserver(base, env),
                other => Err(invalid(
                    "channel_db.kind",
                    format!("unknown kind `{other}`; expected `sqlite` or `sqlserver`"),
                )),
            }
        }

        fn validate_sqlite(self, base: &Path) -> Result<ChannelDbConfig, ConfigError> {
            let sqlserver_keys = [
                (
                    "channel_db.connection_string",
                    self.connection_string.is_some(),
                ),
                ("channel_db.password_env", self.password_env.is_some()),
                ("channel_db.password_file", self.password_file.is_some()),
                ("channel_db.schema", self.schema.is_some()),
                ("channel_db.pool_size", self.pool_size.is_some()),
                ("channel_db.connect_timeout", self.connect_timeout.is_some()),
                ("channel_db.query_timeout", self.query_timeout.is_some()),
                ("channel_db.apply_timeout", self.apply_timeout.is_some()),
            ];
            if let Some((key, _)) = sqlserver_keys.iter().find(|(_, given)| *given) {
                return Err(invalid(
                    key,
                    "applies to `kind = \"sqlserver\"` only; this channel database is sqlite",
                ));
            }
            Ok(ChannelDbConfig::Sqlite {
                path: base.join(self.path.unwrap_or_else(|| "channel.db".into())),
            })
        }

        fn validate_sqlserver(
            self,
            base: &Path,
            env: &dyn Fn(&str) -> Option<String>,
        ) -> Result<ChannelDbConfig, ConfigError> {
            const KEY: &str = "channel_db.connection_string";
            if self.path.is_some() {
                return Err(invalid(
                    "channel_db.path",
                    "applies to `kind = \"sqlite\"` only; SQL Server is reached \
                     through `channel_db.connection_string`",
                ));
            }
            let text = self
                .connection_string
                .ok_or_else(|| invalid(KEY, "is required with `kind = \"sqlserver\"`"))?;
            let parsed = parse_connection_string(&text).map_err(|e| invalid(KEY, e.to_string()))?;
            let password = sqlserver_password(
                parsed.password,
                self.password_env,
                self.password_file,
                base,
                env,
            )?;
            let schema = self
                .schema
                .unwrap_or_else(|| sqlserver::DEFAULT_SCHEMA.into());
            if !is_identifier(&schema) {
                return Err(invalid(
                    "channel_db.schema",
                    format!(
                        "`{schema}` is not a schema name (letters, digits and `_`, \
                         not starting with a digit)"
                    ),
                ));
            }
            let pool_size = self.pool_size.unwrap_or(sqlserver::DEFAULT_POOL_SIZE);
            if !(1..=sqlserver::MAX_POOL_SIZE).contains(&pool_size) {
                return Err(invalid(
                    "channel_db.pool_size",
                    format!("must be between 1 and {}", sqlserver::MAX_POOL_SIZE),
                ));
            }
            let connect_timeout = positive(
                "channel_db.connect_timeout",
                self.connect_timeout,
                sqlserver::DEFAULT_CONNECT_TIMEOUT,
            )?;
            let query_timeout = positive(
                "channel_db.query_timeout",
                self.query_timeout,
                sqlserver::DEFAULT_QUERY_TIMEOUT,
            )?;
            let apply_timeout = positive(
                "channel_db.apply_timeout",
                self.apply_timeout,
                sqlserver::DEFAULT_APPLY_TIMEOUT,
            )?;
            Ok(ChannelDbConfig::SqlServer(SqlServerConfig {
                host: parsed.host,
                port: parsed.port,
                instance: parsed.instance,
                database: parsed.database,
                user: parsed.user,
                password,
                encrypt: parsed.encrypt,
                trust_server_certificate: parsed.trust_server_certificate,
                trust_server_certificate_ca: parsed
                    .trust_server_certificate_ca
                    .map(|ca| base.join(ca)),
                application_name: parsed
                    .application_name
                    .unwrap_or_else(|| sqlserver::DEFAULT_APPLICATION_NAME.into()),
                schema,
                pool_size,
                connect_timeout,
                query_timeout,
                apply_timeout,
            }))
        }
    }

    /// `value`, or `default` when absent; zero is refused, naming `key`.
    fn positive(
        key: &'static str,
        value: Option<Duration>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match value.unwrap_or(default) {
            d if d.is_zero() => Err(invalid(key, "must be greater than zero")),
            d => Ok(d),
        }
    }

    /// The secret in the file `file` (relative to `base`), trailing newlines
    /// removed; an unreadable file is an error naming `key`.
    fn secret_from_file(
        key: &'static str,
        base: &Path,
        file: &Path,
    ) -> Result<String, ConfigError> {
        let path = base.join(file);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
        Ok(text.trim_end_matches(['\r', '\n']).to_string())
    }

    /// The secret in the environment variable `var`; unset is an error
    /// naming `key`.
    fn secret_from_env(
        key: &'static str,
        env: &dyn Fn(&str) -> Option<String>,
        var: &str,
    ) -> Result<String, ConfigError> {
        env(var).ok_or_else(|| invalid(key, format!("environment variable `{var}` is not set")))
    }

    /// The SQL Server password from exactly one of `Password=` in the
    /// connection string, `password_env` or `password_file`.
    fn sqlserver_password(
        in_string: Option<Secret>,
        var: Option<String>,
        file: Option<PathBuf>,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Secret, ConfigError> {
        const EXACTLY_ONE: &str = "give the password in exactly one of `Password=` in \
             `channel_db.connection_string`, `channel_db.password_env` or \
             `channel_db.password_file`";
        let (key, password) = match (in_string, var, file) {
            (Some(p), None, None) => return Ok(p),
            (None, Some(var), None) => {
                let key = "channel_db.password_env";
                (key, secret_from_env(key, env, &var)?)
            }
            (None, None, Some(file)) => {
                let key = "channel_db.password_file";
                (key, secret_from_file(key, base, &file)?)
            }
            (None, None, None) => {
                return Err(invalid(
                    "channel_db.connection_string",
                    format!(
                        "has no `Password=` and neither `channel_db.password_env` nor \
                         `channel_db.password_file` is given; {EXACTLY_ONE}"
                    ),
                ))
            }
            (in_string, var, _) => {
                let (key, other) = match (in_string.is_some(), var.is_some()) {
                    (true, true) => ("channel_db.password_env", "`Password=` in the string"),
                    (true, false) => ("channel_db.password_file", "`Password=` in the string"),
                    _ => ("channel_db.password_file", "`channel_db.password_env`"),
                };
                return Err(invalid(
                    key,
                    format!("the password is given by {other} already; {EXACTLY_ONE}"),
                ));
            }
        };
        if password.is_empty() {
            return Err(invalid(key, "the password is empty"));
        }
        Ok(Secret(password))
    }

    impl Download {
        fn validate(self) -> Result<DownloadConfig, ConfigError> {
            if self.interval.is_zero() {
                return Err(invalid("download.interval", "must be greater than zero"));
            }
            if self.long_poll.as_millis() as u64 > crate::protocol::MAX_WAIT_MS {
                return Err(invalid(
                    "download.long_poll",
                    "must be at most 60s (the server caps longer waits)",
                ));
            }
            if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.chunk_bytes) {
                return Err(invalid(
                    "download.chunk_bytes",
                    "must be between 65536 and 1073741824",
                ));
            }
            let head_url = match self.head_url {
                Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                    return Err(invalid(
                        "download.head_url",
                        format!("`{url}` is not an http:// or https:// URL"),
                    ))
                }
                url => url.map(|u| u.trim_end_matches('/').to_owned()),
            };
            Ok(DownloadConfig {
                mode: self.mode,
                interval: self.interval,
                long_poll: self.long_poll,
                chunk_bytes: self.chunk_bytes,
                head_url,
            })
        }
    }

    impl Upload {
        fn validate(self) -> Result<UploadConfig, ConfigError> {
            if self.interval.is_zero() {
                return Err(invalid("upload.interval", "must be greater than zero"));
            }
            if !(1..=100_000).contains(&self.batch_rows) {
                return Err(invalid("upload.batch_rows", "must be between 1 and 100000"));
            }
            let mut tables = Vec::with_capacity(self.tables.len());
            for t in self.tables {
                for name in [&t.name, &t.counter] {
                    if !is_identifier(name) {
                        return Err(invalid(
                            "upload.tables",
                            format!("`{name}` is not a valid table or column name"),
                        ));
                    }
                }
                if tables.iter().any(|u: &UploadTable| u.name == t.name) {
                    return Err(invalid(
                        "upload.tables",
                        format!("table `{}` is listed twice", t.name),
                    ));
                }
                tables.push(UploadTable {
                    name: t.name,
                    counter_column: t.counter,
                });
            }
            Ok(UploadConfig {
                interval: self.interval,
                batch_rows: self.batch_rows,
                tables,
            })
        }
    }

    impl Retry {
        fn validate(self) -> Result<RetryPolicy, ConfigError> {
            if self.initial_backoff.is_zero() {
                return Err(invalid(
                    "retry.initial_backoff",
                    "must be greater than zero",
                ));
            }
            if self.max_backoff < self.initial_backoff {
                return Err(invalid(
                    "retry.max_backoff",
                    "must not be less than retry.initial_backoff",
                ));
            }
            Ok(RetryPolicy {
                try_count: self.try_count,
                initial_backoff: self.initial_backoff,
                max_backoff: self.max_backoff,
            })
        }
    }

    impl Status {
        fn validate(self) -> Result<Option<SocketAddr>, ConfigError> {
            if !self.enabled {
                return Ok(None);
            }
            self.listen.parse().map(Some).map_err(|_| {
                invalid(
                    "status.listen",
                    format!("`{}` is not an address such as 127.0.0.1:8090", self.listen),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests;
