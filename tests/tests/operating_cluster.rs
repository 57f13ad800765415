//! Operating on a real 3-node cluster with every stream and bucket at three replicas, as
//! `switchyard streams provision --replicas 3` leaves them: events published before the first
//! dispatcher are all delivered, and a node replaced with an empty disk while events are
//! published loses no acknowledged event.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::ClusterInfo;
use switchyard_bus::{stream_name, Publisher};
use switchyard_control::registry::{Registration, TenantScope};
use switchyard_dispatcher::pipeline::breaker::BreakerConfig;
use switchyard_dispatcher::DispatcherConfig;
use switchyard_schemas::delivery::Outcome;
use switchyard_schemas::{Event, EventId, Tenant};
use switchyard_tests::{
    manifest, wait_until, Behaviour, OrderCreated, Switchyard, TestCluster, TestWorker,
};
use tokio::time::{Instant, MissedTickBehavior};

/// Every wait of these tests: generous, as the nodes, the dispatcher and the worker share two
/// cores; each test as a whole takes far less.
const DEADLINE: Duration = Duration::from_secs(45);
const REPLICAS: usize = 3;
const PLUGIN: &str = "audit";

/// The distinct ids among `ids`, and how many of `ids` were repeats.
fn distinct(ids: &[EventId]) -> (HashSet<EventId>, usize) {
    let set: HashSet<EventId> = ids.iter().cloned().collect();
    let repeats = ids.len() - set.len();
    (set, repeats)
}

/// Whether the worker has received every id of `wanted` at least once.
fn received_all(worker: &TestWorker, wanted: &HashSet<EventId>) -> bool {
    let received: HashSet<EventId> = worker.received_ids().into_iter().collect();
    wanted.is_subset(&received)
}

/// Both streams and the streams of the registry, status and credentials buckets.
fn all_streams(sy: &Switchyard<TestCluster>) -> Vec<String> {
    let ns = sy.namespace();
    let streams = sy.bus.streams();
    vec![
        streams.events.name.clone(),
        streams.dead_letters.name.clone(),
        format!("KV_{}", stream_name(ns, "REGISTRY")),
        format!("KV_{}", stream_name(ns, "STATUS")),
        format!("KV_{}", stream_name(ns, "CREDENTIALS")),
    ]
}

/// Asserts that both streams, the three buckets and the plugin's consumer have three
/// replicas: nothing a dispatcher did took them back to one.
async fn assert_three_replicas_everywhere(sy: &Switchyard<TestCluster>) {
    let js = sy.bus.jetstream();
    for name in all_streams(sy) {
        let mut stream = js
            .get_stream(&name)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let info = stream
            .info()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            info.config.num_replicas, REPLICAS,
            "{name} keeps its replicas"
        );
    }
    let consumer = sy
        .events_stream()
        .await
        .consumer_info(format!("{PLUGIN}~orders"))
        .await
        .expect("the plugin's consumer exists");
    let placement = consumer
        .cluster
        .as_ref()
        .expect("a consumer of a clustered stream has cluster info");
    assert_eq!(
        placement.replicas.len(),
        REPLICAS - 1,
        "the plugin's consumer has a leader and two replicas: {placement:?}"
    );
}

/// Whether `node` leads the stream of `placement` or follows it as a current, online replica.
fn is_current(placement: &ClusterInfo, node: &str) -> bool {
    placement.leader.as_deref() == Some(node)
        || placement
            .replicas
            .iter()
            .any(|peer| peer.name == node && peer.current && !peer.offline)
}

