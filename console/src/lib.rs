//! Switchyard's management API and web console.
//!
//! One implementation, [`Management`], answers every operator call: it authenticates the
//! operator by token, checks the role ([`Role`]), makes the call with the same library
//! functions as the CLI, and records it in the audit stream. Two transports translate to it:
//! HTTP/JSON ([`http`], axum) and a NATS micro service ([`service`]). The web console is a
//! page of plain HTML and JavaScript built into the binary ([`assets`]), a client of the
//! HTTP API with a live view over server-sent events ([`live`]).
//!
//! Start here: [`Console::start`]. The API is described in docs/management-api.md.

pub mod assets;
mod deploy;
mod error;
pub mod http;
pub mod listener;
pub mod live;
mod management;
pub mod request;
pub mod service;
pub mod token;
mod views;

use std::net::SocketAddr;

pub use error::{ApiError, ErrorKind};
pub use management::{Management, Transport};
pub use request::Request;
use switchyard_bus::Bus;
pub use switchyard_control::auth::operators::{Identity, OperatorName, Role};
use tokio::task::{JoinHandle, JoinSet};

/// The address the console listens on when none is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8425";

/// Why the console did not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// What the API reads could not be opened.
    #[error("cannot open the management API: {0}")]
    Open(#[from] ApiError),
    /// The HTTP address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The NATS service could not be started.
    #[error("cannot start the NATS service `switchyard-management`: {0}")]
    Service(String),
}

/// A running console: the HTTP server, the NATS service and the live view. Stops when
/// dropped.
#[derive(Debug)]
pub struct Console {
    address: SocketAddr,
    management: Management,
    tasks: JoinSet<()>,
    background: Vec<JoinHandle<()>>,
}

impl Console {
    /// Starts the console over `bus` (a trusted login, in its namespace), listening on
    /// `listen` (port 0: any free port).
    ///
    /// # Errors
    /// [`ConsoleError`].
    pub async fn start(bus: &Bus, listen: SocketAddr) -> Result<Self, ConsoleError> {
        let management = Management::open(bus).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| ConsoleError::Listen {
                address: listen,
                source,
            })?;
        let address = listener
            .local_addr()
            .map_err(|source| ConsoleError::Listen {
                address: listen,
                source,
            })?;
        let tasks = service::serve(bus.client(), bus.namespace(), management.clone())
            .await
            .map_err(|e| ConsoleError::Service(e.to_string()))?;
        let (live, live_task) = live::Live::start(management.clone());
        let router = http::router(management.clone(), live);
        let server = tokio::spawn(async move {
            let listener = listener::BoundedListener::new(listener, listener::MAX_CONNECTIONS);
            if let Err(error) = axum::serve(listener, router).await {
                tracing::error!(%error, "the console's HTTP server stopped");
            }
        });
        Ok(Self {
            address,
            management,
            tasks,
            background: vec![live_task, server],
        })
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its URL: `http://{address}/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// The management API it serves.
    pub fn management(&self) -> &Management {
        &self.management
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.tasks.abort_all();
        for task in &self.background {
            task.abort();
        }
    }
}
