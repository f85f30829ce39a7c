use std::path::Path;

use super::*;

const MINIMAL: &str = r#"
[server]
url = "http://127.0.0.1:8080/"
channel_id = "store-0001"
secret = "s3cret"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(
        text,
        Path::new("agent.toml"),
        Path::new("/srv/cdx"),
        &|name| (name == "CDX_SECRET").then(|| "from-env".to_string()),
    )
}

fn error_of(text: &str) -> String {
    parse(text)
        .expect_err("config should be rejected")
        .to_string()
}

/// A file with only the server section gets working defaults for the rest.
#[test]
fn minimal_file_gets_defaults_for_a_first_run() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.server.url, "http://127.0.0.1:8080");
    assert_eq!(c.working_folder, Path::new("/srv/cdx/cdx-work"));
    assert_eq!(c.message_db, Path::new("/srv/cdx/cdx-work/message-db"));
    assert_eq!(
        c.channel_db,
        ChannelDbConfig::Sqlite {
            path: "/srv/cdx/channel.db".into()
        }
    );
    assert_eq!(c.download.mode, TransferMode::Reliable);
    assert_eq!(c.download.interval, Duration::from_secs(30));
    assert_eq!(c.retry.try_count, 3);
    assert_eq!(c.upload.tables.len(), 2);
    assert_eq!(c.status_listen, Some("127.0.0.1:8090".parse().unwrap()));
}

/// Durations are read in humantime form and modes by name.
#[test]
fn durations_and_modes_are_parsed() {
    let c = parse(&format!(
        "{MINIMAL}\n[download]\nmode = \"streaming\"\ninterval = \"5m\"\nlong_poll = \"0s\"\n\
         [retry]\ntry_count = 0\ninitial_backoff = \"250ms\"\nmax_backoff = \"1h\"\n"
    ))
    .unwrap();
    assert_eq!(c.download.mode, TransferMode::Streaming);
    assert_eq!(c.download.interval, Duration::from_secs(300));
    assert!(c.download.long_poll.is_zero());
    assert_eq!(c.retry.try_count, 0);
    assert_eq!(c.retry.initial_backoff, Duration::from_millis(250));
}

/// An unknown key is an error that names the key.
#[test]
fn unknown_key_is_named() {
    let e = error_of(&format!("{MINIMAL}\n[download]\nintervall = \"5m\"\n"));
    assert!(e.contains("intervall"), "{e}");
}

/// A bad duration is an error that points at the key's line.
#[test]
fn bad_duration_is_reported_with_its_key() {
    let e = error_of(&format!("{MINIMAL}\n[upload]\ninterval = \"5 parsecs\"\n"));
    assert!(e.contains("interval"), "{e}");
}

/// Validation errors name the dotted key.
#[test]
fn invalid_values_name_the_key() {
    let zero = error_of(&format!("{MINIMAL}\n[download]\ninterval = \"0s\"\n"));
    assert!(zero.contains("`download.interval`"), "{zero}");
    let url = error_of(&MINIMAL.replace("http://127.0.0.1:8080/", "ftp://hq"));
    assert!(url.contains("`server.url`"), "{url}");
    let table = error_of(&format!(
        "{MINIMAL}\n[[upload.tables]]\nname = \"sales; drop\"\ncounter = \"c\"\n"
    ));
    assert!(table.contains("`upload.tables`"), "{table}");
    let listen = error_of(&format!("{MINIMAL}\n[status]\nlisten = \"everywhere\"\n"));
    assert!(listen.contains("`status.listen`"), "{listen}");
    let head = error_of(&format!(
        "{MINIMAL}\n[download]\nhead_url = \"cdn.example\"\n"
    ));
    assert!(head.contains("`download.head_url`"), "{head}");
}

/// A group head's base URL loses its trailing slash and is shown by
/// `config check`; without one, the agent long-polls headquarters.
#[test]
fn a_head_url_is_kept_and_shown() {
    assert_eq!(parse(MINIMAL).unwrap().download.head_url, None);
    let c = parse(&format!(
        "{MINIMAL}\n[download]\nhead_url = \"https://cdn.example/cdx/\"\n"
    ))
    .unwrap();
    assert_eq!(
        c.download.head_url.as_deref(),
        Some("https://cdn.example/cdx")
    );
    let shown = c.effective_toml();
    assert!(
        shown.contains("head_url = \"https://cdn.example/cdx\""),
        "{shown}"
    );
}

/// The secret may come from an environment variable, and exactly one source is allowed.
#[test]
fn secret_sources_are_exclusive() {
    let env = MINIMAL.replace("secret = \"s3cret\"", "secret_env = \"CDX_SECRET\"");
    assert_eq!(parse(&env).unwrap().server.secret.expose(), "from-env");
    let missing = MINIMAL.replace("secret = \"s3cret\"", "secret_env = \"NOT_SET\"");
    assert!(error_of(&missing).contains("NOT_SET"));
    let both = MINIMAL.replace(
        "secret = \"s3cret\"",
        "secret = \"a\"\nsecret_env = \"CDX_SECRET\"",
    );
    assert!(error_of(&both).contains("exactly one"));
}

/// The secret never appears in debug output.
#[test]
fn secret_is_not_printed() {
    let c = parse(MINIMAL).unwrap();
    assert!(!format!("{c:?}").contains("s3cret"));
}

/// The shipped example configuration parses.
#[test]
fn example_config_parses() {
    let text = include_str!("../../config.example.toml");
    let c = Config::parse(
        text,
        Path::new("config.example.toml"),
        Path::new("."),
        &|_| Some("x".into()),
    );
    c.unwrap();
}

mod sqlserver;

/// A password in the server URL is refused, naming the key, and never echoed.
#[test]
fn user_info_in_the_server_url_is_refused() {
    let text = MINIMAL.replace("http://127.0.0.1:8080/", "http://store:hunter2@hq.example/");
    let error = error_of(&text);
    assert!(error.contains("server.url"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

/// A log level that names no level (it would silence every log line) is
/// refused, naming the key; levels and `target=level` pass.
#[test]
fn a_log_level_must_name_a_level() {
    let error = error_of(&format!("{MINIMAL}\n[log]\nlevel = \"loud\"\n"));
    assert!(
        error.contains("log.level") && error.contains("`loud`"),
        "{error}"
    );
    for level in ["warn", "INFO", "cdx_actors=debug,info", "off"] {
        let c = parse(&format!("{MINIMAL}\n[log]\nlevel = \"{level}\"\n")).unwrap();
        assert_eq!(c.log_level, level);
    }
}

/// `stall_after` defaults to twice the slowest interval (at least 5 min)
/// and must exceed every interval when given.
#[test]
fn stall_after_defaults_above_the_intervals_and_is_checked() {
    assert_eq!(
        parse(MINIMAL).unwrap().stall_after,
        Duration::from_secs(300)
    );
    let slow = format!("{MINIMAL}\n[download]\ninterval = \"15m\"\n");
    assert_eq!(parse(&slow).unwrap().stall_after, Duration::from_secs(1800));
    let error = error_of(&format!("{MINIMAL}\n[status]\nstall_after = \"30s\"\n"));
    assert!(error.contains("status.stall_after"), "{error}");
}

/// The control token file defaults into the working folder; a token given
/// in the file must be long enough.
#[test]
fn control_token_defaults_and_checks() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(
        c.control.token_file,
        Path::new("/srv/cdx/cdx-work/control-token")
    );
    assert!(c.control.token.is_none());
    let error = error_of(&format!("{MINIMAL}\n[status]\ncontrol_token = \"short\"\n"));
    assert!(error.contains("status.control_token"), "{error}");
}
