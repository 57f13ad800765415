//! The body encodings an event may use.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::wellformed::{check_body, BodyError};

/// How an event's data is encoded in the message body (CloudEvents `datacontenttype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ContentType {
    /// MessagePack, with structs encoded as maps keyed by field name. The default.
    #[default]
    MessagePack,
    /// JSON, accepted so that any client can publish.
    Json,
}

/// The media type written for MessagePack bodies.
pub const MSGPACK_MEDIA_TYPE: &str = "application/msgpack";
/// Other media types read as MessagePack: both spellings are in common use.
const MSGPACK_ALIASES: [&str; 2] = ["application/x-msgpack", "application/vnd.msgpack"];
/// The media type written for JSON bodies.
pub const JSON_MEDIA_TYPE: &str = "application/json";

impl ContentType {
    /// The media type written on the wire.
    pub fn media_type(self) -> &'static str {
        match self {
            ContentType::MessagePack => MSGPACK_MEDIA_TYPE,
            ContentType::Json => JSON_MEDIA_TYPE,
        }
    }

    /// Reads a media type, ignoring case and parameters (`application/json; charset=utf-8`).
    /// Returns `None` for anything that is neither MessagePack nor JSON.
    pub fn parse(value: &str) -> Option<Self> {
        let essence = value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence == MSGPACK_MEDIA_TYPE || MSGPACK_ALIASES.contains(&essence.as_str()) {
            Some(ContentType::MessagePack)
        } else if essence == JSON_MEDIA_TYPE {
            Some(ContentType::Json)
        } else {
            None
        }
    }

    /// Encodes `value` in this content type.
    ///
    /// # Errors
    /// The serializer's message when `value` cannot be encoded (e.g. a map with non-string
    /// keys in JSON).
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, String> {
        match self {
            ContentType::MessagePack => rmp_serde::to_vec_named(value).map_err(|e| e.to_string()),
            ContentType::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        }
    }

    /// Checks that `bytes` are one well-formed value of this content type, nested at most
    /// [`MAX_BODY_DEPTH`](crate::MAX_BODY_DEPTH) deep, in one pass without allocating.
    ///
    /// # Errors
    /// A [`BodyError`] naming the first problem and its offset.
    pub fn check(self, bytes: &[u8]) -> Result<(), BodyError> {
        check_body(self, bytes)
    }

    /// Decodes `bytes` in this content type.
    ///
    /// The bytes are [checked](ContentType::check) first: a decoder recurses once per level
    /// of nesting, and rmp-serde does not count nested enum variants, so a small hostile body
    /// could otherwise overflow the stack and abort the process.
    ///
    /// # Errors
    /// The checker's message when the bytes are not well-formed, else the deserializer's
    /// message when they are not a valid encoding of `T`.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        self.check(bytes).map_err(|error| error.to_string())?;
        match self {
            ContentType::MessagePack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
            ContentType::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        }
    }

    /// The body as a JSON value, only when all of it is one value: MessagePack readers stop
    /// after the first value, so a body of garbage could otherwise pass for a small number.
    pub fn decode_whole(self, bytes: &[u8]) -> Option<serde_json::Value> {
        let value: serde_json::Value = self.decode(bytes).ok()?;
        if self == ContentType::MessagePack {
            // Re-encoding gives the shortest form; a body that is longer held more than the
            // value (or used a longer encoding), and is shown raw rather than misread.
            let again = self.encode(&value).ok()?;
            if again.len() != bytes.len() {
                return None;
            }
        }
        Some(value)
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.media_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_media_types_with_parameters_and_aliases() {
        assert_eq!(
            ContentType::parse("application/msgpack"),
            Some(ContentType::MessagePack)
        );
        assert_eq!(
            ContentType::parse("application/x-msgpack"),
            Some(ContentType::MessagePack)
        );
        assert_eq!(
            ContentType::parse("Application/JSON; charset=utf-8"),
            Some(ContentType::Json)
        );
        assert_eq!(ContentType::parse("text/plain"), None);
        assert_eq!(ContentType::parse(""), None);
    }

    #[test]
    fn round_trips_both_encodings() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Order {
            id: u32,
            note: String,
        }
        let order = Order {
            id: 7,
            note: "x".into(),
        };
        for ct in [ContentType::MessagePack, ContentType::Json] {
            let bytes = ct.encode(&order).unwrap();
            assert_eq!(ct.decode::<Order>(&bytes).unwrap(), order);
        }
    }

    #[test]
    fn msgpack_encodes_structs_as_maps_so_other_languages_see_field_names() {
        #[derive(serde::Serialize)]
        struct One {
            field: u8,
        }
        let bytes = ContentType::MessagePack.encode(&One { field: 1 }).unwrap();
        // fixmap of 1 entry, then the fixstr "field".
        assert_eq!(bytes[0], 0x81);
        assert_eq!(&bytes[2..7], b"field");
    }
}
