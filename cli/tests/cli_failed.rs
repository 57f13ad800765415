//! The `failed` state as an operator meets it: a real dispatcher marks a plugin whose circuit
//! keeps opening failed (audited as the dispatcher instance, announced), its events are held
//! while it is failed, none lost, and `switchyard plugins enable` recovers it, after which every
//! event is delivered.

use std::collections::HashSet;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use switchyard_control::registry::LifecycleState;
use switchyard_dispatcher::pipeline::breaker::BreakerConfig;
use switchyard_schemas::delivery::Outcome;
use switchyard_schemas::{EventId, PluginId};
use switchyard_tests::{
    manifest, run_switchyard, succeeded, wait_until, Behaviour, Switchyard, TestWorker,
};

const DEADLINE: Duration = Duration::from_secs(30);

async fn switchyard(sy: &Switchyard, args: &[&str]) -> Output {
    run_switchyard(env!("CARGO_BIN_EXE_switchyard"), Some(&sy.url()), args).await
}

fn json(output: &Output) -> Value {
    let text = succeeded(output);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{text}"))
}

/// The plugin's entry in `plugins list --json`.
async fn listed(sy: &Switchyard, plugin: &str) -> Value {
    let list = json(&switchyard(sy, &["plugins", "list", "--json"]).await);
    list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == plugin)
        .cloned()
        .unwrap_or_else(|| panic!("{plugin} is listed: {list}"))
}

#[tokio::test]
async fn a_plugin_whose_circuit_keeps_opening_is_failed_holds_its_events_and_recovers() {
    // The circuit opens at the first failure and probes again after 200 ms.
    let sy = Switchyard::start_with(BreakerConfig {
        failure_threshold: std::num::NonZeroU32::MIN,
        cooldown: Duration::from_millis(200),
    })
    .await;
    let plugin = PluginId::new("flaky").unwrap();
    sy.register(manifest(
        "flaky",
        "max_attempts = 1000\nfail_after_opens = 2\nbackoff = { fixed = [\"20ms\"] }",
    ))
    .await;

    let healthy = Arc::new(AtomicBool::new(false));
    let done: Arc<Mutex<HashSet<EventId>>> = Arc::default();
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "flaky", {
        let (healthy, done) = (Arc::clone(&healthy), Arc::clone(&done));
        move |delivery| {
            if healthy.load(Ordering::SeqCst) {
                done.lock()
                    .unwrap()
                    .insert(delivery.event.attributes.id.clone());
                Behaviour::Reply(Outcome::Done)
            } else {
                Behaviour::Reply(Outcome::Retry {
                    after: Some(Duration::from_millis(20)),
                    code: None,
                    reason: "upstream down".to_owned(),
                })
            }
        }
    })
    .await;

    // The first event fails, the circuit opens, its probe fails, it opens again: failed.
    let mut published = sy.publish_orders("acme", 0..1).await;
    wait_until(DEADLINE, || async {
        sy.registry.get(&plugin).await.unwrap().unwrap().state() == LifecycleState::Failed
    })
    .await
    .expect("the dispatcher marks the plugin failed");
    let dispatcher = sy.dispatcher.as_ref().unwrap();
    wait_until(DEADLINE, || async {
        dispatcher.stats().iter().all(|s| s.plugin != plugin)
    })
    .await
    .expect("the dispatcher stops delivering to the failed plugin");

    let shown = listed(&sy, "flaky").await;
    assert_eq!(shown["state"], "failed", "{shown}");
    let reason = shown["failure"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("`orders` opened 2 times in a row"),
        "{reason}"
    );
    assert!(
        shown["failure"]["by"]
            .as_str()
            .unwrap()
            .starts_with("dispatcher d"),
        "{shown}"
    );
    let table = succeeded(&switchyard(&sy, &["plugins", "list"]).await);
    assert!(table.contains("failed"), "{table}");
    let text = succeeded(&switchyard(&sy, &["plugins", "show", "flaky"]).await);
    assert!(
        text.contains("failed:") && text.contains("opened 2 times"),
        "{text}"
    );

    // Audited as the dispatcher instance, and announced as a lifecycle event with the reason.
    let audit = json(
        &switchyard(
            &sy,
            &[
                "audit",
                "--action",
                "plugin_failed",
                "--plugin",
                "flaky",
                "--json",
            ],
        )
        .await,
    );
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert!(
        entries[0]["actor"]["declared"]
            .as_str()
            .unwrap()
            .starts_with("dispatcher d"),
        "{audit}"
    );
    assert_eq!(entries[0]["before"]["state"], "enabled");
    assert_eq!(entries[0]["after"]["state"], "failed");
    let announced = succeeded(
        &switchyard(
            &sy,
            &[
                "events",
                "tail",
                "--tenant",
                "switchyard",
                "--type",
                "switchyard.plugin.failed",
                "--all",
                "--count",
                "1",
                "--json",
            ],
        )
        .await,
    );
    let event: Value = serde_json::from_str(announced.lines().next().unwrap()).unwrap();
    assert_eq!(event["event"]["data"]["plugin"], "flaky");
    assert_eq!(event["event"]["data"]["state"], "failed");
    assert!(
        event["event"]["data"]["detail"]
            .as_str()
            .unwrap()
            .contains("opened 2 times"),
        "{event}"
    );

    // While failed, new events wait in its consumer; the worker (healthy now) gets none.
    healthy.store(true, Ordering::SeqCst);
    let delivered_before = worker.count();
    published.extend(sy.publish_orders("acme", 1..6).await);
    wait_until(DEADLINE, || async {
        sy.consumer_backlog("flaky").await.0 == 5
    })
    .await
    .expect("the events published while failed wait in the consumer");
    assert_eq!(
        worker.count(),
        delivered_before,
        "nothing is delivered while failed"
    );
    assert!(done.lock().unwrap().is_empty());

    // Enabling recovers it (audited); every event, the one it failed on too, is delivered.
    let enabled =
        succeeded(&switchyard(&sy, &["plugins", "enable", "flaky", "--actor", "on-call"]).await);
    assert!(enabled.contains("recovering it from failed"), "{enabled}");
    wait_until(DEADLINE, || async {
        let done = done.lock().unwrap();
        published.iter().all(|id| done.contains(id))
    })
    .await
    .expect("every event is delivered once the plugin is enabled again");
    let shown = listed(&sy, "flaky").await;
    assert_eq!(shown["state"], "enabled", "{shown}");
    assert_eq!(shown["failure"], Value::Null, "{shown}");
    let audit = json(
        &switchyard(
            &sy,
            &[
                "audit",
                "--action",
                "plugin_enabled",
                "--plugin",
                "flaky",
                "--json",
            ],
        )
        .await,
    );
    let entry = &audit["entries"][0];
    assert_eq!(entry["before"]["state"], "failed", "{audit}");
    assert_eq!(entry["after"]["state"], "enabled", "{audit}");
    assert_eq!(entry["actor"]["declared"], "on-call", "{audit}");
    assert!(sy.dead_letters().await.is_empty(), "none was dead-lettered");
}
