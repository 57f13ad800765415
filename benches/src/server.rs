//! A fresh nats-server per scenario: its own temporary store and a random port, so that no
//! scenario inherits another one's streams, consumers or server state.

use switchyard_dispatcher::local_nats::{binary, LocalNatsServer, ServerOptions};
use tempfile::TempDir;

use crate::proc_stat::Pid;
use crate::{BenchResult, Step};

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
        let store = TempDir::new().step("create a store directory")?;
        let server = LocalNatsServer::start(ServerOptions {
            store_dir: store.path().to_path_buf(),
            ..ServerOptions::default()
        })
        .await
        .step("start nats-server")?;
        Ok(Self {
            server,
            _store: store,
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

/// The version of the nats-server binary the benchmarks use, e.g. `2.15.1`.
///
/// # Errors
/// When no binary can be had.
pub async fn server_version() -> BenchResult<String> {
    let found = binary::resolve().await.step("find nats-server")?;
    Ok(found.version.to_string())
}
