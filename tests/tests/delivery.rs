//! The dispatcher's delivery path against a real nats-server and a raw worker: delivery,
//! retries that block nothing, dead letters with their metadata, timeouts, bad input, absent
//! workers and the circuit breaker.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::time::Duration;

use switchyard_dispatcher::pipeline::breaker::{BreakerConfig, CircuitState};
use switchyard_schemas::delivery::{ErrorCode, Outcome};
use switchyard_schemas::{header as ce, EventId};
use switchyard_tests::{manifest, wait_until, Behaviour, OrderCreated, Switchyard, TestWorker};

const DEADLINE: Duration = Duration::from_secs(20);

fn order_of(delivery: &switchyard_tests::ReceivedDelivery) -> u32 {
    delivery.event.data_as::<OrderCreated>().unwrap().n
}

fn retry() -> Outcome {
    Outcome::Retry {
        after: None,
        code: None,
        reason: "not now".into(),
    }
}

#[tokio::test]
async fn every_event_reaches_the_plugin_once_with_its_delivery_headers() {
    let sy = Switchyard::start().await;
    sy.register(manifest("audit", "")).await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::Reply(Outcome::Done)
    })
    .await;

    let ids = sy.publish_orders("acme", 0..50).await;
    worker.wait_for(50, DEADLINE).await.unwrap();
    wait_until(DEADLINE, || async {
        sy.consumer_backlog("audit").await == (0, 0)
    })
    .await
    .expect("everything acknowledged");

    let received = worker.received();
    assert_eq!(received.len(), 50, "each event once");
    let received_ids: BTreeSet<EventId> = received
        .iter()
        .map(|d| d.event.attributes.id.clone())
        .collect();
    assert_eq!(received_ids, ids.into_iter().collect());
    for delivery in &received {
        assert_eq!(delivery.info.attempt, 1);
        assert_eq!(delivery.info.plugin.as_str(), "audit");
        assert_eq!(delivery.info.subscription, "orders");
        assert_eq!(delivery.info.timeout, Duration::from_secs(30));
        assert!(delivery.info.stream_sequence >= 1);
    }
    assert!(sy.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_failing_event_does_not_delay_the_next_hundred() {
    let sy = Switchyard::start().await;
    // The poisoned event's retry waits 60 s in JetStream; nothing else may wait for it.
    sy.register(manifest(
        "audit",
        r#"backoff = { fixed = ["60s"] }
        max_in_flight = 4"#,
    ))
    .await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |d| {
        if order_of(d) == 0 {
            Behaviour::Reply(retry())
        } else {
            Behaviour::Reply(Outcome::Done)
        }
    })
    .await;

    sy.publish_orders("acme", 0..101).await;
    worker.wait_for(101, DEADLINE).await.unwrap();
    let received = worker.received();
    let poisoned: Vec<_> = received.iter().filter(|d| order_of(d) == 0).collect();
    assert_eq!(poisoned.len(), 1, "its retry is still waiting in JetStream");
    assert_eq!(received.iter().filter(|d| order_of(d) != 0).count(), 100);
    // Waiting: pending 0, one un-acked (the naked event).
    wait_until(DEADLINE, || async {
        sy.consumer_backlog("audit").await == (0, 1)
    })
    .await
    .expect("only the failing event is outstanding");
}

