//! Plugin workers as their own processes (the `flaky-notifier` example, two replicas) export
//! to a real OTLP/HTTP receiver: each replica under an instance id of its own, the plugin's
//! id and version as the service, and a handler's retry as an error span.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_control::registry::{Registration, TenantScope};
use switchyard_dispatcher::pipeline::breaker::BreakerConfig;
use switchyard_plugin_sdk::{Event, Manifest, Tenant, TypedEvent, Version};
use switchyard_schemas::telemetry::attr;
use switchyard_tests::{OtlpReceiver, ReceivedSpan, Switchyard};
use tokio::process::{Child, Command};

const DEADLINE: Duration = Duration::from_secs(60);
/// OTLP status code ERROR.
const STATUS_ERROR: i32 = 2;

#[derive(Serialize, Deserialize)]
struct InvoicePaid {
    invoice_id: String,
    amount_cents: u64,
}

impl TypedEvent for InvoicePaid {
    const TYPE: &'static str = "invoice.paid";
    const SCHEMA_VERSION: Version = Version::new(1, 1, 0);
}

/// The example's binary, built by cargo (at once when it is up to date).
fn example_binary(name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "switchyard-plugin-sdk",
            "--example",
            name,
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the example `{name}` failed");
    // target/<profile>/deps/<this test> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("the test's own path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from target/<profile>/deps");
    profile.join("examples").join(name)
}

fn spawn_worker(binary: &PathBuf, url: &str, receiver: &OtlpReceiver) -> Child {
    let mut command = Command::new(binary);
    for name in [
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "SWITCHYARD_PREFIX",
        "SWITCHYARD_NATS_CREDS",
        "SWITCHYARD_PLUGIN_TOKEN",
        "SWITCHYARD_PLUGIN_TOKEN_FILE",
    ] {
        command.env_remove(name);
    }
    command
        .env("SWITCHYARD_NATS_URL", url)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the example worker starts")
}

fn handled(spans: &[ReceivedSpan]) -> Vec<&ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.span.name == "process switchyard.deliver.flaky-notifier")
        .collect()
}

#[tokio::test]
async fn each_worker_replica_exports_as_its_own_instance_of_the_plugin() {
    let binary = example_binary("flaky-notifier");
    let manifest = Manifest::from_toml_str(include_str!("../examples/flaky-notifier/plugin.toml"))
        .expect("the example's manifest is valid");
    let version = manifest.plugin.version.to_string();
    // Every first attempt fails: a breaker that opened after five would pause the test.
    let sy = Switchyard::start_with(BreakerConfig {
        failure_threshold: NonZeroU32::new(1000).unwrap(),
        cooldown: Duration::from_secs(1),
    })
    .await;
    let receiver = OtlpReceiver::start().await;
    sy.registry
        .put(&Registration::new(manifest, TenantScope::All))
        .await
        .expect("registered");
    let _replicas = [
        spawn_worker(&binary, &sy.url(), &receiver),
        spawn_worker(&binary, &sy.url(), &receiver),
    ];
    // Enough events that each replica of the queue group gets some (2^-40 that one gets none).
    let tenant = Tenant::new("acme").unwrap();
    for n in 0..20 {
        let event = Event::builder(tenant.clone(), "urn:test")
            .build(&InvoicePaid {
                invoice_id: format!("inv-{n}"),
                amount_cents: 100,
            })
            .unwrap();
        sy.publisher().publish_event(&event).await.unwrap();
    }

    // Every event fails its first attempt and succeeds on its second.
    receiver
        .wait_for_spans(DEADLINE, |spans| handled(spans).len() >= 40)
        .await
        .unwrap_or_else(|_| panic!("{} worker spans", handled(&receiver.spans()).len()));
    let spans = receiver.spans();
    let handled = handled(&spans);
    let instances: BTreeSet<&str> = handled
        .iter()
        .map(|s| s.resource.get("service.instance.id").unwrap().as_str())
        .collect();
    assert_eq!(
        instances.len(),
        2,
        "two replicas, two instances: {instances:?}"
    );
    for span in &handled {
        assert_eq!(span.resource.get("service.name").unwrap(), "flaky-notifier");
        assert_eq!(span.resource.get("service.version").unwrap(), &version);
        assert_eq!(
            span.attribute(attr::CONSUMER_GROUP).as_deref(),
            Some("flaky-notifier")
        );
        let failed = span
            .span
            .status
            .as_ref()
            .is_some_and(|s| s.code == STATUS_ERROR);
        match span.attribute(attr::OUTCOME).as_deref() {
            Some("retry") => {
                assert!(failed, "a retry is an error span");
                assert_eq!(
                    span.attribute(attr::ERROR_TYPE).as_deref(),
                    Some("handler.retry")
                );
            }
            Some("done") => assert!(!failed),
            other => panic!("unexpected outcome {other:?}"),
        }
    }
}
