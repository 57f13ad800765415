//! Errors of reading and writing events.

use crate::content_type::ContentType;
use crate::name::NameError;

/// Why a message could not be read as an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A required attribute's header is absent.
    #[error("missing CloudEvents attribute `{attribute}` (header `{header}`)")]
    MissingAttribute {
        /// The attribute's CloudEvents name.
        attribute: &'static str,
        /// The header that should carry it.
        header: &'static str,
    },
    /// `ce-specversion` is not `1.0`.
    #[error("unsupported CloudEvents specversion `{found}`: only `1.0` is accepted")]
    BadSpecVersion {
        /// The value found.
        found: String,
    },
    /// `ce-id` is not a valid event id.
    #[error("bad event id `{value}`: {reason}")]
    BadId {
        /// The value found.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `ce-time` is not an RFC 3339 timestamp.
    #[error("bad time `{value}`: not an RFC 3339 timestamp ({reason})")]
    BadTime {
        /// The value found.
        value: String,
        /// The parser's message.
        reason: String,
    },
    /// `content-type` is neither MessagePack nor JSON.
    #[error(
        "unknown content type `{found}`: expected `application/msgpack` or `application/json`"
    )]
    UnknownContentType {
        /// The value found.
        found: String,
    },
    /// The body is not a valid encoding of the expected data.
    #[error("body is not valid {content_type} for the event's type: {reason}")]
    UndecodableBody {
        /// The content type the body claimed.
        content_type: ContentType,
        /// The decoder's message.
        reason: String,
    },
    /// Another attribute is present but not valid (tenant, type, schemaversion, source, ...).
    #[error("bad attribute `{attribute}` = `{value}`: {reason}")]
    BadAttribute {
        /// The attribute's CloudEvents name.
        attribute: &'static str,
        /// The value found.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The data was asked for as a type other than the event's.
    #[error("event is of type `{found}`, not `{expected}`")]
    TypeMismatch {
        /// The type asked for.
        expected: &'static str,
        /// The event's type.
        found: String,
    },
}

/// The kind of a [`DecodeError`], for matching and for dead-letter error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeErrorKind {
    /// See [`DecodeError::MissingAttribute`].
    MissingAttribute,
    /// See [`DecodeError::BadSpecVersion`].
    BadSpecVersion,
    /// See [`DecodeError::BadId`].
    BadId,
    /// See [`DecodeError::BadTime`].
    BadTime,
    /// See [`DecodeError::UnknownContentType`].
    UnknownContentType,
    /// See [`DecodeError::UndecodableBody`].
    UndecodableBody,
    /// See [`DecodeError::BadAttribute`].
    BadAttribute,
    /// See [`DecodeError::TypeMismatch`].
    TypeMismatch,
}

impl DecodeErrorKind {
    /// A stable, machine-readable code, used as the error code of a dead letter.
    pub fn code(self) -> &'static str {
        match self {
            Self::MissingAttribute => "event.missing-attribute",
            Self::BadSpecVersion => "event.bad-specversion",
            Self::BadId => "event.bad-id",
            Self::BadTime => "event.bad-time",
            Self::UnknownContentType => "event.unknown-content-type",
            Self::UndecodableBody => "event.undecodable-body",
            Self::BadAttribute => "event.bad-attribute",
            Self::TypeMismatch => "event.type-mismatch",
        }
    }
}

impl DecodeError {
    /// The kind of this error.
    pub fn kind(&self) -> DecodeErrorKind {
        match self {
            Self::MissingAttribute { .. } => DecodeErrorKind::MissingAttribute,
            Self::BadSpecVersion { .. } => DecodeErrorKind::BadSpecVersion,
            Self::BadId { .. } => DecodeErrorKind::BadId,
            Self::BadTime { .. } => DecodeErrorKind::BadTime,
            Self::UnknownContentType { .. } => DecodeErrorKind::UnknownContentType,
            Self::UndecodableBody { .. } => DecodeErrorKind::UndecodableBody,
            Self::BadAttribute { .. } => DecodeErrorKind::BadAttribute,
            Self::TypeMismatch { .. } => DecodeErrorKind::TypeMismatch,
        }
    }
}

/// Why an event could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The typed event declares an invalid type name.
    #[error("the event type declared by the data type is invalid: {0}")]
    BadType(NameError),
    /// An attribute value cannot travel in a header.
    #[error("bad attribute `{attribute}` = `{value}`: {reason}")]
    BadAttribute {
        /// The attribute's CloudEvents name.
        attribute: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The data could not be encoded.
    #[error("could not encode the data as {content_type}: {reason}")]
    Body {
        /// The content type asked for.
        content_type: ContentType,
        /// The encoder's message.
        reason: String,
    },
}

/// A free-text attribute that cannot travel in a header; shared by encoding and decoding.
#[derive(Debug)]
pub(crate) struct AttributeProblem {
    pub(crate) attribute: &'static str,
    pub(crate) value: String,
    pub(crate) reason: &'static str,
}

impl From<AttributeProblem> for DecodeError {
    fn from(p: AttributeProblem) -> Self {
        DecodeError::BadAttribute {
            attribute: p.attribute,
            value: p.value,
            reason: p.reason.to_owned(),
        }
    }
}

impl From<AttributeProblem> for EncodeError {
    fn from(p: AttributeProblem) -> Self {
        EncodeError::BadAttribute {
            attribute: p.attribute,
            value: p.value,
            reason: p.reason.to_owned(),
        }
    }
}
