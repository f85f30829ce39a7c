//! The reference Async Server over real HTTP: a server on 127.0.0.1:0 in the
//! test process, driven with reqwest.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cdx::package::{Column, ColumnType, PackageKind, PackageReader, TableSchema, Value};
use cdx::protocol::{
    self, ErrorBody, GroupHead, HighWater, ListedPackage, PackageInfo, PackageList, Ping,
    SessionList, StatusReport, UploadAck, UploadBatch,
};
use cdx::status::Direction;
use cdx_server::{
    self as server, CsvNull, FleetFilter, PublishFiles, PublishSpec, RunningServer, Store,
};
use reqwest::{header, StatusCode};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use uuid::Uuid;

const CHANNEL: &str = "store-0001";
const SECRET: &str = "s3cret";
const GROUP: &str = "default";

/// A server on a fresh data directory with one channel, and a client for it.
struct TestServer {
    dir: TempDir,
    server: RunningServer,
    client: reqwest::Client,
}

impl TestServer {
    fn start() -> TestServer {
        let dir = TempDir::new().unwrap();
        let store = Store::open(dir.path().join("data")).unwrap();
        store.add_channel(CHANNEL, GROUP, SECRET).unwrap();
        let server = server::spawn_store(store, "127.0.0.1:0").unwrap();
        TestServer {
            dir,
            server,
            client: reqwest::Client::new(),
        }
    }

    fn store(&self) -> &Store {
        self.server.store()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// A request authenticated as the test channel.
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(self.url(path))
            .basic_auth(CHANNEL, Some(SECRET))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .basic_auth(CHANNEL, Some(SECRET))
    }

    /// GETs `path` and decodes the JSON answer.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        let response = self.get(path).send().await.unwrap();
        response.json().await.unwrap()
    }

    /// POSTs `body` as JSON to `path` and decodes the JSON answer.
    async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> T {
        let response = self.post(path).json(body).send().await.unwrap();
        response.json().await.unwrap()
    }

    /// Writes `content` to a file of the test directory.
    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Publishes a small products package through the library API.
    fn publish_products(&self, rows: i64) -> PackageInfo {
        publish_products(self.store(), rows)
    }
}

fn products_schema() -> TableSchema {
    TableSchema {
        name: "products".into(),
        columns: vec![
            Column {
                name: "id".into(),
                ty: ColumnType::Integer,
                nullable: false,
            },
            Column {
                name: "name".into(),
                ty: ColumnType::Text,
                nullable: false,
            },
        ],
        key: vec!["id".into()],
    }
}