#[tokio::test]
async fn retries_use_the_backoff_then_the_event_is_dead_lettered_intact() {
    let sy = Switchyard::start().await;
    sy.register(manifest(
        "audit",
        r#"backoff = { fixed = ["100ms", "200ms"] }
        max_attempts = 3"#,
    ))
    .await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::Reply(Outcome::Retry {
            after: None,
            code: Some(ErrorCode::new("upstream.down").unwrap()),
            reason: "the upstream is down".into(),
        })
    })
    .await;

    let ids = sy.publish_orders("acme", 7..8).await;
    let letters = sy.wait_for_dead_letters(1, DEADLINE).await;
    let attempts: Vec<u32> = worker.received().iter().map(|d| d.info.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);
    let gaps: Vec<Duration> = worker
        .received()
        .windows(2)
        .map(|w| w[1].received_at - w[0].received_at)
        .collect();
    assert!(gaps[0] >= Duration::from_millis(100), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(200), "{gaps:?}");

    let letter = &letters[0];
    assert_eq!(letter.failure.plugin.as_str(), "audit");
    assert_eq!(letter.failure.subscription, "orders");
    assert_eq!(letter.failure.code.as_str(), "upstream.down");
    assert!(letter.failure.reason.contains("the upstream is down"));
    assert!(letter.failure.reason.contains("3 attempts"));
    assert_eq!(letter.failure.attempts, 3);
    assert!(letter.failure.first_failure < letter.failure.last_failure);
    assert_eq!(
        letter.failure.original_subject,
        "switchyard.events.acme.order.created"
    );
    // The original event, untouched.
    let event = letter
        .event
        .clone()
        .expect("the dead letter holds the event");
    assert_eq!(event.attributes.id, ids[0]);
    assert_eq!(
        event.data_as::<OrderCreated>().unwrap(),
        OrderCreated { n: 7 }
    );
    let original = sy
        .events_stream()
        .await
        .direct_get(letter.failure.stream_sequence)
        .await
        .unwrap();
    assert_eq!(letter.payload, original.payload);
    for name in [ce::ID, ce::TYPE, ce::TENANT, ce::SOURCE, ce::CONTENT_TYPE] {
        assert_eq!(
            letter.headers.get(name),
            original.headers.get(name),
            "{name}"
        );
    }
    wait_until(DEADLINE, || async {
        sy.consumer_backlog("audit").await == (0, 0)
    })
    .await
    .expect("the original is acknowledged after its dead letter is stored");
}

#[tokio::test]
async fn a_permanent_failure_is_dead_lettered_at_once_with_the_workers_code() {
    let sy = Switchyard::start().await;
    sy.register(manifest("audit", "max_attempts = 5")).await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::Reply(Outcome::Failed {
            code: ErrorCode::new("order.invalid").unwrap(),
            reason: "no lines".into(),
        })
    })
    .await;
    sy.publish_orders("acme", 0..1).await;
    let letters = sy.wait_for_dead_letters(1, DEADLINE).await;
    assert_eq!(worker.count(), 1);
    assert_eq!(letters[0].failure.code.as_str(), "order.invalid");
    assert_eq!(letters[0].failure.reason, "no lines");
    assert_eq!(letters[0].failure.attempts, 1);
}

#[tokio::test]
async fn a_worker_that_does_not_answer_in_time_is_retried_then_dead_lettered() {
    let sy = Switchyard::start().await;
    sy.register(manifest(
        "audit",
        r#"timeout = "300ms"
        max_attempts = 2
        backoff = { fixed = ["10ms"] }"#,
    ))
    .await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| Behaviour::Ignore).await;
    sy.publish_orders("acme", 0..1).await;
    let letters = sy.wait_for_dead_letters(1, DEADLINE).await;
    let attempts: Vec<u32> = worker.received().iter().map(|d| d.info.attempt).collect();
    assert_eq!(attempts, [1, 2]);
    assert_eq!(letters[0].failure.code.as_str(), "delivery.timeout");
    assert_eq!(
        worker.received()[0].info.timeout,
        Duration::from_millis(300)
    );
}

