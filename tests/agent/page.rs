//! The status page in a real browser: headless Chromium shows a suspended
//! package, refuses a wrong token, and its Resume button resumes the
//! package, after which the page shows it applied. Screenshots are saved
//! under `target/tmp/screenshots/`.

use std::time::Duration;

use cdx::package::{Column, ColumnType, PackageKind, TableSchema, Value};

use super::browser::{screenshot_path, Browser};
use super::operators::config_on_port;
use super::util::*;

fn items() -> TableSchema {
    let column = |name: &str, ty| Column {
        name: name.into(),
        ty,
        nullable: false,
    };
    TableSchema {
        name: "items".into(),
        columns: vec![
            column("id", ColumnType::Integer),
            column("name", ColumnType::Text),
        ],
        key: vec!["id".into()],
    }
}

fn rows(n: i64, name: &str) -> Vec<Vec<Value>> {
    (1..=n)
        .map(|i| vec![Value::Integer(i), Value::Text(format!("{name} {i}"))])
        .collect()
}

#[test]
fn the_status_page_resumes_a_suspended_package_in_chromium() {
    let hq = Hq::start();
    let store = StoreDir::new();
    let good = hq.publish_table("1040", PackageKind::Full, items(), rows(50, "first"));
    let broken = hq.publish_table("1040", PackageKind::Full, items(), rows(80, "second"));
    let after = hq.publish_table("1040", PackageKind::Incremental, items(), rows(3, "third"));
    let file = hq.package_file(broken.id);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&file, &bytes).unwrap();

    let _pos = store.pos();
    let (config, status) = config_on_port(&store, &hq.url(), "");
    let token_file = cdx::config::Config::load(&config)
        .unwrap()
        .control
        .token_file;
    let _agent = spawn_client(&config);
    let suspended = wait_until(Duration::from_secs(60), || {
        std::net::TcpStream::connect(status).is_ok() && {
            let (code, body) = http(status, "GET", "/status");
            code == 200 && body.contains("\"suspended\":{")
        }
    });
    assert!(
        suspended,
        "the broken package did not suspend the downloads"
    );
    assert_eq!(store.applied(), good.sequence);

    // A phone-sized window: the page is read at the till.
    let browser = Browser::start(412, 915);
    let page = format!("http://127.0.0.1:{}/", status.port());
    browser.goto(&page);
    assert_eq!(browser.text("#suspended-package"), broken.id.to_string());
    assert!(browser.text("#health").contains("UNHEALTHY"));
    assert!(
        browser.text("#suspended").contains("SHA-256"),
        "{}",
        browser.text("#suspended")
    );
    assert_eq!(browser.text("#applied"), good.sequence.to_string());
    browser.screenshot(&screenshot_path("status-page-suspended"));

    // A wrong token is refused on the page and changes nothing.
    browser.type_into("#token", "not-the-token");
    browser.click("#resume");
    assert!(
        browser.text("#notice").contains("wrong control token"),
        "{}",
        browser.text("#notice")
    );
    assert!(browser.find("#suspended").is_some());

    // Repaired at headquarters, resumed from the page.
    bytes[at] ^= 0x5a;
    std::fs::write(&file, &bytes).unwrap();
    let token = std::fs::read_to_string(&token_file).unwrap();
    browser.type_into("#token", token.trim());
    browser.click("#resume");
    let landed = wait_until(Duration::from_secs(10), || {
        browser.url().contains(&format!("/?resumed={}", broken.id))
    });
    assert!(landed, "{}: {}", browser.url(), browser.text("body"));
    assert!(browser.text("#notice").contains("Resumed package"));
    let applied = wait_until(Duration::from_secs(60), || {
        browser.goto(&page);
        browser.text("#applied") == after.sequence.to_string()
    });
    assert!(
        applied,
        "the page never showed #{} applied: {}",
        after.sequence,
        browser.text("#poll")
    );
    assert!(browser.find("#suspended").is_none());
    assert!(browser.text("#health").contains("Healthy"));
    assert!(browser.text("#downloads").contains("Applied"));
    assert_eq!(store.applied(), after.sequence);
    browser.screenshot(&screenshot_path("status-page-resumed"));
}
