//! A real browser for the tests of the pages (`/docs`, `/console`): Debian's Chromium, headless,
//! driven over WebDriver by its chromedriver. `make test` installs both (scripts/browser.sh); a
//! missing one fails the test with a message naming it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

pub use fantoccini::elements::Element;
pub use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::{Child, Command};

/// The narrowest window headless Chromium opens; narrower viewports are emulated.
const MIN_WINDOW_WIDTH: u32 = 500;

/// How long a page may take to show what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(20);

fn binary(variable: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var(variable).unwrap_or_else(|_| default.to_owned()));
    assert!(
        path.exists(),
        "{} not found: run `make test` (scripts/browser.sh installs it), or install the Debian \
         packages chromium and chromium-driver, or set {variable}",
        path.display()
    );
    path
}

/// One headless Chromium session; the browser and its driver end when it is dropped.
pub struct Browser {
    pub client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A fresh browser (empty profile: no cookies) with a window `width` × `height` CSS pixels.
    pub async fn start(width: u32, height: u32) -> Self {
        let chromium = binary("TMS_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("TMS_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("a browser profile folder");
        let mut options = json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.path().display()),
            ],
        });
        if width < MIN_WINDOW_WIDTH {
            // A window is never narrower than Chromium's minimum: a phone's width is emulated.
            options["mobileEmulation"] =
                json!({"deviceMetrics": {"width": width, "height": height, "pixelRatio": 1.0}});
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connected = ClientBuilder::rustls()
                .expect("a TLS configuration for the WebDriver client")
                .capabilities(capabilities.clone())
                .connect(&url)
                .await;
            match connected {
                Ok(client) => break client,
                Err(e) if started.elapsed() < PATIENCE => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session with Chromium: {e}"),
            }
        };
        Self {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Opens `url` and waits for `css` to be on the page.
    pub async fn open(&self, url: &str, css: &str) -> Element {
        self.client.goto(url).await.expect("navigate");
        self.wait_for(css).await
    }

    /// Types `text` into the field matching `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.wait_for(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        self.wait_for(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// The address of the page shown.
    pub async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("the current URL")
            .to_string()
    }

    /// Waits until the address of the page shown contains `fragment`.
    pub async fn wait_for_url(&self, fragment: &str) {
        let started = Instant::now();
        loop {
            let url = self.url().await;
            if url.contains(fragment) {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the browser never reached {fragment:?}; it shows {url}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map_or(0, |found| found.len())
    }

    /// Runs `script` in the page; what it returned.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("run {script}: {e}"))
    }

    /// Waits for the first element matching `css`.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
    }

    /// Waits until the page's text contains `text`.
    pub async fn wait_for_text(&self, text: &str) {
        let started = Instant::now();
        loop {
            // While a page loads there may be no body yet: that is only not the text yet.
            let body = match self.client.find(Locator::Css("body")).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if body.contains(text) {
                return;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "the page never showed {text:?}; it shows:\n{body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap_or_default()
    }

    /// Scrolls the first element matching `css` into view.
    pub async fn scroll_to(&self, css: &str) {
        self.wait_for(css).await;
        self.client
            .execute(
                "document.querySelector(arguments[0]).scrollIntoView({block: 'center'})",
                vec![json!(css)],
            )
            .await
            .unwrap_or_else(|e| panic!("scroll to {css}: {e}"));
    }

    /// Saves a screenshot as `target/screenshots/<name>.png`, for review.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = crate::repo_root().join("target/screenshots");
        std::fs::create_dir_all(&dir).expect("target/screenshots");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("save the screenshot");
    }

    /// Ends the WebDriver session (the browser quits).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
