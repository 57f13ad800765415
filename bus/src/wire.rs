//! Moving [`Event`]s in and out of NATS messages: the one place where the envelope's header
//! list meets async-nats' `HeaderMap`.

use async_nats::{HeaderMap, HeaderName};
use bytes::Bytes;
use switchyard_schemas::{DecodeError, Event};

/// The NATS headers that carry `event`'s attributes.
pub fn event_headers(event: &Event) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in event.headers() {
        // A static name is used as it is; one given as `&str` would be copied per insert.
        headers.insert(HeaderName::from_static(name), value);
    }
    headers
}

/// Reads an event from a NATS message's headers and payload.
///
/// # Errors
/// A [`DecodeError`] naming the broken rule; a message without headers reports the missing
/// `specversion`.
pub fn decode_event(headers: Option<&HeaderMap>, payload: Bytes) -> Result<Event, DecodeError> {
    Event::decode(|name| headers.and_then(|h| header(h, name)), payload)
}

/// The first value of header `name`, found without allocating: `HeaderMap::get(&str)` builds
/// an owned header name for each lookup, and decoding an event looks up a dozen of them.
/// Header names compare exactly, as `get` compares them.
pub fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(key, _)| AsRef::<str>::as_ref(*key) == name)
        .and_then(|(_, values)| values.first())
        .map(|value| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_get_finds() {
        let mut headers = HeaderMap::new();
        headers.insert("ce-id", "one");
        headers.append("ce-id", "two");
        headers.insert("Nats-Msg-Id", "m");
        for name in ["ce-id", "Nats-Msg-Id", "CE-ID", "missing"] {
            assert_eq!(
                header(&headers, name),
                headers.get(name).map(|v| v.as_str()),
                "{name}"
            );
        }
    }
}
