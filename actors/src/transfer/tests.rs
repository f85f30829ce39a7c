//! Transfers against a server that misbehaves on purpose: a raw TCP server
//! on 127.0.0.1 that answers ranges wrongly.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdx::config::{Secret, ServerConfig, TransferMode};
use cdx::failure::FailureClass;
use cdx::package::PackageKind;
use cdx::protocol::PackageInfo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// What the fake server sends for one request: status line and extra
/// headers, the body, and how many body bytes to send before hanging up.
type Answer = (String, Vec<u8>, usize);

/// What the fake server recorded of each request: its `Range`, its `If-Range`.
type Seen = Arc<Mutex<Vec<Option<(u64, u64)>>>>;
type SeenIfRange = Arc<Mutex<Vec<Option<String>>>>;

/// Serves `answer(range)` for each request, recording the `Range` and
/// `If-Range` headers seen.
async fn fake_server(
    answer: impl Fn(usize, Option<(u64, u64)>) -> Answer + Send + Sync + 'static,
) -> (String, Seen, SeenIfRange) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let if_ranges = Arc::new(Mutex::new(Vec::new()));
    let recorded_if_range = if_ranges.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let raw = String::from_utf8_lossy(&head).into_owned();
            recorded_if_range.lock().unwrap().push(
                raw.lines()
                    .find_map(|l| {
                        l.split_once(':')
                            .filter(|(k, _)| k.eq_ignore_ascii_case("if-range"))
                    })
                    .map(|(_, v)| v.trim().to_owned()),
            );
            let head = raw.to_lowercase();
            let range = head
                .lines()
                .find_map(|l| l.strip_prefix("range: bytes="))
                .and_then(|r| r.trim().split_once('-'))
                .map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap_or(u64::MAX)));
            recorded.lock().unwrap().push(range);
            let (status, body, send) = answer(n, range);
            n += 1;
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: \"tag\"\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.write_all(&body[..send.min(body.len())]).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, seen, if_ranges)
}

fn package(content: &[u8]) -> PackageInfo {
    PackageInfo {
        id: Uuid::new_v4(),
        data_group: "default".into(),
        job: "1040".into(),
        sequence: 1,
        kind: PackageKind::Full,
        bytes: content.len() as u64,
        sha256: hex::encode(Sha256::digest(content)),
        rows: 1,
        created_at_ms: 0,
        content_bytes: None,
        content_url: None,
    }
}

fn hq(url: &str) -> HqClient {
    HqClient::new(&ServerConfig {
        url: url.into(),
        channel_id: "store-0001".into(),
        secret: Secret::new("s"),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
    })
    .unwrap()
}

async fn try_download(
    hq: &HqClient,
    dir: &Path,
    mode: TransferMode,
    package: &PackageInfo,
) -> Result<Downloaded, TransferError> {
    let stop = AtomicBool::new(false);
    let mut progress = |_| {};
    let mut ctx = TransferContext {
        hq,
        dir,
        mode,
        chunk_bytes: 64 * 1024,
        stop: &stop,
        progress: &mut progress,
    };
    download(&mut ctx, package).await
}

