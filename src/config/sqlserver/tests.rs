use super::*;

const BASE: &str = "Database=pos;User Id=cdx;Password=pw";

fn parse(text: &str) -> ConnectionString {
    parse_connection_string(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn error_of(text: &str) -> String {
    parse_connection_string(text)
        .expect_err("connection string should be rejected")
        .to_string()
}

/// The error's message and debug form, which must never hold `secret`.
fn assert_hidden(text: &str, secret: &str) -> String {
    let error = parse_connection_string(text).expect_err("should be rejected");
    let (shown, debug) = (error.to_string(), format!("{error:?}"));
    assert!(!shown.contains(secret), "{shown}");
    assert!(!debug.contains(secret), "{debug}");
    shown
}

#[test]
fn a_plain_string_is_parsed_with_defaults() {
    let c = parse("Server=db1;Database=pos;User Id=cdx;Password=pw");
    assert_eq!(c.host, "db1");
    assert_eq!((c.port, c.instance.as_deref()), (None, None));
    assert_eq!((c.database.as_str(), c.user.as_str()), ("pos", "cdx"));
    assert_eq!(c.password.as_ref().map(Secret::expose), Some("pw"));
    assert_eq!(c.encrypt, Encrypt::Required);
    assert!(!c.trust_server_certificate);
    assert_eq!(c.trust_server_certificate_ca, None);
    assert_eq!(c.application_name, None);
}

#[test]
fn every_synonym_is_understood() {
    for server in [
        "Server",
        "Data Source",
        "Address",
        "Addr",
        "Network Address",
    ] {
        assert_eq!(parse(&format!("{server}=h;{BASE}")).host, "h", "{server}");
    }
    for database in ["Database", "Initial Catalog"] {
        let c = parse(&format!("Server=h;{database}=d;UID=u"));
        assert_eq!(c.database, "d", "{database}");
    }
    for user in ["User Id", "UID", "User"] {
        assert_eq!(parse(&format!("Server=h;Database=d;{user}=u")).user, "u");
    }
    for password in ["Password", "PWD"] {
        let c = parse(&format!("Server=h;Database=d;UID=u;{password}=p"));
        assert_eq!(c.password.unwrap().expose(), "p", "{password}");
    }
    for app in ["Application Name", "App"] {
        let c = parse(&format!("Server=h;{BASE};{app}=till"));
        assert_eq!(c.application_name.as_deref(), Some("till"), "{app}");
    }
    for integrated in ["Integrated Security", "Trusted_Connection"] {
        parse(&format!("Server=h;{BASE};{integrated}=false"));
    }
}

#[test]
fn keyword_case_whitespace_and_empty_parts_are_ignored() {
    let c = parse(";; SERVER = h ;  initial   CATALOG=d;uid = u ; pwd= p ;;");
    assert_eq!((c.host.as_str(), c.database.as_str()), ("h", "d"));
    assert_eq!(c.user, "u");
    assert_eq!(c.password.unwrap().expose(), "p");
}

#[test]
fn quoted_values_may_hold_separators_and_quotes() {
    let cases = [
        (r#"Password="a;b""c""#, r#"a;b"c"#),
        ("Password='a;b''c'", "a;b'c"),
        ("Password={a;b}}c=d}", "a;b}c=d"),
        ("Password={ spaced } ", " spaced "),
        ("Password='{\"}'", "{\"}"),
    ];
    for (part, expected) in cases {
        let c = parse(&format!("Server=h;Database=d;UID=u;{part};App=x"));
        assert_eq!(c.password.unwrap().expose(), expected, "{part}");
        assert_eq!(c.application_name.as_deref(), Some("x"), "{part}");
    }
    let c = parse(r#"Server=h;Database="my;db";UID={o'neil};Password=p"#);
    assert_eq!((c.database.as_str(), c.user.as_str()), ("my;db", "o'neil"));
}

#[test]
fn server_forms_give_host_port_and_instance() {
    let cases: [(&str, &str, Option<u16>, Option<&str>); 11] = [
        ("db1", "db1", None, None),
        ("tcp:db1", "db1", None, None),
        ("db1,1500", "db1", Some(1500), None),
        ("TCP:db1, 1500", "db1", Some(1500), None),
        (r"db1\SQLEXPRESS", "db1", None, Some("SQLEXPRESS")),
        (r"tcp:db1\POS,1433", "db1", Some(1433), Some("POS")),
        (".", "localhost", None, None),
        (r".\SQLEXPRESS", "localhost", None, Some("SQLEXPRESS")),
        ("(local),65535", "localhost", Some(65535), None),
        ("LocalHost", "localhost", None, None),
        ("[::1],1", "::1", Some(1), None),
    ];
    for (server, host, port, instance) in cases {
        let c = parse(&format!("Server={server};{BASE}"));
        assert_eq!(c.host, host, "{server}");
        assert_eq!(c.port, port, "{server}");
        assert_eq!(c.instance.as_deref(), instance, "{server}");
    }
}

#[test]
fn encrypt_and_trust_values_are_parsed() {
    for (value, expected) in [
        ("true", Encrypt::Required),
        ("YES", Encrypt::Required),
        ("Mandatory", Encrypt::Required),
        ("false", Encrypt::Off),
        ("no", Encrypt::Off),
        ("optional", Encrypt::Off),
        ("DANGER_PLAINTEXT", Encrypt::Plaintext),
    ] {
        let c = parse(&format!("Server=h;{BASE};Encrypt={value}"));
        assert_eq!(c.encrypt, expected, "{value}");
    }
    for (value, expected) in [
        ("True", true),
        ("yes", true),
        ("no", false),
        ("FALSE", false),
    ] {
        let c = parse(&format!("Server=h;{BASE};TrustServerCertificate={value}"));
        assert_eq!(c.trust_server_certificate, expected, "{value}");
    }
    let c = parse(&format!(
        "Server=h;{BASE};TrustServerCertificate=false;TrustServerCertificateCA=/etc/ca.pem"
    ));
    assert_eq!(c.trust_server_certificate_ca, Some("/etc/ca.pem".into()));
}

#[test]
fn bad_values_name_keyword_and_part() {
    let e = error_of(&format!("Server=h;{BASE};Encrypt=maybe"));
    assert!(
        e.contains("`Encrypt=maybe`") && e.contains("DANGER_PLAINTEXT"),
        "{e}"
    );
    let e = error_of(&format!("Server=h;{BASE};TrustServerCertificate=1"));
    assert!(e.contains("`TrustServerCertificate=1`"), "{e}");
    let e = error_of(&format!("Server=h;{BASE};App="));
    assert!(
        e.contains("`App=`") && e.contains("`Application Name`"),
        "{e}"
    );
    let e = error_of(&format!("Server=np:\\\\h\\pipe;{BASE}"));
    assert!(e.contains("Server=np:") && e.contains("TCP"), "{e}");
    let e = error_of(&format!("Server=h\\;{BASE}"));
    assert!(e.contains("instance"), "{e}");
    let e = error_of(&format!("Server=h:1433;{BASE}"));
    assert!(
        e.contains("`Server=h:1433`") && e.contains("host,port"),
        "{e}"
    );
    let e = error_of(&format!("Server=\"h;{BASE}"));
    assert!(e.contains("Server") && e.contains("closing"), "{e}");
    let e = error_of(&format!("Server='h' x;{BASE}"));
    assert!(e.contains("Server") && e.contains("closing quote"), "{e}");
}

#[test]
fn bad_ports_name_server_and_the_port() {
    for port in ["abc", "0", "65536", "-1", ""] {
        let e = error_of(&format!("Server=h,{port};{BASE}"));
        assert!(e.contains("Server"), "{e}");
        assert!(e.contains(&format!("port `{port}`")), "{e}");
    }
    let e = error_of(&format!("Data Source=h,70000;{BASE}"));
    assert!(e.contains("`Data Source=h,70000` (`Server`)"), "{e}");
    assert!(e.contains("`70000`"), "{e}");
}

#[test]
fn unknown_duplicate_and_missing_keywords_are_named() {
    let e = error_of(&format!("Server=h;Colour=blue;{BASE}"));
    assert!(e.contains("`Colour`"), "{e}");
    let e = error_of(&format!("Server=h;{BASE};Data Source=g"));
    assert!(e.contains("`Server`") && e.contains("`Data Source`"), "{e}");
    let e = error_of(&format!("Server=h;{BASE};PWD=again"));
    assert!(e.contains("`Password`") && e.contains("twice"), "{e}");
    assert_eq!(
        parse_connection_string(BASE),
        Err(ConnectionStringError::Missing { keyword: "Server" })
    );
    assert!(error_of("Server=h;UID=u").contains("`Database`"));
    assert!(error_of("Server=h;Database=d;Password=p").contains("`User Id`"));
    assert!(error_of("").contains("`Server`"));
}

#[test]
fn a_part_without_equals_is_quoted() {
    let e = error_of(&format!("Server=h;Encrypt;{BASE}"));
    assert!(e.contains("part `Encrypt` has no `=`"), "{e}");
    let e = error_of(&format!("Server=h;=x;{BASE}"));
    assert!(e.contains("keyword is missing"), "{e}");
}

#[test]
fn windows_authentication_is_refused() {
    for part in [
        "Integrated Security=true",
        "Integrated Security=SSPI",
        "Trusted_Connection=yes",
    ] {
        let e = error_of(&format!("Server=h;{BASE};{part}"));
        assert!(
            e.contains(part) && e.contains("Windows authentication"),
            "{e}"
        );
        assert!(e.contains("SQL authentication"), "{e}");
    }
}

#[test]
fn trusting_any_certificate_and_a_ca_exclude_each_other() {
    let e = error_of(&format!(
        "Server=h;{BASE};TrustServerCertificate=true;TrustServerCertificateCA=ca.pem"
    ));
    assert!(e.contains("TrustServerCertificate=true"), "{e}");
    assert!(e.contains("TrustServerCertificateCA"), "{e}");
}

#[test]
fn passwords_never_show_in_errors_or_debug() {
    let secret = "Hunter2x";
    // A password holding `;` unquoted: the rest is a bad part, not shown.
    let e = assert_hidden(
        &format!("Server=h;Database=d;UID=u;Password=ab;{secret}"),
        secret,
    );
    assert!(e.contains("after `Password`") && e.contains("{...}"), "{e}");
    let e = assert_hidden(
        &format!("Server=h;Database=d;UID=u;PWD=ab;{secret}=x"),
        secret,
    );
    assert!(
        e.contains("after `PWD`") && e.contains("unknown keyword"),
        "{e}"
    );
    // A password keyword without `=`.
    let e = assert_hidden(
        &format!("Server=h;Database=d;UID=u;Password {secret}"),
        secret,
    );
    assert!(e.contains("`Password`"), "{e}");
    // An unterminated quote, a duplicate, an empty value.
    let e = assert_hidden(
        &format!("Server=h;Database=d;UID=u;Password={{{secret}"),
        secret,
    );
    assert!(
        e.contains("`Password=<hidden>`") && e.contains("closing `}`"),
        "{e}"
    );
    assert_hidden(
        &format!("Server=h;Database=d;UID=u;PWD={secret};Password=x"),
        secret,
    );
    assert_hidden(&format!("Password={secret};Database=d;UID=u"), secret);
    let e = error_of("Server=h;Database=d;UID=u;Password=");
    assert!(
        e.contains("`Password=<hidden>`") && e.contains("empty"),
        "{e}"
    );
    // The parsed string's debug form hides it too.
    let c = parse(&format!("Server=h;Database=d;UID=u;Password={secret}"));
    assert!(!format!("{c:?}").contains(secret));
}

#[test]
fn a_bad_part_after_a_quoted_password_is_named() {
    let e = error_of("Server=h;Database=d;UID=u;Password={a;b};Colour=blue");
    assert!(e.contains("unknown keyword `Colour`"), "{e}");
}

#[test]
fn config_debug_hides_the_password() {
    let config = SqlServerConfig {
        host: "h".into(),
        port: None,
        instance: None,
        database: "d".into(),
        user: "u".into(),
        password: Secret::new("Hunter2x"),
        encrypt: Encrypt::default(),
        trust_server_certificate: false,
        trust_server_certificate_ca: None,
        application_name: DEFAULT_APPLICATION_NAME.into(),
        schema: DEFAULT_SCHEMA.into(),
        pool_size: DEFAULT_POOL_SIZE,
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        query_timeout: DEFAULT_QUERY_TIMEOUT,
        apply_timeout: DEFAULT_APPLY_TIMEOUT,
    };
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("Hunter2x") && debug.contains("Secret(***)"),
        "{debug}"
    );
}

/// Keywords common in strings copied from other clients are accepted and
/// ignored: pooling and timeouts are the agent's own keys.
#[test]
fn harmless_keywords_from_other_clients_are_ignored() {
    let parsed = parse_connection_string(
        "Server=pos-sql;Database=pos;User Id=cdx;Password=pw;Persist Security Info=False;\
         MultipleActiveResultSets=True;Pooling=true;Max Pool Size=100;Connect Timeout=30",
    )
    .unwrap();
    assert_eq!(parsed.host, "pos-sql");
    let err = parse_connection_string("Server=h;Colour=x;Database=d;User Id=u;Password=p");
    assert!(err.unwrap_err().to_string().contains("Colour"));
}
