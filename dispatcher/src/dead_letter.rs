//! Dead letters: the original event, untouched, plus why and where it failed.
//!
//! A dead letter is stored in the dead-letter stream under
//! `{prefix}.dlq.{plugin}.{tenant}.{type}` (tenant and type of the subject the event was
//! published to) with the failure metadata in `switchyard-dlq-*` headers. Its `Nats-Msg-Id` is
//! derived from the plugin, the subscription and the event's stream sequence, so that writing
//! it twice (a dispatcher that crashed after the write and before the ack) stores it once.
//!
//! It keeps the original in the first of these forms that fits (a header block holds at most
//! 65,535 bytes, a message at most the server's `max_payload`):
//! 1. **copy**: the event's own headers and body;
//! 2. **raw**: the body holds the event's header block as stored, then its body;
//!    `switchyard-dlq-raw-header-len` says where the body starts. Used when the header block
//!    cannot be read, or when it and the metadata exceed the header limit;
//! 3. **omitted**: no original; `switchyard-dlq-omitted` says why, and the event stays
//!    readable at its sequence in the events stream until that stream's retention removes it.

use std::time::Duration;

use async_nats::jetstream;
use async_nats::HeaderMap;
use bytes::Bytes;
use switchyard_schemas::delivery::ErrorCode;
use switchyard_schemas::{header as ce, EventType, Namespace, PluginId, Tenant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Header names of the dead-letter metadata, defined once.
pub mod header {
    /// The plugin that failed the event.
    pub const PLUGIN: &str = "switchyard-dlq-plugin";
    /// The plugin's subscription that received it.
    pub const SUBSCRIPTION: &str = "switchyard-dlq-subscription";
    /// The error code.
    pub const CODE: &str = "switchyard-dlq-code";
    /// The reason, for people (one line, at most 4096 bytes).
    pub const REASON: &str = "switchyard-dlq-reason";
    /// How many attempts were made.
    pub const ATTEMPTS: &str = "switchyard-dlq-attempts";
    /// The first failure this dispatcher saw (RFC 3339).
    pub const FIRST_FAILURE: &str = "switchyard-dlq-first-failure";
    /// The last failure (RFC 3339).
    pub const LAST_FAILURE: &str = "switchyard-dlq-last-failure";
    /// The subject the event was published to.
    pub const ORIGINAL_SUBJECT: &str = "switchyard-dlq-original-subject";
    /// The event's sequence in the events stream.
    pub const STREAM_SEQUENCE: &str = "switchyard-dlq-stream-seq";
    /// Raw form: how many leading bytes of the body are the event's header block.
    pub const RAW_HEADER_LEN: &str = "switchyard-dlq-raw-header-len";
    /// Omitted form: why the dead letter does not hold the event.
    pub const OMITTED: &str = "switchyard-dlq-omitted";
}

/// The most bytes a stored header block may have (nats-server refuses more, JetStream error
/// 10097).
pub const MAX_HEADER_BLOCK: usize = 65_535;

/// The original event, as the dispatcher holds it.
#[derive(Debug, Clone)]
pub enum Original {
    /// Headers the client could read, and the body.
    Message {
        /// The event's headers.
        headers: Option<HeaderMap>,
        /// The body.
        body: Bytes,
    },
    /// The stored bytes, read past the client's header parser.
    Raw(crate::raw::RawMessage),
}

/// The headers and body of a dead letter, in the form chosen for the sizes.
#[derive(Debug)]
struct Planned {
    headers: HeaderMap,
    body: Bytes,
}

/// Chooses the first form of the dead letter of `original` that fits `max_payload`: see the
/// module documentation.
fn plan(original: &Original, failure: &Failure, max_payload: usize) -> Planned {
    let mut metadata = HeaderMap::new();
    metadata.insert(ce::NATS_MSG_ID, failure.dead_letter_id());
    failure.write_headers(&mut metadata);
    let fits = |headers: &HeaderMap, body_len: usize| {
        let block = header_block_len(headers);
        block <= MAX_HEADER_BLOCK && block + body_len <= max_payload
    };

    let (block, body) = match original {
        Original::Message { headers, body } => {
            let mut copy = headers.clone().unwrap_or_default();
            for (name, values) in metadata.iter() {
                for (i, value) in values.iter().enumerate() {
                    if i == 0 {
                        copy.insert(name.clone(), value.clone());
                    } else {
                        copy.append(name.clone(), value.clone());
                    }
                }
            }
            if fits(&copy, body.len()) {
                return Planned {
                    headers: copy,
                    body: body.clone(),
                };
            }
            (
                Bytes::from(header_block(headers.as_ref().unwrap_or(&HeaderMap::new()))),
                body,
            )
        }
        Original::Raw(raw) => (raw.header_block.clone(), &raw.body),
    };

    let mut raw = metadata.clone();
    raw.insert(header::RAW_HEADER_LEN, block.len().to_string());
    if fits(&raw, block.len() + body.len()) {
        let mut joined = bytes::BytesMut::with_capacity(block.len() + body.len());
        joined.extend_from_slice(&block);
        joined.extend_from_slice(body);
        return Planned {
            headers: raw,
            body: joined.freeze(),
        };
    }

    let mut omitted = metadata;
    omitted.insert(
        header::OMITTED,
        format!(
            "the event ({} header and {} body bytes) does not fit in a dead letter under              max_payload {max_payload}; it is sequence {} of the events stream until that              stream's retention removes it",
            block.len(),
            body.len(),
            failure.stream_sequence
        ),
    );
    Planned {
        headers: omitted,
        body: Bytes::new(),
    }
}

/// The length of `headers` as a NATS header block: `NATS/1.0\r\n`, a `name: value\r\n` line
/// per value, and a closing `\r\n`.
fn header_block_len(headers: &HeaderMap) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, values)| {
            let name: &str = name.as_ref();
            values
                .iter()
                .map(|v| name.len() + 2 + v.as_str().len() + 2)
                .sum::<usize>()
        })
        .sum();
    b"NATS/1.0\r\n".len() + lines + 2
}

