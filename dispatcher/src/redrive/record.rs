//! One dead letter as read back from the dead-letter stream: whose it is, why it failed, and
//! the original event.

use async_nats::jetstream::message::StreamMessage;
use async_nats::HeaderMap;
use bytes::Bytes;
use switchyard_bus::decode_event;
use switchyard_schemas::{header as ce, Event, EventId, EventType, Namespace, PluginId, Tenant};
use time::OffsetDateTime;

use super::RedriveError;
use crate::dead_letter::Failure;

/// Every dead-letter metadata header starts with this (see [`crate::dead_letter::header`]).
pub(crate) const DLQ_HEADER_PREFIX: &str = "switchyard-dlq-";
/// JetStream's own headers (`Nats-Msg-Id`, `Nats-Expected-*`, `Nats-TTL`, ...) are publish
/// directives, not event attributes.
const JETSTREAM_HEADER_PREFIX: &str = "nats-";

/// The names in a dead letter's subject, `{prefix}.dlq.{plugin}.{tenant}.{type}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterSubject {
    /// The plugin that failed the event.
    pub plugin: PluginId,
    /// The event's tenant (`unknown` when the event named none that was valid).
    pub tenant: Tenant,
    /// The event's type (`unknown` when the event named none that was valid).
    pub event_type: EventType,
}

impl DeadLetterSubject {
    /// Reads a dead-letter subject of `namespace`; `None` when it is not one.
    pub fn parse(namespace: &Namespace, subject: &str) -> Option<Self> {
        let rest = subject
            .strip_prefix(namespace.prefix())?
            .strip_prefix(".dlq.")?;
        let (plugin, rest) = rest.split_once('.')?;
        let (tenant, event_type) = rest.split_once('.')?;
        Some(Self {
            plugin: PluginId::new(plugin).ok()?,
            tenant: Tenant::new(tenant).ok()?,
            event_type: EventType::new(event_type).ok()?,
        })
    }
}

/// One line of a listing: a dead letter without its event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterSummary {
    /// Its sequence in the dead-letter stream; what `show`, `replay` and `purge` take.
    pub sequence: u64,
    /// When the dead-letter stream stored it.
    pub stored: OffsetDateTime,
    /// Why and where the event failed.
    pub failure: Failure,
    /// The event's tenant, from the dead letter's subject.
    pub tenant: Tenant,
    /// The event's type, from the dead letter's subject.
    pub event_type: EventType,
    /// The event's id (`ce-id`), when it has a valid one.
    pub event_id: Option<EventId>,
}

/// A dead letter in full: the summary, the original event's headers and body, and the event
/// itself when it decodes.
#[derive(Debug, Clone)]
pub struct DeadLetterRecord {
    /// The metadata.
    pub summary: DeadLetterSummary,
    /// The event's headers as it was published, without the `switchyard-dlq-*` metadata and
    /// without JetStream's `Nats-*` headers (the stored `Nats-Msg-Id` is the dead letter's own
    /// de-duplication id, not the event's).
    pub headers: HeaderMap,
    /// The event's body, untouched.
    pub body: Bytes,
    /// The event, when its headers are valid CloudEvents attributes (the body itself is not
    /// decoded: see [`Event::data_as`]).
    pub event: Option<Event>,
    /// How the dead letter keeps the event.
    pub form: OriginalForm,
}

/// How a dead letter keeps the original event (see [`crate::dead_letter`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginalForm {
    /// Its headers and body, as published.
    Copy,
    /// The body holds the event's header block as stored (`header_len` bytes), then its body:
    /// its headers could not be read, or were too large to copy.
    Raw {
        /// How many leading bytes of the body are the header block.
        header_len: usize,
    },
    /// The event did not fit; it stays in the events stream at the failure's stream sequence
    /// until that stream's retention removes it.
    Omitted {
        /// Why, as the dispatcher recorded it.
        why: String,
    },
}

impl OriginalForm {
    fn of(headers: &HeaderMap) -> Self {
        use crate::dead_letter::header;
        if let Some(len) = headers
            .get(header::RAW_HEADER_LEN)
            .and_then(|v| v.as_str().parse().ok())
        {
            return Self::Raw { header_len: len };
        }
        match headers.get(header::OMITTED) {
            Some(why) => Self::Omitted {
                why: why.as_str().to_owned(),
            },
            None => Self::Copy,
        }
    }
}

/// What is stored under a dead letter's subject, before its metadata is read.
pub(crate) struct StoredMessage {
    pub(crate) sequence: u64,
    pub(crate) subject: DeadLetterSubject,
    message: StreamMessage,
}

