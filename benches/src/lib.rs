//! Benchmarks of Switchyard against raw async-nats doing the same work.
//!
//! - `src/bin/e2e.rs` runs the end-to-end and shape-of-cost scenarios, each on its own fresh
//!   nats-server, and prints tables: `cargo run --release -p switchyard-benches --bin e2e`.
//! - `benches/micro.rs` holds the criterion micro-benchmarks of the hot pieces (envelope,
//!   headers, policy decisions, manifests): `cargo bench -p switchyard-benches`.
//! - `benches/run.sh` runs both.
//!
//! This machine is shared and small, so absolute figures move from run to run; every figure
//! that matters is a ratio against a baseline measured in the same run. Results and how to
//! read them: `docs/performance.md`.
//!
//! The pieces: a [`scenario::Scenario`] names a [`scenario::Target`] (the raw async-nats
//! baseline of [`raw`], or Switchyard as set up by [`switchyard`]), a payload size, a
//! [`drive::Load`] and a message count; [`scenario::run`] starts a fresh [`server`], drives
//! the load through the target ([`drive`]), and returns a [`scenario::Measurement`].
//! [`idle`] measures the cost of registered plugins that receive nothing; [`durability`] the
//! publish latency of a server that syncs every write; [`calls`] plugin operations against raw
//! request/reply; [`report`] prints.

pub mod calls;
pub mod clock;
pub mod drive;
pub mod durability;
pub mod error;
pub mod idle;
pub mod latency;
pub mod probe;
pub mod proc_stat;
pub mod raw;
pub mod report;
pub mod scenario;
pub mod server;
pub mod suite;
pub mod switchyard;
pub mod telemetry;
pub mod wire;

pub use error::{BenchError, BenchResult, Step};
