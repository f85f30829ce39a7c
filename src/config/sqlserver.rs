//! The SQL Server channel database's settings: an ADO.NET connection string,
//! parsed into [`ConnectionString`], and the validated [`SqlServerConfig`].
//!
//! Errors name the keyword and quote the part at fault, but never a
//! password: a password part shows as `Password=<hidden>`, and a part right
//! after an unquoted password (which may be the rest of a password that
//! holds a `;`) is not quoted either.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use super::Secret;

/// The schema of the channel tables when `channel_db.schema` is absent.
pub const DEFAULT_SCHEMA: &str = "dbo";
/// The application name sent at login when the string has none.
pub const DEFAULT_APPLICATION_NAME: &str = "cdx-agent";
pub const DEFAULT_POOL_SIZE: u32 = 4;
pub const MAX_POOL_SIZE: u32 = 64;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// A full package's delete or a 50,000-row merge on a busy store server
/// can take minutes; a timeout rolls the whole package back.
pub const DEFAULT_APPLY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A validated SQL Server channel database configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlServerConfig {
    pub host: String,
    pub port: Option<u16>,
    pub instance: Option<String>,
    pub database: String,
    pub user: String,
    pub password: Secret,
    pub encrypt: Encrypt,
    pub trust_server_certificate: bool,
    pub trust_server_certificate_ca: Option<PathBuf>,
    pub application_name: String,
    pub schema: String,
    pub pool_size: u32,
    pub connect_timeout: Duration,
    /// How long a read or a watermark update may run.
    pub query_timeout: Duration,
    /// How long one statement of an apply may run.
    pub apply_timeout: Duration,
}

/// How the connection is encrypted (`Encrypt=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encrypt {
    /// `true`, `yes`, `mandatory` (the default): all traffic over TLS.
    #[default]
    Required,
    /// `false`, `no`, `optional`: only the login is encrypted.
    Off,
    /// `DANGER_PLAINTEXT`: no TLS at all, for test servers only.
    Plaintext,
}

/// The parts of a connection string, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `localhost` for `.`, `(local)` and `localhost`.
    pub host: String,
    pub port: Option<u16>,
    pub instance: Option<String>,
    pub database: String,
    pub user: String,
    pub password: Option<Secret>,
    pub encrypt: Encrypt,
    pub trust_server_certificate: bool,
    pub trust_server_certificate_ca: Option<PathBuf>,
    pub application_name: Option<String>,
}

/// What is wrong with a connection string. No variant holds a password.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConnectionStringError {
    #[error("part `{part}` has no `=`; write Keyword=Value")]
    NoEquals { part: String },
    /// A part that starts like a password keyword; the rest is not shown.
    #[error("a part starting with `{keyword}` has no `=` (the part is not shown)")]
    SecretNoEquals { keyword: String },
    #[error("a part starts with `=`: its keyword is missing")]
    EmptyKeyword,
    /// A bad part right after an unquoted password: it may be the rest of
    /// the password, so it is not shown.
    #[error(
        "a part after `{after}` {problem} (it is not shown: it may be the rest of a \
         password holding `;`); quote such a password as {after}={{...}}"
    )]
    AfterPassword {
        after: String,
        problem: &'static str,
    },
    #[error(
        "unknown keyword `{keyword}`; supported: Server, Database, User Id, Password, \
         Encrypt, TrustServerCertificate, TrustServerCertificateCA, Application Name"
    )]
    UnknownKeyword { keyword: String },
    #[error("keyword `{keyword}` is given twice (as `{first}` and `{second}`)")]
    Duplicate {
        keyword: &'static str,
        first: String,
        second: String,
    },
    #[error("part `{part}`{}: {reason}", synonym_of(.keyword, .part))]
    InvalidValue {
        keyword: &'static str,
        part: String,
        reason: String,
    },
    #[error(
        "part `{part}`{}: port `{port}` is not a number from 1 to 65535",
        synonym_of(.keyword, .part)
    )]
    InvalidPort {
        keyword: &'static str,
        part: String,
        port: String,
    },
    #[error(
        "part `{part}`: Windows authentication is not supported on this agent; \
         use SQL authentication (`User Id` and `Password`)"
    )]
    IntegratedSecurity { part: String },
    #[error("the connection string has no `{keyword}`")]
    Missing { keyword: &'static str },
    #[error(
        "`TrustServerCertificate=true` and `TrustServerCertificateCA` exclude each other: \
         either trust any certificate or the one CA, not both"
    )]
    TrustConflict,
}