#[tokio::test]
async fn events_published_before_the_first_dispatcher_on_a_cluster_are_all_delivered() {
    let began = Instant::now();
    let sy = Box::pin(Switchyard::on_cluster(3, REPLICAS)).await;
    sy.registry
        .put(&Registration::new(manifest(PLUGIN, ""), TenantScope::All))
        .await
        .expect("the registration is acknowledged");
    let published = sy.publish_orders("acme", 0..1000).await;
    let (published, repeats) = distinct(&published);
    assert_eq!((published.len(), repeats), (1000, 0), "1,000 distinct ids");

    // Only now the first dispatcher, with the defaults `switchyard run` has (one replica,
    // 4 GiB): it must keep what was provisioned.
    let worker = TestWorker::start(&sy.url(), sy.namespace(), PLUGIN, |_| {
        Behaviour::Reply(Outcome::Done)
    })
    .await;
    let dispatcher = sy.another_dispatcher().await;
    wait_until(DEADLINE, || async { received_all(&worker, &published) })
        .await
        .unwrap_or_else(|e| {
            let (got, _) = distinct(&worker.received_ids());
            panic!(
                "{} of the 1,000 events delivered: {e}",
                got.intersection(&published).count()
            )
        });
    // Settled: every delivery acknowledged, nothing left for the plugin.
    wait_until(DEADLINE, || async {
        sy.consumer_backlog(PLUGIN).await == (0, 0)
    })
    .await
    .expect("the plugin's consumer has nothing pending or unacknowledged");

    let received = worker.received_ids();
    let (delivered, duplicates) = distinct(&received);
    assert_eq!(
        delivered, published,
        "exactly the published ids are delivered, every one of them"
    );
    eprintln!(
        "1,000 events published before the first dispatcher: {} distinct delivered, {duplicates} \
         duplicate deliveries, in {:?}",
        delivered.len(),
        began.elapsed()
    );
    assert_three_replicas_everywhere(&sy).await;
    dispatcher.shutdown().await;
}

/// What the publishers of the replacement test got acknowledged.
#[derive(Debug, Default)]
struct Published {
    /// Every event the stream acknowledged (a retry acknowledged as a duplicate included), with
    /// its sequence in the stream.
    acknowledged: Vec<(EventId, u64)>,
    /// Failed publishes by kind (timed out, no stream leader...), with the first message of
    /// each kind; each was published again with the same id.
    failures: HashMap<String, (usize, String)>,
    /// Events never acknowledged by the time publishing stopped (not owed to anyone).
    unacknowledged: usize,
}

impl Published {
    fn merge(&mut self, other: Published) {
        self.acknowledged.extend(other.acknowledged);
        for (kind, (count, first)) in other.failures {
            self.failures.entry(kind).or_insert((0, first)).0 += count;
        }
        self.unacknowledged += other.unacknowledged;
    }
}

