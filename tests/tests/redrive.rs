//! Operating on dead letters against a real nats-server and dispatcher: listing with filters,
//! showing the original event, replaying to the one plugin that failed it, and purging.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use switchyard_control::audit::Auditor;
use switchyard_dispatcher::redrive::{
    DeadLetterFilter, DeadLetters, RedriveError, ReplayReport, Selection,
};
use switchyard_schemas::delivery::{ErrorCode, Outcome};
use switchyard_schemas::{header as ce, EventId, PluginId};
use switchyard_tests::{
    manifest, wait_until, Behaviour, OrderCreated, ReceivedDelivery, Switchyard, TestWorker,
};
use time::OffsetDateTime;

const DEADLINE: Duration = Duration::from_secs(20);

fn order_of(delivery: &ReceivedDelivery) -> u32 {
    delivery.event.data_as::<OrderCreated>().unwrap().n
}

fn plugin(id: &str) -> PluginId {
    PluginId::new(id).unwrap()
}

fn failed(code: &str) -> Behaviour {
    Behaviour::Reply(Outcome::Failed {
        code: ErrorCode::new(code).unwrap(),
        reason: format!("refused with {code}"),
    })
}

/// The dead letters, replayed and purged as the actor `test`.
struct Audited {
    dead_letters: DeadLetters,
    auditor: Auditor,
}

impl std::ops::Deref for Audited {
    type Target = DeadLetters;

    fn deref(&self) -> &DeadLetters {
        &self.dead_letters
    }
}

impl Audited {
    async fn replay(&self, selection: &Selection) -> Result<ReplayReport, RedriveError> {
        self.dead_letters.replay(selection, &self.auditor).await
    }

    async fn purge(&self, selection: &Selection) -> Result<usize, RedriveError> {
        self.dead_letters.purge(selection, &self.auditor).await
    }
}

async fn dead_letters(sy: &Switchyard) -> Audited {
    Audited {
        dead_letters: DeadLetters::new(
            sy.bus.jetstream().clone(),
            sy.namespace().clone(),
            sy.bus.streams(),
        ),
        auditor: sy.auditor().await,
    }
}

fn only(plugin_id: &str) -> DeadLetterFilter {
    DeadLetterFilter {
        plugin: Some(plugin(plugin_id)),
        ..Default::default()
    }
}

/// Plugins `a` and `b`, both on `order.*` with one attempt. `a` fails the orders `a_fails`
/// picks while `failing` is set (code `order.late` for order 3, else `order.invalid`); `b`
/// fails the orders `b_fails` picks.
struct TwoPlugins {
    sy: Switchyard,
    a: TestWorker,
    b: TestWorker,
    failing: Arc<AtomicBool>,
}

impl TwoPlugins {
    async fn start(a_fails: fn(u32) -> bool, b_fails: fn(u32) -> bool) -> Self {
        // Boxed: the fixture's start is a large future, and this one is awaited by each test.
        let sy = Box::pin(Switchyard::start()).await;
        sy.register(manifest("a", "max_attempts = 1")).await;
        sy.register(manifest("b", "max_attempts = 1")).await;
        let failing = Arc::new(AtomicBool::new(true));
        let a = TestWorker::start(&sy.url(), sy.namespace(), "a", {
            let failing = Arc::clone(&failing);
            move |d| match order_of(d) {
                n if failing.load(Ordering::SeqCst) && a_fails(n) => failed(if n == 3 {
                    "order.late"
                } else {
                    "order.invalid"
                }),
                _ => Behaviour::Reply(Outcome::Done),
            }
        })
        .await;
        let b = TestWorker::start(&sy.url(), sy.namespace(), "b", move |d| {
            if b_fails(order_of(d)) {
                failed("order.invalid")
            } else {
                Behaviour::Reply(Outcome::Done)
            }
        })
        .await;
        Self { sy, a, b, failing }
    }

