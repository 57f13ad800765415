//! A publisher written in Python with the stock `nats-py` client, following only
//! `docs/wire-format.md`, produces events that Switchyard decodes exactly.

use std::path::Path;

use switchyard_bus::{decode_event, Bus};
use switchyard_schemas::semver::Version;
use switchyard_schemas::time::macros::datetime;
use switchyard_schemas::{ContentType, TypedEvent};
use switchyard_tests::{python_command, TestServer};

/// The data the Python script publishes.
#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct OrderCreated {
    order_id: String,
    total_cents: u64,
    lines: Vec<String>,
}

impl TypedEvent for OrderCreated {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

#[derive(serde::Deserialize, Debug)]
struct PublishLine {
    id: String,
    seq: u64,
    duplicate: bool,
    content_type: String,
}

#[tokio::test]
async fn events_published_by_nats_py_decode_exactly() {
    let server = TestServer::start().await;
    let bus = Bus::from_client(server.client().await);
    bus.provision().await.unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/publish_events.py");
    let output = python_command(&script, &[&server.url(), "acme"])
        .await
        .output()
        .await
        .expect("run the Python publisher");
    assert!(
        output.status.success(),
        "publish_events.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<PublishLine> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);

    // The third publish repeats the first id: JetStream stored it once.
    assert!(!lines[0].duplicate && !lines[1].duplicate);
    assert!(lines[2].duplicate, "same Nats-Msg-Id within the window");
    assert_eq!(lines[2].seq, lines[0].seq);
    assert_eq!(lines[2].id, lines[0].id);

    let stream = bus
        .jetstream()
        .get_stream("SWITCHYARD_EVENTS")
        .await
        .unwrap();
    let expected = OrderCreated {
        order_id: "o-42".into(),
        total_cents: 1999,
        lines: vec!["book".into(), "pen".into()],
    };
    for line in &lines[..2] {
        let stored = stream.direct_get(line.seq).await.unwrap();
        assert_eq!(
            stored.subject.as_str(),
            "switchyard.events.acme.order.created"
        );
        let event = decode_event(Some(&stored.headers), stored.payload.clone())
            .unwrap_or_else(|e| panic!("event {} does not decode: {e}", line.id));
        let a = &event.attributes;
        assert_eq!(a.id.as_str(), line.id);
        assert_eq!(a.source, "urn:svc:python-orders");
        assert_eq!(a.event_type.as_str(), "order.created");
        assert_eq!(a.schema_version, Version::new(1, 0, 0));
        assert_eq!(a.tenant.as_str(), "acme");
        assert_eq!(a.subject.as_deref(), Some("order-42"));
        assert_eq!(a.time, Some(datetime!(2026-11-22 10:00:00 UTC)));
        assert_eq!(
            a.content_type,
            ContentType::parse(&line.content_type).unwrap()
        );
        assert_eq!(event.data_as::<OrderCreated>().unwrap(), expected);
    }
    let info = bus
        .jetstream()
        .get_stream("SWITCHYARD_EVENTS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(info, 2, "two events, the repeat de-duplicated");
}