/// The most events the replacement test publishes.
const MAX_EVENTS: u32 = 20_000;
/// Publishers publishing at once, each one event at a time.
const PUBLISHERS: usize = 4;
/// Each publisher starts a new event at most this often: 500 events a second in all, so that
/// publishing lasts from before the node goes until after the new one has caught up, however
/// fast this machine publishes.
const PACE: Duration = Duration::from_millis(8);
/// How long a publisher pauses after a failed publish before it tries again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Publishes events one at a time, each until it is acknowledged, until `stop` is set or
/// [`MAX_EVENTS`] were taken from `next`; counts acknowledgements in `acked` for the test to
/// watch. A failed publish is published again with the same id, as a publisher should; the
/// stream stores it once.
async fn publish_until(
    publisher: Publisher,
    next: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
) -> Published {
    let tenant = Tenant::new("acme").expect("valid tenant");
    let mut report = Published::default();
    let mut pace = tokio::time::interval(PACE);
    // After a stall (no leader), go on at the same pace rather than in a burst.
    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        pace.tick().await;
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= MAX_EVENTS {
            break;
        }
        let event = Event::builder(tenant.clone(), "urn:test")
            .build(&OrderCreated { n })
            .expect("event builds");
        loop {
            match publisher.publish_event(&event).await {
                Ok(receipt) => {
                    report.acknowledged.push((receipt.id, receipt.sequence));
                    acked.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(error) => {
                    report
                        .failures
                        .entry(format!("{:?}", error.kind()))
                        .or_insert_with(|| (0, error.to_string()))
                        .0 += 1;
                    if stop.load(Ordering::Relaxed) {
                        report.unacknowledged += 1;
                        break;
                    }
                    // Backs off while the cluster elects a leader, rather than spin.
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }
    report
}

#[tokio::test]
async fn a_node_replaced_with_an_empty_disk_while_publishing_loses_no_acknowledged_event() {
    let began = Instant::now();
    let mut sy = Box::pin(Switchyard::on_cluster(3, REPLICAS)).await;
    // With the defaults, the deliveries under way when the dispatcher's connection goes with
    // the node wait out their 30 s timeout, and those 16 failures open the plugin's circuit
    // for 30 s more: a minute without deliveries. Shorter here, to keep the test short.
    let dispatcher = sy
        .another_dispatcher_with(DispatcherConfig {
            breaker: BreakerConfig {
                cooldown: Duration::from_secs(2),
                ..BreakerConfig::default()
            },
            ..DispatcherConfig::default()
        })
        .await;
    sy.register(manifest(PLUGIN, r#"timeout = "2s""#)).await;
    let worker = TestWorker::start(&sy.url(), sy.namespace(), PLUGIN, |_| {
        Behaviour::Reply(Outcome::Done)
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicU32::new(0));
    let publishing = tokio::spawn({
        let publishers: Vec<_> = (0..PUBLISHERS)
            .map(|_| {
                tokio::spawn(publish_until(
                    sy.publisher(),
                    Arc::clone(&next),
                    Arc::clone(&stop),
                    Arc::clone(&acked),
                ))
            })
            .collect();
        async move {
            let mut all = Published::default();
            for publisher in publishers {
                all.merge(publisher.await.expect("a publisher task"));
            }
            all
        }
    });
    let progress = |at_least: usize| {
        let acked = Arc::clone(&acked);
        let publishing = &publishing;
        async move {
            wait_until(DEADLINE, || async {
                acked.load(Ordering::Relaxed) >= at_least || publishing.is_finished()
            })
            .await
        }
    };
    progress(1_500).await.expect("1,500 events acknowledged");

    // The events stream's leader is the node replaced: the stream has to elect another and
    // catch the new node up while events keep arriving.
    let mut events = sy.events_stream().await;
    let leader = events
        .info()
        .await
        .expect("events stream info")
        .cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("the events stream has a leader");
    let victim = sy.server.node_index(&leader).expect("the leader is a node");
    let mut led = Vec::new();
    for name in all_streams(&sy) {
        let mut stream = sy.bus.jetstream().get_stream(&name).await.expect("stream");
        let info = stream.info().await.expect("stream info");
        if info.cluster.as_ref().and_then(|c| c.leader.as_deref()) == Some(leader.as_str()) {
            led.push(name);
        }
    }
    let acked_before = acked.load(Ordering::Relaxed);
    assert!(
        !publishing.is_finished(),
        "publishing is still under way when the node goes"
    );
    sy.server.replace_node_with_empty_store(victim).await;
    let replaced = Instant::now();
    if let Err(e) = sy.server.wait_until_healthy(DEADLINE).await {
        panic!(
            "the new node {victim} is not healthy (its JetStream current with the cluster): {e}\n{}",
            sy.server.health_report().await
        );
    }
    let healthy_after = replaced.elapsed();
    let acked_at_rejoin = acked.load(Ordering::Relaxed);
    // Publishing goes on past the rejoin, then stops.
    progress((acked_at_rejoin + 1_000).max(5_000))
        .await
        .expect("publishing goes on after the node rejoined");
    stop.store(true, Ordering::Relaxed);
    let published = publishing.await.expect("the publisher task");
    assert!(
        published.acknowledged.len() > acked_at_rejoin && acked_at_rejoin >= acked_before,
        "publishing went on across the replacement: {acked_before} acknowledged before, \
         {acked_at_rejoin} when the node was healthy again, {} in all",
        published.acknowledged.len()
    );
    let sequences: HashMap<EventId, u64> = published.acknowledged.iter().cloned().collect();
    let acknowledged: HashSet<EventId> = sequences.keys().cloned().collect();

    // The new node's own replica catches up with the stream.
    let node = sy.server.node_name(victim).to_owned();
    let events_name = sy.bus.streams().events.name.clone();
    let caught_up = wait_until(DEADLINE, || {
        let mut events = events.clone();
        let (cluster, node, events_name) = (&sy.server, &node, &events_name);
        async move {
            let Ok(info) = events.info().await else {
                return false;
            };
            let Some(placement) = info.cluster.as_ref() else {
                return false;
            };
            let all_current = placement
                .replicas
                .iter()
                .all(|peer| peer.current && !peer.offline);
            let own = cluster.replica_state(victim, events_name).await;
            all_current
                && placement.replicas.len() == REPLICAS - 1
                && is_current(placement, node)
                && own.is_some_and(|own| {
                    own.messages == info.state.messages
                        && own.last_sequence == info.state.last_sequence
                })
        }
    })
    .await;
    if let Err(e) = caught_up {
        let own = sy.server.replica_state(victim, &events_name).await;
        let info = events
            .info()
            .await
            .map(|i| (i.state.clone(), i.cluster.clone()));
        panic!("the replaced node {node} does not catch up: {e}; it holds {own:?}; the stream: {info:?}");
    }
    let stored = events
        .info()
        .await
        .expect("events stream info")
        .state
        .messages;
    assert!(
        stored >= acknowledged.len() as u64,
        "the stream holds {stored} events, fewer than the {} acknowledged",
        acknowledged.len()
    );

    // Not one acknowledged event lost on its way to the plugin.
    if let Err(e) = wait_until(DEADLINE, || async { received_all(&worker, &acknowledged) }).await {
        let (got, _) = distinct(&worker.received_ids());
        let mut lost: Vec<(u64, &EventId)> = acknowledged
            .difference(&got)
            .map(|id| (sequences[id], id))
            .collect();
        lost.sort();
        let mut whereabouts = Vec::new();
        for (sequence, id) in &lost {
            let stored = match events.direct_get(*sequence).await {
                Ok(message) => message
                    .headers
                    .get("Nats-Msg-Id")
                    .map(|stored| format!("stored, id {}", stored.as_str())),
                Err(error) => Some(format!("not readable: {error}")),
            };
            whereabouts.push(format!("{id} at {sequence}: {stored:?}"));
        }
        let consumer = events.consumer_info(format!("{PLUGIN}~orders")).await;
        panic!(
            "{} of {} acknowledged events never delivered: {e}\n{}\nconsumer: {consumer:?}\n\
             dispatcher: {:?}",
            lost.len(),
            acknowledged.len(),
            whereabouts.join("\n"),
            dispatcher.stats()
        );
    }
    let received = worker.received();
    let mut first_arrival: HashMap<&EventId, Instant> = HashMap::new();
    for delivery in &received {
        first_arrival
            .entry(&delivery.event.attributes.id)
            .or_insert(delivery.received_at);
    }
    let duplicates = received.len() - first_arrival.len();
    let retried = received.iter().filter(|d| d.info.attempt > 1).count();
    let latest = first_arrival
        .values()
        .max()
        .map(|at| at.saturating_duration_since(replaced));
    eprintln!(
        "node {victim} ({node}, leader of {led:?}) replaced with an empty disk: healthy \
         again after {healthy_after:?}; {} events acknowledged ({acked_before} before the \
         replacement, {acked_at_rejoin} when healthy again), failed publishes (published \
         again) by kind: {:?}; {} never acknowledged; {} distinct events delivered, 0 acknowledged ones \
         lost, {duplicates} duplicate deliveries, {retried} deliveries after the first attempt, \
         the last new event arrived {latest:?} after the replacement; {:?} in all",
        acknowledged.len(),
        published.failures,
        published.unacknowledged,
        first_arrival.len(),
        began.elapsed()
    );
    assert_three_replicas_everywhere(&sy).await;
    dispatcher.shutdown().await;
}
