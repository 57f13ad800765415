//! `switchyard publish`, `events tail` and `explain` with the built binary against a real
//! nats-server and dispatcher; workers are raw async-nats clients.

use std::time::Duration;

use serde_json::Value;
use switchyard_control::registry::{Registration, TenantScope};
use switchyard_schemas::delivery::{ErrorCode, Outcome};
use switchyard_schemas::Tenant;
use switchyard_tests::{
    failed, manifest, run_switchyard, succeeded, wait_until, Behaviour, Switchyard, TestWorker,
};

const DEADLINE: Duration = Duration::from_secs(30);

async fn switchyard(url: &str, args: &[&str]) -> std::process::Output {
    run_switchyard(env!("CARGO_BIN_EXE_switchyard"), Some(url), args).await
}

fn json(output: &std::process::Output) -> Value {
    let text = succeeded(output);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{text}"))
}

/// The JSON lines `events tail --json` printed.
fn json_lines(output: &std::process::Output) -> Vec<Value> {
    succeeded(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

/// Publishes one event with the CLI and returns its id and sequence.
async fn publish(url: &str, args: &[&str]) -> (String, u64) {
    let mut all = vec!["publish", "--json"];
    all.extend_from_slice(args);
    let stored = json(&switchyard(url, &all).await);
    (
        stored["id"].as_str().expect("an id").to_owned(),
        stored["sequence"].as_u64().expect("a sequence"),
    )
}

#[tokio::test]
async fn published_events_are_stored_with_their_data_and_tail_shows_them() {
    let sy = Switchyard::without_dispatcher().await;
    let url = sy.url();
    let (id, sequence) = publish(
        &url,
        &[
            "--tenant",
            "acme",
            "--type",
            "order.created",
            "--data",
            r#"{"n": 7, "note": "hé"}"#,
        ],
    )
    .await;
    let (_, json_sequence) = publish(
        &url,
        &[
            "--tenant",
            "globex",
            "--type",
            "order.created",
            "--schema-version",
            "2.1.0",
            "--content-type",
            "json",
            "--data",
            "[1, 2]",
        ],
    )
    .await;
    assert_eq!(json_sequence, sequence + 1);

    // Read back by the library a plugin would use, not by the CLI alone.
    let stream = sy.events_stream().await;
    let stored = stream.get_raw_message(sequence).await.unwrap();
    let event = switchyard_bus::decode_event(Some(&stored.headers), stored.payload).unwrap();
    assert_eq!(event.attributes.id.as_str(), id);
    assert_eq!(event.attributes.tenant.as_str(), "acme");
    assert_eq!(
        event
            .attributes
            .content_type
            .decode::<Value>(&event.data)
            .unwrap(),
        serde_json::json!({"n": 7, "note": "hé"})
    );

    let all =
        json_lines(&switchyard(&url, &["events", "tail", "--all", "--count", "2", "--json"]).await);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["event"]["id"], id.as_str());
    assert_eq!(all[0]["event"]["data"]["note"], "hé");
    assert_eq!(all[1]["event"]["schema_version"], "2.1.0");
    assert_eq!(all[1]["event"]["content_type"], "application/json");
    assert_eq!(all[1]["event"]["data"], serde_json::json!([1, 2]));

    let globex = json_lines(
        &switchyard(
            &url,
            &[
                "events", "tail", "--all", "--count", "1", "--json", "--tenant", "globex",
            ],
        )
        .await,
    );
    assert_eq!(globex[0]["sequence"], json_sequence);
    let text = succeeded(
        &switchyard(
            &url,
            &[
                "events",
                "tail",
                "--from-sequence",
                &sequence.to_string(),
                "--count",
                "1",
            ],
        )
        .await,
    );
    assert!(
        text.contains(&id) && text.contains("acme  order.created@1.0.0"),
        "{text}"
    );
}

#[tokio::test]
async fn a_paced_load_stores_every_event_and_a_repeated_id_stores_one() {
    let sy = Switchyard::without_dispatcher().await;
    let url = sy.url();
    let load = json(
        &switchyard(
            &url,
            &[
                "publish",
                "--json",
                "--tenant",
                "acme",
                "--type",
                "order.created",
                "--repeat",
                "60",
                "--rate",
                "200",
            ],
        )
        .await,
    );
    assert_eq!(load["published"], 60);
    let first = load["first_sequence"].as_u64().unwrap();
    assert_eq!(load["last_sequence"].as_u64().unwrap(), first + 59);
    // 60 events at 200/s take at least 0.25 s (three groups of 20 are waited for).
    assert!(load["seconds"].as_f64().unwrap() >= 0.2, "{load}");

    let args = [
        "--tenant",
        "acme",
        "--type",
        "order.created",
        "--id",
        "order-42-created",
    ];
    let (_, sequence) = publish(&url, &args).await;
    let again = json(&switchyard(&url, &[&["publish", "--json"][..], &args[..]].concat()).await);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["sequence"], sequence);
    let info = sy.events_stream().await.info().await.unwrap().state.clone();
    assert_eq!(info.messages, 61);
}

