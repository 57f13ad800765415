//! Publishing events to the events stream: one at a time, or many with a bounded window of
//! acknowledgements in flight.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture};
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use switchyard_schemas::telemetry::{self, attr};
use switchyard_schemas::{EncodeError, Event, EventId, Namespace, Tenant, TypedEvent};

use crate::wire::event_headers;

/// What the server said about a stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReceipt {
    /// The event's id.
    pub id: EventId,
    /// The stream that stored it.
    pub stream: String,
    /// Its sequence number in that stream.
    pub sequence: u64,
    /// True when an event with the same id was already stored within the duplicate window:
    /// this publish stored nothing, and `sequence` is the earlier copy's.
    pub duplicate: bool,
}

/// Why an event was not (known to be) stored.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The message is larger than the server accepts.
    #[error(
        "event `{id}` is {size} bytes with headers, over the server's max_payload of {max} bytes"
    )]
    PayloadTooLarge {
        /// The event's id.
        id: EventId,
        /// Payload plus header bytes.
        size: usize,
        /// The server's limit.
        max: usize,
    },
    /// No stream stores the event's subject: run provisioning first.
    #[error("no stream stores subject `{subject}` (are the streams provisioned?)")]
    StreamMissing {
        /// The subject published to.
        subject: String,
    },
    /// No acknowledgement arrived: the event may or may not be stored. Publish it again with
    /// the same id; de-duplication stores it once.
    #[error("event `{id}` on `{subject}` was not acknowledged: {reason}")]
    NotAcknowledged {
        /// The event's id.
        id: EventId,
        /// The subject published to.
        subject: String,
        /// Timed out, or the connection broke.
        reason: String,
    },
    /// The stream refused the event (for example because it is full).
    #[error("stream refused event `{id}` on `{subject}`: {reason}")]
    Refused {
        /// The event's id.
        id: EventId,
        /// The subject published to.
        subject: String,
        /// The server's message.
        reason: String,
    },
    /// The event could not be built from the data.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// The kind of a [`PublishError`], for matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishErrorKind {
    /// See [`PublishError::PayloadTooLarge`].
    PayloadTooLarge,
    /// See [`PublishError::StreamMissing`].
    StreamMissing,
    /// See [`PublishError::NotAcknowledged`].
    NotAcknowledged,
    /// See [`PublishError::Refused`].
    Refused,
    /// See [`PublishError::Encode`].
    Encode,
}

impl PublishErrorKind {
    /// A short name for telemetry's `error.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PayloadTooLarge => "payload_too_large",
            Self::StreamMissing => "stream_missing",
            Self::NotAcknowledged => "not_acknowledged",
            Self::Refused => "refused",
            Self::Encode => "encode",
        }
    }
}

impl PublishError {
    /// The kind of this error.
    pub fn kind(&self) -> PublishErrorKind {
        match self {
            Self::PayloadTooLarge { .. } => PublishErrorKind::PayloadTooLarge,
            Self::StreamMissing { .. } => PublishErrorKind::StreamMissing,
            Self::NotAcknowledged { .. } => PublishErrorKind::NotAcknowledged,
            Self::Refused { .. } => PublishErrorKind::Refused,
            Self::Encode(_) => PublishErrorKind::Encode,
        }
    }
}

/// A batch stopped at its first failure.
#[derive(Debug, thiserror::Error)]
#[error("publishing event #{index} of the batch failed: {error}")]
pub struct BatchError {
    /// The position in the batch of the first event that failed.
    pub index: usize,
    /// Why it failed.
    pub error: PublishError,
    /// The events known to be stored, by position. Events after `index` that are not listed
    /// were not sent or not acknowledged; publishing the whole batch again is safe, since
    /// de-duplication by id stores each event once.
    pub stored: Vec<(usize, PublishReceipt)>,
}

/// Publishes events to the events stream of one namespace.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    namespace: Namespace,
    source: String,
}

/// How long a publish waits for the stream's acknowledgement by default.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

impl Publisher {
    /// A publisher whose events name `source` as their producer (`urn:svc:orders`).
    pub fn new(
        client: async_nats::Client,
        namespace: Namespace,
        source: impl Into<String>,
    ) -> Self {
        let js = ack_context(client.clone(), DEFAULT_ACK_TIMEOUT);
        Self {
            client,
            js,
            namespace,
            source: source.into(),
        }
    }

