//! The Switchyard test harness: every test gets its own real `nats-server`, on its own random port
//! with its own JetStream store, killed and removed when the test ends (also when it panics).
//!
//! The server binary is found or installed once per process by
//! [`switchyard_dispatcher::local_nats::binary::resolve`]: set `NATS_SERVER_BIN` to use a particular
//! one; otherwise a `nats-server` ≥ 2.10 on `PATH` is used, or 2.15.1 is installed into `.tools/`.
//!
//! # Quick start
//!
//! ```no_run
//! use std::time::Duration;
//! use switchyard_tests::{wait_until, TestServer};
//!
//! #[tokio::test]
//! async fn publishes_to_a_stream() {
//!     let server = TestServer::start().await;
//!     let jetstream = server.jetstream().await;
//!     let mut stream = jetstream
//!         .create_stream(async_nats::jetstream::stream::Config {
//!             name: "ORDERS".into(),
//!             subjects: vec!["orders.>".into()],
//!             ..Default::default()
//!         })
//!         .await
//!         .unwrap();
//!     jetstream.publish("orders.created", "{}".into()).await.unwrap().await.unwrap();
//!
//!     // Poll with a deadline; never sleep for a fixed time.
//!     wait_until(Duration::from_secs(5), || {
//!         let mut stream = stream.clone();
//!         async move { stream.info().await.is_ok_and(|info| info.state.messages == 1) }
//!     })
//!     .await
//!     .expect("the message is stored");
//! }
//! # fn main() {}
//! ```
//!
//! [`TestServer::with_config`] starts a server with a configuration file (see [`configs_dir`]) or
//! text; [`TestCluster::start`] starts a local JetStream cluster for replicated streams, and
//! [`Switchyard::on_cluster`] one with Switchyard's streams and buckets provisioned on it;
//! [`SecuredSwitchyard::start`] starts a server whose broker enforces plugin rights (auth
//! callout) with Switchyard's control plane, and connects raw plugin clients to it.

use std::time::Duration;

mod browser;
mod calls;
mod cli;
mod cluster;
mod console;
mod dispatch;
pub mod otlp;
mod process;
mod python;
mod raw;
mod secure;
mod server;
mod wait;
mod worker;

pub use browser::{Browser, BROWSER_DEADLINE};
pub use calls::{operations_manifest, wait_for_operation, Quote, QuoteRequest};
pub use cli::{failed, run_switchyard, stderr, stdout, succeeded};
pub use cluster::{ReplicaState, TestCluster};
pub use console::{package_bytes, settings_manifest, ConsoleFixture, FailingPlugin, HttpCall};
pub use dispatch::{
    manifest, provision_with_buckets, small_streams, wait_until_replicated, Broker, OrderCreated,
    StoredDeadLetter, Switchyard, SMALL_AUDIT_BYTES, SMALL_DEAD_LETTERS_BYTES, SMALL_EVENTS_BYTES,
};
pub use otlp::{Answer, OtlpReceiver, ReceivedMetric, ReceivedSpan};
pub use process::RunningDispatcher;
pub use python::{python_command, python_paths, PYTHON_PACKAGES};
pub use raw::{event_lines, header_block, RawPublisher};
pub use secure::{
    channel_manifest, round_trip, RawPlugin, Sealing, SecuredSwitchyard, ServerErrors,
};
pub use server::{configs_dir, TestConfig, TestServer};
pub use wait::{wait_until, TimedOut};
pub use worker::{Behaviour, ReceivedDelivery, TestWorker};

/// The request timeout of the harness's JetStream contexts: above async-nats's 5 s default, since
/// tests share two cores with builds and with each other, and replicated writes wait for peers.
const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(15);

fn jetstream_context(client: async_nats::Client) -> async_nats::jetstream::Context {
    let mut context = async_nats::jetstream::new(client);
    context.set_timeout(JETSTREAM_TIMEOUT);
    context
}
