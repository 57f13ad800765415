//! A comma-separated list of servers, as `--url` and `SWITCHYARD_NATS_URL` take it: the bus and
//! a plugin worker connect to any live server of the list, and a bad entry is named.

use std::sync::OnceLock;
use std::time::Duration;

use switchyard_bus::{Bus, ConnectError, ConnectOptions};
use switchyard_plugin_sdk::{Context, HandlerResult, Plugin, WorkerSettings};
use switchyard_tests::{manifest, OrderCreated, Switchyard, TestCluster};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);
/// Nothing listens on port 1, so a connect to it is refused at once.
const DEAD: &str = "nats://127.0.0.1:1";

#[tokio::test]
async fn the_bus_connects_to_a_cluster_through_a_list_whose_first_server_is_dead() {
    let cluster = TestCluster::start(3).await;
    let urls = std::iter::once(DEAD.to_owned())
        .chain(cluster.urls())
        .collect::<Vec<_>>()
        .join(",");
    let bus = Bus::connect(&ConnectOptions::new(urls))
        .await
        .expect("connects to a live node of the list");
    bus.jetstream()
        .query_account()
        .await
        .expect("JetStream answers through the connection");
}

#[tokio::test]
async fn a_bad_entry_in_the_list_is_named_and_its_password_is_not() {
    let error = Bus::connect(&ConnectOptions::new(
        "nats://127.0.0.1:4222, nats://admin:s3cret@h:99999",
    ))
    .await
    .expect_err("the second entry has no valid port");
    let text = error.to_string();
    assert!(matches!(error, ConnectError::BadUrl { .. }), "{text}");
    assert!(text.contains("nats://admin:***@h:99999"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

/// Where the handler reports the orders it saw; a static, as handlers are plain functions.
static SEEN: OnceLock<mpsc::UnboundedSender<u32>> = OnceLock::new();

async fn forward(order: OrderCreated, _ctx: Context) -> HandlerResult {
    SEEN.get()
        .expect("set before the worker starts")
        .send(order.n)?;
    Ok(())
}

#[tokio::test]
async fn a_worker_given_a_list_whose_first_server_is_dead_serves_its_events() {
    let sy = Box::pin(Switchyard::start()).await;
    sy.register(manifest("lister", "")).await;
    let (seen, mut received) = mpsc::unbounded_channel();
    SEEN.set(seen).expect("set once");
    let plugin = Plugin::from_manifest_str(&manifest("lister", "").to_toml_string())
        .expect("the manifest is valid")
        .on(forward);
    let mut settings = WorkerSettings::new(format!("{DEAD},{}", sy.url()));
    settings.namespace = sy.namespace().clone();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(plugin.run_with(settings, stop.clone().cancelled_owned()));

    // Published at once: an event waits in the plugin's consumer until a worker is there.
    sy.publish_orders("acme", 7..8).await;
    let got = tokio::time::timeout(DEADLINE, received.recv()).await;
    stop.cancel();
    assert_eq!(got.expect("the worker handles the event in time"), Some(7));
    worker
        .await
        .expect("the worker task")
        .expect("the worker stops cleanly");
}