    /// Publishes orders `0..n` and waits until both plugins settled every one of them and
    /// `dead` dead letters are stored.
    async fn publish(&self, n: u32, dead: usize) -> Vec<EventId> {
        let ids = self.sy.publish_orders("acme", 0..n).await;
        self.sy.wait_for_dead_letters(dead, DEADLINE).await;
        self.settled().await;
        ids
    }

    /// Waits until neither plugin's consumer has anything pending or un-acked.
    async fn settled(&self) {
        wait_until(DEADLINE, || async {
            self.sy.consumer_backlog("a").await == (0, 0)
                && self.sy.consumer_backlog("b").await == (0, 0)
        })
        .await
        .expect("both consumers settle");
    }

    fn stop_failing(&self) {
        self.failing.store(false, Ordering::SeqCst);
    }
}

fn sequences_of(letters: &[switchyard_dispatcher::redrive::DeadLetterSummary]) -> Vec<u64> {
    letters.iter().map(|l| l.sequence).collect()
}

#[tokio::test]
async fn list_filters_show_is_intact_and_replay_reaches_only_the_failing_plugin() {
    let two = TwoPlugins::start(|n| n % 2 == 0 || n == 3, |n| n == 5).await;
    let ids = two.publish(6, 5).await;
    let dlq = dead_letters(&two.sy).await;

    // The plugin filter: a's four, b's one.
    let of_a = dlq.list(&only("a")).await.unwrap();
    let failed_orders: BTreeSet<EventId> = [0, 2, 3, 4].map(|n| ids[n].clone()).into();
    assert_eq!(
        of_a.iter()
            .map(|l| l.event_id.clone().unwrap())
            .collect::<BTreeSet<_>>(),
        failed_orders
    );
    for letter in &of_a {
        assert_eq!(letter.failure.plugin.as_str(), "a");
        assert_eq!(letter.failure.subscription, "orders");
        assert_eq!(letter.failure.attempts, 1);
        assert_eq!(letter.tenant.as_str(), "acme");
        assert_eq!(letter.event_type.as_str(), "order.created");
    }
    let of_b = dlq.list(&only("b")).await.unwrap();
    assert_eq!(of_b.len(), 1);
    assert_eq!(of_b[0].event_id.as_ref(), Some(&ids[5]));
    assert_eq!(
        dlq.list(&DeadLetterFilter::default()).await.unwrap().len(),
        5
    );

    // The code filter, the time window and the limit.
    let late = dlq
        .list(&DeadLetterFilter {
            code: Some("order.late".into()),
            ..only("a")
        })
        .await
        .unwrap();
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].event_id.as_ref(), Some(&ids[3]));
    assert_eq!(late[0].failure.reason, "refused with order.late");
    let now = OffsetDateTime::now_utc();
    let window = |since, until| DeadLetterFilter {
        since,
        until,
        ..only("a")
    };
    let hour = time::Duration::hours(1);
    assert_eq!(
        dlq.list(&window(Some(now - hour), Some(now + hour)))
            .await
            .unwrap(),
        of_a
    );
    assert!(dlq
        .list(&window(Some(now + hour), None))
        .await
        .unwrap()
        .is_empty());
    assert!(dlq
        .list(&window(None, Some(now - hour)))
        .await
        .unwrap()
        .is_empty());
    let first_two = dlq
        .list(&DeadLetterFilter {
            limit: Some(2),
            ..only("a")
        })
        .await
        .unwrap();
    assert_eq!(first_two, of_a[..2]);

    // `show`: the original event, headers and body as published, without the metadata.
    let record = dlq.show(late[0].sequence).await.unwrap();
    assert_eq!(record.summary, late[0]);
    let event = record.event.clone().expect("the event decodes");
    assert_eq!(event.attributes.id, ids[3]);
    assert_eq!(
        event.data_as::<OrderCreated>().unwrap(),
        OrderCreated { n: 3 }
    );
    let original = two
        .sy
        .events_stream()
        .await
        .direct_get(record.summary.failure.stream_sequence)
        .await
        .unwrap();
    assert_eq!(record.body, original.payload);
    for name in [
        ce::SPEC_VERSION,
        ce::ID,
        ce::SOURCE,
        ce::TYPE,
        ce::SCHEMA_VERSION,
        ce::TENANT,
        ce::CONTENT_TYPE,
        ce::TIME,
    ] {
        assert_eq!(
            record.headers.get(name),
            original.headers.get(name),
            "{name}"
        );
    }
    for (name, _) in record.headers.iter() {
        let name: &str = name.as_ref();
        assert!(!name.starts_with("switchyard-dlq-"), "{name}");
        assert!(!name.starts_with("Nats-"), "{name}");
    }

    // Replay all of a's once it handles them: a sees each again as a new message; b nothing.
    two.stop_failing();
    let (a_before, b_before) = (two.a.count(), two.b.count());
    let report = dlq.replay(&Selection::all(plugin("a"))).await.unwrap();
    assert_eq!(report.count(), 4);
    assert_eq!(
        report
            .replayed
            .iter()
            .map(|r| r.dead_letter)
            .collect::<Vec<_>>(),
        sequences_of(&of_a)
    );
    assert!(report.gone.is_empty() && report.skipped.is_empty());
    assert!(report.replayed.iter().all(|r| !r.duplicate));

    two.a.wait_for(a_before + 4, DEADLINE).await.unwrap();
    two.settled().await;
    let replays = &two.a.received()[a_before..];
    assert_eq!(replays.len(), 4);
    assert_eq!(
        replays
            .iter()
            .map(|d| d.event.attributes.id.clone())
            .collect::<BTreeSet<_>>(),
        failed_orders
    );
    let replay_sequences: BTreeSet<u64> = report.event_sequences().into_iter().collect();
    for delivery in replays {
        assert_eq!(delivery.info.attempt, 1, "a replay is a new message");
        assert_eq!(delivery.info.subscription, "orders");
        assert!(replay_sequences.contains(&delivery.info.stream_sequence));
    }
    assert_eq!(two.b.count(), b_before, "b receives none of a's replays");
    assert!(dlq.list(&only("a")).await.unwrap().is_empty());
    assert_eq!(dlq.list(&DeadLetterFilter::default()).await.unwrap(), of_b);
}

