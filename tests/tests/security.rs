//! The broker enforces plugin rights. Plugins connect here with raw async-nats clients (not
//! the SDK), so whatever is refused is refused by nats-server itself; an administrator
//! connection with full rights is the observer that would see anything let through.
//!
//! "Nothing arrives" is always shown against a positive control: the plugin publishes the
//! refused message and then one it may publish, on the same connection; NATS keeps one
//! connection's messages in order, so once the second has arrived, the first never will.

use std::time::Duration;

use async_nats::{HeaderMap, Subscriber};
use futures::StreamExt;
use switchyard_control::audit::{Action, Actor, AuditFilter, AuditLog, Auditor};
use switchyard_control::lifecycle::{events, failure};
use switchyard_control::registry::{LifecycleState, MarkedFailed, TenantScope};
use switchyard_plugin_sdk::{
    ChannelContext, ChannelError, Context, Plugin, TypedEvent, Version, WorkerSettings,
};
use switchyard_schemas::delivery::Outcome;
use switchyard_schemas::{Event, Manifest, PluginId, Tenant};
use switchyard_tests::{round_trip, wait_until, OrderCreated, RawPlugin, SecuredSwitchyard};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);
/// How long one probe in a retried check waits for its marker.
const PROBE: Duration = Duration::from_secs(2);

fn manifest(plugin: &str, send: &[&str], receive: &[&str]) -> Manifest {
    switchyard_tests::channel_manifest(plugin, send, receive)
}

fn only(tenant: &str) -> TenantScope {
    TenantScope::only([Tenant::new(tenant).unwrap()]).unwrap()
}

fn id(plugin: &str) -> PluginId {
    PluginId::new(plugin).unwrap()
}

/// A full-rights subscription to everything under the prefix.
async fn observer(sy: &SecuredSwitchyard) -> Subscriber {
    let observer = sy.admin.subscribe("switchyard.>").await.unwrap();
    round_trip(&sy.admin).await;
    observer
}

/// Publishes `n` to `subject`, then a marker `n` to the plugin's hello subject (which it may
/// always publish to), and reads `observer` up to the marker. `Some(arrived)` says whether the
/// message arrived; `None` when the marker did not come within [`PROBE`] (the connection was
/// being replaced), so the caller probes again.
async fn probe(
    plugin: &RawPlugin,
    name: &str,
    observer: &mut Subscriber,
    subject: &str,
    n: u32,
) -> Option<bool> {
    let hello = format!("switchyard.control.hello.{name}");
    probe_with_marker(plugin, &hello, observer, subject, n).await
}

/// [`probe`] with the marker on `hello`, any subject the client may publish to.
async fn probe_with_marker(
    plugin: &RawPlugin,
    hello: &str,
    observer: &mut Subscriber,
    subject: &str,
    n: u32,
) -> Option<bool> {
    let (message, marker) = (format!("message-{n}"), format!("marker-{n}"));
    let _ = plugin
        .client
        .publish(subject.to_owned(), message.clone().into())
        .await;
    let _ = plugin
        .client
        .publish(hello.to_owned(), marker.clone().into())
        .await;
    let _ = plugin.client.flush().await;
    let mut arrived = false;
    loop {
        let seen = timeout(PROBE, observer.next()).await.ok()??;
        if seen.subject.as_str() == subject && seen.payload == message.as_bytes() {
            arrived = true;
        }
        if seen.subject.as_str() == hello && seen.payload == marker.as_bytes() {
            return Some(arrived);
        }
    }
}

/// Probes until a probe says `arrives`.
async fn wait_for_probe(
    plugin: &RawPlugin,
    name: &str,
    observer: &mut Subscriber,
    subject: &str,
    arrives: bool,
) {
    let hello = format!("switchyard.control.hello.{name}");
    wait_for_marked_probe(plugin, &hello, observer, subject, arrives).await;
}

/// [`wait_for_probe`] with the marker on `marker`.
async fn wait_for_marked_probe(
    plugin: &RawPlugin,
    marker: &str,
    observer: &mut Subscriber,
    subject: &str,
    arrives: bool,
) {
    let mut n = 0;
    let observer = tokio::sync::Mutex::new(observer);
    wait_until(Duration::from_secs(20), || {
        n += 1;
        let observer = &observer;
        async move {
            let mut observer = observer.lock().await;
            probe_with_marker(plugin, marker, &mut observer, subject, n).await == Some(arrives)
        }
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "a publish to {subject} {}: {e}; the plugin saw {:?}",
            if arrives { "arrives" } else { "stops arriving" },
            plugin.events.all()
        )
    });
}

#[tokio::test]
async fn an_ungranted_publish_reaches_no_one_and_the_plugin_sees_the_violation() {
    let sy = SecuredSwitchyard::start().await;
    let secret = sy
        .register(manifest("sender", &["alerts"], &[]), only("acme"))
        .await;
    let plugin = sy
        .connect_plugin("sender", secret.expose())
        .await
        .expect("a registered plugin connects");
    let mut observer = observer(&sy).await;

    for refused in [
        "switchyard.channel.acme.secrets.sender", // a channel it was not granted
        "switchyard.channel.globex.alerts.sender", // its channel, another tenant's
        "switchyard.channel.acme.alerts.other",   // its channel, posing as another sender
        "switchyard.events.acme.order.created",   // forging an event
        "switchyard.deliver.sender",              // posing as the dispatcher
        "switchyard.control.hello.other",         // posing as another plugin
    ] {
        assert_eq!(
            probe(&plugin, "sender", &mut observer, refused, 1).await,
            Some(false),
            "{refused} must not reach the observer"
        );
        plugin
            .events
            .wait_for_violation(refused, WAIT)
            .await
            .unwrap_or_else(|_| panic!("the plugin is told that {refused} was refused"));
    }
    assert_eq!(
        probe(
            &plugin,
            "sender",
            &mut observer,
            "switchyard.channel.acme.alerts.sender",
            2
        )
        .await,
        Some(true),
        "its granted channel works"
    );
}

