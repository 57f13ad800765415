//! The envelope's encode/decode contract: each rule of the wire format has a test that fails
//! when the rule is not enforced.

use bytes::Bytes;
use switchyard_schemas::semver::Version;
use switchyard_schemas::time::macros::datetime;
use switchyard_schemas::{
    header, ContentType, DecodeError, DecodeErrorKind, EncodeError, Event, EventId, Tenant,
    TypedEvent,
};

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct OrderCreated {
    order_id: String,
    total_cents: u64,
}

impl TypedEvent for OrderCreated {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 2, 0);
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct InvoicePaid {
    invoice: String,
}

impl TypedEvent for InvoicePaid {
    const TYPE: &'static str = "invoice.paid";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

fn order() -> OrderCreated {
    OrderCreated {
        order_id: "o-42".into(),
        total_cents: 1999,
    }
}

fn sample(content_type: ContentType) -> Event {
    Event::builder(Tenant::new("acme").unwrap(), "urn:svc:orders")
        .id(EventId::new("evt-1").unwrap())
        .subject("order-42")
        .data_schema("https://schemas.example/order-created-1.2.json")
        .time(datetime!(2026-11-22 10:00:00.5 UTC))
        .content_type(content_type)
        .build(&order())
        .unwrap()
}

/// Headers as a mutable list, so that tests can break one rule at a time.
struct Wire {
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Wire {
    fn of(event: &Event) -> Self {
        Self {
            headers: event
                .headers()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            body: event.data.clone(),
        }
    }

    fn set(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn remove(mut self, name: &str) -> Self {
        self.headers.retain(|(k, _)| k != name);
        self
    }

    fn body(mut self, body: &'static [u8]) -> Self {
        self.body = Bytes::from_static(body);
        self
    }

    fn decode(&self) -> Result<Event, DecodeError> {
        Event::decode(
            |name| {
                self.headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            },
            self.body.clone(),
        )
    }
}

#[test]
fn round_trips_every_attribute_in_both_encodings() {
    for ct in [ContentType::MessagePack, ContentType::Json] {
        let event = sample(ct);
        let back = Wire::of(&event).decode().unwrap();
        assert_eq!(back, event);
        assert_eq!(back.data_as::<OrderCreated>().unwrap(), order());
        assert_eq!(back.attributes.schema_version, Version::new(1, 2, 0));
    }
}

#[test]
fn writes_binary_mode_headers_and_the_dedup_id() {
    let event = sample(ContentType::MessagePack);
    let headers = event.headers();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("ce-specversion"), Some("1.0"));
    assert_eq!(get("ce-id"), Some("evt-1"));
    assert_eq!(get("Nats-Msg-Id"), Some("evt-1"));
    assert_eq!(get("ce-type"), Some("order.created"));
    assert_eq!(get("ce-tenant"), Some("acme"));
    assert_eq!(get("ce-schemaversion"), Some("1.2.0"));
    assert_eq!(get("content-type"), Some("application/msgpack"));
    assert_eq!(get("ce-time"), Some("2026-11-22T10:00:00.5Z"));
}

#[test]
fn optional_attributes_may_be_absent() {
    let wire = Wire::of(&sample(ContentType::Json))
        .remove(header::TIME)
        .remove(header::SUBJECT)
        .remove(header::DATA_SCHEMA);
    let event = wire.decode().unwrap();
    assert_eq!(event.attributes.time, None);
    assert_eq!(event.attributes.subject, None);
    assert_eq!(event.attributes.data_schema, None);
}

#[test]
fn a_missing_required_attribute_is_named() {
    for (name, attribute) in [
        (header::SPEC_VERSION, "specversion"),
        (header::ID, "id"),
        (header::SOURCE, "source"),
        (header::TYPE, "type"),
        (header::SCHEMA_VERSION, "schemaversion"),
        (header::TENANT, "tenant"),
        (header::CONTENT_TYPE, "datacontenttype"),
    ] {
        let err = Wire::of(&sample(ContentType::Json))
            .remove(name)
            .decode()
            .unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::MissingAttribute, "{name}");
        assert_eq!(
            err,
            DecodeError::MissingAttribute {
                attribute,
                header: name
            }
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn a_spec_version_other_than_1_0_is_refused() {
    for bad in ["0.3", "1.1", "", "1.0 "] {
        let err = Wire::of(&sample(ContentType::Json))
            .set(header::SPEC_VERSION, bad)
            .decode()
            .unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::BadSpecVersion, "{bad:?}");
    }
}

#[test]
fn a_bad_id_is_refused_with_the_reason() {
    for bad in ["", "has space", "é", &"x".repeat(129)] {
        let err = Wire::of(&sample(ContentType::Json))
            .set(header::ID, bad)
            .decode()
            .unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::BadId, "{bad:?}");
    }
    assert!(EventId::new("x".repeat(128)).is_ok());
}

#[test]
fn a_time_that_is_not_rfc3339_is_refused() {
    for bad in ["yesterday", "2026-11-22 10:00:00", "2026-13-01T00:00:00Z"] {
        let err = Wire::of(&sample(ContentType::Json))
            .set(header::TIME, bad)
            .decode()
            .unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::BadTime, "{bad:?}");
        assert!(err.to_string().contains(bad), "{err}");
    }
    // Offsets other than Z are valid RFC 3339.
    let ok = Wire::of(&sample(ContentType::Json))
        .set(header::TIME, "2026-11-22T11:00:00+01:00")
        .decode()
        .unwrap();
    assert_eq!(
        ok.attributes.time.unwrap(),
        datetime!(2026-11-22 10:00:00 UTC)
    );
}

#[test]
fn an_unknown_content_type_is_refused() {
    let err = Wire::of(&sample(ContentType::Json))
        .set(header::CONTENT_TYPE, "text/xml")
        .decode()
        .unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::UnknownContentType);
    assert!(err.to_string().contains("text/xml"), "{err}");
}

