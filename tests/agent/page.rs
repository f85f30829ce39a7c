//! The store's status page and headquarters' console in a real browser:
//! headless Chromium shows a suspended package on both, the store page
//! refuses a wrong token and its Resume button resumes the package, after
//! which both show it applied. Screenshots are saved under
//! `target/tmp/screenshots/`.

use std::time::Duration;

use super::browser::{screenshot_path, Browser};
use super::operators::config_on_port;
use super::util::*;

#[test]
fn the_status_page_resumes_a_suspended_package_and_the_console_shows_it_in_chromium() {
    let hq = Hq::start();
    let admin = "console-admin-token-0123456789";
    hq.server
        .store()
        .set_admin_token(cdx::config::Secret::new(admin))
        .unwrap();
    let store = StoreDir::new();
    let packages = BrokenInTheMiddle::publish(&hq);
    let (good, broken, after) = (&packages.good, &packages.broken, &packages.after);

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
    let said = stdout_of(
        std::process::Command::new(client_bin())
            .args(["status", "--config"])
            .arg(&config),
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
    let said = stdout_of(
        std::process::Command::new(server_bin())
            .args(["stores", "--failing", "--data"])
            .arg(&data),
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
    packages.repair();
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