#[tokio::test]
async fn bad_data_and_names_are_refused_before_anything_is_stored() {
    let sy = Switchyard::without_dispatcher().await;
    let url = sy.url();
    for (args, expected) in [
        (&["--data", "{not json"][..], "not JSON"),
        (
            &["--data-file", "/nonexistent/data.json"][..],
            "cannot read the data file",
        ),
        (&["--id", "has space"][..], "--id"),
        (&["--rate", "0"][..], "events per second"),
    ] {
        let mut all = vec!["publish", "--tenant", "acme", "--type", "order.created"];
        all.extend_from_slice(args);
        let error = failed(&switchyard(&url, &all).await);
        assert!(error.contains(expected), "{args:?}: {error}");
    }
    let error = failed(
        &switchyard(
            &url,
            &["publish", "--tenant", "a.b", "--type", "order.created"],
        )
        .await,
    );
    assert!(error.contains("--tenant"), "{error}");
    let info = sy.events_stream().await.info().await.unwrap().state.clone();
    assert_eq!(info.messages, 0);
}

#[tokio::test]
async fn tail_for_a_plugin_shows_only_what_it_would_be_sent() {
    let sy = Switchyard::without_dispatcher().await;
    let url = sy.url();
    let mut orders_v1 = manifest("billing", "");
    orders_v1.subscriptions[0].versions = "^1".parse().unwrap();
    sy.registry
        .put(&Registration::new(
            orders_v1,
            TenantScope::only([Tenant::new("acme").unwrap()]).unwrap(),
        ))
        .await
        .unwrap();
    let (for_it, _) = publish(&url, &["--tenant", "acme", "--type", "order.created"]).await;
    for args in [
        &["--tenant", "globex", "--type", "order.created"][..],
        &["--tenant", "acme", "--type", "invoice.paid"][..],
        &[
            "--tenant",
            "acme",
            "--type",
            "order.created",
            "--schema-version",
            "2.0.0",
        ][..],
    ] {
        publish(&url, args).await;
    }
    let (last, _) = publish(&url, &["--tenant", "acme", "--type", "order.shipped"]).await;
    let shown = json_lines(
        &switchyard(
            &url,
            &[
                "events", "tail", "--all", "--count", "2", "--json", "--plugin", "billing",
            ],
        )
        .await,
    );
    let ids: Vec<&str> = shown
        .iter()
        .map(|line| line["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [for_it.as_str(), last.as_str()]);
    let error = failed(&switchyard(&url, &["events", "tail", "--plugin", "nobody"]).await);
    assert!(error.contains("no plugin `nobody`"), "{error}");
}

/// The statuses `explain --json` gives the event's first copy, by plugin.
fn statuses(explanation: &Value) -> Vec<(String, String, Value)> {
    explanation["copies"][0]["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|view| {
            (
                view["plugin"].as_str().unwrap().to_owned(),
                view["status"].as_str().unwrap().to_owned(),
                view.clone(),
            )
        })
        .collect()
}

fn status_of<'a>(
    statuses: &'a [(String, String, Value)],
    plugin: &str,
) -> &'a (String, String, Value) {
    statuses
        .iter()
        .find(|(name, ..)| name == plugin)
        .unwrap_or_else(|| panic!("no view of {plugin}: {statuses:?}"))
}

