//! One nats-server per test.

use std::path::{Path, PathBuf};

use switchyard_dispatcher::local_nats::{LocalNatsServer, Readiness, ServerOptions};
use tempfile::TempDir;

/// The directory of server configuration files for tests: `tests/configs/`.
pub fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

/// A server configuration for [`TestServer::with_config`]: a file, or text written to one in the
/// server's temporary directory.
///
/// Whatever it says, the harness still binds 127.0.0.1 on a random port and turns JetStream on with
/// the server's own store (command-line options take precedence over the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestConfig {
    /// A configuration file, used where it is (so its `include`s resolve).
    File(PathBuf),
    /// The text of a configuration.
    Text(String),
}

impl TestConfig {
    /// A file in [`configs_dir`], e.g. `TestConfig::named("max-payload.conf")`.
    pub fn named(file_name: &str) -> Self {
        Self::File(configs_dir().join(file_name))
    }

    /// The text of a configuration.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }
}

impl From<PathBuf> for TestConfig {
    fn from(path: PathBuf) -> Self {
        Self::File(path)
    }
}

impl From<&Path> for TestConfig {
    fn from(path: &Path) -> Self {
        Self::File(path.to_path_buf())
    }
}

/// A real nats-server with JetStream for one test, on its own random port (never 4222) with its own
/// temporary store.
///
/// Dropping it kills the server and removes its directory, also while a panicking test unwinds.
#[derive(Debug)]
pub struct TestServer {
    // Declared before `dir`, so the process is dead before its directory is removed.
    server: LocalNatsServer,
    config_file: Option<PathBuf>,
    dir: TempDir,
}

impl TestServer {
    /// Starts a server and waits until its JetStream answers.
    ///
    /// # Panics
    ///
    /// When no server can be found or installed, or it does not come up; the message quotes the
    /// server's log.
    pub async fn start() -> Self {
        Self::launch(None).await
    }

    /// Starts a server with a configuration, e.g. `TestServer::with_config(TestConfig::named("x.conf"))`
    /// or `TestServer::with_config(TestConfig::text("max_payload: 65536"))`.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start), also when the configuration is refused.
    pub async fn with_config(config: impl Into<TestConfig>) -> Self {
        Self::launch(Some(config.into())).await
    }

    /// Starts a server with a configuration that refuses anonymous clients (e.g. auth callout):
    /// ready once it accepts connections, since the harness cannot log in to probe JetStream.
    /// [`client`](Self::client) and [`jetstream`](Self::jetstream) connect anonymously and so
    /// fail on it; connect with the configuration's own users.
    ///
    /// # Panics
    ///
    /// As [`with_config`](Self::with_config).
    pub async fn with_config_refusing_anonymous(config: impl Into<TestConfig>) -> Self {
        Self::launch_with(Some(config.into()), Readiness::Accepting).await
    }

    async fn launch(config: Option<TestConfig>) -> Self {
        Self::launch_with(config, Readiness::JetStream).await
    }

    async fn launch_with(config: Option<TestConfig>, readiness: Readiness) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-test-")
            .tempdir()
            .unwrap_or_else(|error| {
                panic!("creating a temporary directory for nats-server: {error}")
            });
        let config_file = config.map(|config| match config {
            TestConfig::File(path) => path,
            TestConfig::Text(text) => {
                let path = dir.path().join("server.conf");
                std::fs::write(&path, text)
                    .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
                path
            }
        });
        let server = LocalNatsServer::start(ServerOptions {
            store_dir: dir.path().to_path_buf(),
            config_file: config_file.clone(),
            readiness,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|error| panic!("starting a test nats-server: {error}"));
        Self {
            server,
            config_file,
            dir,
        }
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The server's temporary directory: its JetStream store, log and configuration.
    pub fn store_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration file the server runs with, if any. For [`TestConfig::Text`] it lives in
    /// [`store_dir`](Self::store_dir) and may be rewritten before a [`reload`](Self::reload).
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }

    /// A new client connection.
    ///
    /// # Panics
    ///
    /// When the connection fails.
    pub async fn client(&self) -> async_nats::Client {
        let url = self.url();
        async_nats::connect(&url)
            .await
            .unwrap_or_else(|error| panic!("connecting to the test nats-server at {url}: {error}"))
    }

    /// A JetStream context on a new client connection, with a 15 s request timeout.
    ///
    /// # Panics
    ///
    /// When the connection fails.
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        crate::jetstream_context(self.client().await)
    }

    /// Stops the server cleanly and starts it again on the same port with the same store; clients
    /// reconnect on their own.
    ///
    /// # Panics
    ///
    /// When it does not come back.
    pub async fn restart(&mut self) {
        self.server
            .restart()
            .await
            .unwrap_or_else(|error| panic!("restarting the test nats-server: {error}"));
    }

    /// Makes the server reload its configuration file.
    ///
    /// # Panics
    ///
    /// When the server is not running or cannot be signalled.
    pub async fn reload(&mut self) {
        self.server
            .reload()
            .await
            .unwrap_or_else(|error| panic!("reloading the test nats-server: {error}"));
    }

    /// The underlying server, e.g. for its log.
    pub fn server(&self) -> &LocalNatsServer {
        &self.server
    }

    /// The underlying server, e.g. to [`kill`](LocalNatsServer::kill) it as a crash would.
    pub fn server_mut(&mut self) -> &mut LocalNatsServer {
        &mut self.server
    }
}
