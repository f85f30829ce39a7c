//! The SQL Server backend's wire path against `mssql-mock-tds`, a TDS
//! server in process: login, server errors (a deadlock, a duplicate key),
//! timeouts, and reconnecting after a dropped connection or a restarted
//! server. The mock cannot bulk load, so the data path is the contract's
//! (`tests/contract.rs`, with `CDX_TEST_SQLSERVER`).
//!
//! The mock answers a registered statement when the request carries the
//! registered text (upper-case, as sent); the fragments below are parts
//! of the backend's statements that are upper-case already.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdx::channel_db::{ApplyOutcome, ChannelDb, ChannelDbError, PackageSource};
use cdx::channel_db::{SqlServerChannelDb, SqlServerPool};
use cdx::config::{Encrypt, Secret, SqlServerConfig};
use cdx::package::{
    Column, ColumnType, PackageHeader, PackageKind, PackageReader, PackageWriter, TableSchema,
    Value, FORMAT_VERSION,
};
use mssql_mock_tds::{QueryResponse, TerminalError};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[path = "support/mock_tds.rs"]
mod mock_tds;
use mock_tds::{bigint, int_rows, Mock};

/// Part of `last_applied_sequence`'s statement.
const LAST_SEQUENCE: &str = "SELECT CAST(ISNULL(MAX(";
/// Part of `advance_watermark`'s statement.
const ADVANCE: &str = "MERGE [CDX].[";
/// Part of the apply's "is this package applied?" statement; the mock
/// registers this key itself (answering 1), so tests register it anew.
const IS_APPLIED: &str = "SELECT 1";

fn error(number: u32, message: &str) -> QueryResponse {
    QueryResponse::error_only(TerminalError::new(number, 14, message))
}

/// A TCP proxy in front of the mock that counts connections and can cut
/// them all, as a network fault would.
struct Proxy {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    cut: watch::Sender<u64>,
}