/// `headers` written as a NATS header block.
fn header_block(headers: &HeaderMap) -> Vec<u8> {
    let mut block = Vec::with_capacity(header_block_len(headers));
    block.extend_from_slice(b"NATS/1.0\r\n");
    for (name, values) in headers.iter() {
        for value in values {
            block.extend_from_slice(AsRef::<str>::as_ref(name).as_bytes());
            block.extend_from_slice(b": ");
            block.extend_from_slice(value.as_str().as_bytes());
            block.extend_from_slice(b"\r\n");
        }
    }
    block.extend_from_slice(b"\r\n");
    block
}

/// Tokens used in the dead-letter subject when the event's tenant or type is unreadable.
const UNKNOWN: &str = "unknown";

/// Everything recorded about one failure, besides the event itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The plugin.
    pub plugin: PluginId,
    /// The subscription.
    pub subscription: String,
    /// The error code.
    pub code: ErrorCode,
    /// Why, for people.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
    /// The first failure seen.
    pub first_failure: OffsetDateTime,
    /// The last failure.
    pub last_failure: OffsetDateTime,
    /// Where the event was published.
    pub original_subject: String,
    /// Its sequence in the events stream.
    pub stream_sequence: u64,
}

impl Failure {
    /// The de-duplication id of this failure's dead letter.
    pub fn dead_letter_id(&self) -> String {
        format!(
            "dlq:{}:{}:{}",
            self.plugin, self.subscription, self.stream_sequence
        )
    }

    fn write_headers(&self, headers: &mut HeaderMap) {
        let time = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        headers.insert(header::PLUGIN, self.plugin.as_str());
        headers.insert(header::SUBSCRIPTION, self.subscription.as_str());
        headers.insert(header::CODE, self.code.as_str());
        headers.insert(header::REASON, one_line(&self.reason).as_str());
        headers.insert(header::ATTEMPTS, self.attempts.to_string());
        headers.insert(header::FIRST_FAILURE, time(self.first_failure));
        headers.insert(header::LAST_FAILURE, time(self.last_failure));
        headers.insert(header::ORIGINAL_SUBJECT, self.original_subject.as_str());
        headers.insert(header::STREAM_SEQUENCE, self.stream_sequence.to_string());
    }

    /// Reads the failure back from a dead letter's headers.
    ///
    /// # Errors
    /// The name of the first header that is missing or malformed.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, &'static str> {
        let get = |name: &'static str| headers.get(name).map(|v| v.as_str()).ok_or(name);
        let time = |name: &'static str| {
            get(name).and_then(|v| OffsetDateTime::parse(v, &Rfc3339).map_err(|_| name))
        };
        Ok(Self {
            plugin: PluginId::new(get(header::PLUGIN)?).map_err(|_| header::PLUGIN)?,
            subscription: get(header::SUBSCRIPTION)?.to_owned(),
            code: ErrorCode::new(get(header::CODE)?).map_err(|_| header::CODE)?,
            reason: get(header::REASON)?.to_owned(),
            attempts: get(header::ATTEMPTS)?
                .parse()
                .map_err(|_| header::ATTEMPTS)?,
            first_failure: time(header::FIRST_FAILURE)?,
            last_failure: time(header::LAST_FAILURE)?,
            original_subject: get(header::ORIGINAL_SUBJECT)?.to_owned(),
            stream_sequence: get(header::STREAM_SEQUENCE)?
                .parse()
                .map_err(|_| header::STREAM_SEQUENCE)?,
        })
    }
}