fn content() -> Vec<u8> {
    (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// A server that ignores Range: the first answer is cut (a transient
/// failure that keeps its bytes), the answer to the resume is the whole
/// file again, which fails the try as permanent and empties the `.part`
/// file; the next try from the first byte completes.
#[tokio::test]
async fn a_server_ignoring_range_fails_the_try_and_restarts_clean() {
    for mode in [TransferMode::Streaming, TransferMode::Reliable] {
        ignoring_range(mode).await;
    }
}

async fn ignoring_range(mode: TransferMode) {
    let body = content();
    let served = body.clone();
    let (url, seen, _) = fake_server(move |n, _| {
        let send = if n == 0 {
            served.len() / 2
        } else {
            served.len()
        };
        ("200 OK".into(), served.clone(), send)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (hq, package) = (hq(&url), package(&body));
    let part = part_path(dir.path(), package.id);
    let cut = try_download(&hq, dir.path(), mode, &package)
        .await
        .unwrap_err();
    assert_eq!(cut.class(), FailureClass::Transient, "{cut}");
    let kept = std::fs::metadata(&part).unwrap().len();
    assert_eq!(
        kept,
        body.len() as u64 / 2,
        "the bytes received were not kept"
    );

    let ignored = try_download(&hq, dir.path(), mode, &package)
        .await
        .unwrap_err();
    assert!(matches!(ignored, TransferError::Range { .. }), "{ignored}");
    assert_eq!(ignored.class(), FailureClass::Permanent);
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        0,
        "the .part file kept bytes"
    );

    let done = try_download(&hq, dir.path(), mode, &package).await.unwrap();
    assert_eq!(std::fs::read(&done.path).unwrap(), body);
    let ranges = seen.lock().unwrap().clone();
    let last = body.len() as u64 - 1;
    let expected = match mode {
        TransferMode::Streaming => [None, Some((kept, last)), None],
        TransferMode::Reliable => [
            Some((0, 65535)),
            Some((kept, kept + 65535)),
            Some((0, 65535)),
        ],
    };
    assert_eq!(ranges, expected, "{mode:?}");
}

/// A server that sends more than the range asked for fails the try as
/// permanent, and the `.part` file holds exactly what was asked.
#[tokio::test]
async fn a_server_over_sending_fails_the_try_and_writes_no_byte_too_many() {
    let body = content();
    let served = body.clone();
    let (url, _, _) = fake_server(move |_, range| {
        let (start, end) = range.expect("reliable mode asks for ranges");
        let total = served.len();
        let end = end.min(total as u64 - 1) as usize;
        let mut bytes = served[start as usize..=end].to_vec();
        bytes.extend_from_slice(b"and then some");
        let status = format!("206 Partial Content\r\nContent-Range: bytes {start}-{end}/{total}");
        let len = bytes.len();
        (status, bytes, len)
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (hq, package) = (hq(&url), package(&body));
    let e = try_download(&hq, dir.path(), TransferMode::Reliable, &package)
        .await
        .unwrap_err();
    assert!(matches!(e, TransferError::Range { .. }), "{e}");
    assert_eq!(e.class(), FailureClass::Permanent);
    let part = std::fs::read(part_path(dir.path(), package.id)).unwrap();
    assert_eq!(
        part,
        body[..64 * 1024],
        "the .part file holds a byte too many"
    );
}

/// A reset in the middle of a chunk: every resume, by a later try as by
/// the same one, asks for the rest with the `ETag` learned before it.
#[tokio::test]
async fn every_resume_carries_if_range() {
    for mode in [TransferMode::Streaming, TransferMode::Reliable] {
        let body = content();
        let served = body.clone();
        let (url, _, if_ranges) = fake_server(move |n, range| {
            let (first, last) = range.unwrap_or((0, served.len() as u64 - 1));
            let last = last.min(served.len() as u64 - 1);
            let part = served[first as usize..=last as usize].to_vec();
            let status = if range.is_some() {
                format!(
                    "206 Partial Content\r\nContent-Range: bytes {first}-{last}/{}",
                    served.len()
                )
            } else {
                "200 OK".into()
            };
            // The first answer is cut in the middle.
            let send = if n == 0 { part.len() / 3 } else { part.len() };
            (status, part, send)
        })
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (hq, package) = (hq(&url), package(&body));
        let cut = try_download(&hq, dir.path(), mode, &package).await;
        assert!(cut.is_err(), "{mode:?}: the cut answer completed");
        let done = try_download(&hq, dir.path(), mode, &package).await.unwrap();
        assert_eq!(std::fs::read(&done.path).unwrap(), body);
        let seen = if_ranges.lock().unwrap().clone();
        assert_eq!(seen[0], None, "{mode:?}: the first request knows no ETag");
        assert!(
            seen[1..].iter().all(|t| t.as_deref() == Some("\"tag\"")),
            "{mode:?}: a resume without If-Range: {seen:?}"
        );
        assert!(
            !part_path(dir.path(), package.id)
                .with_extension("part.etag")
                .exists(),
            "{mode:?}: the ETag file outlived the download"
        );
    }
}

/// A `.part` file synced early many times (every 4 KiB of 200,000 bytes,
/// in chunks of 1,000, reset once halfway) ends whole, its hash that of
/// what was written after the reset.
#[tokio::test]
async fn a_part_file_synced_as_it_grows_ends_whole_with_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.cdxpkg.part");
    let content = content();
    let package = package(&content);
    let file = std::fs::File::create(&path).unwrap();
    let mut part = part::PartFile::syncing_every(file, Sha256::new(), 0, &path, &package, 4096);
    for chunk in content[..100_000].chunks(1_000) {
        part.write(bytes::Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    part.reset().await.unwrap();
    for chunk in content.chunks(1_000) {
        part.write(bytes::Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    let hash = part.finish().await.unwrap();
    assert_eq!(hex::encode(hash.finalize()), package.sha256);
    assert_eq!(std::fs::read(&path).unwrap(), content);
}

/// A 401 from something that was sent no credentials (a CDN in front of
/// the group's head, or of a package's content URL) is that URL's HTTP
/// error, not headquarters refusing the channel's credentials; a 401 from
/// headquarters' API still is.
#[tokio::test]
async fn a_refusal_names_the_credentials_only_where_they_were_sent() {
    let (url, _, _) = fake_server(|_, _| ("401 Unauthorized".into(), b"go away".to_vec(), 7)).await;
    let hq = hq(&url);
    let head = hq.head(&url, "default", None).await.unwrap_err();
    assert!(
        matches!(head, HqError::Status { status: 401, .. }),
        "{head:?}"
    );
    assert!(head.to_string().contains(&url), "{head}");
    let content = format!("{url}/cdn/x.cdxpkg");
    let plain = hq.plain(reqwest::Method::GET, &content);
    let err = hq.send_to(&content, plain).await.unwrap_err();
    assert!(
        matches!(err, HqError::Status { status: 401, .. }),
        "{err:?}"
    );
    let api = hq.request(reqwest::Method::GET, "/v1/ping");
    let err = hq.send("/v1/ping", api).await.unwrap_err();
    assert!(matches!(err, HqError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("credentials"), "{err}");
}