fn publish_products(store: &Store, rows: i64) -> PackageInfo {
    let spec = PublishSpec {
        data_group: GROUP.into(),
        job: "1040".into(),
        replaces: Vec::new(),
        kind: PackageKind::Full,
        tables: vec![products_schema()],
    };
    store
        .publish(spec, |writer| {
            writer.table(0)?;
            for id in 0..rows {
                writer.upsert(&[Value::Integer(id), Value::Text(format!("product {id}"))])?;
            }
            Ok(())
        })
        .unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn error_of(response: reqwest::Response) -> String {
    response.json::<ErrorBody>().await.unwrap().error
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Calls without credentials, with a wrong secret or an unknown id get 401 and an error naming the problem.
#[actix_rt::test]
async fn requests_without_valid_credentials_are_rejected_with_401() {
    let t = TestServer::start();

    let response = t.client.get(t.url("/v1/ping")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    assert!(error_of(response).await.contains("missing HTTP Basic"));

    let response = t
        .client
        .get(t.url("/v1/packages"))
        .basic_auth(CHANNEL, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(error_of(response).await.contains("wrong secret"));

    let response = t
        .client
        .get(t.url("/v1/uploads/high-water"))
        .basic_auth("STORE-0001", Some(SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(error_of(response)
        .await
        .contains("unknown channel database id"));

    let ping: Ping = t.get_json("/v1/ping").await;
    assert_eq!(ping.channel_id, CHANNEL);
    assert_eq!(ping.data_group, GROUP);
    let channel = t.store().channel(CHANNEL).unwrap().unwrap();
    assert!(channel.last_connection_ms.is_some());
}

/// Credentials and listings are answered from memory, yet a change by
/// another process (`cdx-server channels add`, `publish`, each a store of
/// its own on the same data directory) is seen: a store registered there
/// is let in, though it was refused (and remembered as unknown) just
/// before, and a package published there is listed, though the empty
/// listing was answered from memory just before.
#[actix_rt::test]
async fn another_processs_channels_and_packages_are_seen_though_polls_are_answered_from_memory() {
    let t = TestServer::start();
    let other_process = Store::open(t.dir.path().join("data")).unwrap();
    let new_store = |t: &TestServer| {
        t.client
            .get(t.url("/v1/packages?after=0"))
            .basic_auth("store-0002", Some("other"))
    };
    for _ in 0..3 {
        let response = new_store(&t).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    for _ in 0..3 {
        let list: PackageList = t.get_json("/v1/packages?after=0").await;
        assert!(list.packages.is_empty());
    }
    other_process
        .add_channel("store-0002", GROUP, "other")
        .unwrap();
    let package = publish_products(&other_process, 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // The channel and the package are two commits: a poll between them is
    // let in and lists nothing yet.
    let mut listed = Vec::new();
    while listed != [package.id] {
        assert!(
            std::time::Instant::now() < deadline,
            "after 10 s, a channel and a package another process added are not seen \
             (last listed: {listed:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let response = new_store(&t).send().await.unwrap();
        if response.status() == StatusCode::OK {
            let list: PackageList = response.json().await.unwrap();
            listed = list.packages.iter().map(|p| p.package.id).collect();
        }
    }
}

/// `GET` the test group's head, checking its caching headers.
async fn group_head(t: &TestServer) -> GroupHead {
    let response = t
        .client
        .get(t.url(&protocol::group_head_path(GROUP)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers().clone();
    assert_eq!(
        headers[header::CACHE_CONTROL],
        format!("public, max-age={}", protocol::HEAD_MAX_AGE_SECS).as_str()
    );
    let head: GroupHead = response.json().await.unwrap();
    assert_eq!(
        headers[header::ETAG].to_str().unwrap(),
        format!("\"{}\"", head.version)
    );
    head
}

/// A group's head is answered to anyone, cacheable for a second, with its
/// version as the ETag: it moves when a package is published (here or by
/// another process) or withdrawn, and a request naming the current version
/// is answered 304.
#[actix_rt::test]
async fn a_groups_head_is_public_cacheable_and_moves_with_its_listing() {
    let t = TestServer::start();
    let other_process = Store::open(t.dir.path().join("data")).unwrap();
    let head_of = |group: &str| t.client.get(t.url(&protocol::group_head_path(group)));
    let empty = group_head(&t).await;
    assert_eq!((empty.data_group.as_str(), empty.newest), (GROUP, 0));
    assert_eq!(
        group_head(&t).await,
        empty,
        "the head moved with nothing published"
    );

    let first = t.publish_products(2);
    let published = group_head(&t).await;
    assert_eq!(published.newest, first.sequence);
    assert_ne!(published.version, empty.version);
    assert_eq!(
        group_head(&t).await,
        published,
        "answered differently from memory"
    );
    let response = head_of(GROUP)
        .header(header::IF_NONE_MATCH, format!("\"{}\"", published.version))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        response.headers()[header::ETAG].to_str().unwrap(),
        format!("\"{}\"", published.version)
    );

    // A withdrawal changes the listing, not the newest sequence.
    t.store().withdraw(first.id, "ops", "wrong prices").unwrap();
    let withdrawn = group_head(&t).await;
    assert_eq!(withdrawn.newest, first.sequence);
    assert_ne!(withdrawn.version, published.version);
    let response = head_of(GROUP)
        .header(header::IF_NONE_MATCH, format!("\"{}\"", published.version))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "an old version was answered 304"
    );

    // Another process's publication is seen though heads are kept in memory.
    let second = publish_products(&other_process, 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = group_head(&t).await;
        if now.newest == second.sequence {
            assert_ne!(now.version, withdrawn.version);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "after 10 s the head still says {now:?}, not #{}",
            second.sequence
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Another group's head is its own; a name no group could have is refused.
    let other: GroupHead = head_of("elsewhere")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other.newest, 0);
    let response = head_of("bad%20name").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(response).await.contains("data group"));
}

/// Packages published from JSON Lines and CSV files are listed in order and download with their sha256.
#[actix_rt::test]
async fn published_jsonl_and_csv_files_are_listed_and_downloaded_with_their_sha256() {
    let t = TestServer::start();
    let products = t.file(
        "products.jsonl",
        "{\"id\": 1, \"name\": \"Coffee\", \"price\": 2.5, \"note\": null}\n\
         \n\
         {\"id\": 2, \"name\": \"Tea\", \"price\": 1.75, \"note\": \"green\"}\n",
    );
    let prices = t.file(
        "prices.csv",
        "store_id,product_id,price\nstore-0001,1,2.45\nstore-0001,2,\n",
    );
    let files = PublishFiles::from_args(
        GROUP,
        "1040",
        PackageKind::Full,
        &args(&[
            &format!("products={}", products.display()),
            &format!("prices={}", prices.display()),
        ]),
        &args(&["products=id", "prices=product_id,store_id"]),
        &args(&["prices=product_id:integer,store_id:text,price:real?"]),
        &[],
    )
    .unwrap();
    let first = server::publish_files(t.store(), &files).unwrap();
    let second = t.publish_products(3);
    assert_eq!((first.sequence, second.sequence), (1, 2));
    assert_eq!(first.rows, 4);

    let list: PackageList = t.get_json("/v1/packages?after=0").await;
    assert_eq!(list.data_group, GROUP);
    assert_eq!(
        list.packages,
        vec![
            ListedPackage::new(first.clone()),
            ListedPackage::new(second.clone())
        ]
    );
    let list: PackageList = t.get_json("/v1/packages?after=1").await;
    assert_eq!(list.packages, vec![ListedPackage::new(second)]);

    let response = t
        .get(&cdx::protocol::package_content_path(first.id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()[header::ETAG]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(etag, format!("\"{}\"", first.sha256));
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len() as u64, first.bytes);
    assert_eq!(sha256_hex(&body), first.sha256);

    let summary = PackageReader::open(&body[..]).unwrap().verify().unwrap();
    assert_eq!(summary.header.sequence, 1);
    assert_eq!(summary.upserts, 4);
    let tables: Vec<_> = summary.header.tables.iter().map(|t| &t.name).collect();
    assert_eq!(tables, ["products", "prices"]);
    let inferred = &summary.header.tables[0].columns;
    let inferred: Vec<_> = inferred
        .iter()
        .map(|c| (c.name.as_str(), c.ty, c.nullable))
        .collect();
    assert_eq!(
        inferred,
        [
            ("id", ColumnType::Integer, false),
            ("name", ColumnType::Text, false),
            ("price", ColumnType::Real, false),
            ("note", ColumnType::Text, true),
        ]
    );

    let missing = t
        .get(&cdx::protocol::package_content_path(Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert!(error_of(missing).await.contains("no package"));
}

/// A Range request gets 206 with exactly those bytes; HEAD gets the length without a body.
#[actix_rt::test]
async fn a_range_request_returns_206_with_the_requested_bytes() {
    let t = TestServer::start();
    let package = t.publish_products(500);
    let path = cdx::protocol::package_content_path(package.id);
    let whole = std::fs::read(t.store().package_path(package.id)).unwrap();
    let etag = format!("\"{}\"", package.sha256);

    let response = t
        .get(&path)
        .header(header::RANGE, "bytes=100-")
        .header(header::IF_RANGE, &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.headers()[header::CONTENT_RANGE],
        format!("bytes 100-{}/{}", whole.len() - 1, whole.len()).as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), whole[100..]);

    let response = t
        .get(&path)
        .header(header::RANGE, "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.bytes().await.unwrap(), whole[10..20]);

    // A range covering the whole file is a range too: 206, with its
    // Content-Range.
    for range in [
        "bytes=0-".to_string(),
        format!("bytes=0-{}", whole.len() + 10),
    ] {
        let response = t
            .get(&path)
            .header(header::RANGE, &range)
            .header(header::IF_RANGE, &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            response.headers()[header::CONTENT_RANGE],
            format!("bytes 0-{}/{}", whole.len() - 1, whole.len()).as_str()
        );
        assert_eq!(response.bytes().await.unwrap(), whole, "{range}");
    }

    let response = t
        .get(&path)
        .header(header::RANGE, format!("bytes={}-", whole.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert!(error_of(response).await.contains("range not satisfiable"));

    let response = t
        .client
        .head(t.url(&path))
        .basic_auth(CHANNEL, Some(SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_LENGTH],
        whole.len().to_string().as_str()
    );
    assert!(response.bytes().await.unwrap().is_empty());
}

/// If-Range with an ETag other than the package's makes the server ignore Range and send the whole file with 200.
#[actix_rt::test]
async fn if_range_with_a_wrong_etag_returns_the_whole_file() {
    let t = TestServer::start();
    let package = t.publish_products(500);
    let whole = std::fs::read(t.store().package_path(package.id)).unwrap();

    let response = t
        .get(&cdx::protocol::package_content_path(package.id))
        .header(header::RANGE, "bytes=100-")
        .header(header::IF_RANGE, "\"0000000000000000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!response.headers().contains_key(header::CONTENT_RANGE));
    assert_eq!(
        response.headers()[header::ETAG],
        format!("\"{}\"", package.sha256).as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), whole);
}

/// A long poll returns the package published in this process during its wait, well before the wait ends.
#[actix_rt::test]
async fn a_long_poll_returns_the_package_published_during_the_wait() {
    let t = TestServer::start();
    let started = Instant::now();
    let poll = t.get("/v1/packages?after=0&wait_ms=30000").send();
    let store = t.store().clone();
    let publisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        publish_products(&store, 3)
    });
    let list: PackageList = poll.await.unwrap().json().await.unwrap();
    let published = publisher.join().unwrap();
    assert_eq!(list.packages, vec![ListedPackage::new(published)]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the long poll was not woken by the publication: {:?}",
        started.elapsed()
    );
}

/// A long poll also sees a package published by another process (another
/// Store on the same directory), woken by the server's publication watcher:
/// before its own safety re-check (5 s) would have found it.
#[actix_rt::test]
async fn a_long_poll_sees_a_package_published_by_another_process() {
    let t = TestServer::start();
    let started = Instant::now();
    let poll = t.get("/v1/packages?after=0&wait_ms=30000").send();
    let data_dir = t.store().data_dir().to_owned();
    let publisher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        publish_products(&Store::open(data_dir).unwrap(), 3)
    });
    let list: PackageList = poll.await.unwrap().json().await.unwrap();
    let published = publisher.join().unwrap();
    assert_eq!(list.packages, vec![ListedPackage::new(published)]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the long poll was not woken by the publication: {:?}",
        started.elapsed()
    );

    let empty: PackageList = t.get_json("/v1/packages?after=1&wait_ms=200").await;
    assert!(empty.packages.is_empty());
}

fn batch(first: i64, last: i64) -> UploadBatch {
    UploadBatch {
        upload_id: Uuid::new_v4(),
        table: "RETAILTRANSACTIONTABLE".into(),
        counter_column: "REPLICATIONCOUNTERFROMORIGIN".into(),
        columns: vec![
            "TRANSACTIONID".into(),
            "REPLICATIONCOUNTERFROMORIGIN".into(),
        ],
        column_types: vec![Some("text(20)".into()), Some("integer".into())],
        rows: (first..=last)
            .map(|n| vec![serde_json::json!(format!("T-{n}")), serde_json::json!(n)])
            .collect(),
        first_counter: first,
        last_counter: last,
    }
}

/// The same batch sent twice is stored once: the second ack counts every row as a duplicate and the high water stays.
#[actix_rt::test]
async fn uploads_are_idempotent_per_channel_table_and_counter() {
    let t = TestServer::start();
    let upload = batch(1, 5);

    let first: UploadAck = t.post_json("/v1/uploads", &upload).await;
    assert_eq!(
        (first.stored, first.duplicates, first.high_water),
        (5, 0, 5)
    );
    let again: UploadAck = t.post_json("/v1/uploads", &upload).await;
    assert_eq!(
        (again.stored, again.duplicates, again.high_water),
        (0, 5, 5)
    );

    // An overlapping batch with another upload id stores only the new counters.
    let overlap: UploadAck = t.post_json("/v1/uploads", &batch(4, 7)).await;
    assert_eq!(
        (overlap.stored, overlap.duplicates, overlap.high_water),
        (2, 2, 7)
    );

    let table = "RETAILTRANSACTIONTABLE";
    assert_eq!(t.store().high_water(CHANNEL, table).unwrap(), Some(7));
    assert_eq!(t.store().uploaded_row_count(CHANNEL, table).unwrap(), 7);
    let high_water: HighWater = t.get_json("/v1/uploads/high-water").await;
    assert_eq!(high_water.tables.get(table), Some(&7));

    let sessions: SessionList = t.get_json("/v1/sessions").await;
    let applied = sessions
        .upload
        .iter()
        .find(|s| s.subject_id == upload.upload_id)
        .unwrap();
    assert_eq!(
        (applied.status.as_str(), applied.status_code),
        ("Applied", 3)
    );
}

/// A batch compressed with zstd (as the ping advertises) is stored like a
/// plain one; one that decodes past the 32 MiB limit is refused with 413.
#[actix_rt::test]
async fn zstd_uploads_are_decoded_and_bounded() {
    let t = TestServer::start();
    let ping: cdx::protocol::Ping = t.get_json("/v1/ping").await;
    assert_eq!(ping.upload_encodings, ["zstd"]);
    let upload = batch(1, 50);
    let plain = serde_json::to_vec(&upload).unwrap();
    let packed = zstd::bulk::compress(&plain, 3).unwrap();
    assert!(
        packed.len() < plain.len(),
        "{} of {}",
        packed.len(),
        plain.len()
    );
    let response = t
        .post("/v1/uploads")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_ENCODING, "zstd")
        .body(packed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ack: UploadAck = response.json().await.unwrap();
    assert_eq!((ack.stored, ack.high_water), (50, 50));

    // 40 MiB of one row's text, a few KiB on the wire.
    let mut bomb = batch(51, 51);
    bomb.rows[0][0] = serde_json::json!("x".repeat(40 << 20));
    let packed = zstd::bulk::compress(&serde_json::to_vec(&bomb).unwrap(), 3).unwrap();
    assert!(packed.len() < 1 << 20);
    let response = t
        .post("/v1/uploads")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_ENCODING, "zstd")
        .body(packed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Another encoding is refused by name.
    let response = t
        .post("/v1/uploads")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_ENCODING, "gzip")
        .body(plain)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(response).await.contains("gzip"));
    assert_eq!(
        t.store()
            .uploaded_row_count(CHANNEL, "RETAILTRANSACTIONTABLE")
            .unwrap(),
        50
    );
}

/// A batch whose counter column is missing, whose rows are short or whose counters leave the range gets 400 naming the problem.
#[actix_rt::test]
async fn a_malformed_upload_is_rejected_with_400_naming_the_problem() {
    let t = TestServer::start();
    let cases: Vec<(UploadBatch, &str)> = vec![
        (
            UploadBatch {
                counter_column: "COUNTER".into(),
                ..batch(1, 2)
            },
            "counter column `COUNTER` is not among the columns",
        ),
        (
            UploadBatch {
                rows: vec![vec![serde_json::json!("T-1")]],
                ..batch(1, 1)
            },
            "row 0 has 1 values, expected 2",
        ),
        (
            UploadBatch {
                last_counter: 2,
                ..batch(1, 3)
            },
            "counter 3 is outside first_counter..=last_counter (1..=2)",
        ),
    ];
    for (upload, expected) in cases {
        let response = t.post("/v1/uploads").json(&upload).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let error = error_of(response).await;
        assert!(
            error.contains(expected),
            "{error:?} should contain {expected:?}"
        );
    }
    let response = t
        .post("/v1/uploads")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(response).await.contains("bad upload batch"));
    assert_eq!(t.store().upload_tables(None).unwrap(), vec![]);
}

/// A record that does not fit its column fails the publish naming file, line and column, and leaves no package or temporary file.
#[actix_rt::test]
async fn a_bad_record_fails_the_publish_naming_file_line_and_column() {
    let t = TestServer::start();
    let products = t.file(
        "products.jsonl",
        "{\"id\": 1, \"price\": 2.5}\n{\"id\": 2, \"price\": 3}\n{\"id\": 3, \"price\": \"abc\"}\n",
    );
    let files = PublishFiles::from_args(
        GROUP,
        "1040",
        PackageKind::Full,
        &args(&[&format!("products={}", products.display())]),
        &args(&["products=id"]),
        &[],
        &[],
    )
    .unwrap();
    let error = server::publish_files(t.store(), &files)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("products.jsonl:3: column `price`: expected real"),
        "{error}"
    );

    let prices = t.file("prices.csv", "id,price\n1,2.5\n2,cheap\n");
    let files = PublishFiles::from_args(
        GROUP,
        "1040",
        PackageKind::Full,
        &args(&[&format!("prices={}", prices.display())]),
        &args(&["prices=id"]),
        &args(&["prices=id:integer,price:real"]),
        &[],
    )
    .unwrap();
    let error = server::publish_files(t.store(), &files)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("prices.csv:3: column `price`: expected real"),
        "{error}"
    );

    assert!(t.store().packages(None).unwrap().is_empty());
    let packages_dir = t.store().data_dir().join(server::PACKAGES_DIR);
    assert_eq!(files_in(&packages_dir), Vec::<String>::new());
    let list: PackageList = t.get_json("/v1/packages").await;
    assert!(list.packages.is_empty());
}

/// Two threads publishing at once, each through its own Store, get distinct sequences 1..=N in commit order.
#[test]
fn concurrent_publishes_get_distinct_increasing_sequences() {
    let dir = TempDir::new().unwrap();
    Store::open(dir.path()).unwrap();
    let publishers: Vec<_> = (0..2)
        .map(|_| {
            let dir = dir.path().to_owned();
            std::thread::spawn(move || {
                let store = Store::open(dir).unwrap();
                (0..5)
                    .map(|_| publish_products(&store, 200))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut published: Vec<PackageInfo> = publishers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    for per_thread in published.chunks(5) {
        assert!(per_thread.windows(2).all(|w| w[0].sequence < w[1].sequence));
    }
    published.sort_by_key(|p| p.sequence);
    let sequences: Vec<u64> = published.iter().map(|p| p.sequence).collect();
    assert_eq!(sequences, (1..=10).collect::<Vec<_>>());

    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.packages(Some(GROUP)).unwrap(), published);
    for package in &published {
        let file = std::fs::File::open(store.package_path(package.id)).unwrap();
        let header = PackageReader::open(file).unwrap().header().clone();
        assert_eq!(header.sequence, package.sequence);
    }
}

/// Listing creates Available download sessions; status reports move them and are kept; bad status names get 400.
#[actix_rt::test]
async fn status_reports_move_sessions_and_listing_creates_available_ones() {
    let t = TestServer::start();
    let package = t.publish_products(2);
    let _: PackageList = t.get_json("/v1/packages").await;
    let sessions: SessionList = t.get_json("/v1/sessions").await;
    assert_eq!(sessions.download.len(), 1);
    assert_eq!(sessions.download[0].subject_id, package.id);
    assert_eq!(sessions.download[0].status, "Available");
    assert_eq!(sessions.download[0].status_code, 1);

    let report = StatusReport {
        session_id: Uuid::new_v4(),
        direction: Direction::Download,
        subject_id: package.id,
        job: "1040".into(),
        status: "DownloadFailed".into(),
        message: Some("connection reset".into()),
        bytes: 10,
        rows: 0,
        attempt: 2,
        at_ms: cdx::protocol::now_ms(),
    };
    let response = t.post("/v1/status").json(&report).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let sessions: SessionList = t.get_json("/v1/sessions").await;
    let session = &sessions.download[0];
    assert_eq!(
        (session.status.as_str(), session.status_code),
        ("DownloadFailed", 7)
    );
    assert_eq!(session.session_id, Some(report.session_id));
    assert_eq!(session.message.as_deref(), Some("connection reset"));
    assert_eq!((session.attempts, session.sequence), (2, Some(1)));

    let bad = StatusReport {
        status: "Uploaded".into(),
        ..report
    };
    let response = t.post("/v1/status").json(&bad).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(response)
        .await
        .contains("unknown download status `Uploaded`"));
}

/// A channel may report only on packages of its own data group: a report
/// on another group's package, or on no package at all, is refused and
/// files nothing under the caller.
#[actix_rt::test]
async fn status_reports_on_other_groups_packages_are_refused() {
    let t = TestServer::start();
    let spec = PublishSpec {
        data_group: "other".into(),
        replaces: Vec::new(),
        job: "1040".into(),
        kind: PackageKind::Full,
        tables: vec![products_schema()],
    };
    let foreign = t
        .store()
        .publish(spec, |w| {
            w.table(0)?;
            w.upsert(&[Value::Integer(1), Value::Text("x".into())])?;
            Ok(())
        })
        .unwrap();
    for subject_id in [foreign.id, Uuid::new_v4()] {
        let report = StatusReport {
            session_id: Uuid::new_v4(),
            direction: Direction::Download,
            subject_id,
            job: "1040".into(),
            status: "Applied".into(),
            message: None,
            bytes: 0,
            rows: 0,
            attempt: 1,
            at_ms: cdx::protocol::now_ms(),
        };
        let response = t.post("/v1/status").json(&report).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(error_of(response)
            .await
            .contains("not a package of data group `default`"));
    }
    let sessions: SessionList = t.get_json("/v1/sessions").await;
    assert!(sessions.download.is_empty(), "{:?}", sessions.download);
}

/// A batch of reports is recorded in order in one request; a report
/// refused for good (another group's package, an unknown status) is
/// answered by its index and leaves no trace, and the others are recorded.
/// Too many reports in one batch is 400 and records nothing.
#[actix_rt::test]
async fn a_batch_of_status_reports_records_each_and_names_the_refused() {
    let t = TestServer::start();
    let package = t.publish_products(2);
    let upload_id = Uuid::new_v4();
    let report = |subject_id, direction, status: &str, at_ms| StatusReport {
        session_id: Uuid::new_v4(),
        direction,
        subject_id,
        job: "1040".into(),
        status: status.into(),
        message: Some(format!("{status} at {at_ms}")),
        bytes: 0,
        rows: 0,
        attempt: 1,
        at_ms,
    };
    let now = cdx::protocol::now_ms();
    let batch = vec![
        report(package.id, Direction::Download, "Requested", now),
        report(Uuid::new_v4(), Direction::Download, "Applied", now + 1),
        report(package.id, Direction::Download, "Uploaded", now + 2),
        report(upload_id, Direction::Upload, "Available", now + 3),
        report(package.id, Direction::Download, "Downloaded", now + 4),
    ];
    // The same session throughout, as an agent reports one session.
    let session_id = batch[0].session_id;
    let batch: Vec<StatusReport> = batch
        .into_iter()
        .map(|r| StatusReport { session_id, ..r })
        .collect();
    let post_batch = |reports: Vec<StatusReport>| t.post("/v1/status/batch").json(&reports).send();
    let response = post_batch(batch).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ack: cdx::protocol::StatusBatchAck = response.json().await.unwrap();
    assert_eq!(ack.recorded, 3);
    let refused: Vec<usize> = ack.refused.iter().map(|r| r.index).collect();
    assert_eq!(refused, [1, 2]);
    assert!(ack.refused[0]
        .error
        .contains("not a package of data group `default`"));
    assert!(ack.refused[1]
        .error
        .contains("unknown download status `Uploaded`"));
    let sessions: SessionList = t.get_json("/v1/sessions").await;
    assert_eq!(sessions.download.len(), 1, "{:?}", sessions.download);
    assert_eq!(sessions.download[0].status, "Downloaded");
    assert_eq!(sessions.upload.len(), 1);
    assert_eq!(
        (
            sessions.upload[0].subject_id,
            sessions.upload[0].status.as_str()
        ),
        (upload_id, "Available")
    );

    let too_many = vec![report(package.id, Direction::Download, "Requested", now); 501];
    let response = post_batch(too_many).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(response).await.contains("at most 500"));
}

/// Table and column names in uploads are identifiers like any other: a
/// hostile or overlong name gets 400 and stores nothing.
#[actix_rt::test]
async fn upload_names_are_bounded_identifiers() {
    let t = TestServer::start();
    let long = "t".repeat(300);
    for (table, column) in [
        ("sales; DROP TABLE x", "TRANSACTIONID"),
        (long.as_str(), "TRANSACTIONID"),
        ("RETAILTRANSACTIONTABLE", "a\nb"),
    ] {
        let mut upload = batch(1, 2);
        upload.table = table.into();
        upload.columns[0] = column.into();
        let response = t.post("/v1/uploads").json(&upload).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::BAD_REQUEST,
            "{table:?} {column:?}"
        );
        assert!(error_of(response).await.contains("is not an identifier"));
    }
    assert_eq!(t.store().upload_tables(None).unwrap(), vec![]);
}

/// JSON numbers are read from their literal text: reals published from
/// JSON Lines arrive bit for bit, and decimals never pass through a float.
#[test]
fn json_numbers_are_published_exactly() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path().join("data")).unwrap();
    let reals = [
        "97.86464729942979",
        "0.1",
        "5e-324",
        "1.7976931348623157e308",
        "-2.2250738585072014e-308",
        "123456789.12345678",
    ];
    let decimals = ["123456789012345.67", "-0.01", "9999999999999999.99"];
    let mut lines = String::new();
    for (i, real) in reals.iter().enumerate() {
        let amount = decimals[i % decimals.len()];
        lines.push_str(&format!(
            "{{\"id\": {i}, \"x\": {real}, \"amount\": {amount}}}\n"
        ));
    }
    let path = dir.path().join("numbers.jsonl");
    std::fs::write(&path, lines).unwrap();
    let files = PublishFiles::from_args(
        GROUP,
        "1040",
        PackageKind::Full,
        &[format!("numbers={}", path.display())],
        &["numbers=id".to_string()],
        &["numbers=id:integer,x:real,amount:decimal(18,2)".to_string()],
        &[],
    )
    .unwrap();
    let info = server::publish_files(&store, &files).unwrap();
    let file = std::fs::File::open(store.package_path(info.id)).unwrap();
    let mut reader = PackageReader::open(file).unwrap();
    let mut rows = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        if let cdx::package::Frame::Upsert(row) = frame {
            rows.push(row);
        }
    }
    assert_eq!(rows.len(), reals.len());
    for (i, row) in rows.iter().enumerate() {
        let expected: f64 = reals[i].parse().unwrap();
        match &row[1] {
            Value::Real(x) => assert_eq!(
                x.to_bits(),
                expected.to_bits(),
                "{} arrived as {x:?}",
                reals[i]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            row[2],
            Value::Text(decimals[i % decimals.len()].into()),
            "decimal of row {i}"
        );
    }
}

/// Publishes one table `t` from a file named `name` holding `content`,
/// and reads the package's rows back.
fn publish_one(
    name: &str,
    content: &str,
    columns: &str,
    kind: PackageKind,
    csv_null: CsvNull,
) -> Result<Vec<Vec<Value>>, cdx_server::ServerError> {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path().join("data")).unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    let mut files = PublishFiles::from_args(
        GROUP,
        "1040",
        kind,
        &[format!("t={}", path.display())],
        &["t=id".to_string()],
        &[format!("t={columns}")],
        &[],
    )
    .unwrap();
    files.csv_null = csv_null;
    let info = server::publish_files(&store, &files)?;
    let file = std::fs::File::open(store.package_path(info.id)).unwrap();
    let mut reader = PackageReader::open(file).unwrap();
    let mut rows = Vec::new();
    while let Some(frame) = reader.next_frame().unwrap() {
        if let cdx::package::Frame::Upsert(row) = frame {
            rows.push(row);
        }
    }
    Ok(rows)
}

/// CSV can say "empty string" and NULL apart once a NULL marker is named;
/// without one, an empty field stays NULL in a nullable column.
#[test]
fn csv_null_marker_keeps_empty_strings() {
    let csv = "id,login,n\n1,,\\N\n2,\\N,7\n3,ann,\n";
    let columns = "id:integer,login:text?,n:text?";
    let text = |s: &str| Value::Text(s.into());
    let rows = publish_one(
        "t.csv",
        csv,
        columns,
        PackageKind::Full,
        CsvNull::from_arg(Some("\\N")),
    )
    .unwrap();
    assert_eq!(
        rows,
        vec![
            vec![Value::Integer(1), text(""), Value::Null],
            vec![Value::Integer(2), Value::Null, text("7")],
            vec![Value::Integer(3), text("ann"), text("")],
        ]
    );
    let rows = publish_one("t.csv", csv, columns, PackageKind::Full, CsvNull::default()).unwrap();
    assert_eq!(rows[0], vec![Value::Integer(1), Value::Null, text("\\N")]);
    // The marker in a NOT NULL column is an error naming line and column.
    let err = publish_one(
        "t.csv",
        "id,login\n1,\\N\n",
        "id:integer,login:text",
        PackageKind::Full,
        CsvNull::from_arg(Some("\\N")),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("t.csv:2:") && err.contains("login"), "{err}");
}

/// Datetimes as databases and spreadsheets export them: `T` or a space,
/// with or without `Z`. Another zone is refused, naming it.
#[test]
fn datetimes_with_a_space_or_z_publish() {
    let csv = "id,at\n1,2024-01-02 10:00:00\n2,2024-01-02T10:00:00Z\n3,2024-01-02 23:59:59.1234567Z\n4,2024-01-02T10:00:00\n";
    let rows = publish_one(
        "t.csv",
        csv,
        "id:integer,at:datetime",
        PackageKind::Full,
        CsvNull::default(),
    )
    .unwrap();
    let at: Vec<&Value> = rows.iter().map(|r| &r[1]).collect();
    let text = |s: &str| Value::Text(s.into());
    assert_eq!(
        at,
        [
            &text("2024-01-02T10:00:00"),
            &text("2024-01-02T10:00:00"),
            &text("2024-01-02T23:59:59.1234567"),
            &text("2024-01-02T10:00:00"),
        ]
    );
    let jsonl = "{\"id\": 1, \"at\": \"2024-01-02 10:00:00+02:00\"}\n";
    let err = publish_one(
        "t.jsonl",
        jsonl,
        "id:integer,at:datetime",
        PackageKind::Full,
        CsvNull::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("+02:00") && err.contains("t.jsonl:1:"),
        "{err}"
    );
}

/// A full package with two rows of one key is refused at headquarters,
/// naming the key and both lines, instead of failing at every store.
#[test]
fn a_full_package_with_a_duplicate_key_is_refused_naming_both_lines() {
    let csv = "id,name\n1,a\n2,b\n3,c\n2,d\n";
    let err = publish_one(
        "t.csv",
        csv,
        "id:integer,name:text",
        PackageKind::Full,
        CsvNull::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("t.csv:5:") && err.contains("line 3") && err.contains("id=2"),
        "{err}"
    );
    // Decimal keys are compared in their canonical form: 1.5 is 1.50.
    let err = publish_one(
        "t.jsonl",
        "{\"id\": 1.5}\n{\"id\": \"1.50\"}\n",
        "id:decimal(6,2)",
        PackageKind::Full,
        CsvNull::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("t.jsonl:2:") && err.contains("line 1"),
        "{err}"
    );
    // -0.0 and 0.0 are one key, as every database sees them.
    let err = publish_one(
        "t.csv",
        "id\n-0.0\n0\n",
        "id:real",
        PackageKind::Full,
        CsvNull::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("t.csv:3:") && err.contains("line 2"), "{err}");
    // An incremental package may upsert one key twice: the last one wins.
    let rows = publish_one(
        "t.csv",
        csv,
        "id:integer,name:text",
        PackageKind::Incremental,
        CsvNull::default(),
    )
    .unwrap();
    assert_eq!(rows.len(), 4);
}

/// `cdx-server stores` lists the fleet worst first: a channel whose apply
/// failed first (with its error), then the furthest behind; the filters
/// keep the failing, the behind, or one group.
#[test]
fn stores_show_the_fleet_worst_first() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let store = Store::open(&data).unwrap();
    for (id, group) in [("a", GROUP), ("b", GROUP), ("c", GROUP), ("d", "other")] {
        store.add_channel(id, group, "pw").unwrap();
    }
    let published: Vec<PackageInfo> = (0..3).map(|_| publish_products(&store, 2)).collect();
    let report = |channel: &str, package: &PackageInfo, status: &str, message: Option<&str>| {
        store
            .record_status(
                channel,
                GROUP,
                &StatusReport {
                    session_id: Uuid::new_v4(),
                    direction: Direction::Download,
                    subject_id: package.id,
                    job: package.job.clone(),
                    status: status.into(),
                    message: message.map(str::to_owned),
                    bytes: 0,
                    rows: 0,
                    attempt: 1,
                    at_ms: 1,
                },
            )
            .unwrap();
    };
    for p in &published {
        report("a", p, "Applied", None);
    }
    report("b", &published[0], "Applied", None);
    report(
        "b",
        &published[1],
        "ApplyFailed",
        Some("schema conflict: table `products` has no column `y`"),
    );
    let all = store.fleet(&FleetFilter::default()).unwrap();
    let order: Vec<(&str, u64, u64)> = all
        .iter()
        .map(|s| (s.channel.as_str(), s.applied_sequence, s.behind))
        .collect();
    assert_eq!(order, [("b", 1, 2), ("c", 0, 3), ("a", 3, 0), ("d", 0, 0)]);
    assert_eq!(all[0].problems[0].status, "ApplyFailed");
    assert_eq!(all[0].waiting_since_ms, Some(published[1].created_at_ms));
    let failing = store
        .fleet(&FleetFilter {
            failing: true,
            ..FleetFilter::default()
        })
        .unwrap();
    assert_eq!(failing.len(), 1);
    let behind = store
        .fleet(&FleetFilter {
            behind: true,
            ..FleetFilter::default()
        })
        .unwrap();
    assert_eq!(
        behind
            .iter()
            .map(|s| s.channel.as_str())
            .collect::<Vec<_>>(),
        ["b", "c"]
    );

    // The command prints it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cdx-server"))
        .args(["stores", "--failing", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("CHANNEL"), "{text}");
    let line = text.lines().nth(1).unwrap();
    assert!(
        line.starts_with("b ")
            && line.contains("1/3")
            && line.contains("#2 job 1040 ApplyFailed: schema conflict"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 2, "{text}");
}

/// `publish` tells its progress: records and input bytes grow to the
/// files' totals, a CSV and a JSON Lines file of one package, and the
/// encoded bytes to the package's content.
#[test]
fn publishing_tells_how_far_it_is() {
    let dir = TempDir::new().unwrap();
    let store = Store::open(dir.path().join("data")).unwrap();
    let csv = dir.path().join("items.csv");
    let mut text = String::from("id,name\n");
    for i in 0..20_000 {
        text.push_str(&format!("{i},item number {i}\n"));
    }
    std::fs::write(&csv, &text).unwrap();
    let jsonl = dir.path().join("prices.jsonl");
    let lines: String = (0..5_000)
        .map(|i| format!("{{\"id\": {i}, \"price\": \"{i}.50\"}}\n"))
        .collect();
    std::fs::write(&jsonl, &lines).unwrap();
    let files = PublishFiles::from_args(
        GROUP,
        "1040",
        PackageKind::Full,
        &[
            format!("items={}", csv.display()),
            format!("prices={}", jsonl.display()),
        ],
        &["items=id".to_string(), "prices=id".to_string()],
        &[
            "items=id:integer,name:text".to_string(),
            "prices=id:integer,price:decimal(9,2)".to_string(),
        ],
        &[],
    )
    .unwrap();
    let mut told = Vec::new();
    let info = server::publish_files_with_progress(&store, &files, &mut |p| told.push(p)).unwrap();
    let total = (text.len() + lines.len()) as u64;
    assert!(told.len() >= 3, "{told:?}");
    assert!(told.iter().all(|p| p.input_total == total));
    assert!(told.windows(2).all(|w| w[0].records <= w[1].records
        && w[0].input_read <= w[1].input_read
        && w[0].encoded <= w[1].encoded));
    let last = told.last().unwrap();
    assert_eq!(last.records, 25_000);
    assert_eq!(last.records, info.rows);
    assert_eq!(last.input_read, total);
    assert!(last.encoded > 0 && last.encoded < info.content_bytes.unwrap());
    // Midway through the CSV, part of it is read.
    let midway = told.iter().find(|p| p.records == 8_192).unwrap();
    assert!(midway.input_read > 0 && midway.input_read < text.len() as u64);
}

/// Without an admin token, the operators' routes answer a client on the
/// server's own machine only: not one that names another host, nor one
/// that comes through a proxy (which makes every client look local). Their
/// pages cannot be framed by another site.
#[actix_rt::test]
async fn operators_routes_without_a_token_answer_this_machine_only() {
    let t = TestServer::start();
    let get = |path: &str, headers: &[(&str, &str)]| {
        let mut request = t.client.get(t.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let response = get("/metrics", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = get("/console", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
    for refused in [
        [("X-Forwarded-For", "203.0.113.9")],
        [("Forwarded", "for=203.0.113.9")],
        [("Host", "hq.example.com")],
    ] {
        for path in ["/metrics", "/console"] {
            let response = get(path, &refused).await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{path} {refused:?}"
            );
            assert!(error_of(response).await.contains("admin token"));
        }
    }
}

/// A package of `job` and `kind` with `rows` products (or customers for a
/// job other than 1040).
fn publish_kind(store: &Store, job: &str, kind: PackageKind, rows: i64) -> PackageInfo {
    let mut table = products_schema();
    if job != "1040" {
        table.name = "customers".into();
    }
    let spec = PublishSpec {
        replaces: Vec::new(),
        data_group: GROUP.into(),
        job: job.into(),
        kind,
        tables: vec![table],
    };
    store
        .publish(spec, |writer| {
            writer.table(0)?;
            for id in 0..rows {
                writer.upsert(&[Value::Integer(id), Value::Text(format!("row {id}"))])?;
            }
            Ok(())
        })
        .unwrap()
}

/// A full package supersedes the earlier packages of its job in the
/// listing; compaction prunes the files of superseded packages only once
/// `keep_for` has passed, keeps their rows listed and marked, and answers
/// 410 Gone for their content; withdrawing the full package that had
/// superseded pruned ones takes the marks back and says a new full package
/// is needed.
#[actix_rt::test]
async fn compaction_prunes_only_what_no_store_will_download() {
    let t = TestServer::start();
    let store = t.store();
    let old_full = publish_kind(store, "1040", PackageKind::Full, 10);
    let old_inc = publish_kind(store, "1040", PackageKind::Incremental, 2);
    let other_job = publish_kind(store, "1010", PackageKind::Incremental, 2);
    let full = publish_kind(store, "1040", PackageKind::Full, 12);
    let after = publish_kind(store, "1040", PackageKind::Incremental, 1);
    let list: PackageList = t.get_json("/v1/packages?after=0").await;
    let marks: Vec<(u64, Option<u64>)> = list
        .packages
        .iter()
        .map(|l| {
            (
                l.package.sequence,
                l.superseded_by.as_ref().map(|s| s.sequence),
            )
        })
        .collect();
    assert_eq!(
        marks,
        [(1, Some(4)), (2, Some(4)), (3, None), (4, None), (5, None)]
    );

    // Too recent to prune; a dry run prunes nothing.
    let kept = store
        .compact(None, Duration::from_secs(3600), false)
        .unwrap();
    assert!(kept.pruned.is_empty(), "{kept:?}");
    let would = store.compact(None, Duration::ZERO, true).unwrap();
    assert_eq!(would.pruned.len(), 2);
    assert!(store.package_path(old_full.id).exists());

    let done = store.compact(Some(GROUP), Duration::ZERO, false).unwrap();
    let pruned: Vec<Uuid> = done.pruned.iter().map(|p| p.0).collect();
    assert_eq!(pruned, [old_full.id, old_inc.id]);
    assert_eq!(done.bytes, old_full.bytes + old_inc.bytes);
    for p in [&old_full, &old_inc] {
        assert!(!store.package_path(p.id).exists());
        let response = t
            .get(&cdx::protocol::package_content_path(p.id))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::GONE);
        let error = error_of(response).await;
        assert!(
            error.contains("pruned") && error.contains(&full.id.to_string()),
            "{error}"
        );
    }
    for p in [&other_job, &full, &after] {
        assert!(store.package_path(p.id).exists());
        let response = t
            .get(&cdx::protocol::package_content_path(p.id))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let relisted: PackageList = t.get_json("/v1/packages?after=0").await;
    assert_eq!(relisted.packages.len(), 5, "rows stay listed");
    assert!(store
        .compact(None, Duration::ZERO, false)
        .unwrap()
        .pruned
        .is_empty());

    let withdrawn = store.withdraw(full.id, "ops", "bad prices").unwrap();
    assert_eq!(withdrawn.pruned_superseded, 2);
    let said = cdx_server::report::withdrawn(&withdrawn);
    assert!(
        said.contains("2 package(s) it superseded were pruned"),
        "{said}"
    );
    let list: PackageList = t.get_json("/v1/packages?after=0").await;
    assert!(list.packages.iter().all(|l| l.superseded_by.is_none()));
    assert!(list.packages[3].withdrawn.is_some());
}

/// A `server.db` from before tables were recorded: opening it reads each
/// package's tables from its file and decides what supersedes what.
#[test]
fn an_older_server_db_learns_its_packages_tables_when_opened() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let store = Store::open(&data).unwrap();
    publish_kind(&store, "1040", PackageKind::Incremental, 2);
    publish_kind(&store, "1040", PackageKind::Full, 3);
    drop(store);
    let conn = rusqlite::Connection::open(data.join(server::DB_FILE)).unwrap();
    conn.execute_batch("UPDATE packages SET tables = NULL, superseded_by = NULL")
        .unwrap();
    drop(conn);
    let store = Store::open(&data).unwrap();
    let listed = store.listed_packages(None).unwrap();
    assert_eq!(
        listed[0].superseded_by.as_ref().map(|s| s.sequence),
        Some(2)
    );
}