#[tokio::test]
async fn a_plugin_sees_nothing_of_another_tenant_or_another_plugin() {
    let sy = SecuredSwitchyard::start().await;
    let secret = sy
        .register(manifest("acme-only", &[], &["alerts"]), only("acme"))
        .await;
    let plugin = sy
        .connect_plugin("acme-only", secret.expose())
        .await
        .unwrap();

    // Subscribing straight to other tenants' and other plugins' subjects, as a raw client can.
    let forbidden = [
        "switchyard.channel.globex.alerts.*",
        "switchyard.channel.*.alerts.*",
        "switchyard.channel.>",
        "switchyard.events.globex.>",
        "switchyard.events.>",
        "switchyard.deliver.globex-billing",
        "_SY_INBOX.switchyard.globex-billing.>",
        "_INBOX.>",
        ">",
    ];
    let mut sniffers = Vec::new();
    for subject in forbidden {
        sniffers.push(plugin.client.subscribe(subject).await.unwrap());
    }
    let mut allowed = plugin
        .client
        .subscribe("switchyard.channel.acme.alerts.*")
        .await
        .unwrap();
    round_trip(&plugin.client).await;
    for subject in forbidden {
        plugin
            .events
            .wait_for_violation(subject, WAIT)
            .await
            .unwrap_or_else(|_| panic!("subscribing to {subject} is refused"));
    }

    // A full-rights publisher sends to all of them, then to the plugin's own channel.
    for subject in [
        "switchyard.channel.globex.alerts.someone",
        "switchyard.events.globex.order.created",
        "switchyard.deliver.globex-billing",
        "_SY_INBOX.switchyard.globex-billing.x",
        "_INBOX.x",
    ] {
        sy.admin.publish(subject, "secret".into()).await.unwrap();
    }
    sy.admin
        .publish("switchyard.channel.acme.alerts.someone", "yours".into())
        .await
        .unwrap();
    sy.admin.flush().await.unwrap();
    let control = timeout(WAIT, allowed.next()).await.unwrap().unwrap();
    assert_eq!(&control.payload[..], b"yours");
    // Each denied subscription was never registered by the server: nothing can arrive on it.
    // (The control message went out after all of the others from one connection, and one
    // connection's messages are delivered in order.)
    for mut sniffer in sniffers {
        assert!(
            futures::FutureExt::now_or_never(sniffer.next()).is_none(),
            "a denied subscription received something"
        );
    }
}

#[tokio::test]
async fn a_plugin_receives_only_its_tenants_events() {
    let mut sy = SecuredSwitchyard::start().await;
    sy.start_dispatcher().await;
    let secret = sy
        .register(manifest("acme-audit", &[], &[]), only("acme"))
        .await;
    let plugin = sy
        .connect_plugin("acme-audit", secret.expose())
        .await
        .unwrap();
    let mut deliveries = plugin
        .client
        .queue_subscribe("switchyard.deliver.acme-audit", "acme-audit".to_owned())
        .await
        .unwrap();
    round_trip(&plugin.client).await;
    let stream = sy
        .bus
        .jetstream()
        .get_stream("SWITCHYARD_EVENTS")
        .await
        .unwrap();
    wait_until(WAIT, || {
        let stream = stream.clone();
        async move { stream.consumer_info("acme-audit~orders").await.is_ok() }
    })
    .await
    .expect("the dispatcher creates the plugin's consumer");

    let publisher = sy.bus.publisher("urn:test");
    publisher
        .publish(&Tenant::new("globex").unwrap(), &OrderCreated { n: 1 })
        .await
        .unwrap();
    let acme = publisher
        .publish(&Tenant::new("acme").unwrap(), &OrderCreated { n: 2 })
        .await
        .unwrap();

    let delivery = timeout(WAIT, deliveries.next())
        .await
        .expect("acme's event is delivered")
        .unwrap();
    assert_eq!(
        delivery
            .headers
            .as_ref()
            .unwrap()
            .get("ce-id")
            .unwrap()
            .as_str(),
        acme.id.as_str()
    );
    let (pairs, body) = Outcome::Done.to_reply();
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(name, value);
    }
    // Replying is allowed (once per request) although the reply subject is the dispatcher's.
    plugin
        .client
        .publish_with_headers(delivery.reply.clone().unwrap(), headers, body)
        .await
        .unwrap();
    // Once acme's event is acknowledged, the plugin's consumer holds nothing else: globex's
    // event was never in it.
    wait_until(WAIT, || {
        let stream = stream.clone();
        async move {
            stream
                .consumer_info("acme-audit~orders")
                .await
                .is_ok_and(|info| info.num_pending == 0 && info.num_ack_pending == 0)
        }
    })
    .await
    .expect("acme's event is acknowledged and nothing else waits");
    assert!(futures::FutureExt::now_or_never(deliveries.next()).is_none());
    assert!(plugin.events.all().iter().all(|e| !e.contains("Violation")));
}

