//! The dispatcher as a whole against a real nats-server: registry changes while it runs,
//! tenant scopes, several instances sharing one consumer, graceful and hurried shutdown, and
//! the rate and concurrency limits of a delivery policy.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use switchyard_control::registry::{Registration, TenantScope};
use switchyard_dispatcher::{Dispatcher, DispatcherConfig};
use switchyard_schemas::delivery::Outcome;
use switchyard_schemas::manifest::Manifest;
use switchyard_schemas::semver::Version;
use switchyard_schemas::{EventId, EventType, PluginId, Tenant, TypedEvent};
use switchyard_tests::{manifest, wait_until, Behaviour, ReceivedDelivery, Switchyard, TestWorker};

const DEADLINE: Duration = Duration::from_secs(15);
/// How long a test watches for deliveries that must not happen.
const QUIET: Duration = Duration::from_secs(1);

/// A second event type, for a second subscription.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct RefundIssued {
    n: u32,
}

impl TypedEvent for RefundIssued {
    const TYPE: &'static str = "refund.issued";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

fn tenant(name: &str) -> Tenant {
    Tenant::new(name).unwrap()
}

/// `plugin` with the harness's `orders` subscription plus `refunds` to `refund.*`.
fn with_refunds(plugin: &str) -> Manifest {
    Manifest::from_toml_str(&format!(
        r#"
        [plugin]
        id = "{plugin}"
        version = "1.0.0"
        core = "*"

        [[subscriptions]]
        name = "orders"
        events = ["order.*"]

        [[subscriptions]]
        name = "refunds"
        events = ["refund.*"]
        "#
    ))
    .unwrap()
}

async fn done_worker(sy: &Switchyard, plugin: &str) -> TestWorker {
    TestWorker::start(&sy.url(), sy.namespace(), plugin, |_| {
        Behaviour::Reply(Outcome::Done)
    })
    .await
}

fn ids_of(received: &[ReceivedDelivery]) -> BTreeSet<EventId> {
    received
        .iter()
        .map(|d| d.event.attributes.id.clone())
        .collect()
}

/// Waits until the plugin's `orders` consumer has nothing pending and nothing un-acked.
async fn wait_until_drained(sy: &Switchyard, plugin: &str) {
    wait_until(DEADLINE, || async {
        sy.consumer_backlog(plugin).await == (0, 0)
    })
    .await
    .unwrap_or_else(|e| panic!("{plugin}'s consumer drains: {e}"));
}

async fn consumer_exists(sy: &Switchyard, name: &str) -> bool {
    sy.events_stream().await.consumer_info(name).await.is_ok()
}

// ---- registry changes while running ---------------------------------------------------------

#[tokio::test]
async fn registry_changes_take_effect_while_the_dispatcher_runs() {
    let sy = Switchyard::start().await;
    let audit = done_worker(&sy, "audit").await;
    let bystander = done_worker(&sy, "bystander").await;

    // Registered after the dispatcher started: it receives events.
    sy.register(manifest("audit", "")).await;
    sy.register(manifest("bystander", "")).await;
    let first = sy.publish_orders("acme", 0..5).await;
    audit.wait_for(5, DEADLINE).await.unwrap();
    assert_eq!(ids_of(&audit.received()), first.iter().cloned().collect());

    // A second subscription: its consumer appears and its events flow.
    sy.register(with_refunds("audit")).await;
    sy.publisher()
        .publish(&tenant("acme"), &RefundIssued { n: 1 })
        .await
        .unwrap();
    audit.wait_for(6, DEADLINE).await.unwrap();
    let refund = audit.received().last().cloned().unwrap();
    assert_eq!(refund.info.subscription, "refunds");
    assert_eq!(refund.event.attributes.event_type.as_str(), "refund.issued");

    // Narrowed to acme: the consumer's filter changes in place...
    sy.registry
        .put(&Registration::new(
            with_refunds("audit"),
            TenantScope::only([tenant("acme")]).unwrap(),
        ))
        .await
        .unwrap();
    let stream = sy.events_stream().await;
    wait_until(DEADLINE, || async {
        let Ok(info) = stream.consumer_info("audit~orders").await else {
            return false;
        };
        let filters = &info.config.filter_subjects;
        filters
            .iter()
            .any(|f| f == "switchyard.events.acme.order.*")
            && !filters.iter().any(|f| f == "switchyard.events.*.order.*")
    })
    .await
    .expect("the orders consumer is narrowed to acme");
    // ... and globex's events no longer reach the plugin; acme's still do.
    sy.publish_orders("globex", 100..103).await;
    let acme = sy.publish_orders("acme", 103..106).await;
    bystander.wait_for(5 + 6, DEADLINE).await.unwrap();
    audit.wait_for(6 + 3, DEADLINE).await.unwrap();
    wait_until_drained(&sy, "audit").await;
    let after_narrowing = audit.received()[6..].to_vec();
    assert_eq!(ids_of(&after_narrowing), acme.iter().cloned().collect());
    assert!(after_narrowing
        .iter()
        .all(|d| d.event.attributes.tenant == tenant("acme")));

    // Removed: both consumers are deleted, and its events go to nobody.
    let before_removal = audit.count();
    assert!(sy
        .registry
        .remove(&PluginId::new("audit").unwrap())
        .await
        .unwrap());
    wait_until(DEADLINE, || async {
        !consumer_exists(&sy, "audit~orders").await && !consumer_exists(&sy, "audit~refunds").await
    })
    .await
    .expect("the removed plugin's consumers are deleted");
    let last = sy.publish_orders("acme", 200..205).await;
    bystander.wait_for(11 + 5, DEADLINE).await.unwrap();
    wait_until_drained(&sy, "bystander").await;
    assert!(ids_of(&bystander.received()).is_superset(&last.iter().cloned().collect()));
    assert!(
        audit.wait_for(before_removal + 1, QUIET).await.is_err(),
        "a removed plugin received an event"
    );
    assert!(!consumer_exists(&sy, "audit~orders").await);
}

// ---- tenants --------------------------------------------------------------------------------

#[tokio::test]
async fn a_plugin_for_one_tenant_never_receives_another_tenants_events() {
    let sy = Switchyard::start().await;
    sy.register_for(
        manifest("acme-only", ""),
        TenantScope::only([tenant("acme")]).unwrap(),
    )
    .await;
    sy.register(manifest("everyone", "")).await;
    let acme_only = done_worker(&sy, "acme-only").await;
    let everyone = done_worker(&sy, "everyone").await;

    // globex first: once acme's later events are all through, globex's had their chance.
    let globex = sy.publish_orders("globex", 0..5).await;
    let acme = sy.publish_orders("acme", 5..10).await;

    everyone.wait_for(10, DEADLINE).await.unwrap();
    acme_only.wait_for(5, DEADLINE).await.unwrap();
    wait_until_drained(&sy, "acme-only").await;
    wait_until_drained(&sy, "everyone").await;

    let all: BTreeSet<EventId> = globex.iter().chain(&acme).cloned().collect();
    assert_eq!(ids_of(&everyone.received()), all);
    assert_eq!(everyone.count(), 10);
    assert_eq!(ids_of(&acme_only.received()), acme.into_iter().collect());
    assert_eq!(acme_only.count(), 5);
    assert!(acme_only
        .received()
        .iter()
        .all(|d| d.event.attributes.tenant == tenant("acme")));
}

// ---- several dispatchers --------------------------------------------------------------------

#[tokio::test]
async fn two_dispatchers_share_one_consumer_and_deliver_every_event_once() {
    let sy = Switchyard::start().await;
    let second = sy.another_dispatcher().await;
    sy.register(manifest("audit", "")).await;
    let worker = done_worker(&sy, "audit").await;
    // Both instances pull (one waiting pull request each) before anything is published.
    let stream = sy.events_stream().await;
    wait_until(DEADLINE, || async {
        stream
            .consumer_info("audit~orders")
            .await
            .is_ok_and(|info| info.num_waiting >= 2)
    })
    .await
    .expect("both dispatchers pull from the consumer");

    let ids = sy.publish_orders("acme", 0..300).await;
    worker.wait_for(300, DEADLINE).await.unwrap();
    wait_until_drained(&sy, "audit").await;

    let received = worker.received();
    assert_eq!(ids_of(&received), ids.into_iter().collect());
    assert_eq!(received.len(), 300, "no event delivered twice");
    assert!(sy.dead_letters().await.is_empty());
    // Replies to one dispatcher connection share an inbox prefix: count deliveries per prefix.
    let mut by_instance: BTreeMap<&str, usize> = BTreeMap::new();
    for delivery in &received {
        let (inbox, _token) = delivery.reply_subject.rsplit_once('.').unwrap();
        *by_instance.entry(inbox).or_default() += 1;
    }
    assert_eq!(
        by_instance.len(),
        2,
        "both dispatchers delivered: {by_instance:?}"
    );
    drop(second);
}

// ---- shutdown -------------------------------------------------------------------------------

#[tokio::test]
async fn shutdown_finishes_deliveries_under_way_and_then_pulls_nothing() {
    let mut sy = Switchyard::start().await;
    sy.register(manifest("audit", "")).await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::ReplyAfter(Duration::from_millis(500), Outcome::Done)
    })
    .await;
    sy.publish_orders("acme", 0..3).await;
    worker.wait_for(3, DEADLINE).await.unwrap();
    assert_eq!(sy.consumer_backlog("audit").await, (0, 3), "all under way");

    assert_eq!(sy.stop_dispatcher().await, 0, "nothing dropped");
    // Shutdown flushed the acks to the server; the consumer applies them on its own time.
    wait_until(DEADLINE, || async {
        sy.consumer_backlog("audit").await == (0, 0)
    })
    .await
    .expect("the three deliveries were acked");
    // The stopped dispatcher's connection is still open: make sure its pulls are withdrawn.
    sy.dispatcher_client.flush().await.unwrap();

    let later = sy.publish_orders("acme", 3..6).await;
    assert!(
        worker.wait_for(4, QUIET).await.is_err(),
        "a stopped dispatcher delivered"
    );
    assert_eq!(
        sy.consumer_backlog("audit").await,
        (3, 0),
        "nobody pulled while no dispatcher ran"
    );

    let _next = sy.another_dispatcher().await;
    worker.wait_for(6, DEADLINE).await.unwrap();
    wait_until_drained(&sy, "audit").await;
    let received = worker.received();
    assert_eq!(
        ids_of(&received[3..]),
        later.into_iter().collect(),
        "the next dispatcher delivers what was published meanwhile"
    );
    assert!(received.iter().all(|d| d.info.attempt == 1));
}

