//! What operators rely on: a dispatcher start never weakens provisioned streams, refuses a
//! stream that cannot serve, and a plugin gets every event published after its registration,
//! whatever runs when.

use std::time::Duration;

use switchyard_bus::{Bus, StreamSettings, Streams};
use switchyard_control::registry::{Registration, TenantScope};
use switchyard_dispatcher::{Dispatcher, DispatcherConfig};
use switchyard_schemas::delivery::Outcome;
use switchyard_tests::{manifest, Behaviour, Switchyard, TestCluster, TestServer, TestWorker};

const DEADLINE: Duration = Duration::from_secs(30);
const MIB: i64 = 1024 * 1024;

#[tokio::test]
async fn events_published_after_registration_reach_a_plugin_registered_before_any_dispatcher() {
    let sy = Box::pin(Switchyard::without_dispatcher()).await;
    // Before the registration: not for this plugin.
    let before = sy.publish_orders("acme", 0..5).await;
    sy.registry
        .put(&Registration::new(manifest("audit", ""), TenantScope::All))
        .await
        .expect("registration stored");
    // After it, with no dispatcher running: every one is owed to the plugin.
    let after = sy.publish_orders("acme", 5..1005).await;

    let _dispatcher = sy.another_dispatcher().await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::Reply(Outcome::Done)
    })
    .await;
    worker
        .wait_for(after.len(), DEADLINE)
        .await
        .expect("all 1,000 events published after the registration are delivered");
    let received: Vec<_> = worker
        .received()
        .iter()
        .map(|d| d.event.attributes.id.clone())
        .collect();
    assert!(after.iter().all(|id| received.contains(id)));
    assert!(before.iter().all(|id| !received.contains(id)));
}

#[tokio::test]
async fn a_dispatcher_start_keeps_the_replicas_and_limits_an_operator_provisioned() {
    let cluster = TestCluster::start(3).await;
    cluster
        .wait_until_healthy(DEADLINE)
        .await
        .expect("the cluster forms");
    let defaults = Streams::defaults(&Default::default());
    let provisioned = Streams {
        events: StreamSettings {
            replicas: 3,
            max_bytes: 64 * MIB,
            ..defaults.events.clone()
        },
        dead_letters: StreamSettings {
            replicas: 3,
            max_bytes: 16 * MIB,
            ..defaults.dead_letters.clone()
        },
        audit: StreamSettings {
            replicas: 3,
            max_bytes: 8 * MIB,
            ..defaults.audit.clone()
        },
    };
    let bus = Bus::from_client(cluster.client().await).with_streams(provisioned);
    bus.provision().await.expect("the operator provisions");

    // A dispatcher with the default settings (1 replica, 4 GiB) starts, twice.
    for _ in 0..2 {
        let dispatcher = Dispatcher::start(cluster.client().await, DispatcherConfig::default())
            .await
            .expect("the dispatcher starts");
        dispatcher.shutdown().await;
    }
    let js = cluster.jetstream().await;
    for (name, max_bytes) in [
        (&defaults.events.name, 64 * MIB),
        (&defaults.dead_letters.name, 16 * MIB),
        (&defaults.audit.name, 8 * MIB),
    ] {
        let mut stream = js.get_stream(name).await.unwrap();
        let config = stream.info().await.unwrap().config.clone();
        assert_eq!(config.num_replicas, 3, "{name} keeps its replicas");
        assert_eq!(config.max_bytes, max_bytes, "{name} keeps its size");
    }
}

#[tokio::test]
async fn a_stream_that_cannot_serve_is_refused_by_name_and_left_alone() {
    let server = TestServer::start().await;
    let js = server.jetstream().await;
    // Events only: replays of dead letters would be stored nowhere.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "SWITCHYARD_EVENTS".into(),
        subjects: vec!["switchyard.events.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let Err(error) = Dispatcher::start(server.client().await, DispatcherConfig::default()).await
    else {
        panic!("the start is refused");
    };
    let message = error.to_string();
    assert!(
        message.contains("does not store `switchyard.redrive.>`")
            && message.contains("streams provision"),
        "{message}"
    );
    let mut stream = js.get_stream("SWITCHYARD_EVENTS").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().config.subjects,
        ["switchyard.events.>"],
        "nothing was changed"
    );
}
