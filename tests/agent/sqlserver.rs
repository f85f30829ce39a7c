//! The agent binary with a SQL Server channel database, against a TDS
//! server in process (`mssql-mock-tds`): the configuration, the connection
//! pool and the login work end to end in a real `cdx-client` process.

use std::process::Command;

use super::mock_tds::Mock;
use super::util::*;

/// An agent configuration for headquarters at `url` and SQL Server at `port`.
fn config(dir: &std::path::Path, url: &str, port: u16) -> std::path::PathBuf {
    let text = format!(
        r#"
[server]
url = "{url}"
channel_id = "{CHANNEL}"
secret = "{SECRET}"

[channel_db]
kind = "sqlserver"
connection_string = "Server=tcp:127.0.0.1,{port};Database=RetailChannel;User Id=cdx_agent;Encrypt=DANGER_PLAINTEXT"
password_env = "CDX_TEST_SQL_PASSWORD"
schema = "ax"
connect_timeout = "2s"

[upload]
tables = []
"#
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn test_connection(config: &std::path::Path) -> (bool, String) {
    let output = Command::new(client_bin())
        .args(["test-connection", "--config"])
        .arg(config)
        .env("CDX_TEST_SQL_PASSWORD", "not-a-real-password")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `test-connection` logs in to SQL Server (creating the bookkeeping
/// tables, reading the applied packages) and to headquarters; with SQL
/// Server gone it fails naming the server, and never prints the password.
#[test]
fn test_connection_reaches_sql_server_and_names_it_when_it_is_gone() {
    let hq = Hq::start();
    let mock = Mock::start();
    let dir = tempfile::tempdir().unwrap();
    let port = mock.addr.port();
    let config = config(dir.path(), &hq.url(), port);

    let (ok, text) = test_connection(&config);
    assert!(ok, "{text}");
    assert!(text.contains("channel database: ok"), "{text}");
    assert!(text.contains(&format!("server {}: ok", hq.url())), "{text}");

    mock.stop();
    let (ok, text) = test_connection(&config);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("cannot connect to SQL Server at 127.0.0.1,{port}")),
        "{text}"
    );
    assert!(!text.contains("not-a-real-password"), "{text}");
}