#[tokio::test]
async fn a_delivery_outlasting_the_grace_is_dropped_unacked_and_delivered_again() {
    let mut sy = Switchyard::without_dispatcher().await;
    sy.dispatcher = Some(
        sy.another_dispatcher_with(DispatcherConfig {
            shutdown_grace: Duration::from_millis(200),
            ..DispatcherConfig::default()
        })
        .await,
    );
    // ack wait = timeout + 10 s: the dropped delivery comes back after about 11 s.
    sy.register(manifest("audit", r#"timeout = "1s""#)).await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |d| {
        if d.info.attempt == 1 {
            Behaviour::Ignore
        } else {
            Behaviour::Reply(Outcome::Done)
        }
    })
    .await;
    let ids = sy.publish_orders("acme", 0..1).await;
    worker.wait_for(1, DEADLINE).await.unwrap();

    assert_eq!(sy.stop_dispatcher().await, 1, "the delivery under way");
    assert_eq!(
        sy.consumer_backlog("audit").await,
        (0, 1),
        "dropped un-acked, not naked nor acked"
    );

    let _next = sy.another_dispatcher().await;
    worker.wait_for(2, Duration::from_secs(18)).await.unwrap();
    wait_until_drained(&sy, "audit").await;
    let received = worker.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].event.attributes.id, ids[0]);
    assert_eq!(received[1].info.attempt, 2);
    assert!(sy.dead_letters().await.is_empty());
}

