//! Operating Switchyard with the built binary against real nats-servers: lists of server URLs,
//! `streams info` on a cluster, and the `--json` documents of `plugins list|show|status` and
//! `streams info`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use switchyard_tests::{failed, run_switchyard, succeeded, wait_until, TestCluster, TestServer};

/// Nothing listens on port 1, so a connect to it is refused at once.
const DEAD: &str = "nats://127.0.0.1:1";
const DEADLINE: Duration = Duration::from_secs(30);

fn manifest(file_name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/manifests")
        .join(file_name)
}

/// Runs `switchyard <args>` with `url` as `SWITCHYARD_NATS_URL`.
async fn switchyard(url: &str, args: &[&str]) -> Output {
    run_switchyard(env!("CARGO_BIN_EXE_switchyard"), Some(url), args).await
}

/// The one JSON document a successful command printed.
fn json(output: &Output) -> Value {
    let text = succeeded(output);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{text}"))
}

#[tokio::test]
async fn a_url_list_whose_first_server_is_dead_reaches_the_live_one() {
    let server = TestServer::start().await;
    let urls = format!("{DEAD},{}", server.url());
    let listed = switchyard(&urls, &["plugins", "list", "--url", &urls]).await;
    assert!(
        succeeded(&listed).contains("no plugins are registered"),
        "{listed:?}"
    );
    // The same list from the environment variable.
    let listed = switchyard(&urls, &["plugins", "list"]).await;
    succeeded(&listed);
}

#[tokio::test]
async fn a_bad_url_in_the_list_is_named_without_its_password() {
    let output = switchyard(
        DEAD,
        &[
            "plugins",
            "list",
            "--url",
            "nats://127.0.0.1:4222,nats://admin:s3cret@h:99999",
        ],
    )
    .await;
    let error = failed(&output);
    assert!(error.contains("nats://admin:***@h:99999"), "{error}");
    assert!(error.contains("entry 2"), "{error}");
    assert!(!error.contains("s3cret"), "{error}");
}

#[tokio::test]
async fn streams_info_shows_replicas_limits_and_placement_on_a_cluster() {
    let cluster = TestCluster::start(3).await;
    let urls = std::iter::once(DEAD.to_owned())
        .chain(cluster.urls())
        .collect::<Vec<_>>()
        .join(",");
    succeeded(
        &switchyard(
            &urls,
            &[
                "streams",
                "provision",
                "--replicas",
                "3",
                "--events-max-age",
                "2d",
                "--events-max-bytes",
                "1000000",
            ],
        )
        .await,
    );

    // Replicas catch up with the leader shortly after the streams are created.
    let last = Mutex::new(Value::Null);
    wait_until(DEADLINE, || {
        let (urls, last) = (urls.clone(), &last);
        async move {
            let output = switchyard(&urls, &["streams", "info", "--json"]).await;
            let info = json(&output);
            let ready = info["streams"].as_array().is_some_and(|streams| {
                streams.iter().all(|s| {
                    s["cluster"]["leader"].is_string()
                        && s["cluster"]["replicas"]
                            .as_array()
                            .is_some_and(|r| r.len() == 2 && r.iter().all(|p| p["current"] == true))
                })
            });
            *last.lock().unwrap() = info;
            ready
        }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "every replica current: {e}; last:\n{:#}",
            last.lock().unwrap()
        )
    });
    let info = last.into_inner().unwrap();
    let events = &info["streams"][0];
    assert_eq!(events["name"], "SWITCHYARD_EVENTS");
    assert_eq!(events["replicas"], 3);
    assert_eq!(events["max_bytes"], 1_000_000);
    assert_eq!(events["max_age_secs"], 2 * 24 * 3600);
    assert_eq!(events["duplicate_window_secs"], 120);
    assert_eq!(events["storage"], "file");
    assert_eq!(events["discard"], "new");
    assert_eq!(events["messages"], 0);
    assert_eq!(events["cluster"]["name"], cluster.name());
    let dead_letters = &info["streams"][1];
    assert_eq!(dead_letters["name"], "SWITCHYARD_DLQ");
    assert_eq!(dead_letters["replicas"], 3);
    let audit = &info["streams"][2];
    assert_eq!(audit["name"], "SWITCHYARD_AUDIT");
    assert_eq!(audit["replicas"], 3);
    assert_eq!(audit["append_only"], true);
    assert_eq!(events["append_only"], false);

    let text = succeeded(&switchyard(&urls, &["streams", "info"]).await);
    for expected in [
        "replicas 3",
        "max bytes 1000000",
        "max age 2days",
        "duplicate window 2m",
        "storage file",
        "discard new",
        &format!("cluster {}: leader ", cluster.name()),
        "current",
    ] {
        assert!(text.contains(expected), "`{expected}` in:\n{text}");
    }
}

#[tokio::test]
async fn streams_info_on_a_single_server_has_no_placement() {
    let server = TestServer::start().await;
    let url = server.url();
    succeeded(&switchyard(&url, &["streams", "provision"]).await);
    let info = json(&switchyard(&url, &["streams", "info", "--json"]).await);
    let streams = info["streams"].as_array().expect("a list of streams");
    let names: Vec<&str> = streams.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(
        names,
        ["SWITCHYARD_EVENTS", "SWITCHYARD_DLQ", "SWITCHYARD_AUDIT"]
    );
    for stream in streams {
        assert_eq!(stream["replicas"], 1, "{stream}");
        assert!(stream["cluster"].is_null(), "{stream}");
        let append_only = stream["name"] == "SWITCHYARD_AUDIT";
        assert_eq!(stream["append_only"], append_only, "{stream}");
    }
    let text = succeeded(&switchyard(&url, &["streams", "info"]).await);
    assert!(!text.contains("cluster"), "{text}");
    // Only the audit stream (listed last) is append-only.
    assert_eq!(text.matches("append-only").count(), 1, "{text}");
    assert!(text.trim_end().ends_with(", append-only"), "{text}");
}