#[test]
fn an_undecodable_body_is_reported_when_the_data_is_read() {
    // The envelope itself is fine; the body is not JSON.
    let event = Wire::of(&sample(ContentType::Json))
        .body(b"{not json")
        .decode()
        .unwrap();
    let err = event.data_as::<OrderCreated>().unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::UndecodableBody);

    // A MessagePack body that lacks a field.
    let event = Wire::of(&sample(ContentType::MessagePack))
        .body(&[0x81, 0xa1, b'x', 0x01])
        .decode()
        .unwrap();
    let err = event.data_as::<OrderCreated>().unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::UndecodableBody);
    assert!(err.to_string().contains("application/msgpack"), "{err}");
}

/// A recursive payload type: rmp-serde bounds the depth of arrays and maps it reads, but not of
/// enum variants, so without a check of its own a reader of this type recursed once per level
/// of any body it was handed.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

impl TypedEvent for Tree {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 2, 0);
}

/// `levels` nested `Node` variants around a `Leaf`, as rmp-serde writes them: each a map of
/// one entry from the variant's name to its content.
fn nested_variants(levels: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(levels * 6 + 5);
    for _ in 0..levels {
        body.extend_from_slice(b"\x81\xa4Node");
    }
    body.extend_from_slice(b"\xa4Leaf");
    body
}

#[test]
fn deeply_nested_enum_variants_are_refused_not_a_stack_overflow() {
    // The body of the report: 21 KB of nested variants; then one far deeper. Before the depth
    // check either aborted the test process with a stack overflow, failing this test.
    for levels in [3_600, 200_000] {
        let body = nested_variants(levels);
        let event = Event {
            data: Bytes::from(body),
            ..sample(ContentType::MessagePack)
        };
        let err = event.data_as::<Tree>().unwrap_err();
        assert_eq!(err.kind(), DecodeErrorKind::UndecodableBody);
        assert!(err.to_string().contains("nested deeper than"), "{err}");
        assert_eq!(event.check_body().unwrap_err(), err);
    }
    assert!(nested_variants(3_600).len() > 21_000);

    // Within the limit the same type reads normally.
    let event = Event {
        data: Bytes::from(nested_variants(switchyard_schemas::MAX_BODY_DEPTH)),
        ..sample(ContentType::MessagePack)
    };
    let mut tree = event.data_as::<Tree>().unwrap();
    let mut depth = 0;
    while let Tree::Node(inner) = tree {
        tree = *inner;
        depth += 1;
    }
    assert_eq!(depth, switchyard_schemas::MAX_BODY_DEPTH);
}

