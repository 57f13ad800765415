//! The event envelope: CloudEvents 1.0 attributes plus Switchyard's extensions, and the data.

use std::fmt;

use bytes::Bytes;
use semver::Version;
use serde::de::DeserializeOwned;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::content_type::ContentType;
use crate::error::{AttributeProblem, DecodeError, EncodeError};
use crate::header;
use crate::name::{EventType, NameError, Tenant};

/// The longest event id accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// A type whose values are the data of one event type.
///
/// ```
/// use switchyard_schemas::{TypedEvent, semver::Version};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct OrderCreated { order_id: String, total_cents: u64 }
///
/// impl TypedEvent for OrderCreated {
///     const TYPE: &'static str = "order.created";
///     const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
/// }
/// ```
pub trait TypedEvent: Serialize + DeserializeOwned {
    /// The CloudEvents `type`: tokens of `[A-Za-z0-9_-]` joined by `.`.
    const TYPE: &'static str;
    /// The version of this type's schema. Subscriptions name a range of versions.
    const SCHEMA_VERSION: Version;
}

/// An event id: 1 to [`MAX_ID_LEN`] visible ASCII characters (it is also the
/// `Nats-Msg-Id` header that JetStream de-duplicates on).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(String);

impl EventId {
    /// Validates an id chosen by the publisher. Choose ids that are stable across retries of
    /// the same publish: that is what makes the publish idempotent.
    ///
    /// # Errors
    /// A reason when the id is empty, too long, or holds whitespace or non-ASCII characters.
    pub fn new(value: impl Into<String>) -> Result<Self, &'static str> {
        let value = value.into();
        if value.is_empty() {
            return Err("must not be empty");
        }
        if value.len() > MAX_ID_LEN {
            return Err("longer than 128 bytes");
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("only visible ASCII characters are allowed (no whitespace)");
        }
        Ok(Self(value))
    }

    /// A fresh, time-ordered unique id (UUID version 7).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The context attributes of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// CloudEvents `id`; unique per source, the de-duplication key.
    pub id: EventId,
    /// CloudEvents `source`: a URI-reference naming the producer (`urn:svc:orders`).
    pub source: String,
    /// CloudEvents `type`.
    pub event_type: EventType,
    /// Extension `schemaversion`: the semver version of the type's schema.
    pub schema_version: Version,
    /// Extension `tenant`.
    pub tenant: Tenant,
    /// CloudEvents `time`: when the occurrence happened.
    pub time: Option<OffsetDateTime>,
    /// CloudEvents `subject`: what the event is about, within the source (`order-42`).
    pub subject: Option<String>,
    /// CloudEvents `datacontenttype`.
    pub content_type: ContentType,
    /// CloudEvents `dataschema`: a URI of the data's schema.
    pub data_schema: Option<String>,
}

/// An event: attributes plus the encoded data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The context attributes.
    pub attributes: Attributes,
    /// The data, encoded as `attributes.content_type` says.
    pub data: Bytes,
}

impl Event {
    /// Starts building an event for `tenant`, produced by `source`.
    pub fn builder(tenant: Tenant, source: impl Into<String>) -> EventBuilder {
        EventBuilder {
            tenant,
            source: source.into(),
            id: None,
            subject: None,
            data_schema: None,
            time: None,
            content_type: ContentType::default(),
        }
    }

