//! Hostile and broken input against a real nats-server and dispatcher: an event whose headers
//! are valid but whose body is not well-formed for its content type never reaches a worker.

use std::time::Duration;

use switchyard_schemas::delivery::Outcome;
use switchyard_schemas::header as ce;
use switchyard_tests::{manifest, Behaviour, Switchyard, TestWorker};

const DEADLINE: Duration = Duration::from_secs(20);

/// Valid CloudEvents headers for an `order.created` event with this id and content type.
fn headers(id: &str, content_type: &str) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in [
        (ce::SPEC_VERSION, "1.0"),
        (ce::ID, id),
        (ce::SOURCE, "urn:test"),
        (ce::TYPE, "order.created"),
        (ce::SCHEMA_VERSION, "1.0.0"),
        (ce::TENANT, "acme"),
        (ce::CONTENT_TYPE, content_type),
    ] {
        headers.insert(name, value);
    }
    headers
}

#[tokio::test]
async fn a_body_that_is_not_well_formed_is_dead_lettered_and_never_delivered() {
    let sy = Switchyard::start().await;
    sy.register(manifest("audit", "")).await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::Reply(Outcome::Done)
    })
    .await;
    let js = sy.bus.jetstream();
    let bodies: [(&str, &str, &'static [u8]); 3] = [
        ("bad-json", "application/json", b"{this is not json"),
        ("bad-msgpack", "application/msgpack", b"\xc1"),
        // 101 nested one-element arrays: one level past the limit.
        ("too-deep", "application/msgpack", &[0x91; 102]),
    ];
    for (id, content_type, body) in bodies {
        js.publish_with_headers(
            "switchyard.events.acme.order.created",
            headers(id, content_type),
            bytes::Bytes::from_static(body),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    // A good event after them still flows: the bad ones held nothing up.
    sy.publish_orders("acme", 0..1).await;
    worker.wait_for(1, DEADLINE).await.unwrap();

    let letters = sy.wait_for_dead_letters(3, DEADLINE).await;
    let codes: Vec<&str> = letters.iter().map(|l| l.failure.code.as_str()).collect();
    assert_eq!(codes, ["event.undecodable-body"; 3]);
    // Dead-lettered concurrently, so in any order: found by body.
    let reason = |body: &[u8]| {
        letters
            .iter()
            .find(|l| l.payload.as_ref() == body)
            .map(|l| l.failure.reason.clone())
            .expect("a dead letter with this body, unchanged")
    };
    let json = reason(b"{this is not json");
    assert!(json.contains("application/json at byte 1"), "{json}");
    assert!(reason(b"\xc1").contains("0xc1"));
    let deep = reason(&[0x91; 102]);
    assert!(deep.contains("nested deeper than 100 levels"), "{deep}");
    assert_eq!(
        worker.count(),
        1,
        "only the well-formed event was delivered"
    );
}
