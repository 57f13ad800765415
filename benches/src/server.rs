//! A fresh nats-server per scenario: its own temporary store and a random port, so that no
//! scenario inherits another one's streams, consumers or server state.

use switchyard_dispatcher::local_nats::{binary, LocalNatsServer, Port, ServerOptions};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proc_stat::Pid;
use crate::{BenchError, BenchResult, Step};

/// A running nats-server with JetStream, killed and its store removed on drop.
#[derive(Debug)]
pub struct BenchServer {
    server: LocalNatsServer,
    // After the server, so that the store outlives the process using it.
    _store: TempDir,
}

impl BenchServer {
    /// Starts a server (found or installed as `switchyard_dispatcher::local_nats` says).
    ///
    /// # Errors
    /// When no binary can be had or the server does not come up.
    pub async fn start() -> BenchResult<Self> {
        Self::launch(None, false).await
    }

    /// Starts a server with this configuration text, if any (e.g. `jetstream { sync_interval:
    /// always }`), written beside its store, and with a monitoring port, so that
    /// [`syncs_always`](Self::syncs_always) can check what it runs with.
    ///
    /// # Errors
    /// As [`start`](Self::start); also when the configuration is refused.
    pub async fn start_with_config(config: Option<&str>) -> BenchResult<Self> {
        Self::launch(config, true).await
    }

    async fn launch(config: Option<&str>, monitoring: bool) -> BenchResult<Self> {
        let store = TempDir::new().step("create a store directory")?;
        let config_file = match config {
            Some(text) => {
                let path = store.path().join("nats-server.conf");
                std::fs::write(&path, text).step("write the server configuration")?;
                Some(path)
            }
            None => None,
        };
        let server = LocalNatsServer::start(ServerOptions {
            store_dir: store.path().to_path_buf(),
            monitoring_port: monitoring.then_some(Port::Random),
            config_file,
            ..ServerOptions::default()
        })
        .await
        .step("start nats-server")?;
        Ok(Self {
            server,
            _store: store,
        })
    }

    /// Whether the server's JetStream syncs every write before acknowledging it
    /// (`sync_always` in its `/jsz`; absent means no, nats-server's default).
    ///
    /// # Errors
    /// When the server has no monitoring port (it was not started with
    /// [`start_with_config`](Self::start_with_config)), or `/jsz` does not answer as expected.
    pub async fn syncs_always(&self) -> BenchResult<bool> {
        let Some(port) = self.server.monitoring_port() else {
            return Err(BenchError::new(
                "read /jsz",
                "the server was started without a monitoring port",
            ));
        };
        let body = http_get(port, "/jsz").await.step("read /jsz")?;
        let jsz: serde_json::Value = serde_json::from_slice(&body).step("parse /jsz")?;
        jsz.pointer("/config/sync_always")
            .map_or(Ok(false), |value| {
                value.as_bool().ok_or_else(|| {
                    BenchError::new(
                        "read /jsz",
                        format!("sync_always is {value}, not a boolean"),
                    )
                })
            })
    }

    /// A new connection to the server.
    ///
    /// # Errors
    /// When the server does not accept it.
    pub async fn connect(&self) -> BenchResult<async_nats::Client> {
        async_nats::connect(self.server.url())
            .await
            .step("connect to nats-server")
    }

    /// The server process, for its CPU time.
    pub fn pid(&self) -> Option<Pid> {
        self.server.pid().map(Pid::Other)
    }
}

/// The body of `GET <path>` on the local monitoring port (HTTP/1.0: the server closes the
/// connection after its answer).
async fn http_get(port: u16, path: &str) -> std::io::Result<Vec<u8>> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    if !response.starts_with(b"HTTP/1.1 200") && !response.starts_with(b"HTTP/1.0 200") {
        return Err(invalid("not 200 OK"));
    }
    let body = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of the HTTP head"))?;
    Ok(response.split_off(body + 4))
}

/// The version of the nats-server binary the benchmarks use, e.g. `2.15.1`.
///
/// # Errors
/// When no binary can be had.
pub async fn server_version() -> BenchResult<String> {
    let found = binary::resolve().await.step("find nats-server")?;
    Ok(found.version.to_string())
}