/// ` (Server)` when `part` spells the keyword with a synonym.
fn synonym_of(keyword: &str, part: &str) -> String {
    let written = part.split('=').next().unwrap_or_default();
    if written.eq_ignore_ascii_case(keyword) {
        String::new()
    } else {
        format!(" (`{keyword}`)")
    }
}

/// The keywords understood, each under its canonical name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Server,
    Database,
    User,
    Password,
    Encrypt,
    TrustServerCertificate,
    TrustServerCertificateCa,
    ApplicationName,
    IntegratedSecurity,
    /// Accepted and ignored: common in strings copied from other clients,
    /// and harmless; the agent's own keys govern pooling and timeouts.
    Ignored,
}

impl Key {
    /// `written` lower-cased with inner whitespace runs collapsed.
    fn lookup(normalized: &str) -> Option<Self> {
        Some(match normalized {
            "server" | "data source" | "address" | "addr" | "network address" => Key::Server,
            "database" | "initial catalog" => Key::Database,
            "user id" | "uid" | "user" => Key::User,
            "password" | "pwd" => Key::Password,
            "encrypt" => Key::Encrypt,
            "trustservercertificate" => Key::TrustServerCertificate,
            "trustservercertificateca" => Key::TrustServerCertificateCa,
            "application name" | "app" => Key::ApplicationName,
            "integrated security" | "trusted_connection" => Key::IntegratedSecurity,
            "persist security info"
            | "multipleactiveresultsets"
            | "pooling"
            | "min pool size"
            | "max pool size"
            | "connect timeout"
            | "connection timeout"
            | "timeout"
            | "workstation id"
            | "wsid" => Key::Ignored,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Key::Server => "Server",
            Key::Database => "Database",
            Key::User => "User Id",
            Key::Password => "Password",
            Key::Encrypt => "Encrypt",
            Key::TrustServerCertificate => "TrustServerCertificate",
            Key::TrustServerCertificateCa => "TrustServerCertificateCA",
            Key::ApplicationName => "Application Name",
            Key::IntegratedSecurity => "Integrated Security",
            Key::Ignored => "(ignored)",
        }
    }
}

/// Whether a part without `=` may begin with a password.
fn secret_prefix(part: &str) -> Option<&str> {
    ["password", "pwd"].iter().find_map(|p| {
        part.get(..p.len())
            .filter(|head| head.eq_ignore_ascii_case(p))
    })
}

/// Parses an ADO.NET style connection string (`Key=Value;Key=Value`).
pub fn parse_connection_string(text: &str) -> Result<ConnectionString, ConnectionStringError> {
    let mut seen: Vec<(Key, String)> = Vec::new();
    let mut parsed = Parsed::default();
    // The keyword of the part before, if it was an unquoted password.
    let mut after_password: Option<String> = None;
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if rest.is_empty() {
            break;
        }
        let end = rest.find(['=', ';']).unwrap_or(rest.len());
        let written = rest[..end].trim();
        let bad_part = |problem| ConnectionStringError::AfterPassword {
            after: after_password.clone().unwrap_or_default(),
            problem,
        };
        if !rest[end..].starts_with('=') {
            return Err(if after_password.is_some() {
                bad_part("has no `=`")
            } else if let Some(keyword) = secret_prefix(written) {
                ConnectionStringError::SecretNoEquals {
                    keyword: keyword.to_string(),
                }
            } else {
                ConnectionStringError::NoEquals {
                    part: written.to_string(),
                }
            });
        }
        if written.is_empty() {
            return Err(ConnectionStringError::EmptyKeyword);
        }
        let normalized = written
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase();
        let Some(key) = Key::lookup(&normalized) else {
            return Err(if after_password.is_some() {
                bad_part("has an unknown keyword")
            } else {
                ConnectionStringError::UnknownKeyword {
                    keyword: written.to_string(),
                }
            });
        };
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key && key != Key::Ignored) {
            return Err(ConnectionStringError::Duplicate {
                keyword: key.name(),
                first: first.clone(),
                second: written.to_string(),
            });
        }
        seen.push((key, written.to_string()));
        let shown_part = |value: &str| {
            if key == Key::Password {
                format!("{written}=<hidden>")
            } else {
                format!("{written}={value}")
            }
        };
        let (value, quoted, next) =
            read_value(&rest[end + 1..]).map_err(|reason| ConnectionStringError::InvalidValue {
                keyword: key.name(),
                part: shown_part("..."),
                reason: reason.to_string(),
            })?;
        let invalid = |reason: &str| ConnectionStringError::InvalidValue {
            keyword: key.name(),
            part: shown_part(&value),
            reason: reason.to_string(),
        };
        if value.is_empty() {
            return Err(invalid("the value is empty"));
        }
        parsed.set(key, &value, &shown_part(&value), invalid)?;
        after_password = (key == Key::Password && !quoted).then(|| written.to_string());
        rest = next;
    }
    parsed.finish()
}