    /// Waits at most `timeout` for each acknowledgement.
    pub fn with_ack_timeout(mut self, timeout: Duration) -> Self {
        self.js = ack_context(self.client.clone(), timeout);
        self
    }

    /// The namespace events are published into.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Builds an event from `data` for `tenant` (fresh id, now, MessagePack) and publishes it.
    ///
    /// # Errors
    /// See [`Publisher::publish_event`]; also [`PublishError::Encode`].
    pub async fn publish<T: TypedEvent>(
        &self,
        tenant: &Tenant,
        data: &T,
    ) -> Result<PublishReceipt, PublishError> {
        let event = Event::builder(tenant.clone(), self.source.clone()).build(data)?;
        self.publish_event(&event).await
    }

    /// Publishes a ready event and waits for the stream to store it.
    ///
    /// Publishing the same event id again within the stream's duplicate window stores nothing
    /// new: the receipt says `duplicate` and carries the first copy's sequence.
    ///
    /// # Errors
    /// [`PublishError::PayloadTooLarge`], [`PublishError::StreamMissing`],
    /// [`PublishError::NotAcknowledged`] (after the ack timeout; the event may be stored) or
    /// [`PublishError::Refused`].
    ///
    /// # Cancel safety
    /// Dropping the future after the message was sent does not unsend it; the event may be
    /// stored. Publish it again with the same id to be sure.
    pub async fn publish_event(&self, event: &Event) -> Result<PublishReceipt, PublishError> {
        let pending = self.send(event).await?;
        pending.wait().await
    }

    /// Publishes many events, keeping at most `window` acknowledgements outstanding, and
    /// returns their receipts in order. Events are sent in order.
    ///
    /// # Errors
    /// A [`BatchError`] at the first failure; the events before it are stored, and it lists
    /// which others are.
    pub async fn publish_many(
        &self,
        events: impl IntoIterator<Item = Event>,
        window: NonZeroUsize,
    ) -> Result<Vec<PublishReceipt>, BatchError> {
        let mut receipts = Vec::new();
        let mut in_flight: VecDeque<(usize, PendingAck)> = VecDeque::with_capacity(window.get());
        let mut failure = None;
        for (index, event) in events.into_iter().enumerate() {
            if in_flight.len() == window.get() {
                let (i, pending) = in_flight.pop_front().expect("window is full, so not empty");
                match pending.wait().await {
                    Ok(receipt) => receipts.push(receipt),
                    Err(error) => {
                        failure = Some((i, error));
                        break;
                    }
                }
            }
            match self.send(&event).await {
                Ok(pending) => in_flight.push_back((index, pending)),
                Err(error) => {
                    failure = Some((index, error));
                    break;
                }
            }
        }
        let Some((index, error)) = failure else {
            for (_, pending) in in_flight {
                match pending.wait().await {
                    Ok(receipt) => receipts.push(receipt),
                    Err(error) => {
                        // Earlier failures would have stopped the loop; this one is first.
                        let index = receipts.len();
                        return Err(self
                            .batch_error(index, error, receipts, VecDeque::new())
                            .await);
                    }
                }
            }
            return Ok(receipts);
        };
        Err(self.batch_error(index, error, receipts, in_flight).await)
    }

    /// Collects what is known to be stored once a batch has failed.
    async fn batch_error(
        &self,
        index: usize,
        error: PublishError,
        receipts: Vec<PublishReceipt>,
        in_flight: VecDeque<(usize, PendingAck)>,
    ) -> BatchError {
        let mut stored: Vec<(usize, PublishReceipt)> = receipts.into_iter().enumerate().collect();
        for (i, pending) in in_flight {
            if let Ok(receipt) = pending.wait().await {
                stored.push((i, receipt));
            }
        }
        BatchError {
            index,
            error,
            stored,
        }
    }