/// A header value must be one line: control characters become spaces, and it is cut to the
/// protocol's reason limit.
fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > switchyard_schemas::delivery::MAX_REASON_LEN {
        let mut end = switchyard_schemas::delivery::MAX_REASON_LEN;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

/// Why a dead letter could not be stored. The original event is then left un-acked, so it
/// comes back: nothing is lost.
#[derive(Debug, thiserror::Error)]
#[error("could not store the dead letter of stream sequence {stream_sequence} for plugin `{plugin}`: {reason}")]
pub struct DeadLetterError {
    /// The plugin.
    pub plugin: PluginId,
    /// The original event's stream sequence.
    pub stream_sequence: u64,
    /// What went wrong (stream full, no acknowledgement, ...).
    pub reason: String,
}

/// Writes dead letters and waits for the stream to store them.
#[derive(Debug, Clone)]
pub struct DeadLetterWriter {
    js: jetstream::Context,
    namespace: Namespace,
}

impl DeadLetterWriter {
    /// A writer into `namespace`'s dead-letter stream. `ack_timeout` bounds each write.
    pub fn new(client: async_nats::Client, namespace: Namespace, ack_timeout: Duration) -> Self {
        let js = jetstream::context::ContextBuilder::new()
            .timeout(ack_timeout)
            .build(client);
        Self { js, namespace }
    }

    /// Stores the event with the failure's metadata, in the first form that fits (see the
    /// module documentation), and returns the dead letter's sequence in the dead-letter
    /// stream.
    ///
    /// # Errors
    /// A [`DeadLetterError`] when the stream does not acknowledge the write.
    pub async fn write(
        &self,
        original: &Original,
        failure: &Failure,
    ) -> Result<u64, DeadLetterError> {
        let subject = self.subject_for(failure);
        let max_payload = self.js.client().server_info().max_payload;
        let Planned { headers, body } = plan(original, failure, max_payload);
        let error = |reason: String| DeadLetterError {
            plugin: failure.plugin.clone(),
            stream_sequence: failure.stream_sequence,
            reason,
        };
        let ack = self
            .js
            .publish_with_headers(subject, headers, body)
            .await
            .map_err(|e| error(e.to_string()))?
            .await
            .map_err(|e| error(e.to_string()))?;
        Ok(ack.sequence)
    }

    /// The subject the dead letter of `failure` is stored under: the tenant and type are the
    /// ones of the subject the event was published to, which the broker authorized (its
    /// headers may say otherwise).
    pub fn subject_for(&self, failure: &Failure) -> String {
        let (tenant, event_type) = self.subject_names(&failure.original_subject);
        self.namespace
            .dead_letter(&failure.plugin, &tenant, &event_type)
    }

    /// The tenant and type of the subject an event was published to, else `unknown`.
    fn subject_names(&self, original_subject: &str) -> (Tenant, EventType) {
        self.namespace
            .parse_event_or_redrive(original_subject)
            .unwrap_or_else(|_| {
                (
                    Tenant::new(UNKNOWN).expect("`unknown` is a valid tenant"),
                    EventType::new(UNKNOWN).expect("`unknown` is a valid type"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> Failure {
        Failure {
            plugin: PluginId::new("audit").unwrap(),
            subscription: "orders".into(),
            code: ErrorCode::new("order.invalid").unwrap(),
            reason: "line one\nline two".into(),
            attempts: 3,
            first_failure: time::macros::datetime!(2026-11-22 10:00:00 UTC),
            last_failure: time::macros::datetime!(2026-11-22 10:05:00 UTC),
            original_subject: "switchyard.events.acme.order.created".into(),
            stream_sequence: 42,
        }
    }

    #[test]
    fn the_metadata_round_trips_through_headers_on_one_line() {
        let f = failure();
        let mut headers = HeaderMap::new();
        f.write_headers(&mut headers);
        let back = Failure::from_headers(&headers).unwrap();
        assert_eq!(back.reason, "line one line two");
        assert_eq!(
            Failure {
                reason: f.reason.clone(),
                ..back
            },
            f
        );
    }

    #[test]
    fn the_id_is_stable_per_plugin_subscription_and_event() {
        assert_eq!(failure().dead_letter_id(), "dlq:audit:orders:42");
    }

    #[test]
    fn a_missing_header_is_named() {
        let mut headers = HeaderMap::new();
        failure().write_headers(&mut headers);
        headers.insert(header::ATTEMPTS, "three");
        assert_eq!(Failure::from_headers(&headers), Err(header::ATTEMPTS));
        assert_eq!(
            Failure::from_headers(&HeaderMap::new()),
            Err(header::PLUGIN)
        );
    }
}
