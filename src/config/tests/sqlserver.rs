//! `[channel_db]` with `kind = "sqlserver"`, and its keys with sqlite.

use super::*;

const STRING: &str = "Server=db1,1433;Database=pos;User Id=cdx";

fn sqlserver(extra: &str) -> String {
    format!("{MINIMAL}\n[channel_db]\nkind = \"sqlserver\"\n{extra}\n")
}

fn with_password(extra: &str) -> String {
    sqlserver(&format!(
        "connection_string = \"{STRING};Password=Hunter2x\"\n{extra}"
    ))
}

fn sqlserver_config(text: &str) -> SqlServerConfig {
    match parse(text).unwrap().channel_db {
        ChannelDbConfig::SqlServer(c) => c,
        other => panic!("expected sqlserver, got {other:?}"),
    }
}

/// A connection string alone gets the defaults of every other key.
#[test]
fn sqlserver_gets_defaults() {
    let c = sqlserver_config(&with_password(""));
    assert_eq!((c.host.as_str(), c.port), ("db1", Some(1433)));
    assert_eq!((c.database.as_str(), c.user.as_str()), ("pos", "cdx"));
    assert_eq!(c.password.expose(), "Hunter2x");
    assert_eq!(c.encrypt, Encrypt::Required);
    assert_eq!(c.application_name, "cdx-agent");
    assert_eq!(c.schema, "dbo");
    assert_eq!(c.pool_size, 4);
    assert_eq!(c.connect_timeout, Duration::from_secs(15));
    assert_eq!(c.query_timeout, Duration::from_secs(60));
}

/// Every key is read; a CA file is relative to the config file's folder.
#[test]
fn sqlserver_keys_are_read() {
    let c = sqlserver_config(&sqlserver(&format!(
        "connection_string = \"{STRING};Encrypt=no;TrustServerCertificateCA=ca.pem;App=till\"\n\
         password_env = \"CDX_SECRET\"\nschema = \"cdx_1\"\npool_size = 64\n\
         connect_timeout = \"2s\"\nquery_timeout = \"5m\"\n"
    )));
    assert_eq!(c.password.expose(), "from-env");
    assert_eq!(c.encrypt, Encrypt::Off);
    assert_eq!(
        c.trust_server_certificate_ca,
        Some("/srv/cdx/ca.pem".into())
    );
    assert_eq!(c.application_name, "till");
    assert_eq!((c.schema.as_str(), c.pool_size), ("cdx_1", 64));
    assert_eq!(c.connect_timeout, Duration::from_secs(2));
    assert_eq!(c.query_timeout, Duration::from_secs(300));
}

/// The password file is read relative to the config file, newline trimmed.
#[test]
fn password_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sql.pw"), "p;w}\r\n").unwrap();
    let text = sqlserver(&format!(
        "connection_string = \"{STRING}\"\npassword_file = \"sql.pw\""
    ));
    let config = Config::parse(&text, Path::new("agent.toml"), dir.path(), &|_| None).unwrap();
    let ChannelDbConfig::SqlServer(c) = config.channel_db else {
        panic!("expected sqlserver");
    };
    assert_eq!(c.password.expose(), "p;w}");
    let missing = error_of(&sqlserver(&format!(
        "connection_string = \"{STRING}\"\npassword_file = \"no-such.pw\""
    )));
    assert!(missing.contains("`channel_db.password_file`"), "{missing}");
}

/// Exactly one of `Password=`, `password_env` and `password_file`.
#[test]
fn password_sources_are_exclusive() {
    let none = error_of(&sqlserver(&format!("connection_string = \"{STRING}\"")));
    for key in [
        "Password=",
        "channel_db.password_env",
        "channel_db.password_file",
    ] {
        assert!(none.contains(key), "{none}");
    }
    let string_and_env = error_of(&with_password("password_env = \"CDX_SECRET\""));
    assert!(
        string_and_env.contains("`channel_db.password_env`"),
        "{string_and_env}"
    );
    assert!(string_and_env.contains("exactly one"), "{string_and_env}");
    let string_and_file = error_of(&with_password("password_file = \"pw\""));
    assert!(
        string_and_file.contains("`channel_db.password_file`"),
        "{string_and_file}"
    );
    let env_and_file = error_of(&sqlserver(&format!(
        "connection_string = \"{STRING}\"\npassword_env = \"CDX_SECRET\"\npassword_file = \"pw\""
    )));
    assert!(
        env_and_file.contains("`channel_db.password_env`"),
        "{env_and_file}"
    );
    assert!(
        env_and_file.contains("`channel_db.password_file`"),
        "{env_and_file}"
    );
    let unset = error_of(&sqlserver(&format!(
        "connection_string = \"{STRING}\"\npassword_env = \"NOT_SET\""
    )));
    assert!(unset.contains("`channel_db.password_env`") && unset.contains("NOT_SET"));
}

