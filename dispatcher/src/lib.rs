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
//! - A subscription whose policy sets `fail_after_opens` has its breaker watched: after that
//!   many openings in a row with no success, the dispatcher marks its plugin failed in the
//!   registry (audited, announced), which holds its events until an operator enables it.
//! - [`local_nats`] finds, installs and runs a local nats-server (the embedded default, tests).
//!
//! The registry of plugins and broker-enforced rights are the control plane's
//! (`switchyard-control`).

pub mod consumer;
pub mod dead_letter;
mod dispatcher;
pub mod explain;
mod failing;
pub mod local_nats;
pub mod operations;
pub mod pipeline;
pub mod provision;
pub mod pull;
pub mod raw;
pub mod redrive;
mod settings;
pub mod status;

pub use dispatcher::{Dispatcher, DispatcherConfig, DispatcherError, SubscriptionStats};
