//! The checks a pulled message passes before any attempt, and the headers its deliveries carry.
//!
//! Anyone allowed to publish events can send any bytes nats-server accepts, so nothing a
//! publisher wrote is trusted further than the broker vouches for it:
//! - a header block that cannot be read (or a status line in a stored message) is refused
//!   (`event.malformed-headers`);
//! - the event must decode, and its body must be well-formed for its content type (the
//!   codes of [`switchyard_schemas::DecodeErrorKind`]);
//! - its tenant and type must be the ones of the subject it was published to, because the
//!   subject is what the broker authorized and what the consumers filter on
//!   (`event.subject-mismatch`);
//! - the delivery carries exactly one copy of each CloudEvents attribute header, as decoded,
//!   and no header of Switchyard's reserved `switchyard-` namespace (a publisher's
//!   `switchyard-probe` would otherwise make the worker answer it as a probe).

use async_nats::header::MALFORMED_HEADERS;
use async_nats::HeaderMap;
use switchyard_bus::{decode_event, header};
use switchyard_schemas::delivery::ErrorCode;
use switchyard_schemas::{header as ce, Event, Namespace};

use super::decision::codes;

/// The prefix of every header Switchyard itself sets; publishers' copies are dropped.
pub const RESERVED_PREFIX: &str = "switchyard-";

/// The CloudEvents attribute headers, which a delivery carries exactly once, as decoded.
const ATTRIBUTE_HEADERS: [&str; 11] = [
    ce::SPEC_VERSION,
    ce::ID,
    ce::NATS_MSG_ID,
    ce::SOURCE,
    ce::TYPE,
    ce::SCHEMA_VERSION,
    ce::TENANT,
    ce::CONTENT_TYPE,
    ce::TIME,
    ce::SUBJECT,
    ce::DATA_SCHEMA,
];

/// A message that may be attempted.
#[derive(Debug)]
pub struct Admitted {
    /// The decoded event.
    pub event: Event,
    /// The headers its deliveries start from, when they are not the message's own: `None`
    /// (the common case) when the message carries nothing to remove, so nothing is rebuilt.
    pub headers: Option<HeaderMap>,
}

/// Why a message is dead-lettered without an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The error code.
    pub code: ErrorCode,
    /// Why, for people.
    pub reason: String,
    /// The headers as the client holds them are not the event's: its dead letter must be
    /// written from the stored bytes.
    pub headers_unreadable: bool,
}

impl Refused {
    fn new(code: &'static str, reason: String) -> Self {
        Self {
            code: ErrorCode::internal(code),
            reason,
            headers_unreadable: false,
        }
    }
}

/// Screens one stored message published to `subject`.
///
/// # Errors
/// A [`Refused`] saying which check failed.
pub fn screen(namespace: &Namespace, message: &async_nats::Message) -> Result<Admitted, Refused> {
    let headers = message.headers.as_ref();
    if let Some(reason) = headers.and_then(|h| header(h, MALFORMED_HEADERS)) {
        return Err(unreadable(format!(
            "the header block cannot be read: {reason}"
        )));
    }
    if let Some(status) = message.status {
        // JetStream delivers stored messages from a plain `NATS/1.0` line (nats-server 2.15
        // drops a status a publisher wrote there); should one ever come through, it is the
        // publisher's, and workers' clients would take it for the server's.
        return Err(unreadable(format!(
            "the header version line carries a status ({status})"
        )));
    }
    // A body that is not well-formed for its content type is refused here, so that no
    // worker, in any language, is handed one.
    let event = decode_event(headers, message.payload.clone())
        .and_then(|event| event.check_body().map(|()| event))
        .map_err(|error| Refused::new(error.kind().code(), error.to_string()))?;
    let attributes = &event.attributes;
    let subject = message.subject.as_str();
    match namespace.parse_event_or_redrive(subject) {
        Ok((tenant, event_type))
            if tenant == attributes.tenant && event_type == attributes.event_type => {}
        Ok((tenant, event_type)) => {
            return Err(Refused::new(
                codes::SUBJECT_MISMATCH,
                format!(
                    "published to `{subject}` (tenant `{tenant}`, type `{event_type}`) but its \
                     headers say tenant `{}`, type `{}`",
                    attributes.tenant, attributes.event_type
                ),
            ))
        }
        Err(error) => return Err(Refused::new(codes::SUBJECT_MISMATCH, error.to_string())),
    }
    let headers = headers
        .filter(|h| needs_rewrite(h))
        .map(|h| delivery_headers(h, &event));
    Ok(Admitted { event, headers })
}

fn unreadable(reason: String) -> Refused {
    Refused {
        headers_unreadable: true,
        ..Refused::new(codes::MALFORMED_HEADERS, reason)
    }
}

/// Whether the headers hold something a delivery must not carry: a reserved header, or an
/// attribute header spelled otherwise than §2.1 or repeated. Otherwise each attribute header
/// holds exactly the value the event was decoded from, and the headers serve as they are.
fn needs_rewrite(headers: &HeaderMap) -> bool {
    headers.iter().any(|(name, values)| {
        let name: &str = name.as_ref();
        is_reserved(name)
            || ATTRIBUTE_HEADERS
                .iter()
                .any(|a| a.eq_ignore_ascii_case(name) && (*a != name || values.len() > 1))
    })
}