#[tokio::test]
async fn explain_tells_each_plugin_where_the_event_is_and_why() {
    let sy = Switchyard::start().await;
    let url = sy.url();
    let ns = sy.namespace().clone();
    let retry_later = manifest(
        "flaky",
        r#"backoff = { fixed = ["10m"] }
max_attempts = 3"#,
    );
    sy.register(manifest("ok", "")).await;
    sy.register(retry_later).await;
    sy.register(manifest("broken", "")).await;
    sy.register(manifest("slow", "max_in_flight = 1\ntimeout = \"10m\""))
        .await;
    sy.register_for(
        manifest("globex-only", ""),
        TenantScope::only([Tenant::new("globex").unwrap()]).unwrap(),
    )
    .await;
    let mut invoices = manifest("invoices", "");
    invoices.subscriptions[0].events = vec!["invoice.*".parse().unwrap()];
    sy.register(invoices).await;

    let _ok = TestWorker::start(&url, &ns, "ok", |_| Behaviour::Reply(Outcome::Done)).await;
    let flaky = TestWorker::start(&url, &ns, "flaky", |_| {
        Behaviour::Reply(Outcome::Retry {
            after: None,
            code: Some(ErrorCode::new("upstream.busy").unwrap()),
            reason: "the ledger is busy".to_owned(),
        })
    })
    .await;
    let broken = TestWorker::start(&url, &ns, "broken", |_| {
        Behaviour::Reply(Outcome::Failed {
            code: ErrorCode::new("order.invalid").unwrap(),
            reason: "no such customer".to_owned(),
        })
    })
    .await;
    let slow = TestWorker::start(&url, &ns, "slow", |_| Behaviour::Ignore).await;

    // The first event occupies `slow`'s only slot; the second waits behind it.
    let (first, _) = publish(&url, &["--tenant", "acme", "--type", "order.created"]).await;
    slow.wait_for(1, DEADLINE).await.unwrap();
    let (second, _) = publish(&url, &["--tenant", "acme", "--type", "order.created"]).await;
    flaky.wait_for(2, DEADLINE).await.unwrap();
    broken.wait_for(2, DEADLINE).await.unwrap();
    sy.wait_for_dead_letters(2, DEADLINE).await;
    // Registered after both events were stored.
    sy.register(manifest("late", "")).await;

    let explain = |id: String| {
        let url = url.clone();
        async move { json(&switchyard(&url, &["explain", "--json", &id]).await) }
    };
    wait_until(DEADLINE, || async {
        let views = statuses(&explain(second.clone()).await);
        status_of(&views, "ok").1 == "done" && status_of(&views, "flaky").1 == "waiting_retry"
    })
    .await
    .expect("the event is settled for `ok` and waits for a retry for `flaky`");
    let explained = explain(second.clone()).await;
    let views = statuses(&explained);
    let flaky_view = &status_of(&views, "flaky").2;
    assert_eq!(flaky_view["attempts"], 1);
    assert_eq!(flaky_view["last_failure"]["code"], "upstream.busy");
    let broken_view = &status_of(&views, "broken").2;
    assert_eq!(broken_view["status"], "dead_lettered");
    assert_eq!(broken_view["code"], "order.invalid");
    assert_eq!(status_of(&views, "slow").1, "pending");
    let globex = &status_of(&views, "globex-only").2;
    assert_eq!(globex["status"], "not_matched");
    assert!(
        globex["why"].as_str().unwrap().contains("tenant `acme`"),
        "{globex}"
    );
    let invoices = &status_of(&views, "invoices").2;
    assert!(
        invoices["why"].as_str().unwrap().contains("order.created"),
        "{invoices}"
    );
    let late = &status_of(&views, "late").2;
    assert_eq!(late["status"], "not_matched");
    assert!(
        late["why"].as_str().unwrap().contains("registered"),
        "{late}"
    );
    assert_eq!(
        explained["dispatchers_answered"].as_array().unwrap().len(),
        1
    );

    // The first event is the one `slow` is working on.
    let first_views = statuses(&json(
        &switchyard(&url, &["explain", "--json", &first]).await,
    ));
    let under_way = &status_of(&first_views, "slow").2;
    assert_eq!(under_way["status"], "under_way");
    assert_eq!(under_way["attempt"], 1);

    let text = succeeded(&switchyard(&url, &["explain", &second]).await);
    assert!(text.contains("waiting for a retry"), "{text}");
    assert!(text.contains("dlq show"), "{text}");
    let missing = failed(&switchyard(&url, &["explain", "no-such-event"]).await);
    assert!(
        missing.contains("no event with id `no-such-event`"),
        "{missing}"
    );
}

#[tokio::test]
async fn an_event_held_by_a_stopped_dispatcher_is_unknown_not_done() {
    let mut sy = Switchyard::start().await;
    let url = sy.url();
    let ns = sy.namespace().clone();
    sy.register(manifest("slow", "timeout = \"10m\"")).await;
    let slow = TestWorker::start(&url, &ns, "slow", |_| Behaviour::Ignore).await;
    let (id, _) = publish(&url, &["--tenant", "acme", "--type", "order.created"]).await;
    slow.wait_for(1, DEADLINE).await.unwrap();
    let status = |url: String, id: String| async move {
        let explanation = json(&switchyard(&url, &["explain", "--json", &id]).await);
        status_of(&statuses(&explanation), "slow").2.clone()
    };
    assert_eq!(status(url.clone(), id.clone()).await["status"], "under_way");

    // Gone without settling the event: JetStream still counts it as sent and un-acked.
    drop(sy.dispatcher.take());
    let view = wait_until(DEADLINE, || {
        let (url, id) = (url.clone(), id.clone());
        async move { status(url, id).await["status"] == "unknown" }
    })
    .await;
    assert!(view.is_ok(), "{}", status(url.clone(), id.clone()).await);
    let view = status(url, id).await;
    assert!(
        view["why"]
            .as_str()
            .unwrap()
            .contains("not yet acknowledged"),
        "{view}"
    );
}
