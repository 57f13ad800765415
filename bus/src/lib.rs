//! Publish Switchyard events to NATS JetStream, and provision the streams they live in.
//!
//! A service connects, makes sure the streams exist (idempotent; safe on every start), and
//! publishes typed events. Each event's id travels as `Nats-Msg-Id`, so publishing the same
//! event twice within the duplicate window stores it once.
//!
//! # Examples
//!
//! ```no_run
//! use switchyard_bus::{Bus, ConnectOptions};
//! use switchyard_schemas::{Tenant, TypedEvent, semver::Version};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct OrderCreated { order_id: String, total_cents: u64 }
//!
//! impl TypedEvent for OrderCreated {
//!     const TYPE: &'static str = "order.created";
//!     const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = Bus::connect(&ConnectOptions::new("nats://127.0.0.1:4222")).await?;
//! bus.provision().await?;
//! let publisher = bus.publisher("urn:svc:orders");
//! let receipt = publisher
//!     .publish(&Tenant::new("acme")?, &OrderCreated { order_id: "o-1".into(), total_cents: 990 })
//!     .await?;
//! println!("stored as #{} in {}", receipt.sequence, receipt.stream);
//! # Ok(())
//! # }
//! ```

mod call;
mod connect;
pub mod kv;
mod publish;
pub mod report;
mod streams;
mod wire;

pub use call::{CallReply, CallTarget, Calls, DEFAULT_CALL_TIMEOUT};
pub use connect::{
    redact_password, server_addrs, server_attributes, without_userinfo, ConnectError,
    ConnectOptions,
};
pub use publish::{
    BatchError, PublishError, PublishErrorKind, PublishReceipt, Publisher, DEFAULT_ACK_TIMEOUT,
};
pub use streams::{
    ensure, provision, set_replicas, stream_name, Ensured, ProvisionError, Provisioned,
    StreamSettings, Streams,
};
pub use wire::{decode_event, event_headers, header};

use async_nats::jetstream;
use switchyard_schemas::Namespace;

/// A connection to NATS with the namespace and stream settings of one Switchyard deployment.
#[derive(Debug, Clone)]
pub struct Bus {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    namespace: Namespace,
    streams: Streams,
}

/// What [`Bus::provision`] did to each stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvisionReport {
    /// The events stream.
    pub events: Provisioned,
    /// The dead-letter stream.
    pub dead_letters: Provisioned,
    /// The audit stream.
    pub audit: Provisioned,
}

/// What [`Bus::ensure_streams`] found of each stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsureReport {
    /// The events stream.
    pub events: Ensured,
    /// The dead-letter stream.
    pub dead_letters: Ensured,
    /// The audit stream.
    pub audit: Ensured,
}

impl Bus {
    /// Connects with the default namespace and stream settings.
    ///
    /// # Errors
    /// See [`ConnectOptions::connect`].
    pub async fn connect(options: &ConnectOptions) -> Result<Self, ConnectError> {
        Ok(Self::from_client(options.connect().await?))
    }

    /// Wraps an existing client, with the default namespace and stream settings.
    pub fn from_client(client: async_nats::Client) -> Self {
        let namespace = Namespace::default();
        Self {
            jetstream: jetstream::new(client.clone()),
            client,
            streams: Streams::defaults(&namespace),
            namespace,
        }
    }

    /// Uses another namespace; stream settings are reset to that namespace's defaults.
    pub fn with_namespace(mut self, namespace: Namespace) -> Self {
        self.streams = Streams::defaults(&namespace);
        self.namespace = namespace;
        self
    }

    /// Uses these stream settings.
    pub fn with_streams(mut self, streams: Streams) -> Self {
        self.streams = streams;
        self
    }

    /// Creates or updates the three streams so they match the settings.
    ///
    /// # Errors
    /// See [`provision`].
    pub async fn provision(&self) -> Result<ProvisionReport, ProvisionError> {
        Ok(ProvisionReport {
            events: provision(&self.jetstream, &self.streams.events).await?,
            dead_letters: provision(&self.jetstream, &self.streams.dead_letters).await?,
            audit: provision(&self.jetstream, &self.streams.audit).await?,
        })
    }

    /// Creates the streams that are missing and leaves existing ones as they are (see
    /// [`ensure`]): what a dispatcher does at every start.
    ///
    /// # Errors
    /// See [`ensure`].
    pub async fn ensure_streams(&self) -> Result<EnsureReport, ProvisionError> {
        Ok(EnsureReport {
            events: ensure(&self.jetstream, &self.streams.events).await?,
            dead_letters: ensure(&self.jetstream, &self.streams.dead_letters).await?,
            audit: ensure(&self.jetstream, &self.streams.audit).await?,
        })
    }

    /// A publisher whose events name `source` as their producer.
    pub fn publisher(&self, source: impl Into<String>) -> Publisher {
        Publisher::new(self.client.clone(), self.namespace.clone(), source)
    }

    /// The underlying NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The stream settings.
    pub fn streams(&self) -> &Streams {
        &self.streams
    }
}