/// The event's headers without reserved ones and without any spelling of an attribute
/// header, then the attributes as decoded: one value each, whatever the publisher repeated.
fn delivery_headers(original: &HeaderMap, event: &Event) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in original.iter() {
        let name_text: &str = name.as_ref();
        if is_reserved(name_text)
            || ATTRIBUTE_HEADERS
                .iter()
                .any(|a| a.eq_ignore_ascii_case(name_text))
        {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    for (name, value) in event.headers() {
        headers.insert(name, value);
    }
    headers
}

/// Whether `name` is in Switchyard's reserved header namespace (compared without case, as
/// other languages' clients compare header names).
pub fn is_reserved(name: &str) -> bool {
    crate::redrive::has_prefix(name, RESERVED_PREFIX)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use switchyard_schemas::delivery::header as dh;

    use super::*;

    fn message(subject: &str, headers: HeaderMap) -> async_nats::Message {
        async_nats::Message {
            subject: subject.into(),
            reply: None,
            payload: Bytes::from_static(b"{}"),
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        }
    }

    fn event_headers(tenant: &str, event_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ce::SPEC_VERSION, "1.0");
        headers.insert(ce::ID, "e-1");
        headers.insert(ce::SOURCE, "urn:test");
        headers.insert(ce::TYPE, event_type);
        headers.insert(ce::SCHEMA_VERSION, "1.0.0");
        headers.insert(ce::TENANT, tenant);
        headers.insert(ce::CONTENT_TYPE, "application/json");
        headers
    }

    #[test]
    fn admits_an_event_whose_headers_agree_with_its_subject() {
        let ns = Namespace::default();
        let admitted = screen(
            &ns,
            &message(
                "switchyard.events.acme.order.created",
                event_headers("acme", "order.created"),
            ),
        )
        .unwrap();
        assert_eq!(admitted.event.attributes.tenant.as_str(), "acme");
        assert!(
            admitted.headers.is_none(),
            "clean headers are used as they are"
        );
    }

    #[test]
    fn refuses_a_tenant_or_type_the_subject_does_not_name() {
        let ns = Namespace::default();
        let refused = screen(
            &ns,
            &message(
                "switchyard.events.acme.order.created",
                event_headers("globex", "order.created"),
            ),
        )
        .unwrap_err();
        assert_eq!(refused.code.as_str(), codes::SUBJECT_MISMATCH);
        let refused = screen(
            &ns,
            &message(
                "switchyard.events.acme.order.created",
                event_headers("acme", "order.deleted"),
            ),
        )
        .unwrap_err();
        assert_eq!(refused.code.as_str(), codes::SUBJECT_MISMATCH);
    }

    #[test]
    fn drops_reserved_headers_and_repeated_attributes() {
        let ns = Namespace::default();
        let mut headers = event_headers("acme", "order.created");
        headers.insert(dh::PROBE, "1");
        headers.insert("Switchyard-Delivery", "forged");
        headers.insert("CE-TENANT", "globex");
        headers.append(ce::TENANT, "globex");
        headers.insert("x-custom", "kept");
        let admitted = screen(
            &ns,
            &message("switchyard.events.acme.order.created", headers),
        )
        .unwrap();
        let out = admitted
            .headers
            .as_ref()
            .expect("rebuilt without the reserved headers");
        assert!(out.get(dh::PROBE).is_none());
        assert!(out.get("Switchyard-Delivery").is_none());
        assert!(out.get("CE-TENANT").is_none());
        assert_eq!(out.get_all(ce::TENANT).count(), 1);
        assert_eq!(out.get(ce::TENANT).unwrap().as_str(), "acme");
        assert_eq!(out.get("x-custom").unwrap().as_str(), "kept");
    }

    #[test]
    fn refuses_unreadable_headers_and_stored_status_lines() {
        let ns = Namespace::default();
        let mut headers = HeaderMap::new();
        headers.insert(MALFORMED_HEADERS, "a header line has no `:`");
        let refused = screen(
            &ns,
            &message("switchyard.events.acme.order.created", headers),
        )
        .unwrap_err();
        assert_eq!(refused.code.as_str(), codes::MALFORMED_HEADERS);
        assert!(refused.headers_unreadable);

        let mut with_status = message(
            "switchyard.events.acme.order.created",
            event_headers("acme", "order.created"),
        );
        with_status.status = Some(async_nats::StatusCode::TIMEOUT);
        assert!(screen(&ns, &with_status).unwrap_err().headers_unreadable);
    }

    #[test]
    fn reserved_names_compare_without_case() {
        assert!(is_reserved("switchyard-probe"));
        assert!(is_reserved("SWITCHYARD-PROBE"));
        assert!(!is_reserved("switchyard"));
        assert!(!is_reserved("x-switchyard-probe"));
    }
}