/// Reads one value: up to the next `;`, or a quoted value. Returns the
/// value, whether it was quoted, and the text after it.
fn read_value(text: &str) -> Result<(String, bool, &str), &'static str> {
    let text = text.trim_start();
    let (open, close) = match text.chars().next() {
        Some('"') => ('"', '"'),
        Some('\'') => ('\'', '\''),
        Some('{') => ('{', '}'),
        _ => {
            let end = text.find(';').unwrap_or(text.len());
            return Ok((text[..end].trim_end().to_string(), false, &text[end..]));
        }
    };
    let mut value = String::new();
    let mut chars = text[open.len_utf8()..].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != close {
            value.push(c);
            continue;
        }
        if chars.peek().is_some_and(|&(_, next)| next == close) {
            chars.next();
            value.push(close);
            continue;
        }
        let after = text[open.len_utf8() + i + close.len_utf8()..].trim_start();
        if !(after.is_empty() || after.starts_with(';')) {
            return Err("text follows the closing quote; end the part with `;`");
        }
        return Ok((value, true, after));
    }
    Err(match close {
        '"' => "the closing `\"` is missing",
        '\'' => "the closing `'` is missing",
        _ => "the closing `}` is missing",
    })
}

/// The values seen so far.
#[derive(Default)]
struct Parsed {
    server: Option<(String, Option<u16>, Option<String>)>,
    database: Option<String>,
    user: Option<String>,
    password: Option<Secret>,
    encrypt: Encrypt,
    trust_server_certificate: bool,
    trust_server_certificate_ca: Option<PathBuf>,
    application_name: Option<String>,
}

