//! Operator-set settings reach running workers: a worker starts with what was set before it
//! connected, sees each change on the next delivery without a restart, and falls back to the
//! manifest's default when a setting is unset. (That another plugin can neither read nor
//! forge them is proven by the rights probe's `settings` cells, `tests/tests/security.rs`.)

use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;
use switchyard_control::settings::{Secret, SettingChange, SettingsStore};
use switchyard_plugin_sdk::{Context, HandlerResult, Plugin, WorkerSettings};
use switchyard_schemas::manifest::toml::Value;
use switchyard_schemas::{Manifest, PluginId};
use switchyard_tests::{OrderCreated, Switchyard};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(15);

const MANIFEST: &str = r#"
[plugin]
id = "greeter"
version = "1.0.0"
core = "*"

[[subscriptions]]
name = "orders"
events = ["order.*"]

[settings]
greeting = "hello"

[settings_schema.greeting]
type = "string"

[settings_schema.token]
type = "string"
secret = true
"#;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Seen {
    greeting: String,
    token: Option<String>,
}

/// Where the handler reports the settings it saw, by order number.
static SEEN: OnceLock<mpsc::UnboundedSender<(u32, Seen)>> = OnceLock::new();

async fn report(order: OrderCreated, ctx: Context) -> HandlerResult {
    let seen: Seen = ctx.settings()?;
    SEEN.get()
        .expect("set before the worker starts")
        .send((order.n, seen))?;
    Ok(())
}

fn seen(greeting: &str, token: Option<&str>) -> Seen {
    Seen {
        greeting: greeting.to_owned(),
        token: token.map(str::to_owned),
    }
}

#[tokio::test]
async fn workers_start_with_and_follow_what_the_operator_sets() {
    let sy = Box::pin(Switchyard::start()).await;
    let manifest = Manifest::from_toml_str(MANIFEST).unwrap();
    let plugin = PluginId::new("greeter").unwrap();
    let schema = manifest.settings_schema.clone();
    sy.register(manifest.clone()).await;
    let operator = sy.server.client().await;
    let store = SettingsStore::open(&async_nats::jetstream::new(operator), sy.namespace(), 1)
        .await
        .unwrap();
    // Set before any worker runs: the first delivery must already see it.
    store
        .change(
            &plugin,
            &schema,
            &[
                SettingChange::Set("greeting".into(), Value::from("hi")),
                SettingChange::SetSecret("token".into(), Secret::new("t0k")),
            ],
        )
        .await
        .unwrap();

    let (tx, mut rx) = mpsc::unbounded_channel();
    SEEN.set(tx).expect("set once");
    let worker = Plugin::new(manifest).on(report);
    let mut settings = WorkerSettings::new(sy.url());
    settings.namespace = sy.namespace().clone();
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run_with(settings, stop.clone().cancelled_owned()));

    sy.publish_orders("acme", 0..1).await;
    let (_, first) = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("the first event is handled in time")
        .unwrap();
    assert_eq!(first, seen("hi", Some("t0k")));

    // A change reaches the running worker; events keep flowing meanwhile.
    store
        .change(
            &plugin,
            &schema,
            &[SettingChange::Set("greeting".into(), Value::from("hey"))],
        )
        .await
        .unwrap();
    let mut n = 1;
    until_seen(&sy, &mut rx, &mut n, &seen("hey", Some("t0k"))).await;

    // Unset: the manifest's default is back; the secret taken back is gone.
    store
        .change(
            &plugin,
            &schema,
            &[
                SettingChange::Unset("greeting".into()),
                SettingChange::Unset("token".into()),
            ],
        )
        .await
        .unwrap();
    until_seen(&sy, &mut rx, &mut n, &seen("hello", None)).await;

    stop.cancel();
    running.await.unwrap().unwrap();
}

/// Publishes one order at a time until the handler reports `wanted`, within [`DEADLINE`].
async fn until_seen(
    sy: &Switchyard,
    rx: &mut mpsc::UnboundedReceiver<(u32, Seen)>,
    n: &mut u32,
    wanted: &Seen,
) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        sy.publish_orders("acme", *n..*n + 1).await;
        let (got_n, got) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("the worker never saw {wanted:?}"))
            .unwrap();
        assert_eq!(got_n, *n, "one event at a time");
        *n += 1;
        if &got == wanted {
            return;
        }
    }
}
