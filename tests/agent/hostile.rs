//! Headquarters under hostile bodies: two concurrent maximum-size uploads
//! against a real `cdx-server` process, its memory measured.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::util::*;

/// A POST of `body` to `path` as the test channel; the status code.
fn post(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> u16 {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{CHANNEL}:{SECRET}"));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// An upload body of about `bytes` bytes: many small rows.
fn upload_body(first: i64, bytes: usize) -> (Vec<u8>, i64) {
    let mut rows = String::with_capacity(bytes);
    let mut n = first;
    while rows.len() + 200 < bytes {
        if n > first {
            rows.push(',');
        }
        rows.push_str(&format!(
            "[\"T-{n:012}\",{n},1.5,null,\"a line of a sale at the till, padded to look real\"]"
        ));
        n += 1;
    }
    let body = format!(
        "{{\"upload_id\":\"{}\",\"table\":\"sales\",\"counter_column\":\"counter\",\
         \"columns\":[\"id\",\"counter\",\"amount\",\"note\",\"text\"],\"rows\":[{rows}],\
         \"first_counter\":{first},\"last_counter\":{}}}",
        uuid::Uuid::new_v4(),
        n - 1
    );
    (body.into_bytes(), n - first)
}

/// Two concurrent uploads of 31 MiB each are stored, the server's memory
/// grows by at most twice the body limit per request, and pings go on
/// being answered meanwhile.
#[test]
fn two_concurrent_maximum_uploads_are_stored_in_bounded_memory() {
    let hq = HqProcess::start();
    let addr = hq.addr;
    let (first, rows_a) = upload_body(1, 31 << 20);
    let (second, rows_b) = upload_body(10_000_000, 31 << 20);
    let ping = || {
        let started = Instant::now();
        let (code, _) = http_with(
            addr,
            "GET",
            "/v1/ping",
            &[(
                "Authorization",
                &format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{CHANNEL}:{SECRET}"))
                ),
            )],
        );
        (code, started.elapsed())
    };
    assert_eq!(ping().0, 200);
    let baseline = peak_rss(hq.pid());
    let uploads: Vec<_> = [first, second]
        .into_iter()
        .map(|body| std::thread::spawn(move || post(addr, "/v1/uploads", &body)))
        .collect();
    let mut pings = Vec::new();
    while !uploads.iter().all(|u| u.is_finished()) {
        pings.push(ping());
        std::thread::sleep(Duration::from_millis(20));
    }
    let codes: Vec<u16> = uploads.into_iter().map(|u| u.join().unwrap()).collect();
    let peak = peak_rss(hq.pid());
    assert_eq!(codes, [200, 200]);
    assert_eq!(hq.uploaded("sales"), (rows_a + rows_b) as u64);
    assert!(pings.iter().all(|(code, _)| *code == 200), "a ping failed");
    let mut times: Vec<Duration> = pings.iter().map(|(_, t)| *t).collect();
    times.sort();
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    eprintln!(
        "two 31 MiB uploads: server peak RSS {} MiB (from {} MiB), {} pings meanwhile, p99 {p99:?}",
        peak >> 20,
        baseline >> 20,
        pings.len()
    );
    let limit = 2 * 2 * cdx_server::MAX_UPLOAD_BYTES as u64;
    assert!(
        peak.saturating_sub(baseline) <= limit,
        "the server grew {} MiB for two uploads",
        (peak - baseline) >> 20
    );
}