#[tokio::test]
async fn replaying_chosen_sequences_replays_those_only_and_another_plugins_is_refused() {
    let two = TwoPlugins::start(|_| true, |n| n == 0).await;
    let ids = two.publish(4, 5).await;
    let dlq = dead_letters(&two.sy).await;
    let of_a = dlq.list(&only("a")).await.unwrap();
    let of_b = dlq.list(&only("b")).await.unwrap();
    assert_eq!((of_a.len(), of_b.len()), (4, 1));
    two.stop_failing();
    let a_before = two.a.count();

    // One sequence of b's spoils the selection: nothing is replayed.
    let mixed = Selection::sequences(plugin("a"), [of_a[0].sequence, of_b[0].sequence]);
    match dlq.replay(&mixed).await {
        Err(RedriveError::WrongPlugin {
            sequence,
            plugin: owner,
            expected,
        }) => {
            assert_eq!(sequence, of_b[0].sequence);
            assert_eq!((owner.as_str(), expected.as_str()), ("b", "a"));
        }
        other => panic!("expected WrongPlugin, got {other:?}"),
    }
    let missing = Selection::sequences(plugin("a"), [of_a[0].sequence, 9_999]);
    assert!(matches!(
        dlq.replay(&missing).await,
        Err(RedriveError::NotFound { sequence: 9_999 })
    ));
    assert_eq!(dlq.list(&only("a")).await.unwrap(), of_a);

    // Two chosen ones go back to a; the others stay.
    let chosen = [of_a[1].clone(), of_a[3].clone()];
    let report = dlq
        .replay(&Selection::sequences(
            plugin("a"),
            chosen.iter().map(|l| l.sequence),
        ))
        .await
        .unwrap();
    assert_eq!(report.count(), 2);
    two.a.wait_for(a_before + 2, DEADLINE).await.unwrap();
    two.settled().await;
    let replayed: BTreeSet<EventId> = two.a.received()[a_before..]
        .iter()
        .map(|d| d.event.attributes.id.clone())
        .collect();
    assert_eq!(replayed, [ids[1].clone(), ids[3].clone()].into());
    assert_eq!(two.a.count(), a_before + 2);
    assert_eq!(
        dlq.list(&only("a")).await.unwrap(),
        [of_a[0].clone(), of_a[2].clone()]
    );
    assert_eq!(dlq.list(&only("b")).await.unwrap(), of_b);
}

