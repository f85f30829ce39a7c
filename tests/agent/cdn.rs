//! Packages served by a real nginx through the listing's `content_url`:
//! the agent downloads them without its credentials, resumes through
//! connection resets with `Range` and nginx's own `If-Range` validator,
//! and applies them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cdx::retail::{expected_row_counts, DataSetSize};

use super::util::*;

/// nginx on 127.0.0.1, serving `root`, logging what each request carried.
struct Nginx {
    _child: Child,
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
}

fn nginx_bin() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "nginx is not installed: this test serves packages from a real nginx \
             (`bash .ci/run` installs it, or `apt-get install -y nginx`)",
        )
}

impl Nginx {
    fn start(root: &Path) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
               log_format cdx '$request|$status|$http_authorization|$http_range|$http_if_range|$body_bytes_sent';\n\
               access_log {d}/access.log cdx;\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               server {{ listen {addr}; root {root}; location / {{ }} }}\n\
             }}\n",
            root = root.display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let up = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(addr).is_ok()
        });
        assert!(up, "nginx did not listen on {addr}");
        Nginx {
            _child: Child(child),
            dir,
            addr,
        }
    }

    /// The access log: request, status, Authorization, Range, If-Range, bytes.
    fn requests(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('|').map(str::to_owned).collect())
            .collect()
    }
}

#[test]
fn packages_download_from_nginx_through_content_url_and_resume_after_resets() {
    let mut hq = HqProcess::new();
    let content = hq.dir.path().join("hq").join("content");
    std::fs::create_dir_all(&content).unwrap();
    let nginx = Nginx::start(&content);
    // Two resets in the middle of package bodies, between agent and nginx.
    let proxy = FaultyProxy::start(nginx.addr, 40_000, 2);
    hq.args = vec!["--content-url-base".into(), format!("{}/", proxy.url())];
    hq.restart();
    let size = DataSetSize {
        products: 1500,
        customers: 50,
        stores: 2,
        staff: 5,
    };
    let published: Vec<_> = cdx::retail::initial_packages(size, SEED)
        .into_iter()
        .map(|p| hq.publish(p))
        .collect();
    for mode in ["streaming", "reliable"] {
        let store = StoreDir::new();
        let mut config = store.config(&hq.url(), mode, "");
        config.retry.try_count = 1;
        let agent = RunningAgent::start(config, sqlite(store.channel_db()));
        let applied = wait_until(Duration::from_secs(90), || {
            store.applied() == published.len() as u64
        });
        assert!(
            applied,
            "{mode}: not every package was applied: {:?}",
            agent.status_json()
        );
        agent.stop();
        for (table, rows) in expected_row_counts(size, 0) {
            assert_eq!(store.rows(&table), rows, "{mode}: rows of {table}");
        }
    }
    assert_eq!(
        proxy.cuts_left.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the connections were never reset"
    );
    let requests = nginx.requests();
    let downloads: Vec<_> = requests
        .iter()
        .filter(|r| r[0].contains(".cdxpkg"))
        .collect();
    assert!(
        downloads.len() >= published.len() * 2,
        "the packages did not come from nginx: {requests:?}"
    );
    for r in &requests {
        assert_eq!(r[2], "-", "a request to nginx carried credentials: {r:?}");
    }
    // Every request after the first byte (a resume, or reliable mode's next
    // chunk) carried nginx's own ETag as If-Range, and got 206.
    let resumes: Vec<_> = downloads
        .iter()
        .filter(|r| r[3].starts_with("bytes=") && !r[3].starts_with("bytes=0-"))
        .collect();
    assert!(resumes.len() >= 2, "no resume reached nginx: {downloads:?}");
    for r in &resumes {
        assert_eq!(
            r[1], "206",
            "a resume was not answered with the rest: {r:?}"
        );
        // nginx logs the quotes of the ETag as \x22.
        assert!(
            r[4].starts_with('"') || r[4].starts_with("\\x22"),
            "a resume without If-Range: {r:?}"
        );
    }
}

/// A content URL that answers 404 (the CDN's origin is the wrong folder)
/// never blocks the store: the same try continues from the API.
#[test]
fn a_failing_content_url_falls_back_to_the_api() {
    let mut hq = HqProcess::new();
    let empty = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(empty.path());
    hq.args = vec![
        "--content-url-base".into(),
        format!("http://{}/", nginx.addr),
    ];
    hq.restart();
    let size = DataSetSize {
        products: 200,
        customers: 10,
        stores: 1,
        staff: 2,
    };
    let published: Vec<_> = cdx::retail::initial_packages(size, SEED)
        .into_iter()
        .map(|p| hq.publish(p))
        .collect();
    let store = StoreDir::new();
    let mut config = store.config(&hq.url(), "streaming", "");
    config.retry.try_count = 1;
    let agent = RunningAgent::start(config, sqlite(store.channel_db()));
    let applied = wait_until(Duration::from_secs(60), || {
        store.applied() == published.len() as u64
    });
    assert!(
        applied,
        "the packages were not applied: {:?}",
        agent.status_json()
    );
    agent.stop();
    let requests = nginx.requests();
    assert!(
        requests.iter().filter(|r| r[1] == "404").count() >= published.len(),
        "nginx was not asked first: {requests:?}"
    );
}