#[test]
fn deeply_nested_json_is_refused_by_the_same_limit() {
    let levels = switchyard_schemas::MAX_BODY_DEPTH + 1;
    let body = format!(
        "{}\"Leaf\"{}",
        "{\"Node\":".repeat(levels),
        "}".repeat(levels)
    );
    let event = Event {
        data: Bytes::from(body),
        ..sample(ContentType::Json)
    };
    let err = event.data_as::<Tree>().unwrap_err();
    assert!(
        err.to_string().contains("nested deeper than 100 levels"),
        "{err}"
    );
}

#[test]
fn a_body_that_is_not_well_formed_is_found_without_a_type() {
    let event = Wire::of(&sample(ContentType::Json))
        .body(b"{this is not json")
        .decode()
        .expect("the headers are fine; the body is not read here");
    let err = event.check_body().unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::UndecodableBody);
    assert_eq!(err.kind().code(), "event.undecodable-body");
    assert!(err.to_string().contains("at byte 1"), "{err}");

    let event = Wire::of(&sample(ContentType::MessagePack))
        .body(b"\xc1")
        .decode()
        .unwrap();
    assert_eq!(
        event.check_body().unwrap_err().kind(),
        DecodeErrorKind::UndecodableBody
    );
    assert_eq!(sample(ContentType::MessagePack).check_body(), Ok(()));
    assert_eq!(sample(ContentType::Json).check_body(), Ok(()));
}

#[test]
fn reading_data_as_another_type_is_refused() {
    let err = sample(ContentType::Json)
        .data_as::<InvoicePaid>()
        .unwrap_err();
    assert_eq!(err.kind(), DecodeErrorKind::TypeMismatch);
}

#[test]
fn invalid_names_and_versions_in_headers_are_refused() {
    for (name, value) in [
        (header::TENANT, "acme.eu"),
        (header::TENANT, "*"),
        (header::TYPE, "order.>"),
        (header::TYPE, "order created"),
        (header::SCHEMA_VERSION, "1.2"),
        (header::SOURCE, ""),
    ] {
        let err = Wire::of(&sample(ContentType::Json))
            .set(name, value)
            .decode()
            .unwrap_err();
        assert_eq!(
            err.kind(),
            DecodeErrorKind::BadAttribute,
            "{name}={value:?}"
        );
    }
}

#[test]
fn attributes_that_cannot_travel_in_a_header_are_refused_when_building() {
    let err = Event::builder(Tenant::new("acme").unwrap(), "urn:svc\r\nx")
        .build(&order())
        .unwrap_err();
    assert!(
        matches!(
            err,
            EncodeError::BadAttribute {
                attribute: "source",
                ..
            }
        ),
        "{err}"
    );
    let err = Event::builder(Tenant::new("acme").unwrap(), "urn:svc")
        .subject("")
        .build(&order())
        .unwrap_err();
    assert!(matches!(
        err,
        EncodeError::BadAttribute {
            attribute: "subject",
            ..
        }
    ));
}

#[test]
fn json_published_by_hand_is_accepted() {
    // What a client in another language sends: plain JSON, the documented headers.
    let headers = [
        ("ce-specversion", "1.0"),
        ("ce-id", "py-1"),
        ("ce-source", "urn:svc:python"),
        ("ce-type", "order.created"),
        ("ce-schemaversion", "1.0.0"),
        ("ce-tenant", "acme"),
        ("content-type", "application/json"),
    ];
    let event = Event::decode(
        |n| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| *v),
        Bytes::from_static(br#"{"order_id":"o-1","total_cents":5}"#),
    )
    .unwrap();
    assert_eq!(
        event.data_as::<OrderCreated>().unwrap(),
        OrderCreated {
            order_id: "o-1".into(),
            total_cents: 5
        }
    );
}
