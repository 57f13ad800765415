//! A real headless Chromium, driven over WebDriver (chromedriver, fantoccini): for the web
//! console's tests. Each browser runs its own chromedriver on a free port, in a process group
//! of its own that is killed with everything it started when the browser is dropped.
//!
//! Chromium and chromedriver are found through `CHROMIUM` and `CHROMEDRIVER`, else on `PATH`
//! (`chromium`, `chromium-browser`, `google-chrome`; `chromedriver`). On Debian:
//! `apt-get install chromium chromium-driver` (`.ci/run` does it).
//!
//! Screenshots go to `target/test-artifacts/console/`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::wait_until;

/// How long an element or a text is waited for.
pub const BROWSER_DEADLINE: Duration = Duration::from_secs(20);

/// A headless Chromium with its chromedriver.
pub struct Browser {
    client: Client,
    driver: Child,
    artifacts: PathBuf,
    test: String,
}

/// The first of `names` that is a file on `PATH`, or the path in `variable`.
fn find(variable: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of `width` × `height`, for the test
    /// `test` (which names its screenshots).
    ///
    /// # Panics
    /// When Chromium or chromedriver is missing (the message says how to install them), or
    /// they do not start.
    pub async fn start(test: &str, width: u32, height: u32) -> Self {
        let missing = "browser tests need Chromium and chromedriver: on Debian `apt-get install \
                       chromium chromium-driver`, or set CHROMIUM and CHROMEDRIVER to their paths";
        let chromium = find(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        )
        .expect(missing);
        let chromedriver = find("CHROMEDRIVER", &["chromedriver"]).expect(missing);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let mut browser = Self {
            client: connect(port, &chromium, width, height).await,
            driver,
            artifacts: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/test-artifacts/console"),
            test: test.to_owned(),
        };
        browser.driver_started();
        browser
    }

    fn driver_started(&mut self) {
        std::fs::create_dir_all(&self.artifacts).expect("the artifacts directory is made");
    }

    /// The WebDriver client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url`.
    ///
    /// # Panics
    /// When it cannot be opened.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("the page opens");
    }

    /// Waits for the element `css` to be displayed.
    ///
    /// # Panics
    /// When it is not within [`BROWSER_DEADLINE`] (a screenshot is saved first).
    pub async fn find(&self, css: &str) -> Element {
        let found = self
            .client
            .wait()
            .at_most(BROWSER_DEADLINE)
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(error) => {
                self.screenshot(&format!("missing-{}", slug(css))).await;
                panic!("`{css}` did not appear: {error}");
            }
        }
    }

    /// Waits until the text of `css` contains `text`; returns it.
    ///
    /// # Panics
    /// When it does not within [`BROWSER_DEADLINE`].
    pub async fn wait_for_text(&self, css: &str, wanted: &str) -> String {
        let seen = std::sync::Mutex::new(String::new());
        let found = wait_until(BROWSER_DEADLINE, || async {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let contains = text.contains(wanted);
            *seen.lock().expect("not poisoned") = text;
            contains
        })
        .await;
        let seen = seen.into_inner().expect("not poisoned");
        if found.is_err() {
            self.screenshot(&format!("text-{}", slug(css))).await;
            panic!("`{css}` did not come to say `{wanted}`; it says `{seen}`");
        }
        seen
    }

    /// Clicks the element `css` once it is displayed.
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("the click lands");
    }

    /// Whether an element `css` exists now.
    pub async fn exists(&self, css: &str) -> bool {
        self.client.find(Locator::Css(css)).await.is_ok()
    }

    /// Saves a screenshot as `{test}-{name}.png` in the artifacts directory; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let path = self.artifacts.join(format!("{}-{name}.png", self.test));
        match self.client.screenshot().await {
            Ok(png) => {
                if let Err(error) = std::fs::write(&path, png) {
                    eprintln!("screenshot {} not written: {error}", path.display());
                }
            }
            Err(error) => eprintln!("screenshot {name} not taken: {error}"),
        }
        path
    }

    /// Ends the session (Chromium exits) and stops chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started, also when a
        // test panicked before `close`.
        let group = i32::try_from(self.driver.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        match group {
            Some(group) => {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            None => {
                let _ = self.driver.kill();
            }
        }
        let _ = self.driver.wait();
    }
}

/// Connects to chromedriver on `port` (waiting for it to listen) with a new headless session.
async fn connect(port: u16, chromium: &Path, width: u32, height: u32) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                format!("--window-size={width},{height}"),
            ],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut last;
    let deadline = tokio::time::Instant::now() + BROWSER_DEADLINE;
    loop {
        let builder = {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            builder.capabilities(capabilities.clone());
            builder
        };
        match builder.connect(&url).await {
            Ok(client) => return client,
            Err(error) => last = error.to_string(),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver on port {port} gave no session: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A file-name-safe form of a CSS selector.
fn slug(css: &str) -> String {
    css.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(60)
        .collect()
}