#[tokio::test]
async fn purge_removes_only_the_selected_dead_letters() {
    let two = TwoPlugins::start(|_| true, |_| true).await;
    two.publish(3, 6).await;
    let dlq = dead_letters(&two.sy).await;
    let of_a = dlq.list(&only("a")).await.unwrap();
    let of_b = dlq.list(&only("b")).await.unwrap();
    assert_eq!((of_a.len(), of_b.len()), (3, 3));

    let one = Selection::sequences(plugin("a"), [of_a[1].sequence]);
    assert_eq!(dlq.purge(&one).await.unwrap(), 1);
    // The gap it leaves is skipped.
    assert_eq!(
        dlq.list(&only("a")).await.unwrap(),
        [of_a[0].clone(), of_a[2].clone()]
    );
    assert!(matches!(
        dlq.show(of_a[1].sequence).await,
        Err(RedriveError::NotFound { .. })
    ));

    let someone_elses = Selection::sequences(plugin("a"), [of_a[0].sequence, of_b[0].sequence]);
    assert!(matches!(
        dlq.purge(&someone_elses).await,
        Err(RedriveError::WrongPlugin { .. })
    ));
    assert_eq!(dlq.list(&only("a")).await.unwrap().len(), 2);

    assert_eq!(dlq.purge(&Selection::all(plugin("a"))).await.unwrap(), 2);
    assert!(dlq.list(&only("a")).await.unwrap().is_empty());
    assert_eq!(dlq.list(&only("b")).await.unwrap(), of_b);
}

#[tokio::test]
async fn an_empty_stream_lists_nothing_and_a_missing_sequence_is_not_found() {
    let sy = Switchyard::start().await;
    let dlq = dead_letters(&sy).await;
    assert!(dlq
        .list(&DeadLetterFilter::default())
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        dlq.show(42).await,
        Err(RedriveError::NotFound { sequence: 42 })
    ));
    let report = dlq.replay(&Selection::all(plugin("a"))).await.unwrap();
    assert_eq!(report.count(), 0);
    assert_eq!(dlq.purge(&Selection::all(plugin("a"))).await.unwrap(), 0);
}

#[tokio::test]
async fn a_replay_is_refused_when_the_plugin_no_longer_has_its_consumer() {
    let two = TwoPlugins::start(|_| true, |_| false).await;
    two.publish(2, 2).await;
    let a = plugin("a");
    assert!(two.sy.registry.remove(&a).await.unwrap());
    let events = two.sy.events_stream().await;
    wait_until(DEADLINE, || async {
        events.consumer_info("a~orders").await.is_err()
    })
    .await
    .expect("the dispatcher deletes a removed plugin's consumer");

    let dlq = dead_letters(&two.sy).await;
    match dlq.replay(&Selection::all(a.clone())).await {
        Err(RedriveError::NoConsumer {
            plugin,
            subscription,
        }) => assert_eq!((plugin, subscription.as_str()), (a, "orders")),
        other => panic!("expected NoConsumer, got {other:?}"),
    }
    assert_eq!(dlq.list(&only("a")).await.unwrap().len(), 2, "nothing lost");
}
