//! A real nginx in front of headquarters. Packages served through the
//! listing's `content_url`: the agent downloads them without its
//! credentials, resumes through connection resets with `Range` and nginx's
//! own `If-Range` validator, and applies them. Polls through a caching
//! nginx: the group's head is answered from its cache, headquarters sees
//! one head request a second, and no store lists while the head stays.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cdx::retail::{expected_row_counts, DataSetSize};

use super::util::*;

/// nginx on 127.0.0.1, logging what each request carried.
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
    /// nginx serving the files under `root`.
    fn start(root: &Path) -> Nginx {
        Nginx::with_server(&format!("root {}; location / {{ }}", root.display()))
    }

    /// nginx in front of `upstream`, keeping answers as they say
    /// (`Cache-Control`) under `/v1/groups/`, with concurrent misses of one
    /// key sent upstream once (`proxy_cache_lock`), as a CDN does.
    fn caching(upstream: std::net::SocketAddr) -> Nginx {
        Nginx::with_server(&format!(
            "location /v1/groups/ {{ proxy_pass http://{upstream}; proxy_cache heads; \
               proxy_cache_lock on; }}\n\
             location / {{ proxy_pass http://{upstream}; proxy_read_timeout 120s; }}"
        ))
    }

    /// nginx with `server`'s directives inside its one `server` block.
    fn with_server(server: &str) -> Nginx {
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
               log_format cdx '$request|$status|$http_authorization|$http_range|$http_if_range|$body_bytes_sent|$upstream_cache_status';\n\
               access_log {d}/access.log cdx;\n\
               client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               proxy_cache_path {d}/cache keys_zone=heads:1m;\n\
               server {{ listen {addr}; {server} }}\n\
             }}\n"
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

    /// The access log: request, status, Authorization, Range, If-Range,
    /// bytes, and whether the cache answered (`HIT`; `-` where none is kept).
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