impl Parsed {
    fn set(
        &mut self,
        key: Key,
        value: &str,
        part: &str,
        invalid: impl Fn(&str) -> ConnectionStringError,
    ) -> Result<(), ConnectionStringError> {
        let boolean =
            || parse_bool(value).ok_or_else(|| invalid("expected true, false, yes or no"));
        match key {
            Key::Server => self.server = Some(parse_server(value, part, &invalid)?),
            Key::Database => self.database = Some(value.to_string()),
            Key::User => self.user = Some(value.to_string()),
            Key::Password => self.password = Some(Secret::new(value)),
            Key::Encrypt => {
                self.encrypt = match value.to_ascii_lowercase().as_str() {
                    "true" | "yes" | "mandatory" => Encrypt::Required,
                    "false" | "no" | "optional" => Encrypt::Off,
                    "danger_plaintext" => Encrypt::Plaintext,
                    _ => {
                        return Err(invalid(
                            "expected true, yes, mandatory, false, no, optional \
                             or DANGER_PLAINTEXT (no TLS at all, for test servers only)",
                        ))
                    }
                }
            }
            Key::TrustServerCertificate => self.trust_server_certificate = boolean()?,
            Key::TrustServerCertificateCa => {
                self.trust_server_certificate_ca = Some(PathBuf::from(value))
            }
            Key::ApplicationName => self.application_name = Some(value.to_string()),
            Key::IntegratedSecurity => {
                let on = value.eq_ignore_ascii_case("sspi") || boolean()?;
                if on {
                    return Err(ConnectionStringError::IntegratedSecurity {
                        part: part.to_string(),
                    });
                }
            }
            Key::Ignored => {}
        }
        Ok(())
    }

    fn finish(self) -> Result<ConnectionString, ConnectionStringError> {
        let missing = |key: Key| ConnectionStringError::Missing {
            keyword: key.name(),
        };
        let (host, port, instance) = self.server.ok_or_else(|| missing(Key::Server))?;
        let database = self.database.ok_or_else(|| missing(Key::Database))?;
        let user = self.user.ok_or_else(|| missing(Key::User))?;
        if self.trust_server_certificate && self.trust_server_certificate_ca.is_some() {
            return Err(ConnectionStringError::TrustConflict);
        }
        Ok(ConnectionString {
            host,
            port,
            instance,
            database,
            user,
            password: self.password,
            encrypt: self.encrypt,
            trust_server_certificate: self.trust_server_certificate,
            trust_server_certificate_ca: self.trust_server_certificate_ca,
            application_name: self.application_name,
        })
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" => Some(true),
        "false" | "no" => Some(false),
        _ => None,
    }
}

/// `host`, `tcp:host`, `host,port`, `tcp:host,port`, `host\instance`
/// (and `host\instance,port`) into host, port and instance.
fn parse_server(
    value: &str,
    part: &str,
    invalid: &impl Fn(&str) -> ConnectionStringError,
) -> Result<(String, Option<u16>, Option<String>), ConnectionStringError> {
    let mut rest = value;
    if let Some((protocol, after)) = rest.split_once(':') {
        match protocol.trim().to_ascii_lowercase().as_str() {
            "tcp" => rest = after,
            "np" | "lpc" | "admin" => {
                return Err(invalid(
                    "only TCP connections are supported (`tcp:` or no prefix)",
                ))
            }
            // An IPv6 address, or a protocol-less host with a colon: the
            // host check below decides.
            _ => {}
        }
    }
    let (rest, port) = match rest.rsplit_once(',') {
        Some((host, port)) => {
            let port_text = port.trim();
            let port = port_text
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| ConnectionStringError::InvalidPort {
                    keyword: Key::Server.name(),
                    part: part.to_string(),
                    port: port_text.to_string(),
                })?;
            (host, Some(port))
        }
        None => (rest, None),
    };
    let (host, instance) = match rest.split_once('\\') {
        Some((host, instance)) => {
            let instance = instance.trim();
            if instance.is_empty() || instance.contains('\\') {
                return Err(invalid("the instance name after `\\` is empty or invalid"));
            }
            (host, Some(instance.to_string()))
        }
        None => (rest, None),
    };
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(invalid("the host name is empty or contains spaces"));
    }
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err(invalid(
            "a port follows a comma, not a colon: write host,port",
        ));
    }
    let local = ["(local)", "localhost"]
        .iter()
        .any(|l| host.eq_ignore_ascii_case(l));
    let host = if host == "." || local {
        "localhost".to_string()
    } else {
        host.to_string()
    };
    Ok((host, port, instance))
}

#[cfg(test)]
mod tests;