impl Proxy {
    fn start(mock: &Mock) -> Proxy {
        let listener = mock
            .runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (cut, cuts) = watch::channel(0);
        let (target, counter) = (mock.addr, accepted.clone());
        mock.runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                // Only cuts after this connection came count for it.
                let mut cuts = cuts.clone();
                cuts.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            accepted,
            cut,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

fn config(addr: SocketAddr) -> SqlServerConfig {
    SqlServerConfig {
        host: addr.ip().to_string(),
        port: Some(addr.port()),
        instance: None,
        database: "pos".into(),
        user: "cdx_agent".into(),
        password: Secret::new("not-a-real-password"),
        encrypt: Encrypt::Plaintext,
        trust_server_certificate: false,
        trust_server_certificate_ca: None,
        application_name: "cdx-wire-test".into(),
        schema: "CDX".into(),
        pool_size: 2,
        connect_timeout: Duration::from_secs(2),
        query_timeout: Duration::from_secs(2),
        apply_timeout: Duration::from_secs(2),
    }
}

fn open(config: SqlServerConfig) -> SqlServerChannelDb {
    SqlServerChannelDb::new(SqlServerPool::new(config).unwrap())
}

#[test]
fn logs_in_reads_and_keeps_the_connection_for_the_next_call() {
    let mock = Mock::start();
    let proxy = Proxy::start(&mock);
    mock.register(LAST_SEQUENCE, bigint(7));
    let mut db = open(config(proxy.addr));
    db.check_connection().unwrap();
    assert_eq!(db.last_applied_sequence("store-0001").unwrap(), 7);
    assert_eq!(db.last_applied_sequence("store-0001").unwrap(), 7);
    assert_eq!(proxy.accepted(), 1, "one login, then the pooled connection");
    mock.stop();
}

#[test]
fn a_deadlock_victim_is_tried_again_on_a_new_connection() {
    let mock = Mock::start();
    let proxy = Proxy::start(&mock);
    mock.register(
        LAST_SEQUENCE,
        error(1205, "Transaction was deadlocked; rerun it"),
    );
    let mut db = open(config(proxy.addr));
    let err = db.last_applied_sequence("store-0001").unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("deadlocked"), "{err}");
    assert_eq!(
        proxy.accepted(),
        4,
        "a try and three more, each on a new connection"
    );

    // Once the deadlock clears, a try in progress succeeds. The error is
    // registered before the thread that clears it starts, so the clearing
    // always comes last.
    mock.register(
        LAST_SEQUENCE,
        error(1205, "Transaction was deadlocked; rerun it"),
    );
    let clears = std::thread::spawn({
        let registry = mock.registry.clone();
        let handle = mock.runtime.handle().clone();
        move || {
            std::thread::sleep(Duration::from_millis(300));
            handle
                .block_on(registry.lock())
                .register(LAST_SEQUENCE, bigint(3));
        }
    });
    assert_eq!(db.last_applied_sequence("store-0001").unwrap(), 3);
    clears.join().unwrap();
    mock.stop();
}

#[test]
fn a_duplicate_key_is_an_error_naming_the_call_and_is_not_retried() {
    let mock = Mock::start();
    let proxy = Proxy::start(&mock);
    mock.register(
        ADVANCE,
        error(
            2627,
            "Violation of PRIMARY KEY constraint 'PK_cdx_upload_watermarks'",
        ),
    );
    let mut db = open(config(proxy.addr));
    let err = db.advance_watermark("sales", 42).unwrap_err();
    assert!(!err.is_transient(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("advance the upload watermark of sales to 42"),
        "{text}"
    );
    assert!(text.contains("Violation of PRIMARY KEY"), "{text}");
    assert_eq!(proxy.accepted(), 1, "no second try");
    mock.stop();
}

#[test]
fn a_timeout_drops_the_connection_and_the_next_call_gets_a_fresh_answer() {
    let mock = Mock::start();
    let proxy = Proxy::start(&mock);
    mock.register(LAST_SEQUENCE, bigint(5).with_delay(Duration::from_secs(3)));
    let mut config = config(proxy.addr);
    config.query_timeout = Duration::from_millis(200);
    let mut db = open(config);
    let err = db.last_applied_sequence("store-0001").unwrap_err();
    assert!(
        matches!(err, ChannelDbError::SqlServerTimeout { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("no answer within 200ms"), "{err}");
    // A connection reused after its timeout would now read the late
    // answer (5) to the old query; a new one reads the new answer.
    mock.register(LAST_SEQUENCE, bigint(6));
    assert_eq!(db.last_applied_sequence("store-0001").unwrap(), 6);
    assert_eq!(
        proxy.accepted(),
        5,
        "four timed-out tries, then one fresh connection"
    );
    mock.stop();
}

#[test]
fn a_dropped_connection_is_replaced_by_the_next_call() {
    let mock = Mock::start();
    let proxy = Proxy::start(&mock);
    mock.register(LAST_SEQUENCE, bigint(9));
    let mut db = open(config(proxy.addr));
    assert_eq!(db.last_applied_sequence("store-0001").unwrap(), 9);
    proxy.cut_all();
    assert_eq!(db.last_applied_sequence("store-0001").unwrap(), 9);
    assert_eq!(proxy.accepted(), 2);
    mock.stop();
}

/// After a restart every pooled connection is dead; the first failure
/// drops them all, so the next try connects anew even with more idle
/// connections than tries.
#[test]
fn the_agent_reconnects_after_the_server_restarts() {
    let mock = Mock::start();
    let addr = mock.addr;
    // Four calls at once leave four connections idle in the pool.
    mock.register(
        LAST_SEQUENCE,
        bigint(1).with_delay(Duration::from_millis(300)),
    );
    let mut config = config(addr);
    config.pool_size = 4;
    let pool = SqlServerPool::new(config).unwrap();
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let mut db = SqlServerChannelDb::new(pool.clone());
            std::thread::spawn(move || db.last_applied_sequence("store-0001").unwrap())
        })
        .collect();
    for call in calls {
        assert_eq!(call.join().unwrap(), 1);
    }
    mock.stop();

    let restarted = Mock::start_at(&addr.to_string());
    restarted.register(LAST_SEQUENCE, bigint(2));
    let mut db = SqlServerChannelDb::new(pool);
    assert_eq!(db.last_applied_sequence("store-0001").unwrap(), 2);
    restarted.stop();
}

#[test]
fn an_unreachable_server_is_a_transient_connect_error_naming_it() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let started = Instant::now();
    let err = open(config(addr)).last_applied_sequence("g").unwrap_err();
    assert!(matches!(err, ChannelDbError::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1,{}", addr.port())),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_login_that_hangs_times_out_naming_the_server() {
    let mock = Mock::start();
    mock.register(
        mssql_mock_tds::LOGIN_DELAY_KEY,
        QueryResponse::select_one().with_delay(Duration::from_secs(5)),
    );
    let mut config = config(mock.addr);
    config.connect_timeout = Duration::from_millis(300);
    let mut db = open(config);
    let err = db.check_connection().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cannot connect to SQL Server at 127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("no answer within 300ms"), "{text}");
    mock.stop();
}

fn package(sequence: u64) -> Vec<u8> {
    let header = PackageHeader {
        format_version: FORMAT_VERSION,
        package_id: uuid::Uuid::new_v4(),
        data_group: "store-0001".into(),
        job: "1040".into(),
        sequence,
        kind: PackageKind::Incremental,
        created_at_ms: 1_700_000_000_000,
        replaces: Vec::new(),
        tables: vec![TableSchema {
            name: "products".into(),
            columns: vec![Column {
                name: "id".into(),
                ty: ColumnType::Integer,
                nullable: false,
            }],
            key: vec!["id".into()],
        }],
    };
    let mut writer = PackageWriter::new(Vec::new(), &header).unwrap();
    writer.table(0).unwrap();
    writer.upsert(&[Value::Integer(1)]).unwrap();
    writer.finish().unwrap().0
}

fn source(bytes: &[u8]) -> PackageSource<'_> {
    PackageReader::open(Box::new(bytes) as Box<dyn std::io::Read + Send>).unwrap()
}

/// The apply reads the bookkeeping before it writes anything: an older
/// sequence is refused, an applied package is skipped. (The mock does not
/// keep transactions, so it cannot show these reads sit inside one.)
#[test]
fn apply_refuses_an_older_sequence_and_skips_an_applied_package() {
    let mock = Mock::start();
    let proxy = Proxy::start(&mock);
    mock.register(LAST_SEQUENCE, bigint(5));
    mock.register(IS_APPLIED, int_rows(&[]));
    let mut db = open(config(proxy.addr));
    let bytes = package(3);
    let err = db.apply_package(source(&bytes)).unwrap_err();
    assert!(
        matches!(
            err,
            ChannelDbError::OutOfOrder {
                sequence: 3,
                last_applied: 5,
                ..
            }
        ),
        "{err:?}"
    );

    mock.register(IS_APPLIED, int_rows(&[1]));
    let bytes = package(6);
    assert_eq!(
        db.apply_package(source(&bytes)).unwrap(),
        ApplyOutcome::AlreadyApplied
    );
    mock.stop();
}