#[tokio::test]
async fn plugins_list_show_and_status_print_one_json_document() {
    let server = TestServer::start().await;
    let url = server.url();
    let empty = json(&switchyard(&url, &["plugins", "list", "--json"]).await);
    assert_eq!(empty, serde_json::json!({ "plugins": [] }));

    let path = manifest("audit-log.toml");
    succeeded(
        &switchyard(
            &url,
            &[
                "plugins",
                "add",
                path.to_str().unwrap(),
                "--tenant",
                "globex",
                "--tenant",
                "acme",
                "--approve",
            ],
        )
        .await,
    );
    // The streams `status` reads; a dispatcher would provision them.
    succeeded(&switchyard(&url, &["streams", "provision"]).await);

    let listed = json(&switchyard(&url, &["plugins", "list", "--json"]).await);
    let plugins = listed["plugins"].as_array().expect("a list of plugins");
    assert_eq!(plugins.len(), 1);
    let plugin = &plugins[0];
    assert_eq!(plugin["id"], "audit-log");
    assert_eq!(plugin["version"], "1.2.0");
    assert_eq!(plugin["tenants"], serde_json::json!(["acme", "globex"]));
    assert_eq!(plugin["all_tenants"], false);
    assert_eq!(plugin["enabled"], true);
    assert!(plugin["circuit"].is_null(), "no dispatcher: {plugin}");
    assert!(plugin["registered_at"].is_string(), "{plugin}");
    assert_eq!(plugin["subscriptions"][0]["name"], "orders");
    assert_eq!(
        plugin["subscriptions"][0]["events"],
        serde_json::json!(["order.*", "invoice.>"])
    );
    assert_eq!(plugin["subscriptions"][1]["name"], "refunds");

    let shown = json(&switchyard(&url, &["plugins", "show", "audit-log", "--json"]).await);
    assert_eq!(shown["id"], "audit-log");
    assert_eq!(shown["manifest"]["plugin"]["id"], "audit-log");
    assert!(
        shown["manifest"]["subscriptions"][0]["policy"].is_object(),
        "the canonical form carries the resolved policy: {shown}"
    );
    let text = succeeded(&switchyard(&url, &["plugins", "show", "audit-log"]).await);
    for expected in [
        "plugin:        audit-log 1.2.0",
        "tenants:       acme, globex",
        "[plugin]",
    ] {
        assert!(text.contains(expected), "`{expected}` in:\n{text}");
    }

    let status = json(&switchyard(&url, &["plugins", "status", "audit-log", "--json"]).await);
    assert_eq!(status["plugin"]["id"], "audit-log");
    assert_eq!(status["dead_letters"], 0);
    assert_eq!(status["stale_after_secs"], 15);
    let subscriptions = status["subscriptions"].as_array().expect("subscriptions");
    assert_eq!(subscriptions.len(), 2);
    for subscription in subscriptions {
        // No dispatcher has created its consumer or reported on it.
        assert!(subscription["backlog"].is_null(), "{subscription}");
        assert!(subscription["under_way"].is_null(), "{subscription}");
        assert!(subscription["redelivered"].is_null(), "{subscription}");
        assert!(subscription["circuit"].is_null(), "{subscription}");
        assert_eq!(subscription["dispatchers"], serde_json::json!([]));
    }

    let unknown = switchyard(&url, &["plugins", "show", "ghost", "--json"]).await;
    assert!(failed(&unknown).contains("no plugin `ghost`"));
}

/// `--replicas` covers the registry, status, credentials, trust, settings and secrets buckets
/// and the packages object store as well as the streams: losing a node must not lose
/// registrations, credentials, trusted keys, settings or packages.
#[tokio::test]
async fn streams_provision_gives_the_buckets_the_replicas_too() {
    let cluster = TestCluster::start(3).await;
    let url = cluster.urls().join(",");
    let output = switchyard(&url, &["streams", "provision", "--replicas", "3"]).await;
    let text = succeeded(&output);
    let js = cluster.jetstream().await;
    for bucket in [
        "SWITCHYARD_REGISTRY",
        "SWITCHYARD_STATUS",
        "SWITCHYARD_CREDENTIALS",
        "SWITCHYARD_TRUST",
        "SWITCHYARD_SETTINGS",
        "SWITCHYARD_SECRETS",
    ] {
        assert!(text.contains(&format!("{bucket} (bucket)")), "{text}");
        let mut stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
        let replicas = stream.info().await.unwrap().config.num_replicas;
        assert_eq!(replicas, 3, "{bucket}");
    }
    assert!(
        text.contains("SWITCHYARD_PACKAGES (object store)"),
        "{text}"
    );
    let mut packages = js.get_stream("OBJ_SWITCHYARD_PACKAGES").await.unwrap();
    assert_eq!(packages.info().await.unwrap().config.num_replicas, 3);
}
