//! Headless Chromium driven through ChromeDriver (the W3C WebDriver
//! protocol over HTTP): Debian's `chromium` and `chromium-driver`, which
//! `.ci/run` installs.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::util::{wait_until, Child};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C name of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    base: String,
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium of `width`×`height`
    /// pixels with a fresh profile.
    pub fn start(width: u32, height: u32) -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: `.ci/run` installs it as root \
                 (apt-get install -y chromium chromium-driver)"
            );
        }
        let port = super::operators::free_port();
        let driver = Child(
            std::process::Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("chromedriver starts"),
        );
        let up = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "chromedriver did not listen on {port}");
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            base: format!("http://127.0.0.1:{port}"),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client: reqwest::Client::new(),
            _driver: driver,
            _profile: profile,
        };
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-crash-reporter".into(),
            "--disable-breakpad".into(),
            format!("--user-data-dir={}", browser._profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let session = browser.call(
            "POST",
            "/session",
            json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            }}}),
        );
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {session}"))
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.client.get(&url),
            "DELETE" => self.client.delete(&url),
            _ => self.client.post(&url).json(&body),
        };
        let answer: Value = self.runtime.block_on(async {
            let response = request
                .timeout(Duration::from_secs(60))
                .send()
                .await
                .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
            response.json().await.unwrap()
        });
        let value = answer["value"].clone();
        if let Some(error) = value.get("error") {
            panic!("webdriver {method} {path}: {error}: {}", value["message"]);
        }
        value
    }

    /// Resizes the window (a desk's screen after a phone's).
    pub fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            json!({ "width": width, "height": height }),
        );
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    pub fn url(&self) -> String {
        self.call("GET", "/url", json!({}))
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The element matching `css`, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let found = self.call(
            "POST",
            "/elements",
            json!({ "using": "css selector", "value": css }),
        );
        found.as_array()?.first()?[ELEMENT]
            .as_str()
            .map(str::to_owned)
    }

    /// The visible text of the element matching `css` ("" when none).
    pub fn text(&self, css: &str) -> String {
        match self.find(css) {
            Some(id) => self
                .call("GET", &format!("/element/{id}/text"), json!({}))
                .as_str()
                .unwrap_or("")
                .to_owned(),
            None => String::new(),
        }
    }

    /// Waits up to 10 s (a form's answer may still be loading) for the
    /// element matching `css` to have a text that satisfies `want`; returns
    /// its last text.
    pub fn wait_text(&self, css: &str, want: impl Fn(&str) -> bool) -> String {
        let mut text = String::new();
        wait_until(Duration::from_secs(10), || {
            text = self.text(css);
            want(&text)
        });
        text
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self
            .find(css)
            .unwrap_or_else(|| panic!("no {css} on the page"));
        self.call(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        );
    }

    pub fn click(&self, css: &str) {
        let id = self
            .find(css)
            .unwrap_or_else(|| panic!("no {css} on the page"));
        self.call("POST", &format!("/element/{id}/click"), json!({}));
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let png = self.call("GET", "/screenshot", json!({}));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closes Chromium; ChromeDriver is killed with its `Child`.
        let (client, url) = (&self.client, &self.base);
        let _ = self.runtime.block_on(async {
            client
                .delete(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
        });
    }
}

/// Where tests save screenshots: `target/tmp/screenshots/NAME.png`.
pub fn screenshot_path(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("screenshots")
        .join(format!("{name}.png"))
}