#[tokio::test]
async fn a_grant_takes_effect_and_a_revocation_stops_it_without_a_restart() {
    let sy = SecuredSwitchyard::start().await;
    let pid = sy.server().server().pid();
    let secret = sy
        .register(manifest("notifier", &[], &[]), only("acme"))
        .await;
    let plugin = sy
        .connect_plugin("notifier", secret.expose())
        .await
        .unwrap();
    let mut observer = observer(&sy).await;
    let alerts = "switchyard.channel.acme.alerts.notifier";

    assert_eq!(
        probe(&plugin, "notifier", &mut observer, alerts, 0).await,
        Some(false)
    );

    // Grant: the operator approves a manifest that may send on `alerts`.
    let mut registration = sy.registration("notifier").await;
    registration.manifest = manifest("notifier", &["alerts"], &[]);
    sy.update(&registration).await;
    wait_for_probe(&plugin, "notifier", &mut observer, alerts, true).await;

    // Revoke.
    registration.manifest = manifest("notifier", &[], &[]);
    sy.update(&registration).await;
    wait_for_probe(&plugin, "notifier", &mut observer, alerts, false).await;
    let violations = plugin.events.violations(alerts);
    assert_eq!(
        probe(&plugin, "notifier", &mut observer, alerts, 1000).await,
        Some(false)
    );
    wait_until(WAIT, || async {
        plugin.events.violations(alerts) > violations
    })
    .await
    .expect("the refused publish is reported to the plugin");

    // The same server process throughout; the plugin's connection was replaced, not its process.
    assert_eq!(sy.server().server().pid(), pid);
    assert!(
        plugin.events.count("connected") >= 2,
        "{:?}",
        plugin.events.all()
    );
}

#[tokio::test]
async fn unknown_removed_and_disabled_plugins_are_refused_at_connect() {
    let sy = SecuredSwitchyard::start().await;

    let unknown = sy.connect_plugin("ghost", "whatever").await;
    assert!(unknown.is_err(), "an unknown plugin is refused");

    let secret = sy
        .register(manifest("worker", &[], &[]), only("acme"))
        .await;
    assert!(
        sy.connect_plugin("worker", "not-the-secret").await.is_err(),
        "a wrong secret is refused"
    );
    let connected = sy
        .connect_plugin("worker", secret.expose())
        .await
        .expect("the right secret is accepted");

    // Disabling it disconnects the connection it has, and refuses it from then on.
    let mut registration = sy.registration("worker").await;
    registration.enabled = false;
    sy.update(&registration).await;
    wait_until(WAIT, || async {
        connected.events.count("Authorization Violation") > 0
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the disabled plugin's connection is refused: {e}; {:?}",
            connected.events.all()
        )
    });
    assert_ne!(
        connected.client.connection_state(),
        async_nats::connection::State::Connected
    );
    assert!(sy.connect_plugin("worker", secret.expose()).await.is_err());

    // Enabled again, the same client gets back in by itself.
    registration.enabled = true;
    sy.update(&registration).await;
    wait_until(Duration::from_secs(20), || async {
        connected.client.connection_state() == async_nats::connection::State::Connected
    })
    .await
    .expect("the re-enabled plugin reconnects");

    // Removed: refused, and its connection is closed too.
    assert!(sy.registry.remove(&id("worker")).await.unwrap());
    let refusals = connected.events.count("Authorization Violation");
    wait_until(WAIT, || async {
        connected.events.count("Authorization Violation") > refusals
    })
    .await
    .expect("the removed plugin's connection is refused");
    assert!(sy.connect_plugin("worker", secret.expose()).await.is_err());
}

#[tokio::test]
async fn a_failed_plugins_workers_are_refused_at_connect_until_it_is_enabled() {
    let sy = SecuredSwitchyard::start().await;
    let secret = sy.register(manifest("flaky", &[], &[]), only("acme")).await;
    let connected = sy
        .connect_plugin("flaky", secret.expose())
        .await
        .expect("an enabled plugin's worker is let in");

    // What a host does when the plugin's worker cannot be kept running.
    let log = AuditLog::open(sy.bus.jetstream(), sy.namespace())
        .await
        .unwrap();
    let auditor = Auditor::new(log.clone(), Actor::declared("host h1"));
    let publisher = sy.bus.publisher(events::SOURCE);
    let marked = failure::mark_failed(
        &sy.registry,
        &auditor,
        &publisher,
        &id("flaky"),
        "its worker exited 5 times in a minute",
    )
    .await
    .unwrap();
    assert!(matches!(marked, MarkedFailed::Failed(_)), "{marked:?}");
    assert_eq!(
        sy.registration("flaky").await.state(),
        LifecycleState::Failed
    );

    // The connection it has is closed by the broker, and a new one is refused.
    wait_until(WAIT, || async {
        connected.events.count("Authorization Violation") > 0
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the failed plugin's connection is refused: {e}; {:?}",
            connected.events.all()
        )
    });
    assert!(sy.connect_plugin("flaky", secret.expose()).await.is_err());

    // Marking it again changes nothing and records nothing more.
    let again = failure::mark_failed(&sy.registry, &auditor, &publisher, &id("flaky"), "again")
        .await
        .unwrap();
    assert_eq!(again, MarkedFailed::AlreadyFailed);
    let entries = log
        .list(&AuditFilter {
            action: Some(Action::PluginFailed),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].entry.actor.name, "host h1");
    assert_eq!(entries[0].entry.after.as_ref().unwrap()["state"], "failed");

    // Enabled again (its failure cleared), the same client gets back in by itself.
    let mut registration = sy.registration("flaky").await;
    registration.failure = None;
    sy.update(&registration).await;
    wait_until(Duration::from_secs(20), || async {
        connected.client.connection_state() == async_nats::connection::State::Connected
    })
    .await
    .expect("the recovered plugin reconnects");
}

