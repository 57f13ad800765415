//! Write Switchyard plugins: a manifest and typed handlers, and nothing about NATS,
//! JetStream, retries or tracing.
//!
//! A plugin is a `plugin.toml` (see `docs/manifest.md`) and a worker process built from it.
//! The worker receives each event its subscriptions match, decoded into your type, with a
//! [`Context`] (attempt, deadline, tenant, settings); your handler returns `Ok(())`, a
//! retryable [`HandlerError::retry`], or a [`HandlerError::permanent`] failure that sends the
//! event to the dead letters. Panics are caught and retried. Retries, backoff, timeouts and
//! dead letters are the dispatcher's job, set per subscription in the manifest.
//!
//! # Quick start
//!
//! ```no_run
//! use switchyard_plugin_sdk::{HandlerError, Plugin, TypedEvent, Version};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct OrderCreated { order_id: String, total_cents: u64 }
//!
//! impl TypedEvent for OrderCreated {
//!     const TYPE: &'static str = "order.created";
//!     const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), switchyard_plugin_sdk::PluginError> {
//!     Plugin::from_manifest_str(include_str!("../examples/hello/plugin.toml"))?
//!         .on(|order: OrderCreated, ctx| async move {
//!             if order.total_cents == 0 {
//!                 return Err(HandlerError::permanent("order.empty", "an order of nothing"));
//!             }
//!             tracing::info!(order = %order.order_id, tenant = %ctx.tenant(), "hello");
//!             Ok(())
//!         })
//!         .run() // until SIGTERM or Ctrl-C; SWITCHYARD_NATS_URL says where NATS is
//!         .await
//! }
//! ```
//!
//! # Channels
//!
//! Plugins talk to each other on named channels, within a tenant: `ctx.channels().send(..)`
//! or `.request(..)` from a handler, [`Plugin::on_channel`] to receive and answer. The
//! manifest's `[channels]`, as approved by an operator, says which; the broker enforces it,
//! and a refused send comes back as [`ChannelError::PermissionDenied`]. See [`channels`] and
//! `docs/security.md`.
//!
//! # Testing
//!
//! - Unit: call [`Plugin::handle`] with an event and [`Context::for_test`], no server.
//! - Integration: [`testing::TestBed`] (feature `testing`) starts a real nats-server and an
//!   in-process dispatcher with the plugin registered, so a test publishes events and
//!   awaits their outcomes and dead letters.

pub mod channels;
mod connect;
mod context;
mod handler;
mod headers;
pub mod operations;
mod plugin;
mod settings;
#[cfg(feature = "otlp")]
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

pub use channels::{ChannelContext, ChannelError, Channels};
pub use connect::WorkerSettings;
pub use context::{Context, ContextBuilder, SettingsError};
pub use handler::{HandlerError, HandlerResult};
pub use operations::{CallContext, CallContextBuilder};
pub use plugin::{Plugin, PluginError, DEFAULT_DRAIN_TIMEOUT, DEFAULT_MAX_CONCURRENCY};
pub use switchyard_schemas::call::{CallError, CallErrorKind, CallOptions, Caller};
pub use worker::{env, stop_signal, Handled};

pub use switchyard_schemas::delivery::{ErrorCode, Outcome};
pub use switchyard_schemas::manifest::toml;
pub use switchyard_schemas::semver::Version;
pub use switchyard_schemas::{Event, EventId, Manifest, Tenant, TypedEvent};