    /// Sends one event without waiting for its acknowledgement.
    async fn send(&self, event: &Event) -> Result<PendingAck, PublishError> {
        let attrs = &event.attributes;
        let subject = self.namespace.event(&attrs.tenant, &attrs.event_type);
        let mut headers = event_headers(event);
        // One trace per event starts here (or continues the caller's); the dispatcher and the
        // workers continue it from these headers.
        let span = telemetry::start(
            &opentelemetry::Context::current(),
            SpanKind::Producer,
            telemetry::span::PUBLISH,
            telemetry::Destination::templated(&subject, &self.namespace),
            || {
                let [address, port] = crate::server_attributes(&self.client);
                vec![
                    address,
                    port,
                    KeyValue::new(attr::MESSAGE_ID, attrs.id.to_string()),
                    KeyValue::new(attr::TENANT, attrs.tenant.to_string()),
                    KeyValue::new(attr::EVENT_TYPE, attrs.event_type.to_string()),
                    KeyValue::new(attr::BODY_SIZE, event.data.len() as i64),
                ]
            },
        );
        telemetry::inject(&span, |name, value| {
            headers.insert(name, value);
        });
        let publish = jetstream::message::PublishMessage::build()
            .headers(headers)
            .payload(event.data.clone());
        match self.js.send_publish(subject.clone(), publish).await {
            Ok(ack) => Ok(PendingAck {
                ack,
                id: attrs.id.clone(),
                subject,
                span,
            }),
            Err(err) => {
                let error = self.classify(err, event, subject);
                telemetry::fail(&span, error.kind().as_str(), || error.to_string());
                telemetry::end(&span);
                Err(error)
            }
        }
    }

    fn classify(
        &self,
        err: jetstream::context::PublishError,
        event: &Event,
        subject: String,
    ) -> PublishError {
        use jetstream::context::PublishErrorKind as K;
        let id = event.attributes.id.clone();
        match err.kind() {
            K::MaxPayloadExceeded => PublishError::PayloadTooLarge {
                id,
                size: event.data.len() + header_bytes(event),
                max: self.client.server_info().max_payload,
            },
            K::StreamNotFound => PublishError::StreamMissing { subject },
            K::TimedOut | K::BrokenPipe | K::MaxAckPending => PublishError::NotAcknowledged {
                id,
                subject,
                reason: err.to_string(),
            },
            K::WrongLastMessageId | K::WrongLastSequence | K::Other => PublishError::Refused {
                id,
                subject,
                reason: error_chain(&err),
            },
        }
    }
}

/// One sent event whose acknowledgement has not been read yet.
struct PendingAck {
    ack: PublishAckFuture,
    id: EventId,
    subject: String,
    /// The publish span, ended when the acknowledgement (or its failure) arrives.
    span: opentelemetry::Context,
}

impl PendingAck {
    async fn wait(self) -> Result<PublishReceipt, PublishError> {
        let span = self.span.clone();
        let result = self.acknowledged().await;
        if let Err(error) = &result {
            telemetry::fail(&span, error.kind().as_str(), || error.to_string());
        }
        telemetry::end(&span);
        result
    }

    async fn acknowledged(self) -> Result<PublishReceipt, PublishError> {
        use jetstream::context::PublishErrorKind as K;
        match self.ack.await {
            Ok(ack) => Ok(PublishReceipt {
                id: self.id,
                stream: ack.stream,
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            }),
            Err(err) => Err(match err.kind() {
                K::StreamNotFound => PublishError::StreamMissing {
                    subject: self.subject,
                },
                K::TimedOut | K::BrokenPipe | K::MaxAckPending | K::MaxPayloadExceeded => {
                    PublishError::NotAcknowledged {
                        id: self.id,
                        subject: self.subject,
                        reason: err.to_string(),
                    }
                }
                K::WrongLastMessageId | K::WrongLastSequence | K::Other => PublishError::Refused {
                    id: self.id,
                    subject: self.subject,
                    reason: error_chain(&err),
                },
            }),
        }
    }
}

fn ack_context(client: async_nats::Client, timeout: Duration) -> jetstream::Context {
    jetstream::context::ContextBuilder::new()
        .timeout(timeout)
        .build(client)
}

/// The server's own message sits in the error's source; show both.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Approximate header bytes on the wire (`name: value\r\n` each, plus the preamble).
fn header_bytes(event: &Event) -> usize {
    event
        .headers()
        .iter()
        .map(|(n, v)| n.len() + v.len() + 4)
        .sum::<usize>()
        + 12
}