    /// The headers that carry the attributes, in binary content mode. Includes `Nats-Msg-Id`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let a = &self.attributes;
        let mut out = Vec::with_capacity(11);
        out.push((
            header::SPEC_VERSION,
            header::CLOUDEVENTS_SPEC_VERSION.to_owned(),
        ));
        out.push((header::ID, a.id.as_str().to_owned()));
        out.push((header::NATS_MSG_ID, a.id.as_str().to_owned()));
        out.push((header::SOURCE, a.source.clone()));
        out.push((header::TYPE, a.event_type.as_str().to_owned()));
        out.push((header::SCHEMA_VERSION, a.schema_version.to_string()));
        out.push((header::TENANT, a.tenant.as_str().to_owned()));
        out.push((header::CONTENT_TYPE, a.content_type.media_type().to_owned()));
        if let Some(time) = a.time {
            // Formatting a valid OffsetDateTime as RFC 3339 only fails for years outside
            // 0..=9999, which `Rfc3339` cannot express; such a time is left out.
            if let Ok(text) = time.format(&Rfc3339) {
                out.push((header::TIME, text));
            }
        }
        if let Some(subject) = &a.subject {
            out.push((header::SUBJECT, subject.clone()));
        }
        if let Some(schema) = &a.data_schema {
            out.push((header::DATA_SCHEMA, schema.clone()));
        }
        out
    }

    /// Reads an event from a message's headers and body.
    ///
    /// `header` looks a header up by its exact name (see [`crate::header`]).
    /// The body is not decoded here; [`Event::data_as`] does that.
    ///
    /// # Errors
    /// A [`DecodeError`] whose [`kind`](DecodeError::kind) says which rule was broken:
    /// a missing required attribute, a specversion other than `1.0`, a bad id or time, an
    /// unknown content type, or an attribute that is not valid (tenant, type, ...).
    pub fn decode<'h>(
        header: impl Fn(&str) -> Option<&'h str>,
        body: Bytes,
    ) -> Result<Self, DecodeError> {
        let required = |name: &'static str, attribute: &'static str| {
            header(name).ok_or(DecodeError::MissingAttribute {
                attribute,
                header: name,
            })
        };

        let spec = required(header::SPEC_VERSION, "specversion")?;
        if spec != header::CLOUDEVENTS_SPEC_VERSION {
            return Err(DecodeError::BadSpecVersion {
                found: spec.to_owned(),
            });
        }
        let raw_id = required(header::ID, "id")?;
        let id = EventId::new(raw_id).map_err(|reason| DecodeError::BadId {
            value: raw_id.to_owned(),
            reason,
        })?;
        let source = checked_text("source", required(header::SOURCE, "source")?)?;
        let raw_type = required(header::TYPE, "type")?;
        let event_type = EventType::new(raw_type).map_err(|e| bad_name("type", raw_type, e))?;
        let raw_version = required(header::SCHEMA_VERSION, "schemaversion")?;
        let schema_version =
            Version::parse(raw_version).map_err(|e| DecodeError::BadAttribute {
                attribute: "schemaversion",
                value: raw_version.to_owned(),
                reason: format!("not a semver version: {e}"),
            })?;
        let raw_tenant = required(header::TENANT, "tenant")?;
        let tenant = Tenant::new(raw_tenant).map_err(|e| bad_name("tenant", raw_tenant, e))?;
        let raw_ct = required(header::CONTENT_TYPE, "datacontenttype")?;
        let content_type =
            ContentType::parse(raw_ct).ok_or_else(|| DecodeError::UnknownContentType {
                found: raw_ct.to_owned(),
            })?;
        let time = header(header::TIME)
            .map(|raw| {
                OffsetDateTime::parse(raw, &Rfc3339).map_err(|source| DecodeError::BadTime {
                    value: raw.to_owned(),
                    reason: source.to_string(),
                })
            })
            .transpose()?;
        let subject = header(header::SUBJECT)
            .map(|v| checked_text("subject", v))
            .transpose()?;
        let data_schema = header(header::DATA_SCHEMA)
            .map(|v| checked_text("dataschema", v))
            .transpose()?;

        Ok(Event {
            attributes: Attributes {
                id,
                source,
                event_type,
                schema_version,
                tenant,
                time,
                subject,
                content_type,
                data_schema,
            },
            data: body,
        })
    }

    /// Checks that the body is well-formed for its content type (see [`ContentType::check`]),
    /// without decoding it as any type: what a dispatcher verifies before a worker in any
    /// language receives the event.
    ///
    /// # Errors
    /// [`DecodeError::UndecodableBody`] naming the problem and its offset.
    pub fn check_body(&self) -> Result<(), DecodeError> {
        self.attributes
            .content_type
            .check(&self.data)
            .map_err(|error| DecodeError::UndecodableBody {
                content_type: self.attributes.content_type,
                reason: error.to_string(),
            })
    }

    /// Decodes the data as `T`, checking that the event is of `T`'s type.
    ///
    /// The schema version is not compared here: a subscription accepts a range of versions,
    /// and a reader of version 1.2 may well read 1.0 data.
    ///
    /// # Errors
    /// [`DecodeError::TypeMismatch`] when the event's type is not `T::TYPE`;
    /// [`DecodeError::UndecodableBody`] when the body is not a valid encoding of `T`.
    pub fn data_as<T: TypedEvent>(&self) -> Result<T, DecodeError> {
        if self.attributes.event_type.as_str() != T::TYPE {
            return Err(DecodeError::TypeMismatch {
                expected: T::TYPE,
                found: self.attributes.event_type.to_string(),
            });
        }
        self.attributes
            .content_type
            .decode(&self.data)
            .map_err(|reason| DecodeError::UndecodableBody {
                content_type: self.attributes.content_type,
                reason,
            })
    }
}

