//! Moving [`Event`]s in and out of NATS messages: the one place where the envelope's header
//! list meets async-nats' `HeaderMap`.

use async_nats::HeaderMap;
use bytes::Bytes;
use switchyard_schemas::{DecodeError, Event};

/// The NATS headers that carry `event`'s attributes.
pub fn event_headers(event: &Event) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in event.headers() {
        headers.insert(name, value.as_str());
    }
    headers
}

/// Reads an event from a NATS message's headers and payload.
///
/// # Errors
/// A [`DecodeError`] naming the broken rule; a message without headers reports the missing
/// `specversion`.
pub fn decode_event(headers: Option<&HeaderMap>, payload: Bytes) -> Result<Event, DecodeError> {
    Event::decode(
        |name| headers.and_then(|h| h.get(name)).map(|v| v.as_str()),
        payload,
    )
}