/// The connection string's errors are reported under its key, without the password.
#[test]
fn connection_string_errors_name_the_key_and_part() {
    let e = error_of(&sqlserver(
        "connection_string = \"Server=db1,abc;Database=pos;UID=u;PWD=Hunter2x\"",
    ));
    assert!(e.contains("`channel_db.connection_string`"), "{e}");
    assert!(e.contains("Server=db1,abc") && e.contains("`abc`"), "{e}");
    let e = error_of(&sqlserver(
        "connection_string = \"Server=db1;Database=pos;UID=u;PWD=Hunter2x;x\"",
    ));
    assert!(e.contains("`channel_db.connection_string`"), "{e}");
    assert!(!e.contains("Hunter2x"), "{e}");
    let missing = error_of(&sqlserver("password_env = \"CDX_SECRET\""));
    assert!(
        missing.contains("`channel_db.connection_string`"),
        "{missing}"
    );
    assert!(missing.contains("required"), "{missing}");
}

/// The password shows nowhere in the configuration's debug output.
#[test]
fn sqlserver_password_is_not_printed() {
    let config = parse(&with_password("")).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("Hunter2x"), "{debug}");
}

/// Schema, pool size and timeouts are checked, naming their keys.
#[test]
fn sqlserver_values_are_validated() {
    for (extra, key) in [
        ("schema = \"dbo; drop\"", "`channel_db.schema`"),
        ("schema = \"1st\"", "`channel_db.schema`"),
        ("pool_size = 0", "`channel_db.pool_size`"),
        ("pool_size = 65", "`channel_db.pool_size`"),
        ("connect_timeout = \"0s\"", "`channel_db.connect_timeout`"),
        ("query_timeout = \"0s\"", "`channel_db.query_timeout`"),
    ] {
        let e = error_of(&with_password(extra));
        assert!(e.contains(key), "{extra}: {e}");
    }
    let e = error_of(&with_password("pool_size = -1"));
    assert!(e.contains("pool_size"), "{e}");
    let e = error_of(&with_password("query_timeout = \"soon\""));
    assert!(e.contains("query_timeout"), "{e}");
}

/// sqlserver refuses `path`; sqlite refuses every sqlserver key.
#[test]
fn keys_of_the_other_kind_are_refused() {
    let e = error_of(&with_password("path = \"channel.db\""));
    assert!(
        e.contains("`channel_db.path`") && e.contains("sqlite"),
        "{e}"
    );
    for (extra, key) in [
        (
            "connection_string = \"Server=h\"",
            "`channel_db.connection_string`",
        ),
        ("password_env = \"CDX_SECRET\"", "`channel_db.password_env`"),
        ("password_file = \"pw\"", "`channel_db.password_file`"),
        ("schema = \"dbo\"", "`channel_db.schema`"),
        ("pool_size = 4", "`channel_db.pool_size`"),
        ("connect_timeout = \"1s\"", "`channel_db.connect_timeout`"),
        ("query_timeout = \"1s\"", "`channel_db.query_timeout`"),
    ] {
        let e = error_of(&format!(
            "{MINIMAL}\n[channel_db]\nkind = \"sqlite\"\npath = \"x.db\"\n{extra}\n"
        ));
        assert!(e.contains(key) && e.contains("sqlserver"), "{extra}: {e}");
    }
    let c = parse(&format!("{MINIMAL}\n[channel_db]\npath = \"x.db\"\n")).unwrap();
    assert_eq!(
        c.channel_db,
        ChannelDbConfig::Sqlite {
            path: "/srv/cdx/x.db".into()
        }
    );
}

/// An unknown kind lists the kinds there are; unknown keys stay errors.
#[test]
fn unknown_kind_and_keys_are_refused() {
    let e = error_of(&format!("{MINIMAL}\n[channel_db]\nkind = \"oracle\"\n"));
    assert!(
        e.contains("`channel_db.kind`") && e.contains("`oracle`"),
        "{e}"
    );
    assert!(e.contains("`sqlite`") && e.contains("`sqlserver`"), "{e}");
    let e = error_of(&with_password("password = \"x\""));
    assert!(e.contains("password"), "{e}");
}

/// The example's commented-out sqlserver block parses once uncommented.
#[test]
fn example_sqlserver_block_parses() {
    let example = include_str!("../../../config.example.toml");
    let start = example
        .find("# kind = \"sqlserver\"")
        .expect("sqlserver block");
    let block: String = example[start..]
        .lines()
        .take_while(|line| line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("# "))
        .map(|line| format!("{line}\n"))
        .collect();
    let text = format!("{MINIMAL}\n[channel_db]\n{block}");
    let env = |name: &str| (name == "CDX_SQL_PASSWORD").then(|| "x".to_string());
    let config = Config::parse(&text, Path::new("a.toml"), Path::new("/"), &env).unwrap();
    let ChannelDbConfig::SqlServer(c) = config.channel_db else {
        panic!("expected sqlserver");
    };
    assert_eq!((c.host.as_str(), c.port), ("sql01", Some(1433)));
    assert_eq!(c.password.expose(), "x");
}
