//! NATS header names of the wire format, defined once.
//!
//! Events travel in CloudEvents *binary content mode*: each attribute is a header named
//! `ce-<attribute>`, except `datacontenttype`, which is `content-type`. Header names are
//! written exactly as below (lower case); see `docs/wire-format.md`.

/// CloudEvents `specversion`; always `1.0`.
pub const SPEC_VERSION: &str = "ce-specversion";
/// CloudEvents `id`.
pub const ID: &str = "ce-id";
/// CloudEvents `source`.
pub const SOURCE: &str = "ce-source";
/// CloudEvents `type`.
pub const TYPE: &str = "ce-type";
/// CloudEvents `time` (RFC 3339).
pub const TIME: &str = "ce-time";
/// CloudEvents `subject`.
pub const SUBJECT: &str = "ce-subject";
/// CloudEvents `dataschema`.
pub const DATA_SCHEMA: &str = "ce-dataschema";
/// CloudEvents `datacontenttype`.
pub const CONTENT_TYPE: &str = "content-type";
/// Extension attribute `tenant`.
pub const TENANT: &str = "ce-tenant";
/// Extension attribute `schemaversion`: the semver version of the event type's schema.
pub const SCHEMA_VERSION: &str = "ce-schemaversion";
/// JetStream's de-duplication header; carries the event id so a retried publish is stored once.
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";

/// The CloudEvents spec version this crate reads and writes.
pub const CLOUDEVENTS_SPEC_VERSION: &str = "1.0";
