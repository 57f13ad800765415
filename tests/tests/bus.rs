//! The `bus` crate against a real nats-server: provisioning, publishing, de-duplication,
//! bounded batches, and each typed error.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy};
use switchyard_bus::{
    decode_event, Bus, ConnectError, ConnectOptions, ProvisionReport, Provisioned,
    PublishErrorKind, StreamSettings, Streams,
};
use switchyard_schemas::semver::Version;
use switchyard_schemas::{Event, EventId, Namespace, Tenant, TypedEvent};
use switchyard_tests::{TestCluster, TestConfig, TestServer};

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
struct OrderCreated {
    order_id: String,
    note: String,
}

impl TypedEvent for OrderCreated {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

fn acme() -> Tenant {
    Tenant::new("acme").unwrap()
}

fn order(i: usize) -> OrderCreated {
    OrderCreated {
        order_id: format!("o-{i}"),
        note: String::new(),
    }
}

fn event(i: usize) -> Event {
    Event::builder(acme(), "urn:test").build(&order(i)).unwrap()
}

async fn provisioned_bus(server: &TestServer) -> Bus {
    let bus = Bus::from_client(server.client().await);
    bus.provision().await.unwrap();
    bus
}

async fn message_count(bus: &Bus) -> u64 {
    let mut stream = bus
        .jetstream()
        .get_stream(&bus.streams().events.name)
        .await
        .unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test]
async fn provisioning_creates_both_streams_with_the_documented_defaults() {
    let server = TestServer::start().await;
    let bus = Bus::from_client(server.client().await);
    assert_eq!(
        bus.provision().await.unwrap(),
        ProvisionReport {
            events: Provisioned::Created,
            dead_letters: Provisioned::Created,
            audit: Provisioned::Created,
        }
    );

    let mut events = bus
        .jetstream()
        .get_stream("SWITCHYARD_EVENTS")
        .await
        .unwrap();
    let config = events.info().await.unwrap().config.clone();
    assert_eq!(
        config.subjects,
        ["switchyard.events.>", "switchyard.redrive.>"]
    );
    assert_eq!(config.retention, RetentionPolicy::Limits);
    assert_eq!(config.discard, DiscardPolicy::New);
    assert_eq!(config.max_age, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(config.max_bytes, 4 * 1024 * 1024 * 1024);
    assert_eq!(config.duplicate_window, Duration::from_secs(120));
    assert_eq!(config.num_replicas, 1);

    let mut dlq = bus.jetstream().get_stream("SWITCHYARD_DLQ").await.unwrap();
    let config = dlq.info().await.unwrap().config.clone();
    assert_eq!(config.subjects, ["switchyard.dlq.>"]);
    assert_eq!(config.max_age, Duration::from_secs(30 * 24 * 3600));
    assert_eq!(config.duplicate_window, Duration::from_secs(3600));
}

#[tokio::test]
async fn provisioning_is_idempotent_and_applies_overrides() {
    let server = TestServer::start().await;
    let bus = Bus::from_client(server.client().await);
    bus.provision().await.unwrap();
    let again = bus.provision().await.unwrap();
    assert_eq!(again.events, Provisioned::Unchanged);
    assert_eq!(again.dead_letters, Provisioned::Unchanged);

    let ns = Namespace::default();
    let defaults = Streams::defaults(&ns);
    let overridden = Streams {
        events: StreamSettings {
            max_age: Duration::from_secs(3600),
            max_bytes: 1024 * 1024,
            ..defaults.events
        },
        ..defaults
    };
    let bus = bus.with_streams(overridden);
    let report = bus.provision().await.unwrap();
    assert_eq!(report.events, Provisioned::Updated);
    assert_eq!(report.dead_letters, Provisioned::Unchanged);
    let mut events = bus
        .jetstream()
        .get_stream("SWITCHYARD_EVENTS")
        .await
        .unwrap();
    let config = events.info().await.unwrap().config.clone();
    assert_eq!(config.max_age, Duration::from_secs(3600));
    assert_eq!(config.max_bytes, 1024 * 1024);
}

#[tokio::test]
async fn a_custom_prefix_gets_its_own_streams() {
    let server = TestServer::start().await;
    let bus =
        Bus::from_client(server.client().await).with_namespace(Namespace::new("staging").unwrap());
    bus.provision().await.unwrap();
    assert_eq!(bus.streams().events.name, "STAGING_EVENTS");
    let receipt = bus
        .publisher("urn:test")
        .publish(&acme(), &order(1))
        .await
        .unwrap();
    assert_eq!(receipt.stream, "STAGING_EVENTS");
}

#[tokio::test]
async fn a_published_event_is_stored_and_reads_back_unchanged() {
    let server = TestServer::start().await;
    let bus = provisioned_bus(&server).await;
    let sent = event(1);
    let receipt = bus
        .publisher("urn:test")
        .publish_event(&sent)
        .await
        .unwrap();
    assert_eq!(receipt.stream, "SWITCHYARD_EVENTS");
    assert_eq!(receipt.sequence, 1);
    assert!(!receipt.duplicate);
    assert_eq!(receipt.id, sent.attributes.id);

    let stream = bus
        .jetstream()
        .get_stream("SWITCHYARD_EVENTS")
        .await
        .unwrap();
    let stored = stream.direct_get(1).await.unwrap();
    assert_eq!(
        stored.subject.as_str(),
        "switchyard.events.acme.order.created"
    );
    let back = decode_event(Some(&stored.headers), stored.payload.clone()).unwrap();
    assert_eq!(back, sent);
    assert_eq!(back.data_as::<OrderCreated>().unwrap(), order(1));
}

#[tokio::test]
async fn the_same_event_id_published_twice_is_stored_once() {
    let server = TestServer::start().await;
    let bus = provisioned_bus(&server).await;
    let publisher = bus.publisher("urn:test");

    let first = publisher.publish_event(&event(1)).await.unwrap();
    let retried = Event::builder(acme(), "urn:test")
        .id(first.id.clone())
        .build(&order(1))
        .unwrap();
    let second = publisher.publish_event(&retried).await.unwrap();
    assert!(
        second.duplicate,
        "the retry must be recognised as a duplicate"
    );
    assert_eq!(second.sequence, first.sequence);
    // A different id is a different event.
    let third = publisher.publish_event(&event(1)).await.unwrap();
    assert!(!third.duplicate);
    assert_eq!(message_count(&bus).await, 2);
}

#[tokio::test]
async fn publish_many_keeps_a_bounded_window_and_preserves_order() {
    let server = TestServer::start().await;
    let bus = provisioned_bus(&server).await;
    let events: Vec<Event> = (0..3000).map(event).collect();
    let ids: Vec<EventId> = events.iter().map(|e| e.attributes.id.clone()).collect();

    let receipts = bus
        .publisher("urn:test")
        .publish_many(events, NonZeroUsize::new(16).unwrap())
        .await
        .unwrap();
    assert_eq!(receipts.len(), 3000);
    for (i, receipt) in receipts.iter().enumerate() {
        assert_eq!(receipt.id, ids[i]);
        assert_eq!(receipt.sequence, i as u64 + 1, "sent in order");
    }
    assert_eq!(message_count(&bus).await, 3000);
}

#[tokio::test]
async fn a_batch_reports_its_first_failure_and_what_was_stored() {
    let server = TestServer::with_config(TestConfig::text("max_payload: 4096")).await;
    let bus = provisioned_bus(&server).await;
    let mut events: Vec<Event> = (0..10).map(event).collect();
    events[5] = Event::builder(acme(), "urn:test")
        .build(&OrderCreated {
            order_id: "big".into(),
            note: "x".repeat(8192),
        })
        .unwrap();

    let err = bus
        .publisher("urn:test")
        .publish_many(events, NonZeroUsize::new(4).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.index, 5);
    assert_eq!(err.error.kind(), PublishErrorKind::PayloadTooLarge);
    let stored: Vec<usize> = err.stored.iter().map(|(i, _)| *i).collect();
    assert_eq!(stored, [0, 1, 2, 3, 4]);
    assert_eq!(message_count(&bus).await, 5);
}

#[tokio::test]
async fn an_event_over_the_servers_max_payload_is_refused_with_both_sizes() {
    let server = TestServer::with_config(TestConfig::text("max_payload: 4096")).await;
    let bus = provisioned_bus(&server).await;
    let big = OrderCreated {
        order_id: "big".into(),
        note: "x".repeat(8192),
    };
    let err = bus
        .publisher("urn:test")
        .publish(&acme(), &big)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::PayloadTooLarge);
    match &err {
        switchyard_bus::PublishError::PayloadTooLarge { size, max, .. } => {
            assert_eq!(*max, 4096);
            assert!(*size > 8192, "{size}");
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("4096"), "{err}");
    assert_eq!(message_count(&bus).await, 0);
}

#[tokio::test]
async fn publishing_without_provisioned_streams_says_the_stream_is_missing() {
    let server = TestServer::start().await;
    let bus = Bus::from_client(server.client().await);
    let err = bus
        .publisher("urn:test")
        .publish(&acme(), &order(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::StreamMissing);
    assert!(
        err.to_string()
            .contains("switchyard.events.acme.order.created"),
        "{err}"
    );
}

#[tokio::test]
async fn a_publish_nobody_acknowledges_times_out_instead_of_hanging() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // A plain subscriber takes the subject, so the request has a responder that never answers.
    let _silent = client.subscribe("switchyard.events.>").await.unwrap();
    client.flush().await.unwrap();
    let bus = Bus::from_client(client);
    let publisher = bus
        .publisher("urn:test")
        .with_ack_timeout(Duration::from_millis(300));

    let started = Instant::now();
    let err = publisher.publish(&acme(), &order(1)).await.unwrap_err();
    assert_eq!(err.kind(), PublishErrorKind::NotAcknowledged);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the ack timeout"
    );
}

#[tokio::test]
async fn a_full_stream_refuses_new_events_instead_of_dropping_old_ones() {
    let server = TestServer::start().await;
    let ns = Namespace::default();
    let defaults = Streams::defaults(&ns);
    let bus = Bus::from_client(server.client().await).with_streams(Streams {
        events: StreamSettings {
            max_bytes: 2048,
            ..defaults.events
        },
        ..defaults
    });
    bus.provision().await.unwrap();
    let publisher = bus.publisher("urn:test");
    let mut refused = None;
    for i in 0..100 {
        if let Err(err) = publisher.publish(&acme(), &order(i)).await {
            refused = Some((i, err));
            break;
        }
    }
    let (stored, err) = refused.expect("a 2 KiB stream fills up");
    assert_eq!(err.kind(), PublishErrorKind::Refused, "{err}");
    assert_eq!(
        message_count(&bus).await,
        stored as u64,
        "nothing was dropped"
    );
    let stream = bus
        .jetstream()
        .get_stream("SWITCHYARD_EVENTS")
        .await
        .unwrap();
    assert!(
        stream.direct_get(1).await.is_ok(),
        "the first event is still there"
    );
}

#[tokio::test]
async fn connecting_to_a_closed_port_fails_fast_as_unreachable() {
    // Bind and drop a listener: the port is free, and nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = ConnectOptions {
        connect_timeout: Duration::from_secs(2),
        ..ConnectOptions::new(format!("nats://127.0.0.1:{port}"))
    };
    let err = options.connect().await.unwrap_err();
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_instead_of_hanging() {
    // Accepts TCP connections and says nothing, like a hung or wrong peer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = ConnectOptions {
        connect_timeout: Duration::from_millis(500),
        ..ConnectOptions::new(format!("nats://127.0.0.1:{port}"))
    };
    let started = Instant::now();
    let err = options.connect().await.unwrap_err();
    assert!(matches!(err, ConnectError::Unreachable { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_missing_credentials_file_is_named() {
    let options = ConnectOptions {
        credentials_file: Some("/nonexistent/switchyard.creds".into()),
        ..ConnectOptions::new("nats://127.0.0.1:1")
    };
    let err = options.connect().await.unwrap_err();
    assert!(matches!(err, ConnectError::Credentials { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/switchyard.creds"));
}

#[tokio::test]
async fn connect_options_reach_a_real_server() {
    let server = TestServer::start().await;
    let bus = Bus::connect(&ConnectOptions::new(server.url()))
        .await
        .unwrap();
    bus.provision().await.unwrap();
    bus.publisher("urn:test")
        .publish(&acme(), &order(1))
        .await
        .unwrap();
    assert_eq!(message_count(&bus).await, 1);
}

#[tokio::test]
async fn streams_replicate_across_a_three_node_cluster() {
    let cluster = TestCluster::start(3).await;
    let ns = Namespace::default();
    let defaults = Streams::defaults(&ns);
    let bus = Bus::from_client(cluster.client().await).with_streams(Streams {
        events: StreamSettings {
            replicas: 3,
            ..defaults.events
        },
        dead_letters: StreamSettings {
            replicas: 3,
            ..defaults.dead_letters
        },
        audit: StreamSettings {
            replicas: 3,
            ..defaults.audit
        },
    });
    bus.provision().await.unwrap();
    bus.publisher("urn:test")
        .publish(&acme(), &order(1))
        .await
        .unwrap();

    let mut stream = bus
        .jetstream()
        .get_stream("SWITCHYARD_EVENTS")
        .await
        .unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.state.messages, 1);
    let cluster_info = info.cluster.clone().expect("clustered stream");
    assert_eq!(cluster_info.replicas.len(), 2, "a leader and two replicas");
}
