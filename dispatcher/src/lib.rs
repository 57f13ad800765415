//! The Switchyard dispatcher: delivers each event of the events stream to every plugin
//! subscribed to it, under that plugin's own delivery policy.
//!
//! Entry points:
//! - [`Dispatcher::start`] runs a dispatcher in-process (the `switchyard run` command does the
//!   same); several instances against one NATS server share the work.
//! - [`pipeline`] holds the pieces of the delivery path, each with one job: rate limit,
//!   circuit breaker, keep-alive, worker presence, the retry/dead-letter decision.
//! - [`dead_letter`] writes dead letters; [`redrive`] lists, shows, replays and purges them.
//! - [`status`] holds what dispatchers report to operators (circuit states); [`explain`] says
//!   where an event is for each plugin.
//! - [`local_nats`] finds, installs and runs a local nats-server (the embedded default, tests).
//!
//! The registry of plugins and broker-enforced rights are the control plane's
//! (`switchyard-control`).

pub mod consumer;
pub mod dead_letter;
mod dispatcher;
pub mod explain;
pub mod local_nats;
pub mod pipeline;
pub mod pull;
pub mod raw;
pub mod redrive;
mod settings;
pub mod status;

pub use dispatcher::{Dispatcher, DispatcherConfig, DispatcherError, SubscriptionStats};
