//! The configuration as the agent runs with it, for `cdx-client config
//! check`: every default filled in, every relative path resolved, every
//! secret shown as `***`. The text is itself a valid configuration file,
//! which parses back into the same configuration (the secrets aside).

use std::path::Path;
use std::time::Duration;

use toml::{Table, Value};

use super::{ChannelDbConfig, Config, Encrypt, LogFormat, SqlServerConfig, TransferMode};

/// What a secret is shown as.
pub const REDACTED: &str = "***";

fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

fn path(p: &Path) -> Value {
    text(&p.display().to_string())
}

fn duration(d: Duration) -> Value {
    text(&humantime::format_duration(d).to_string())
}

fn integer(n: impl TryInto<i64>) -> Value {
    Value::Integer(n.try_into().unwrap_or(i64::MAX))
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Table(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

/// An ADO connection string value, quoted as `{...}` when it needs to be.
fn ado(value: &str) -> String {
    if value.contains([';', '=', '{', '}']) || value.trim() != value {
        format!("{{{}}}", value.replace('}', "}}"))
    } else {
        value.to_owned()
    }
}

/// The connection string of `c`, its password redacted.
fn connection_string(c: &SqlServerConfig) -> String {
    let mut server = format!("tcp:{}", c.host);
    if let Some(instance) = &c.instance {
        server.push('\\');
        server.push_str(instance);
    }
    if let Some(port) = c.port {
        server.push_str(&format!(",{port}"));
    }
    let encrypt = match c.encrypt {
        Encrypt::Required => "true",
        Encrypt::Off => "false",
        Encrypt::Plaintext => "DANGER_PLAINTEXT",
    };
    let mut parts = vec![
        format!("Server={}", ado(&server)),
        format!("Database={}", ado(&c.database)),
        format!("User Id={}", ado(&c.user)),
        format!("Password={REDACTED}"),
        format!("Encrypt={encrypt}"),
        format!("TrustServerCertificate={}", c.trust_server_certificate),
    ];
    if let Some(ca) = &c.trust_server_certificate_ca {
        parts.push(format!(
            "TrustServerCertificateCA={}",
            ado(&ca.display().to_string())
        ));
    }
    parts.push(format!("Application Name={}", ado(&c.application_name)));
    parts.join(";")
}

impl Config {
    /// The effective configuration as TOML (see the module documentation).
    pub fn effective_toml(&self) -> String {
        let mut file = Table::new();
        let s = &self.server;
        file.insert(
            "server".into(),
            table([
                ("url", text(&s.url)),
                ("channel_id", text(&s.channel_id)),
                ("secret", text(REDACTED)),
                ("connect_timeout", duration(s.connect_timeout)),
                ("request_timeout", duration(s.request_timeout)),
            ]),
        );
        file.insert(
            "storage".into(),
            table([
                ("working_folder", path(&self.working_folder)),
                ("message_db", path(&self.message_db)),
                ("journal_retention", duration(self.journal_retention)),
            ]),
        );
        let channel_db = match &self.channel_db {
            ChannelDbConfig::Sqlite { path: p } => {
                table([("kind", text("sqlite")), ("path", path(p))])
            }
            ChannelDbConfig::SqlServer(c) => table([
                ("kind", text("sqlserver")),
                ("connection_string", text(&connection_string(c))),
                ("schema", text(&c.schema)),
                ("pool_size", integer(c.pool_size)),
                ("connect_timeout", duration(c.connect_timeout)),
                ("query_timeout", duration(c.query_timeout)),
                ("apply_timeout", duration(c.apply_timeout)),
            ]),
        };
        file.insert("channel_db".into(), channel_db);
        let d = &self.download;
        let mode = match d.mode {
            TransferMode::Reliable => "reliable",
            TransferMode::Streaming => "streaming",
        };
        let mut download = table([
            ("mode", text(mode)),
            ("interval", duration(d.interval)),
            ("long_poll", duration(d.long_poll)),
            ("chunk_bytes", integer(d.chunk_bytes)),
        ]);
        if let (Some(url), Value::Table(download)) = (&d.head_url, &mut download) {
            download.insert("head_url".into(), text(url));
        }
        file.insert("download".into(), download);
        let u = &self.upload;
        let tables = u
            .tables
            .iter()
            .map(|t| {
                table([
                    ("name", text(&t.name)),
                    ("counter", text(&t.counter_column)),
                ])
            })
            .collect();
        file.insert(
            "upload".into(),
            table([
                ("interval", duration(u.interval)),
                ("batch_rows", integer(u.batch_rows)),
                ("tables", Value::Array(tables)),
            ]),
        );
        let r = &self.retry;
        file.insert(
            "retry".into(),
            table([
                ("try_count", integer(r.try_count)),
                ("initial_backoff", duration(r.initial_backoff)),
                ("max_backoff", duration(r.max_backoff)),
            ]),
        );
        let mut status = Table::new();
        status.insert(
            "enabled".into(),
            Value::Boolean(self.status_listen.is_some()),
        );
        if let Some(listen) = self.status_listen {
            status.insert("listen".into(), text(&listen.to_string()));
        }
        status.insert("stall_after".into(), duration(self.stall_after));
        status.insert("control_token_file".into(), path(&self.control.token_file));
        status.insert(
            "allowed_hosts".into(),
            Value::Array(self.control.allowed_hosts.iter().map(|h| text(h)).collect()),
        );
        file.insert("status".into(), Value::Table(status));
        let format = match self.log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        file.insert(
            "log".into(),
            table([("level", text(&self.log_level)), ("format", text(format))]),
        );
        let mut out = toml::to_string(&file).expect("a table of plain values always serialises");
        if self.control.token.is_some() {
            // Not a value: a redacted token would be refused as too short.
            out.push_str("\n# status.control_token is set in the file and not shown\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(
            text,
            Path::new("agent.toml"),
            Path::new("/srv/cdx"),
            &|_| Some("from-env".into()),
        )
        .unwrap()
    }

    /// Every default is written out, paths resolved, and the text parses
    /// back into the same configuration; the secret never shows.
    #[test]
    fn effective_configuration_is_complete_redacted_and_parses_back() {
        let given = "[server]\nurl = \"http://hq:8080\"\nchannel_id = \"store-0001\"\n\
                     secret = \"hunter2-hunter2\"\n[status]\ncontrol_token = \"a-token-of-some-length\"\n";
        let effective = parse(given).effective_toml();
        assert!(!effective.contains("hunter2"), "{effective}");
        assert!(!effective.contains("a-token-of-some-length"), "{effective}");
        assert!(
            effective.contains("# status.control_token is set"),
            "{effective}"
        );
        for key in [
            "journal_retention = \"7days\"",
            "path = \"/srv/cdx/channel.db\"",
            "message_db = \"/srv/cdx/cdx-work/message-db\"",
            "try_count = 3",
            "stall_after = \"5m\"",
            "name = \"retail_transaction_sales_line\"",
            "level = \"info\"",
        ] {
            assert!(effective.contains(key), "missing {key:?} in\n{effective}");
        }
        let values = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(
            values(&parse(&effective).effective_toml()),
            values(&effective)
        );
    }

    /// A SQL Server channel database is written as a connection string
    /// without its password, and parses back.
    #[test]
    fn sql_server_connection_string_is_rebuilt_without_the_password() {
        let given = "[server]\nurl = \"http://hq\"\nchannel_id = \"s\"\nsecret = \"x\"\n\
                     [channel_db]\nkind = \"sqlserver\"\n\
                     connection_string = \"Server=sql01\\\\POS,1433;Database=pos;User Id=cdx;\
                     Password={p;w};TrustServerCertificate=true\"\n";
        let effective = parse(given).effective_toml();
        assert!(!effective.contains("p;w"), "{effective}");
        assert!(
            effective.contains("Server=tcp:sql01\\POS,1433;Database=pos;User Id=cdx;Password=***"),
            "{effective}"
        );
        assert_eq!(parse(&effective).effective_toml(), effective);
    }
}