/// A graceful shutdown that reports nothing dropped must leave nothing un-acked: an event
/// the stopped dispatcher pulled but never delivered waits out the whole ack wait (40 s by
/// default) before any other instance may have it.
#[tokio::test]
async fn a_graceful_shutdown_under_load_leaves_no_event_unacked() {
    const ROUNDS: usize = 20;
    let mut sy = Switchyard::start().await;
    sy.register(manifest("audit", "max_in_flight = 64")).await;
    let worker = done_worker(&sy, "audit").await;
    sy.stop_dispatcher().await;
    // A backlog, so that every pull comes back full.
    sy.publish_orders("acme", 0..6000).await;

    for round in 1..=ROUNDS {
        let started_at = worker.count();
        sy.dispatcher = Some(
            Dispatcher::start(
                sy.dispatcher_client.clone(),
                DispatcherConfig {
                    shutdown_grace: Duration::from_secs(10),
                    ..DispatcherConfig::default()
                },
            )
            .await
            .unwrap(),
        );
        worker.wait_for(started_at + 100, DEADLINE).await.unwrap();
        let dropped = sy.stop_dispatcher().await;
        // Whatever the stopped dispatcher sent (acks, unsubscribes) has reached the server,
        // which applies acks asynchronously: under load, a moment later. An event really left
        // un-acked stays so for the whole ack wait (40 s), far beyond this deadline.
        sy.dispatcher_client.flush().await.unwrap();
        let settled = wait_until(Duration::from_secs(10), || async {
            sy.consumer_backlog("audit").await.1 == dropped
        })
        .await;
        let (_, unacked) = sy.consumer_backlog("audit").await;
        assert!(
            settled.is_ok(),
            "round {round}: a graceful shutdown reported {dropped} dropped deliveries, but \
             left {unacked} events un-acked"
        );
    }
}