/// Stores poll every 200 ms through a caching nginx: it answers their
/// group-head requests from its cache, headquarters sees about one a
/// second, and no store pings or lists while the head stays. A package
/// published then moves the head, and every store lists and applies it.
#[test]
fn polls_through_a_caching_proxy_reach_headquarters_once_a_second_and_list_only_when_the_head_moves(
) {
    const STORES: usize = 3;
    let mut hq = HqProcess::new();
    let channels: Vec<String> = (1..=STORES).map(|i| format!("store-{i:04}")).collect();
    for channel in &channels[1..] {
        hq.store.add_channel(channel, GROUP, SECRET).unwrap();
    }
    hq.restart();
    let nginx = Nginx::caching(hq.addr);
    let cdn = format!("http://{}", nginx.addr);
    let published = hq.publish_initial(small());

    let stores: Vec<StoreDir> = channels.iter().map(|_| StoreDir::new()).collect();
    let agents: Vec<RunningAgent> = stores
        .iter()
        .zip(&channels)
        .map(|(store, channel)| {
            // One agent.toml per store, each its own channel, polling the
            // head through nginx every 200 ms.
            let path = store.write_config(&cdn, "streaming", "");
            let text = std::fs::read_to_string(&path)
                .unwrap()
                .replace(
                    &format!("channel_id = \"{CHANNEL}\""),
                    &format!("channel_id = \"{channel}\""),
                )
                .replace(
                    "interval = \"1s\"",
                    &format!("interval = \"200ms\"\nhead_url = \"{cdn}\""),
                );
            std::fs::write(&path, text).unwrap();
            let config = cdx::config::Config::load(&path).unwrap();
            assert_eq!(config.download.head_url.as_deref(), Some(cdn.as_str()));
            RunningAgent::start(config, sqlite(store.channel_db()))
        })
        .collect();
    let caught_up = wait_until(Duration::from_secs(60), || {
        stores.iter().all(|s| s.applied() == published.len() as u64)
    });
    assert!(
        caught_up,
        "the stores did not apply the initial packages: {:?}",
        agents[0].status_json()
    );

    // Each store lists once more, finds nothing, and goes quiet.
    let empty_listing = format!("/v1/packages?after={}&", published.len());
    let quiet = wait_until(Duration::from_secs(30), || {
        let listed = nginx.requests();
        listed
            .iter()
            .filter(|r| r[0].contains(&empty_listing))
            .count()
            >= STORES
    });
    assert!(quiet, "the stores did not list after the last package");

    // Quiet: three seconds of polls with nothing new.
    let before = nginx.requests().len();
    std::thread::sleep(Duration::from_secs(3));
    let quiet: Vec<Vec<String>> = nginx.requests().split_off(before);
    let heads: Vec<_> = quiet
        .iter()
        .filter(|r| r[0].contains("/v1/groups/default/head"))
        .collect();
    let upstream: Vec<_> = heads.iter().filter(|r| r[6] != "HIT").collect();
    // 3 stores every 200 ms for 3 s is 45 polls; allow for slow scheduling.
    assert!(
        heads.len() >= 15,
        "the stores did not poll the head: {quiet:?}"
    );
    // One a second, and one more at each end of the window.
    assert!(
        upstream.len() <= 5,
        "{} of {} head requests reached headquarters in 3 s: {heads:?}",
        upstream.len(),
        heads.len()
    );
    for r in &heads {
        assert_eq!(r[2], "-", "a head request carried credentials: {r:?}");
        assert!(
            r[1] == "200" || r[1] == "304",
            "a head request failed: {r:?}"
        );
    }
    let asked: Vec<_> = quiet
        .iter()
        .filter(|r| r[0].contains("/v1/packages?") || r[0].contains("/v1/ping"))
        .collect();
    assert!(
        asked.is_empty(),
        "stores pinged or listed with nothing new: {asked:?}"
    );

    // Something new: the head moves, and every store lists and applies it.
    let round = hq.publish_round(small(), 1);
    let newest = published.len() as u64 + round.len() as u64;
    let applied = wait_until(Duration::from_secs(30), || {
        stores.iter().all(|s| s.applied() == newest)
    });
    assert!(
        applied,
        "a new package was not applied through the head: {:?}",
        agents[0].status_json()
    );
    for agent in &agents {
        let (code, body) = http(agent.status_addr, "GET", "/health");
        assert_eq!(
            code, 200,
            "an agent polling through the head is unhealthy: {body}"
        );
        let head = &agent.status_json()["last_poll"]["head"];
        assert_eq!(head["ok"], true, "{head}");
        assert!(head["polls_ended"].as_u64().unwrap() >= 3, "{head}");
    }
    for agent in agents {
        agent.stop();
    }
}

/// A head that cannot be read (the CDN is down, or the URL is wrong) costs
/// no sync: every poll lists at headquarters, and the status says why the
/// head was not used.
#[test]
fn an_unreachable_head_only_makes_polls_list_at_headquarters() {
    let hq = Hq::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let published = hq.publish_initial(small());
    let store = StoreDir::new();
    let mut config = store.config(&hq.url(), "streaming", "");
    config.download.head_url = Some(nowhere.clone());
    config.download.interval = Duration::from_millis(200);
    let agent = RunningAgent::start(config, sqlite(store.channel_db()));
    let applied = wait_until(Duration::from_secs(60), || {
        store.applied() == published.len() as u64
    });
    assert!(
        applied,
        "the packages were not applied: {:?}",
        agent.status_json()
    );
    let round = hq.publish_round(small(), 1);
    let newest = (published.len() + round.len()) as u64;
    let applied = wait_until(Duration::from_secs(30), || store.applied() == newest);
    assert!(
        applied,
        "a later package was not applied: {:?}",
        agent.status_json()
    );
    let status = agent.status_json();
    let head = &status["last_poll"]["head"];
    assert_eq!(head["ok"], false, "{status}");
    assert_eq!(head["polls_ended"], 0, "{status}");
    assert!(
        head["error"].as_str().unwrap().contains(&nowhere),
        "the head's error does not name its URL: {status}"
    );
    let (code, body) = http(agent.status_addr, "GET", "/health");
    assert_eq!(
        code, 200,
        "a store that syncs is unhealthy for its head: {body}"
    );
    agent.stop();
}
