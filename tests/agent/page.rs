//! The store's status page and headquarters' console in a real browser:
//! headless Chromium shows a suspended package on both, the store page
//! refuses a wrong token and its Resume button resumes the package, after
//! which both show it applied. Screenshots are saved under
//! `target/tmp/screenshots/`.

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
fn the_status_page_resumes_a_suspended_package_and_the_console_shows_it_in_chromium() {
    let hq = Hq::start();
    let admin = "console-admin-token-0123456789";
    hq.server
        .store()
        .set_admin_token(cdx::config::Secret::new(admin))
        .unwrap();
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

    // The command lines say the same: the store's status, and the failing
    // store at headquarters.
    let run = |program: std::path::PathBuf, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let said = run(
        client_bin(),
        &["status", "--config", config.to_str().unwrap()],
    );
    eprintln!("cdx-client status:\n{said}");
    assert!(said.contains("health: UNHEALTHY"), "{said}");
    assert!(
        said.contains(&format!("SUSPENDED: package {}", broken.id)),
        "{said}"
    );
    let reported = wait_until(Duration::from_secs(20), || {
        hq.download_status(broken.id).as_deref() == Some("Suspended")
    });
    assert!(
        reported,
        "headquarters shows {:?}",
        hq.download_status(broken.id)
    );
    let data = hq.dir.path().join("hq");
    let said = run(
        server_bin(),
        &["stores", "--data", data.to_str().unwrap(), "--failing"],
    );
    eprintln!("cdx-server stores --failing:\n{said}");
    assert!(
        said.contains(CHANNEL) && said.contains("Suspended"),
        "{said}"
    );

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

    // Headquarters' console: signed in with the admin token, the store is
    // first of the fleet, failing, its suspended session on its page.
    let console = format!("{}/console", hq.url());
    browser.resize(1280, 800);
    browser.goto(&console);
    assert!(
        browser.url().ends_with("/console/login"),
        "{}",
        browser.url()
    );
    browser.type_into("#token", "wrong-admin-token");
    browser.click("#sign-in");
    let error = browser.wait_text("#error", |t| t.contains("wrong admin token"));
    assert!(error.contains("wrong admin token"), "{error}");
    browser.type_into("#token", admin);
    browser.click("#sign-in");
    let signed_in = wait_until(Duration::from_secs(10), || browser.find("#fleet").is_some());
    assert!(signed_in, "{}: {}", browser.url(), browser.text("body"));
    assert!(
        browser.text("#summary").contains("1 failing"),
        "{}",
        browser.text("#summary")
    );
    let row = browser.text("#fleet tr.failing");
    assert!(row.contains(CHANNEL) && row.contains("Suspended"), "{row}");
    browser.screenshot(&screenshot_path("console-fleet-failing"));
    browser.click(&format!("#fleet a[href='/console/stores/{CHANNEL}']"));
    let store_page = wait_until(Duration::from_secs(10), || {
        browser.find("#downloads").is_some()
    });
    assert!(store_page, "{}", browser.text("body"));
    assert!(
        browser.text("#state").starts_with("failing"),
        "{}",
        browser.text("#state")
    );
    assert!(browser.text("#downloads").contains("Suspended"));
    assert!(browser.text("#downloads").contains(&broken.id.to_string()));
    browser.screenshot(&screenshot_path("console-store-failing"));
    browser.goto(&format!("{}/console/packages", hq.url()));
    assert!(browser.text("body").contains(&after.id.to_string()));

    // A wrong token is refused on the page and changes nothing.
    browser.resize(412, 915);
    browser.goto(&page);
    browser.type_into("#token", "not-the-token");
    browser.click("#resume");
    let notice = browser.wait_text("#notice", |t| t.contains("wrong control token"));
    assert!(
        notice.contains("wrong control token"),
        "{notice}: {}: {}",
        browser.url(),
        browser.text("body")
    );
    assert!(browser.find("#suspended").is_some());

    // Repaired at headquarters, resumed from the page (loaded afresh: the
    // refusal's page reloads itself).
    bytes[at] ^= 0x5a;
    std::fs::write(&file, &bytes).unwrap();
    browser.goto(&page);
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

    // The console sees the store in sync once its reports arrive.
    browser.resize(1280, 800);
    let in_sync = wait_until(Duration::from_secs(20), || {
        browser.goto(&console);
        browser.text("#summary").contains("1 in sync")
    });
    assert!(in_sync, "{}", browser.text("#summary"));
    browser.screenshot(&screenshot_path("console-fleet-in-sync"));
}
