//! Find, install and run a local `nats-server`.
//!
//! Switchyard's only stateful component is `nats-server` (2.10 or newer, JetStream on). This module
//! gives the `switchyard dev` command and the test harness one way to get one on this machine:
//!
//! - [`binary`] finds a suitable `nats-server` (`NATS_SERVER_BIN`, then `PATH`, then the pinned
//!   install in the tools directory) and checks its version;
//! - [`install`] installs the pinned version without root, into a project-local tools directory;
//! - [`process`] runs a server as a child process in a data directory the caller chooses, waits
//!   until it is ready, and stops it again.
//!
//! # Examples
//!
//! ```no_run
//! use switchyard_dispatcher::local_nats::{LocalNatsServer, ServerOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut server = LocalNatsServer::start(ServerOptions {
//!     store_dir: "/var/tmp/switchyard-dev".into(),
//!     ..Default::default()
//! })
//! .await?;
//! let client = async_nats::connect(server.url()).await?;
//! client.publish("greeting", "hello".into()).await?;
//! server.stop().await?;
//! # Ok(())
//! # }
//! ```

pub mod binary;
pub mod install;
pub mod process;

pub use binary::{BinaryError, BinarySource, NatsServerBinary, MINIMUM_VERSION, PINNED_VERSION};
pub use process::{ClusterOptions, LocalNatsServer, Port, Readiness, ServerError, ServerOptions};