impl StoredMessage {
    /// Checks that `message` is under a dead-letter subject of `namespace`.
    pub(crate) fn new(namespace: &Namespace, message: StreamMessage) -> Result<Self, RedriveError> {
        let sequence = message.sequence;
        let subject = DeadLetterSubject::parse(namespace, &message.subject).ok_or_else(|| {
            RedriveError::Malformed {
                sequence,
                problem: format!(
                    "subject `{}` is not `{}.dlq.<plugin>.<tenant>.<type>`",
                    message.subject,
                    namespace.prefix()
                ),
            }
        })?;
        Ok(Self {
            sequence,
            subject,
            message,
        })
    }

    /// Reads the failure metadata and the event.
    pub(crate) fn into_record(self) -> Result<DeadLetterRecord, RedriveError> {
        let failure = Failure::from_headers(&self.message.headers).map_err(|header| {
            RedriveError::Malformed {
                sequence: self.sequence,
                problem: format!("header `{header}` is missing or malformed"),
            }
        })?;
        let event_id = self
            .message
            .headers
            .get(ce::ID)
            .and_then(|id| EventId::new(id.as_str()).ok());
        let form = OriginalForm::of(&self.message.headers);
        let event = match form {
            OriginalForm::Copy => {
                decode_event(Some(&self.message.headers), self.message.payload.clone()).ok()
            }
            _ => None,
        };
        Ok(DeadLetterRecord {
            summary: DeadLetterSummary {
                sequence: self.sequence,
                stored: self.message.time,
                failure,
                tenant: self.subject.tenant,
                event_type: self.subject.event_type,
                event_id,
            },
            headers: original_headers(&self.message.headers),
            body: self.message.payload,
            event,
            form,
        })
    }
}

/// The event's own headers: the stored ones minus the dead-letter metadata and JetStream's.
fn original_headers(stored: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in stored.iter() {
        let name: &str = name.as_ref();
        if has_prefix(name, DLQ_HEADER_PREFIX) || has_prefix(name, JETSTREAM_HEADER_PREFIX) {
            continue;
        }
        for value in values {
            headers.append(name, value.as_str());
        }
    }
    headers
}

/// Header names are compared without case, as NATS clients in other languages may spell them.
pub(crate) fn has_prefix(name: &str, prefix: &str) -> bool {
    name.get(..prefix.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::header;

    #[test]
    fn dead_letter_subjects_parse_into_their_names() {
        let ns = Namespace::default();
        let parsed =
            DeadLetterSubject::parse(&ns, "switchyard.dlq.audit.acme.order.created").unwrap();
        assert_eq!(parsed.plugin.as_str(), "audit");
        assert_eq!(parsed.tenant.as_str(), "acme");
        assert_eq!(parsed.event_type.as_str(), "order.created");
        for bad in [
            "switchyard.dlq.audit.acme",
            "switchyard.events.acme.order.created",
            "other.dlq.audit.acme.order",
            "switchyardx.dlq.audit.acme.order",
        ] {
            assert_eq!(DeadLetterSubject::parse(&ns, bad), None, "{bad}");
        }
    }

    #[test]
    fn every_metadata_header_carries_the_prefix_that_is_stripped() {
        for name in [
            header::PLUGIN,
            header::SUBSCRIPTION,
            header::CODE,
            header::REASON,
            header::ATTEMPTS,
            header::FIRST_FAILURE,
            header::LAST_FAILURE,
            header::ORIGINAL_SUBJECT,
            header::STREAM_SEQUENCE,
        ] {
            assert!(name.starts_with(DLQ_HEADER_PREFIX), "{name}");
        }
    }

    #[test]
    fn original_headers_drop_the_metadata_and_jetstream_directives_only() {
        let mut stored = HeaderMap::new();
        stored.insert(ce::ID, "e-1");
        stored.insert(ce::TYPE, "order.created");
        stored.insert("traceparent", "00-abc-def-01");
        stored.insert(ce::NATS_MSG_ID, "dlq:audit:orders:7");
        stored.insert("Nats-Expected-Last-Sequence", "3");
        stored.insert(header::CODE, "order.invalid");
        stored.insert("Switchyard-DLQ-Reason", "odd spelling");
        let headers = original_headers(&stored);
        assert_eq!(headers.len(), 3);
        assert_eq!(headers.get(ce::ID).unwrap().as_str(), "e-1");
        assert_eq!(
            headers.get("traceparent").unwrap().as_str(),
            "00-abc-def-01"
        );
        assert!(headers.get(ce::NATS_MSG_ID).is_none());
    }
}