#[tokio::test]
async fn an_undecodable_event_is_dead_lettered_with_its_code_and_never_delivered() {
    let sy = Switchyard::start().await;
    sy.register(manifest("audit", "")).await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::Reply(Outcome::Done)
    })
    .await;
    // A raw publish with no CloudEvents headers at all, then one with a bad time.
    let js = sy.bus.jetstream();
    js.publish("switchyard.events.acme.order.created", "garbage".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in [
        (ce::SPEC_VERSION, "1.0"),
        (ce::ID, "bad-time-1"),
        (ce::SOURCE, "urn:test"),
        (ce::TYPE, "order.created"),
        (ce::SCHEMA_VERSION, "1.0.0"),
        (ce::TENANT, "acme"),
        (ce::CONTENT_TYPE, "application/json"),
        (ce::TIME, "yesterday"),
    ] {
        headers.insert(name, value);
    }
    js.publish_with_headers("switchyard.events.acme.order.created", headers, "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let letters = sy.wait_for_dead_letters(2, DEADLINE).await;
    let codes: Vec<&str> = letters.iter().map(|l| l.failure.code.as_str()).collect();
    assert_eq!(codes, ["event.missing-attribute", "event.bad-time"]);
    assert_eq!(letters[0].payload.as_ref(), b"garbage");
    assert!(letters[0].failure.reason.contains("specversion"));
    assert_eq!(worker.count(), 0);
}

#[tokio::test]
async fn a_schema_version_outside_the_range_is_dead_lettered() {
    let sy = Switchyard::start().await;
    let m = switchyard_schemas::manifest::Manifest::from_toml_str(
        r#"
        [plugin]
        id = "audit"
        version = "1.0.0"
        core = "*"
        [[subscriptions]]
        name = "orders"
        events = ["order.*"]
        versions = "^2"
        "#,
    )
    .unwrap();
    sy.register(m).await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::Reply(Outcome::Done)
    })
    .await;
    sy.publish_orders("acme", 0..1).await; // schema 1.0.0
    let letters = sy.wait_for_dead_letters(1, DEADLINE).await;
    assert_eq!(
        letters[0].failure.code.as_str(),
        "subscription.version-mismatch"
    );
    assert_eq!(worker.count(), 0);
}

#[tokio::test]
async fn events_wait_for_an_absent_worker_without_burning_attempts_or_busy_looping() {
    let sy = Switchyard::start().await;
    sy.register(manifest("audit", "max_attempts = 2\nmax_in_flight = 8"))
        .await;
    sy.publish_orders("acme", 0..1000).await;

    // The dispatcher takes a few events, finds nobody, and holds them.
    wait_until(DEADLINE, || async {
        let (pending, ack_pending) = sy.consumer_backlog("audit").await;
        ack_pending > 0 && pending + ack_pending as u64 == 1000
    })
    .await
    .expect("the dispatcher holds events while no worker is connected");
    // No busy loop: the dispatcher probes for a worker with pauses growing to one a second,
    // so its next six messages take seconds; a loop would send them in milliseconds.
    let sent = || {
        sy.dispatcher_client
            .statistics()
            .out_messages
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = sent();
    let started = tokio::time::Instant::now();
    wait_until(DEADLINE, || async { sent() - before >= 6 })
        .await
        .expect("the dispatcher keeps probing for a worker");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "six messages in {took:?} while waiting: a busy loop"
    );

    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::Reply(Outcome::Done)
    })
    .await;
    worker
        .wait_for(1000, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        worker.received().iter().all(|d| d.info.attempt == 1),
        "waiting for a worker costs no attempt"
    );
    assert!(sy.dead_letters().await.is_empty());
}

#[tokio::test]
async fn the_circuit_opens_after_consecutive_failures_and_closes_after_a_good_probe() {
    let sy = Switchyard::start_with(BreakerConfig {
        failure_threshold: NonZeroU32::new(3).unwrap(),
        cooldown: Duration::from_secs(2),
    })
    .await;
    sy.register(manifest(
        "audit",
        r#"backoff = { fixed = ["50ms"] }
        max_attempts = 100
        max_in_flight = 1"#,
    ))
    .await;
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", {
        let healthy = std::sync::Arc::clone(&healthy);
        move |_| {
            if healthy.load(std::sync::atomic::Ordering::SeqCst) {
                Behaviour::Reply(Outcome::Done)
            } else {
                Behaviour::Reply(retry())
            }
        }
    })
    .await;
    sy.publish_orders("acme", 0..1).await;

    let dispatcher = sy.dispatcher.as_ref().unwrap();
    let state = || dispatcher.circuit_states()[0].2;
    wait_until(DEADLINE, || async { state() == CircuitState::Open })
        .await
        .expect("the circuit opens after 3 failures");
    let attempts_when_opened = worker.count();
    assert_eq!(attempts_when_opened, 3);
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    wait_until(DEADLINE, || async { state() == CircuitState::Closed })
        .await
        .expect("a good probe closes it");
    let last = worker.received().last().cloned().unwrap();
    let third = worker.received()[2].clone();
    assert!(
        last.received_at - third.received_at >= Duration::from_millis(1900),
        "nothing was delivered during the cooldown"
    );
    wait_until(DEADLINE, || async {
        sy.consumer_backlog("audit").await == (0, 0)
    })
    .await
    .expect("the event is done");
}