#[tokio::test]
async fn a_rotated_credential_replaces_the_old_one() {
    let sy = SecuredSwitchyard::start().await;
    let old = sy
        .register(manifest("rotated", &[], &[]), only("acme"))
        .await;
    let connected = sy.connect_plugin("rotated", old.expose()).await.unwrap();
    let new = sy.credentials.issue(&id("rotated")).await.unwrap();
    wait_until(WAIT, || async {
        connected.events.count("Authorization Violation") > 0
    })
    .await
    .expect("the connection made with the old secret is closed and refused");
    assert!(sy.connect_plugin("rotated", old.expose()).await.is_err());
    assert!(sy.connect_plugin("rotated", new.expose()).await.is_ok());
    assert!(sy.credentials.revoke(&id("rotated")).await.unwrap());
    assert!(sy.connect_plugin("rotated", new.expose()).await.is_err());
}

/// A host's secret logs its workers in beside the operator's; an operator's rotation keeps it
/// (and disconnects no host worker), a host taking it back or a revocation ends it.
#[tokio::test]
async fn a_hosts_secret_lives_beside_the_operators() {
    let sy = SecuredSwitchyard::start().await;
    let operator = sy
        .register(manifest("hosted", &[], &[]), only("acme"))
        .await;
    let log = AuditLog::open(sy.bus.jetstream(), sy.namespace())
        .await
        .unwrap();
    let auditor = Auditor::new(log, Actor::declared("host h1"));
    let hosted = sy
        .credentials
        .issue_for_host(&id("hosted"), "h1", &auditor)
        .await
        .unwrap();
    let other_host = sy
        .credentials
        .issue_for_host(&id("hosted"), "h2", &auditor)
        .await
        .unwrap();
    assert!(sy.connect_plugin("hosted", operator.expose()).await.is_ok());
    let worker = sy.connect_plugin("hosted", hosted.expose()).await.unwrap();
    assert!(sy
        .connect_plugin("hosted", other_host.expose())
        .await
        .is_ok());

    // The operator rotates: the old operator secret is refused, the hosts' are not.
    let rotated = sy.credentials.issue(&id("hosted")).await.unwrap();
    assert!(sy
        .connect_plugin("hosted", operator.expose())
        .await
        .is_err());
    assert!(sy.connect_plugin("hosted", rotated.expose()).await.is_ok());
    assert!(sy.connect_plugin("hosted", hosted.expose()).await.is_ok());

    // h1 takes its secret back: refused from now on; h2's still works.
    assert!(sy
        .credentials
        .forget_host(&id("hosted"), "h1")
        .await
        .unwrap());
    assert!(!sy
        .credentials
        .forget_host(&id("hosted"), "h1")
        .await
        .unwrap());
    assert!(sy.connect_plugin("hosted", hosted.expose()).await.is_err());
    assert!(sy
        .connect_plugin("hosted", other_host.expose())
        .await
        .is_ok());

    // A revocation takes every secret, the hosts' too, and closes their connections.
    assert!(sy.credentials.revoke(&id("hosted")).await.unwrap());
    assert!(sy
        .connect_plugin("hosted", other_host.expose())
        .await
        .is_err());
    wait_until(WAIT, || async {
        worker.events.count("Authorization Violation") > 0
    })
    .await
    .expect("a host worker's connection is closed when the credential is revoked");
}

#[tokio::test]
async fn a_plugin_cannot_use_jetstream() {
    let sy = SecuredSwitchyard::start().await;
    let secret = sy
        .register(
            manifest("curious", &["alerts"], &["alerts"]),
            TenantScope::All,
        )
        .await;
    let plugin = sy.connect_plugin("curious", secret.expose()).await.unwrap();
    let mut js = async_nats::jetstream::new(plugin.client.clone());
    js.set_timeout(Duration::from_millis(500));

    assert!(js.query_account().await.is_err());
    assert!(js.get_stream("SWITCHYARD_EVENTS").await.is_err());
    assert!(js.get_key_value("SWITCHYARD_CREDENTIALS").await.is_err());
    for subject in ["$JS.API.INFO", "$JS.API.STREAM.INFO.SWITCHYARD_EVENTS"] {
        plugin
            .events
            .wait_for_violation(subject, WAIT)
            .await
            .unwrap_or_else(|_| panic!("{subject} is refused"));
    }
    let _sniffer = plugin
        .client
        .subscribe("$KV.SWITCHYARD_CREDENTIALS.>")
        .await;
    plugin
        .events
        .wait_for_violation("$KV.SWITCHYARD_CREDENTIALS.>", WAIT)
        .await
        .expect("the credentials bucket's subjects are refused");
}

