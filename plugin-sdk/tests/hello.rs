//! What a worker hears back from its hello, as its logs show it: a worker of another version
//! than the registered one is told so and logs what to do; the settings an operator sets
//! arrive and are logged by name, and no log line of the worker or the dispatcher holds a
//! secret's value.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_control::settings::{Secret, SettingChange, SettingsStore};
use switchyard_plugin_sdk::{Manifest, Plugin, WorkerSettings};
use switchyard_schemas::manifest::toml::Value;
use switchyard_tests::{wait_until, Switchyard};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(15);
const SECRET: &str = "hunter2-do-not-log";

/// Every log line written, as text.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn manifest(version: &str) -> Manifest {
    Manifest::from_toml_str(&format!(
        r#"
        [plugin]
        id = "mailer"
        version = "{version}"
        core = "*"

        [[subscriptions]]
        name = "orders"
        events = ["order.*"]

        [settings]
        retries = 1

        [settings_schema.retries]
        type = "integer"

        [settings_schema.api_key]
        type = "string"
        secret = true
        "#
    ))
    .unwrap()
}

// One thread: the worker's and the dispatcher's tasks all log through this test's subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_worker_hears_its_version_and_settings_and_no_log_holds_a_secret() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sy = Box::pin(Switchyard::start()).await;
    let registered = manifest("2.0.0");
    let schema = registered.settings_schema.clone();
    let plugin = registered.plugin.id.clone();
    sy.register(registered).await;
    let store = SettingsStore::open(
        &async_nats::jetstream::new(sy.server.client().await),
        sy.namespace(),
        1,
    )
    .await
    .unwrap();
    store
        .change(
            &plugin,
            &schema,
            &[SettingChange::SetSecret(
                "api_key".into(),
                Secret::new(SECRET),
            )],
        )
        .await
        .unwrap();

    let mut settings = WorkerSettings::new(sy.url());
    settings.namespace = sy.namespace().clone();
    let stop = CancellationToken::new();
    let worker = Plugin::new(manifest("1.0.0")).on_any(|_event, _ctx| async { Ok(()) });
    let running = tokio::spawn(worker.run_with(settings, stop.clone().cancelled_owned()));

    let told = wait_until(DEADLINE, || async {
        let text = logs.text();
        text.contains("not the registered one") && text.contains("registered_version=2.0.0")
    })
    .await;
    assert!(told.is_ok(), "{}", logs.text());
    assert!(logs.text().contains("settings changed"), "{}", logs.text());

    store
        .change(
            &plugin,
            &schema,
            &[SettingChange::Set("retries".into(), Value::Integer(4))],
        )
        .await
        .unwrap();
    let changed = wait_until(DEADLINE, || async {
        logs.text().matches("settings changed").count() >= 2
    })
    .await;
    assert!(changed.is_ok(), "{}", logs.text());

    stop.cancel();
    running.await.unwrap().unwrap();
    let text = logs.text();
    assert!(
        text.contains("api_key"),
        "the secret's name is logged:\n{text}"
    );
    assert!(
        !text.contains(SECRET),
        "a secret's value was logged:\n{text}"
    );
}

/// A worker sends a heartbeat every 5 s while it serves: a hello without a version (which a
/// dispatcher reads as presence and does not answer), naming the worker; none after it stops.
#[tokio::test]
async fn a_serving_worker_sends_heartbeats_and_stops_with_it() {
    use futures::StreamExt as _;

    let sy = Box::pin(Switchyard::start()).await;
    sy.register(manifest("1.0.0")).await;
    let observer = sy.server.client().await;
    let mut hellos = observer
        .subscribe(sy.namespace().worker_hello(&manifest("1.0.0").plugin.id))
        .await
        .unwrap();
    observer.flush().await.unwrap();

    let mut settings = WorkerSettings::new(sy.url());
    settings.namespace = sy.namespace().clone();
    let stop = CancellationToken::new();
    let worker = Plugin::new(manifest("1.0.0")).on_any(|_event, _ctx| async { Ok(()) });
    let running = tokio::spawn(worker.run_with(settings, stop.clone().cancelled_owned()));

    let mut beats = Vec::new();
    let heard = tokio::time::timeout(Duration::from_secs(20), async {
        while beats.len() < 2 {
            let message = hellos.next().await.unwrap();
            let hello = switchyard_schemas::delivery::Hello::read(&message.payload);
            if hello.version.is_none() {
                beats.push((tokio::time::Instant::now(), hello.instance));
            }
        }
    })
    .await;
    assert!(
        heard.is_ok(),
        "fewer than two heartbeats in 20 s: {beats:?}"
    );
    let apart = beats[1].0.duration_since(beats[0].0);
    assert!(
        apart >= Duration::from_secs(4),
        "heartbeats {apart:?} apart"
    );
    assert!(
        beats[0].1.as_deref().is_some_and(|i| i.contains("pid ")),
        "{beats:?}"
    );

    stop.cancel();
    running.await.unwrap().unwrap();
    // Nothing more once it stopped (drain what was in flight, then a heartbeat's time).
    while tokio::time::timeout(Duration::from_millis(200), hellos.next())
        .await
        .is_ok()
    {}
    let after = tokio::time::timeout(Duration::from_secs(6), hellos.next()).await;
    assert!(
        after.is_err(),
        "a heartbeat after the worker stopped: {after:?}"
    );
}