/// Builds an [`Event`] from typed data. Defaults: a fresh UUIDv7 id, the current time,
/// MessagePack data.
#[derive(Debug, Clone)]
#[must_use]
pub struct EventBuilder {
    tenant: Tenant,
    source: String,
    id: Option<EventId>,
    subject: Option<String>,
    data_schema: Option<String>,
    time: Option<OffsetDateTime>,
    content_type: ContentType,
}

impl EventBuilder {
    /// Uses this id instead of a generated one (for idempotent re-publishing).
    pub fn id(mut self, id: EventId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the CloudEvents `subject`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the CloudEvents `dataschema`.
    pub fn data_schema(mut self, uri: impl Into<String>) -> Self {
        self.data_schema = Some(uri.into());
        self
    }

    /// Sets the occurrence time (default: now).
    pub fn time(mut self, time: OffsetDateTime) -> Self {
        self.time = Some(time);
        self
    }

    /// Encodes the data in this content type (default: MessagePack).
    pub fn content_type(mut self, content_type: ContentType) -> Self {
        self.content_type = content_type;
        self
    }

    /// Encodes `data` and finishes the event.
    ///
    /// # Errors
    /// [`EncodeError::BadType`] when `T::TYPE` is not a valid event type;
    /// [`EncodeError::BadAttribute`] when the source, subject or dataschema is empty or holds
    /// a line break; [`EncodeError::Body`] when the data cannot be encoded.
    pub fn build<T: TypedEvent>(self, data: &T) -> Result<Event, EncodeError> {
        let event_type = EventType::new(T::TYPE).map_err(EncodeError::BadType)?;
        self.build_as(event_type, T::SCHEMA_VERSION, data)
    }

    /// Encodes `data` as an event of a type known only at run time (a command-line tool, a
    /// bridge from another system), and finishes the event.
    ///
    /// # Errors
    /// [`EncodeError::BadAttribute`] when the source, subject or dataschema is empty or holds
    /// a line break; [`EncodeError::Body`] when the data cannot be encoded.
    pub fn build_as<T: Serialize + ?Sized>(
        self,
        event_type: EventType,
        schema_version: Version,
        data: &T,
    ) -> Result<Event, EncodeError> {
        let source = checked_text("source", &self.source)?;
        let subject = self
            .subject
            .map(|s| checked_text("subject", &s))
            .transpose()?;
        let data_schema = self
            .data_schema
            .map(|s| checked_text("dataschema", &s))
            .transpose()?;
        let body = self
            .content_type
            .encode(data)
            .map_err(|reason| EncodeError::Body {
                content_type: self.content_type,
                reason,
            })?;
        Ok(Event {
            attributes: Attributes {
                id: self.id.unwrap_or_else(EventId::generate),
                source,
                event_type,
                schema_version,
                tenant: self.tenant,
                time: Some(self.time.unwrap_or_else(OffsetDateTime::now_utc)),
                subject,
                content_type: self.content_type,
                data_schema,
            },
            data: Bytes::from(body),
        })
    }
}

/// A free-text attribute: non-empty, and no control characters (they would end the header).
fn checked_text(attribute: &'static str, value: &str) -> Result<String, AttributeProblem> {
    let reason = if value.is_empty() {
        "must not be empty"
    } else if value.chars().any(char::is_control) {
        "must not contain control characters such as line breaks"
    } else {
        return Ok(value.to_owned());
    };
    Err(AttributeProblem {
        attribute,
        value: value.to_owned(),
        reason,
    })
}

fn bad_name(attribute: &'static str, value: &str, error: NameError) -> DecodeError {
    DecodeError::BadAttribute {
        attribute,
        value: value.to_owned(),
        reason: error.to_string(),
    }
}