#[tokio::test]
async fn granted_plugins_talk_request_reply_and_learn_their_rights() {
    let sy = SecuredSwitchyard::start().await;
    let asker_secret = sy
        .register(manifest("asker", &["quotes"], &[]), only("acme"))
        .await;
    let quoter_secret = sy
        .register(manifest("quoter", &[], &["quotes"]), only("acme"))
        .await;
    let asker = sy
        .connect_plugin("asker", asker_secret.expose())
        .await
        .unwrap();
    let quoter = sy
        .connect_plugin("quoter", quoter_secret.expose())
        .await
        .unwrap();

    let mut requests = quoter
        .client
        .subscribe("switchyard.channel.acme.quotes.*")
        .await
        .unwrap();
    round_trip(&quoter.client).await;
    let quoter_events = quoter.events.clone();
    let answering = tokio::spawn(async move {
        let request = requests.next().await.unwrap();
        // The subject names the sender, and the reply subject is in the sender's reply space
        // for this channel, where the quoter (a receiver of `quotes` for acme) may publish.
        assert_eq!(
            request.subject.as_str(),
            "switchyard.channel.acme.quotes.asker"
        );
        assert!(request
            .reply
            .as_ref()
            .unwrap()
            .starts_with("_SY_CHREPLY.switchyard.acme.quotes.asker."));
        quoter
            .client
            .publish(request.reply.unwrap(), "42".into())
            .await
            .unwrap();
        quoter.client.flush().await.unwrap();
        quoter
    });
    let reply = "_SY_CHREPLY.switchyard.acme.quotes.asker.q1";
    let mut answers = asker.client.subscribe(reply).await.unwrap();
    asker
        .client
        .publish_with_reply(
            "switchyard.channel.acme.quotes.asker",
            reply,
            "price?".into(),
        )
        .await
        .unwrap();
    let answer = timeout(WAIT, answers.next()).await.unwrap_or_else(|e| {
        panic!(
            "the quoter answers: {e}; asker saw {:?}, quoter saw {:?}\n{}",
            asker.events.all(),
            quoter_events.all(),
            sy.server().server().log_tail()
        )
    });
    let answer = answer.unwrap();
    assert_eq!(&answer.payload[..], b"42");
    let quoter = answering.await.unwrap();
    assert!(quoter.events.all().iter().all(|e| !e.contains("Violation")));

    // A worker asks the control plane what it may do.
    let rights = timeout(
        WAIT,
        asker
            .client
            .request("switchyard.control.rights.asker", "".into()),
    )
    .await
    .unwrap()
    .unwrap();
    let rights: serde_json::Value = serde_json::from_slice(&rights.payload).unwrap();
    assert_eq!(rights["tenants"], serde_json::json!(["acme"]));
    assert_eq!(rights["send"], serde_json::json!(["quotes"]));
    // But not what another plugin may do.
    let _ = asker
        .client
        .publish("switchyard.control.rights.quoter", "".into())
        .await;
    asker
        .events
        .wait_for_violation("switchyard.control.rights.quoter", WAIT)
        .await
        .unwrap();
}

/// A quote request between plugins.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Quote {
    sku: String,
}

impl TypedEvent for Quote {
    const TYPE: &'static str = "quote.requested";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// The answer to a [`Quote`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Price {
    cents: u64,
}

impl TypedEvent for Price {
    const TYPE: &'static str = "quote.priced";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// A fire-and-forget message.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Note {
    text: String,
}

