//! Switchyard's contracts: the event envelope, typed events and the subject namespace.
//!
//! This crate depends on no NATS client: it says what travels, not how.
//!
//! - [`Event`] is a CloudEvents 1.0 event in *binary content mode*: the attributes travel as
//!   NATS headers ([`header`]), the data as the body, MessagePack by default, JSON accepted
//!   ([`ContentType`]).
//! - [`TypedEvent`] ties a Rust type to an event type name and a semver schema version.
//! - [`Namespace`] builds every subject; [`Tenant`], [`EventType`], [`PluginId`] and
//!   [`ChannelName`] are validated names that can be put into subjects safely.
//!
//! The full wire format, for clients in other languages, is `docs/wire-format.md`.
//!
//! # Examples
//!
//! ```
//! use switchyard_schemas::{Event, Namespace, Tenant, TypedEvent, semver::Version};
//!
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct OrderCreated { order_id: String, total_cents: u64 }
//!
//! impl TypedEvent for OrderCreated {
//!     const TYPE: &'static str = "order.created";
//!     const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
//! }
//!
//! let order = OrderCreated { order_id: "o-42".into(), total_cents: 1999 };
//! let event = Event::builder(Tenant::new("acme")?, "urn:svc:orders").build(&order)?;
//!
//! let subject = Namespace::default().event(&event.attributes.tenant, &event.attributes.event_type);
//! assert_eq!(subject, "switchyard.events.acme.order.created");
//!
//! // What a receiver does with the headers and body of the message:
//! let headers = event.headers();
//! let lookup = |name: &str| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
//! let received = Event::decode(lookup, event.data.clone())?;
//! assert_eq!(received.data_as::<OrderCreated>()?, order);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod call;
mod content_type;
pub mod delivery;
mod envelope;
mod error;
pub mod header;
pub mod manifest;
mod name;
mod subject;
pub mod telemetry;
mod wellformed;
pub mod worker_env;

pub use content_type::{ContentType, JSON_MEDIA_TYPE, MSGPACK_MEDIA_TYPE};
pub use envelope::{Attributes, Event, EventBuilder, EventId, TypedEvent, MAX_ID_LEN};
pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use manifest::{
    Backoff, Callers, DeliveryPolicy, EventPattern, Limits, Manifest, ManifestErrors,
    ManifestProblem, MessageType, Operation, ProblemKind, Rate, RatePeriod, Subscription,
    SubscriptionName, MAX_MANIFEST_BYTES, MAX_PATTERNS_PER_SUBSCRIPTION, MAX_SUBSCRIPTIONS,
    MAX_TAGS, MAX_TEXT_BYTES, MAX_URL_BYTES,
};
pub use name::{
    ChannelName, EventType, NameError, OperationName, PluginId, ServiceName, Tag, Tenant,
    MAX_TOKEN_LEN, MAX_TYPE_TOKENS, RESERVED_PLUGIN_IDS,
};
pub use subject::{ChannelSubject, Namespace, SubjectError, DEFAULT_PREFIX};
pub use wellformed::{check_body, BodyError, BodyErrorKind, MAX_BODY_DEPTH};

pub use semver;
pub use time;