// ---- policy limits --------------------------------------------------------------------------

#[tokio::test]
async fn the_rate_limit_spreads_deliveries_out() {
    let sy = Switchyard::start().await;
    sy.register(manifest("audit", "rate = \"10/s\"\nburst = 1"))
        .await;
    let worker = done_worker(&sy, "audit").await;
    sy.publish_orders("acme", 0..11).await;
    worker.wait_for(11, DEADLINE).await.unwrap();
    let received = worker.received();
    let spread = received[10].received_at - received[0].received_at;
    // One at once, then one every 100 ms.
    assert!(
        spread >= Duration::from_millis(900),
        "11 deliveries at 10/s with burst 1 took only {spread:?}"
    );
    wait_until_drained(&sy, "audit").await;
}

#[tokio::test]
async fn max_in_flight_bounds_the_deliveries_open_at_once() {
    let sy = Switchyard::start().await;
    sy.register(manifest("audit", "max_in_flight = 2")).await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::ReplyAfter(Duration::from_millis(200), Outcome::Done)
    })
    .await;
    sy.publish_orders("acme", 0..10).await;
    worker.wait_for(10, DEADLINE).await.unwrap();
    wait_until_drained(&sy, "audit").await;
    assert_eq!(worker.max_concurrent(), 2, "at most 2 open, and 2 reached");
}

/// A worker's hello naming its version is answered with the registered version, and only
/// into the plugin's own inbox: a hello whose reply subject points anywhere else (at another
/// plugin's inbox, at an events subject) gets no answer there.
#[tokio::test]
async fn a_hello_is_told_the_registered_version_and_answered_only_into_the_plugins_inbox() {
    use futures::StreamExt;
    use switchyard_schemas::delivery::{Hello, HelloAnswer};

    let sy = Switchyard::start().await;
    sy.register(manifest("billing", "")).await;
    let ns = sy.namespace().clone();
    let billing = PluginId::new("billing").unwrap();
    let worker = async_nats::ConnectOptions::new()
        .custom_inbox_prefix(ns.plugin_inbox_prefix(&billing))
        .connect(sy.url())
        .await
        .unwrap();
    let hello = |version: &str| {
        serde_json::to_vec(&Hello {
            version: Some(version.to_owned()),
            instance: Some("w-1".to_owned()),
        })
        .unwrap()
    };
    let ask = |version: &'static str| {
        let worker = worker.clone();
        let subject = ns.worker_hello(&billing);
        let body = hello(version);
        async move {
            let reply = tokio::time::timeout(DEADLINE, worker.request(subject, body.into()))
                .await
                .expect("answered in time")
                .expect("answered");
            serde_json::from_slice::<HelloAnswer>(&reply.payload).unwrap()
        }
    };
    let right = ask("1.0.0").await;
    assert!(right.matches);
    assert_eq!(right.registered_version, "1.0.0");
    let wrong = ask("0.9.0").await;
    assert!(!wrong.matches);
    assert_eq!(wrong.registered_version, "1.0.0");

    // A full-rights observer watches where a forged reply subject points.
    let observer = sy.server.client().await;
    let elsewhere = ns.event(
        &Tenant::new("acme").unwrap(),
        &EventType::new("order.created").unwrap(),
    );
    let mut watched = observer.subscribe(elsewhere.clone()).await.unwrap();
    let mut other_inbox = observer
        .subscribe(format!(
            "{}.x",
            ns.plugin_inbox_prefix(&PluginId::new("other").unwrap())
        ))
        .await
        .unwrap();
    observer.flush().await.unwrap();
    for reply in [
        elsewhere,
        format!(
            "{}.x",
            ns.plugin_inbox_prefix(&PluginId::new("other").unwrap())
        ),
    ] {
        worker
            .publish_with_reply(ns.worker_hello(&billing), reply, hello("0.9.0").into())
            .await
            .unwrap();
    }
    worker.flush().await.unwrap();
    // An answer the dispatcher would send comes within the round trip the good ones took;
    // one more good round trip after the forged hellos proves they were processed.
    assert!(ask("1.0.0").await.matches);
    assert!(
        tokio::time::timeout(QUIET, watched.next()).await.is_err(),
        "nothing published on the events subject"
    );
    assert!(
        tokio::time::timeout(QUIET, other_inbox.next())
            .await
            .is_err(),
        "nothing published into another plugin's inbox"
    );
}