impl TypedEvent for Note {
    const TYPE: &'static str = "note.written";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// What the shop's handlers saw.
#[derive(Debug)]
enum Seen {
    Handled {
        price: Result<Price, ChannelError>,
        alert: Result<(), ChannelError>,
    },
    Note {
        note: Note,
        tenant: String,
        trace_id: String,
    },
}

/// The headers and body of a channel message, as any client would write it.
fn channel_message<T: TypedEvent>(tenant: &str, data: &T) -> (HeaderMap, bytes::Bytes) {
    let event = Event::builder(Tenant::new(tenant).unwrap(), "urn:test")
        .build(data)
        .unwrap();
    let mut headers = HeaderMap::new();
    for (name, value) in event.headers() {
        headers.insert(name, value.as_str());
    }
    (headers, event.data)
}

fn current_trace_id() -> String {
    use opentelemetry::trace::TraceContextExt;
    opentelemetry::Context::current()
        .span()
        .span_context()
        .trace_id()
        .to_string()
}

#[tokio::test]
async fn the_sdk_talks_on_granted_channels_and_reports_refusals() {
    let mut sy = SecuredSwitchyard::start().await;
    sy.start_dispatcher().await;
    // What the operator approved: the shop may request quotes (not send alerts) and receive
    // notes; the pricer receives quotes and sends notes.
    let shop_secret = sy
        .register(manifest("shop", &["quotes"], &["notes"]), only("acme"))
        .await;
    let pricer_secret = sy
        .register(manifest("pricer", &["notes"], &["quotes"]), only("acme"))
        .await;
    let (seen, mut saw) = tokio::sync::mpsc::unbounded_channel();

    // The shop's own manifest also asks to send alerts: the SDK tries, the broker refuses.
    let on_order = seen.clone();
    let on_note = seen;
    let shop = Plugin::new(manifest("shop", &["quotes", "alerts"], &["notes"]))
        .on(move |order: OrderCreated, ctx: Context| {
            let seen = on_order.clone();
            async move {
                let channels = ctx.channels();
                let price = channels
                    .request::<Quote, Price>(
                        "quotes",
                        &Quote {
                            sku: format!("o-{}", order.n),
                        },
                        WAIT,
                    )
                    .await;
                let alert = channels.send("alerts", &Note { text: "!".into() }).await;
                let _ = seen.send(Seen::Handled { price, alert });
                Ok(())
            }
        })
        .on_channel("notes", move |note: Note, ctx: ChannelContext| {
            let seen = on_note.clone();
            async move {
                let _ = seen.send(Seen::Note {
                    note,
                    tenant: ctx.tenant().to_string(),
                    trace_id: current_trace_id(),
                });
                Ok(())
            }
        });
    let pricer = Plugin::new(manifest("pricer", &["notes"], &["quotes"])).on_channel(
        "quotes",
        |quote: Quote, ctx: ChannelContext| async move {
            ctx.channels()
                .send(
                    "notes",
                    &Note {
                        text: format!("priced {}", quote.sku),
                    },
                )
                .await?;
            ctx.reply(&Price { cents: 990 }).await?;
            Ok(())
        },
    );

    let stop = CancellationToken::new();
    let settings = |secret: &str| {
        let mut settings = WorkerSettings::new(sy.url());
        settings.token = Some(secret.to_owned());
        settings
    };
    let workers = [
        tokio::spawn(shop.run_with(
            settings(shop_secret.expose()),
            stop.clone().cancelled_owned(),
        )),
        tokio::spawn(pricer.run_with(
            settings(pricer_secret.expose()),
            stop.clone().cancelled_owned(),
        )),
    ];

    // Both workers have subscribed to their channels once a full-rights client gets answers.
    let (headers, body) = channel_message(
        "acme",
        &Quote {
            sku: "probe".into(),
        },
    );
    wait_until(WAIT, || {
        let (admin, headers, body) = (sy.admin.clone(), headers.clone(), body.clone());
        async move {
            // As a sender `probe` would: the answer goes to its reply subject.
            let unique = admin.new_inbox();
            let token = unique.rsplit('.').next().unwrap_or_default();
            let reply = format!("_SY_CHREPLY.switchyard.acme.quotes.probe.{token}");
            let Ok(mut answers) = admin.subscribe(reply.clone()).await else {
                return false;
            };
            let sent = admin
                .publish_with_reply_and_headers(
                    "switchyard.channel.acme.quotes.probe",
                    reply,
                    headers,
                    body,
                )
                .await;
            sent.is_ok()
                && timeout(Duration::from_secs(1), answers.next())
                    .await
                    .is_ok_and(|reply| reply.is_some_and(|r| r.status.is_none()))
        }
    })
    .await
    .expect("the pricer receives quotes");
    // (That probe made the pricer send a note, which tells that the shop receives notes.)
    let first = timeout(WAIT, saw.recv()).await.unwrap().unwrap();
    assert!(
        matches!(&first, Seen::Note { note, .. } if note.text == "priced probe"),
        "{first:?}"
    );

    // An event, with a trace, for the shop: it asks the pricer, which also sends a note.
    let trace = opentelemetry::trace::SpanContext::new(
        opentelemetry::trace::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        opentelemetry::trace::SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        opentelemetry::trace::TraceFlags::SAMPLED,
        true,
        opentelemetry::trace::TraceState::default(),
    );
    let parent = {
        use opentelemetry::trace::TraceContextExt;
        opentelemetry::Context::new().with_remote_span_context(trace)
    };
    {
        use opentelemetry::context::FutureExt;
        sy.bus
            .publisher("urn:test")
            .publish(&Tenant::new("acme").unwrap(), &OrderCreated { n: 7 })
            .with_context(parent)
            .await
            .unwrap();
    }
    let mut handled = None;
    let mut noted = None;
    while handled.is_none() || noted.is_none() {
        match timeout(WAIT, saw.recv()).await.unwrap().unwrap() {
            Seen::Handled { price, alert } => handled = Some((price, alert)),
            Seen::Note {
                note,
                tenant,
                trace_id,
            } => noted = Some((note, tenant, trace_id)),
        }
    }
    let (price, alert) = handled.unwrap();
    assert_eq!(price, Ok(Price { cents: 990 }));
    assert_eq!(
        alert,
        Err(ChannelError::PermissionDenied {
            subject: "switchyard.channel.acme.alerts.shop".to_owned()
        })
    );
    let (note, tenant, trace_id) = noted.unwrap();
    assert_eq!(note.text, "priced o-7");
    assert_eq!(tenant, "acme");
    // event → delivery → shop → quote request → pricer → note → shop: one trace.
    assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");

    stop.cancel();
    for worker in workers {
        timeout(WAIT, worker)
            .await
            .expect("the worker stops")
            .unwrap()
            .expect("the worker ran without error");
    }
}

#[tokio::test]
async fn a_disabled_plugins_events_wait_until_it_is_enabled() {
    use switchyard_tests::{manifest as harness_manifest, Behaviour, Switchyard, TestWorker};

    // The dispatcher's side of disabling, which holds whether or not the broker enforces rights.
    let sy = Switchyard::start().await;
    sy.register(harness_manifest("paused", "")).await;
    sy.register(harness_manifest("control", "")).await;
    let done = |_: &switchyard_tests::ReceivedDelivery| Behaviour::Reply(Outcome::Done);
    let paused = TestWorker::start(&sy.url(), sy.namespace(), "paused", done).await;
    let control = TestWorker::start(&sy.url(), sy.namespace(), "control", done).await;

    let mut registration = sy.registry.get(&id("paused")).await.unwrap().unwrap();
    registration.enabled = false;
    sy.registry.put(&registration).await.unwrap();
    let dispatcher = sy.dispatcher.as_ref().unwrap();
    wait_until(WAIT, || async {
        dispatcher
            .stats()
            .iter()
            .all(|s| s.plugin.as_str() != "paused")
    })
    .await
    .expect("the dispatcher stops delivering to the disabled plugin");
    // A pull made just before stays open on the server until it expires (5 s); what it
    // catches is delivered as the pull loop stops. From then on, nothing is pulled.
    let events = sy.events_stream().await;
    wait_until(WAIT, || {
        let events = events.clone();
        async move {
            events
                .consumer_info("paused~orders")
                .await
                .is_ok_and(|info| info.num_waiting == 0)
        }
    })
    .await
    .expect("no pull is left open for the disabled plugin");

    sy.publish_orders("acme", 0..1).await;
    control
        .wait_for(1, WAIT)
        .await
        .expect("an enabled plugin gets the event");
    assert_eq!(paused.count(), 0);
    // The event waits in the disabled plugin's consumer, not pulled.
    assert_eq!(sy.consumer_backlog("paused").await, (1, 0));

    registration.enabled = true;
    sy.registry.put(&registration).await.unwrap();
    paused
        .wait_for(1, WAIT)
        .await
        .expect("enabled again, the plugin gets the event it missed");
}

/// A plugin installed but not approved has a credential yet is refused at connect, by the
/// broker; approved, the same secret gets in.
#[tokio::test]
async fn a_plugin_waiting_for_approval_is_refused_at_connect_until_approved() {
    let sy = SecuredSwitchyard::start().await;
    let secret = sy
        .register(manifest("newcomer", &[], &[]), only("acme"))
        .await;
    let mut registration = sy.registration("newcomer").await;
    registration.awaiting_approval = true;
    sy.update(&registration).await;
    let refused = sy.connect_plugin("newcomer", secret.expose()).await;
    assert!(refused.is_err(), "a plugin waiting for approval is refused");

    registration.awaiting_approval = false;
    sy.update(&registration).await;
    sy.connect_plugin("newcomer", secret.expose())
        .await
        .expect("approved, its secret is accepted");
}

/// A raw worker of `pricing` answering every call it receives with a fixed JSON response.
async fn answer_calls(worker: &RawPlugin) {
    let mut calls = worker
        .client
        .queue_subscribe("switchyard.call.pricing", "pricing".to_owned())
        .await
        .unwrap();
    let client = worker.client.clone();
    tokio::spawn(async move {
        while let Some(call) = calls.next().await {
            let Some(reply) = call.reply else { continue };
            let mut headers = HeaderMap::new();
            headers.insert("switchyard-outcome", "done");
            headers.insert("content-type", "application/json");
            let _ = client
                .publish_with_headers(reply, headers, r#"{"cents":42,"note":"raw"}"#.into())
                .await;
        }
    });
    round_trip(&worker.client).await;
}

#[tokio::test]
async fn only_the_plugins_an_operation_names_may_call_it_and_only_as_themselves() {
    let mut sy = SecuredSwitchyard::start().await;
    sy.start_dispatcher().await;
    let pricing = switchyard_tests::operations_manifest(
        "pricing",
        &[(
            "quote",
            "callers = { plugins = [\"shop\"], tenants = [\"acme\"] }",
        )],
    );
    let pricing_secret = sy.register(pricing, TenantScope::All).await;
    let shop_secret = sy
        .register(
            switchyard_tests::operations_manifest("shop", &[]),
            TenantScope::All,
        )
        .await;
    let intruder_secret = sy
        .register(
            switchyard_tests::operations_manifest("intruder", &[]),
            only("acme"),
        )
        .await;
    let worker = sy
        .connect_plugin("pricing", pricing_secret.expose())
        .await
        .unwrap();
    answer_calls(&worker).await;
    let shop = sy
        .connect_plugin("shop", shop_secret.expose())
        .await
        .unwrap();
    let intruder = sy
        .connect_plugin("intruder", intruder_secret.expose())
        .await
        .unwrap();
    let mut observer = observer(&sy).await;
    let allowed = "switchyard.op.acme.pricing.quote.plugin.shop";

    // The granted call reaches the dispatchers, and is answered in the shop's own inbox.
    wait_for_probe(&shop, "shop", &mut observer, allowed, true).await;
    switchyard_tests::wait_for_operation(&sy.admin, "pricing", "quote").await;
    let answer = timeout(
        WAIT,
        shop.client
            .request(allowed, r#"{"sku":"a","quantity":1}"#.into()),
    )
    .await
    .expect("answered in time")
    .expect("answered");
    assert_eq!(answer.payload.as_ref(), br#"{"cents":42,"note":"raw"}"#);

    // Refused by the broker: a plugin not named, one posing as the shop, the shop for a tenant
    // the operation is not offered to or for another operation, and calls straight to the
    // workers, bypassing the dispatcher's checks (a plugin's own workers included).
    for (plugin, name, subject) in [
        (
            &intruder,
            "intruder",
            "switchyard.op.acme.pricing.quote.plugin.intruder",
        ),
        (&intruder, "intruder", allowed),
        (
            &intruder,
            "intruder",
            "switchyard.op.acme.pricing.quote.service.shop",
        ),
        (
            &intruder,
            "intruder",
            "switchyard.op.acme.pricing.quote.operator.admin",
        ),
        (
            &shop,
            "shop",
            "switchyard.op.globex.pricing.quote.plugin.shop",
        ),
        (
            &shop,
            "shop",
            "switchyard.op.acme.pricing.other.plugin.shop",
        ),
        (&shop, "shop", "switchyard.call.pricing"),
        (&worker, "pricing", "switchyard.call.pricing"),
    ] {
        assert_eq!(
            probe(plugin, name, &mut observer, subject, 1).await,
            Some(false),
            "{name} published to {subject}"
        );
        plugin
            .events
            .wait_for_violation(subject, WAIT)
            .await
            .unwrap_or_else(|_| panic!("{name} is told that {subject} is refused"));
    }
    // Nor may another plugin take the calls.
    let _ = intruder.client.subscribe("switchyard.call.pricing").await;
    round_trip(&intruder.client).await;
    intruder
        .events
        .wait_for_violation("switchyard.call.pricing", WAIT)
        .await
        .expect("subscribing to another plugin's calls is refused");

    // Revoked: the pricing plugin's approved manifest no longer names the shop. Its live
    // connection is replaced and may call no more.
    let mut registration = sy.registration("pricing").await;
    registration.manifest = switchyard_tests::operations_manifest("pricing", &[("quote", "")]);
    sy.update(&registration).await;
    wait_for_probe(&shop, "shop", &mut observer, allowed, false).await;
}

#[tokio::test]
async fn a_service_login_publishes_its_tenants_events_and_calls_what_allows_services() {
    let mut sy = SecuredSwitchyard::start().await;
    sy.start_dispatcher().await;
    let pricing = switchyard_tests::operations_manifest(
        "pricing",
        &[("quote", "callers = { services = true }"), ("internal", "")],
    );
    let pricing_secret = sy.register(pricing, TenantScope::All).await;
    let worker = sy
        .connect_plugin("pricing", pricing_secret.expose())
        .await
        .unwrap();
    answer_calls(&worker).await;
    let services = switchyard_control::auth::ServiceStore::open(
        &async_nats::jetstream::new(sy.admin.clone()),
        sy.namespace(),
    )
    .await
    .unwrap();
    let log = AuditLog::open(
        &async_nats::jetstream::new(sy.admin.clone()),
        sy.namespace(),
    )
    .await
    .unwrap();
    let auditor = Auditor::new(log.clone(), Actor::declared("test"));
    let shop = switchyard_schemas::ServiceName::new("shop").unwrap();
    let secret = services.add(&shop, only("acme"), &auditor).await.unwrap();

    assert!(
        sy.connect_service("shop", "wrong").await.is_err(),
        "a wrong secret is refused"
    );
    assert!(
        sy.connect_service("nobody", secret.expose()).await.is_err(),
        "an unknown service is refused"
    );
    let service = sy.connect_service("shop", secret.expose()).await.unwrap();
    let mut observer = observer(&sy).await;
    // Its own tenant's events: the marker every probe below is checked against.
    let marker = "switchyard.events.acme.probe.marker";
    let allowed = "switchyard.op.acme.pricing.quote.service.shop";
    assert_eq!(
        probe_with_marker(&service, marker, &mut observer, allowed, 0).await,
        Some(true)
    );
    switchyard_tests::wait_for_operation(&sy.admin, "pricing", "quote").await;
    let answer = timeout(
        WAIT,
        service
            .client
            .request(allowed, r#"{"sku":"a","quantity":1}"#.into()),
    )
    .await
    .expect("answered in time")
    .expect("answered");
    assert_eq!(answer.payload.as_ref(), br#"{"cents":42,"note":"raw"}"#);

    for subject in [
        "switchyard.op.acme.pricing.internal.service.shop",
        "switchyard.op.globex.pricing.quote.service.shop",
        "switchyard.op.acme.pricing.quote.service.other",
        "switchyard.op.acme.pricing.quote.plugin.shop",
        "switchyard.op.acme.pricing.quote.operator.shop",
        "switchyard.call.pricing",
        "switchyard.events.globex.order.created",
        "switchyard.deliver.pricing",
        "switchyard.control.hello.pricing",
        "$JS.API.STREAM.LIST",
    ] {
        assert_eq!(
            probe_with_marker(&service, marker, &mut observer, subject, 1).await,
            Some(false),
            "the service published to {subject}"
        );
        service
            .events
            .wait_for_violation(subject, WAIT)
            .await
            .unwrap_or_else(|_| panic!("the service is told that {subject} is refused"));
    }
    let _ = service.client.subscribe("switchyard.events.>").await;
    round_trip(&service.client).await;
    service
        .events
        .wait_for_violation("switchyard.events.>", WAIT)
        .await
        .expect("a service reads no events");

    // The pricing plugin no longer offers `quote` to services: the live connection is
    // replaced, and its calls stop reaching anyone.
    let mut registration = sy.registration("pricing").await;
    registration.manifest = switchyard_tests::operations_manifest("pricing", &[("quote", "")]);
    sy.update(&registration).await;
    wait_for_marked_probe(&service, marker, &mut observer, allowed, false).await;

    // Removed: recorded, its live connection closed, and no new one.
    let connected = service.events.count("connected");
    assert!(services.remove(&shop, &auditor).await.unwrap());
    wait_until(WAIT, || async { service.events.count("disconnected") > 0 })
        .await
        .expect("the removed service's connection is closed");
    assert!(sy.connect_service("shop", secret.expose()).await.is_err());
    assert_eq!(
        service.events.count("connected"),
        connected,
        "and it cannot come back"
    );
    let entries = log.list(&AuditFilter::default()).await.unwrap();
    let actions: Vec<_> = entries.iter().map(|e| e.entry.action).collect();
    assert!(
        actions.contains(&Action::ServiceAdded) && actions.contains(&Action::ServiceRemoved),
        "{actions:?}"
    );
}
