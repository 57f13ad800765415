//! The dispatcher's pull against a real nats-server: it fetches exactly the slots it asks
//! for, and the slots of a request that ends unfilled come back.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::{self, stream};
use switchyard_dispatcher::pull::{Pull, Pulled, PULL_EXPIRES};
use switchyard_tests::TestServer;
use tokio::sync::Semaphore;

const WAIT: Duration = Duration::from_secs(10);

async fn consumer_with(js: &jetstream::Context, messages: usize) -> PullConsumer {
    let stream = js
        .create_stream(stream::Config {
            name: "PULL".to_owned(),
            subjects: vec!["pull.>".to_owned()],
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..messages {
        js.publish("pull.test", format!("{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    stream
        .create_consumer(pull::Config {
            durable_name: Some("puller".to_owned()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap()
}

async fn open(js: &jetstream::Context) -> Pull {
    Pull::open(js.clone(), "PULL", "puller").await.unwrap()
}

#[tokio::test]
async fn a_pull_fetches_exactly_the_slots_it_asks_for_each_with_its_slot() {
    let server = TestServer::start().await;
    let js = server.jetstream().await;
    let mut consumer = consumer_with(&js, 10).await;
    let mut pull = open(&js).await;
    let slots = Arc::new(Semaphore::new(4));

    pull.request(Arc::clone(&slots).acquire_many_owned(4).await.unwrap())
        .await
        .unwrap();
    assert_eq!(pull.requested(), 4);
    let mut held = Vec::new();
    for expected in 0..4 {
        match tokio::time::timeout(WAIT, pull.next()).await.unwrap() {
            Some(Pulled::Message(message, Some(slot))) => {
                assert_eq!(message.payload, expected.to_string());
                held.push((message, slot));
            }
            other => panic!("expected a message with its slot, got {other:?}"),
        }
    }
    assert_eq!(pull.requested(), 0);
    assert_eq!(slots.available_permits(), 0);

    // The server sent four and holds the other six back.
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_ack_pending, 4);
    assert_eq!(info.num_pending, 6);

    // A delivery's slot is freed when it ends.
    held.pop();
    assert_eq!(slots.available_permits(), 1);
}

#[tokio::test]
async fn the_slots_of_a_request_that_expires_unfilled_come_back() {
    let server = TestServer::start().await;
    let js = server.jetstream().await;
    let _consumer = consumer_with(&js, 1).await;
    let mut pull = open(&js).await;
    let slots = Arc::new(Semaphore::new(3));

    pull.request(Arc::clone(&slots).acquire_many_owned(3).await.unwrap())
        .await
        .unwrap();
    let Some(Pulled::Message(_message, Some(_slot))) =
        tokio::time::timeout(WAIT, pull.next()).await.unwrap()
    else {
        panic!("expected the one stored message");
    };
    assert_eq!(pull.requested(), 2);

    // Nothing more is stored: the request expires, and the server's 408 frees its two slots.
    let ended = tokio::time::timeout(PULL_EXPIRES + WAIT, pull.next()).await;
    assert!(matches!(ended, Ok(Some(Pulled::Released))), "{ended:?}");
    assert_eq!(pull.requested(), 0);
    assert_eq!(slots.available_permits(), 2);
}

#[tokio::test]
async fn a_request_the_server_refuses_comes_back_as_a_refusal_not_an_expiry() {
    let server = TestServer::start().await;
    let js = server.jetstream().await;
    let _consumer = consumer_with(&js, 0).await;
    let mut pull = open(&js).await;
    js.get_stream("PULL")
        .await
        .unwrap()
        .delete_consumer("puller")
        .await
        .unwrap();
    let slots = Arc::new(Semaphore::new(2));
    pull.request(Arc::clone(&slots).acquire_many_owned(2).await.unwrap())
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, pull.next()).await.unwrap() {
        Some(Pulled::Refused(why)) => assert!(!why.is_empty()),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(pull.requested(), 0, "the slots are freed");
    assert_eq!(slots.available_permits(), 2);
}

/// With its consumer gone, a dispatcher must not re-send pull requests in a loop: each
/// refusal waits longer (50 ms doubling to 5 s), so a few seconds hold at most a handful.
#[tokio::test]
async fn a_refused_consumer_is_not_hammered_with_pull_requests() {
    use std::sync::atomic::Ordering;
    use switchyard_schemas::delivery::Outcome;
    use switchyard_tests::{manifest, Behaviour, Switchyard, TestWorker};

    let sy = Box::pin(Switchyard::start()).await;
    sy.register(manifest("audit", "")).await;
    // A worker is present, so the dispatcher does pull.
    let _worker = TestWorker::start(&sy.url(), sy.namespace(), "audit", |_| {
        Behaviour::Reply(Outcome::Done)
    })
    .await;
    sy.publish_orders("acme", 0..1).await;
    switchyard_tests::wait_until(WAIT, || async {
        sy.consumer_backlog("audit").await == (0, 0)
    })
    .await
    .expect("the first event is delivered");
    let stats = sy.dispatcher_client.statistics();
    sy.events_stream()
        .await
        .delete_consumer("audit~orders")
        .await
        .unwrap();
    let before = stats.out_messages.load(Ordering::Relaxed);
    // The hot loop this guards against sent thousands a second; the back-off sends ~7 in 3 s.
    let hammered = switchyard_tests::wait_until(Duration::from_secs(3), || async {
        stats.out_messages.load(Ordering::Relaxed) - before > 100
    })
    .await;
    assert!(
        hammered.is_err(),
        "{} messages sent in 3 s to a consumer that is gone",
        stats.out_messages.load(Ordering::Relaxed) - before
    );
}
