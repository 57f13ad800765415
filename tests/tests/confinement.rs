//! No plugin gets past its rights: the probe's whole matrix against a real nats-server in
//! auth-callout mode, with the dispatcher running, plus the attacks that once worked, each
//! reproduced with raw async-nats clients and judged by a full-rights observer.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use switchyard_control::auth::probe::{self, ProbeOptions};
use switchyard_control::registry::TenantScope;
use switchyard_schemas::{Manifest, Tenant};
use switchyard_tests::{round_trip, wait_until, OrderCreated, SecuredSwitchyard};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn manifest(plugin: &str, send: &[&str], receive: &[&str]) -> Manifest {
    switchyard_tests::channel_manifest(plugin, send, receive)
}

fn acme() -> TenantScope {
    TenantScope::only([Tenant::new("acme").unwrap()]).unwrap()
}

#[tokio::test]
async fn the_probe_finds_no_way_past_the_rights() {
    let mut sy = SecuredSwitchyard::start().await;
    sy.start_dispatcher().await;
    let mut options = ProbeOptions::new(&sy.url());
    // One auth service, so its answers come in order: no grace needed.
    options.grace = Duration::ZERO;
    let report = probe::run(&sy.admin, &options)
        .await
        .expect("the probe runs");
    let failures: Vec<String> = report
        .failures()
        .map(|r| format!("{} (seen: {})", r.cell, r.seen))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cells failed:\n{}",
        report.failed(),
        report.results.len(),
        failures.join("\n")
    );
    assert!(report.passed() > 150, "{}", report.passed());
    // It cleans up after itself.
    assert!(sy.registry.list().await.unwrap().iter().all(|r| !r
        .manifest
        .plugin
        .id
        .as_str()
        .starts_with("probe-")));
}

/// The attack that once gave a plugin with no grants the whole account: send itself a
/// message whose reply subject is a JetStream API call, then answer it.
#[tokio::test]
async fn a_plugin_cannot_hand_itself_a_reply_right() {
    let sy = SecuredSwitchyard::start().await;
    let publisher = sy.bus.publisher("urn:test");
    publisher
        .publish(&Tenant::new("acme").unwrap(), &OrderCreated { n: 1 })
        .await
        .unwrap();
    let secret = sy.register(manifest("mallory", &[], &[]), acme()).await;
    let mallory = sy.connect_plugin("mallory", secret.expose()).await.unwrap();
    let mut purges = sy.admin.subscribe("$JS.API.STREAM.>").await.unwrap();
    round_trip(&sy.admin).await;

    let own = format!("{}.trick", mallory.client.new_inbox());
    let mut incoming = mallory.client.subscribe(own.clone()).await.unwrap();
    for target in [
        "$JS.API.STREAM.PURGE.SWITCHYARD_EVENTS",
        "$JS.API.STREAM.DELETE.SWITCHYARD_DLQ",
    ] {
        mallory
            .client
            .publish_with_reply(own.clone(), target, Bytes::new())
            .await
            .unwrap();
        let request = timeout(WAIT, incoming.next()).await.unwrap().unwrap();
        assert_eq!(request.reply.as_deref(), Some(target));
        mallory
            .client
            .publish(request.reply.unwrap(), "{}".into())
            .await
            .unwrap();
        mallory
            .events
            .wait_for_violation(target, WAIT)
            .await
            .unwrap_or_else(|_| panic!("the server refuses the answer onto {target}"));
    }
    round_trip(&mallory.client).await;
    round_trip(&sy.admin).await;
    assert!(
        futures::FutureExt::now_or_never(purges.next()).is_none(),
        "a JetStream API call got through"
    );
    let mut stream = sy
        .bus
        .jetstream()
        .get_stream("SWITCHYARD_EVENTS")
        .await
        .unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 1);
}

/// The auth service answers a rights request only into the asking plugin's own inbox, never
/// onto a subject the asker chose (another plugin's deliveries, a credential, a stream).
#[tokio::test]
async fn the_auth_service_answers_only_into_the_askers_inbox() {
    let sy = SecuredSwitchyard::start().await;
    let secret = sy.register(manifest("mallory", &[], &[]), acme()).await;
    let _victim = sy.register(manifest("victim", &[], &[]), acme()).await;
    let victim = switchyard_schemas::PluginId::new("victim").unwrap();
    let registered = sy.registration("victim").await;
    let credential = sy.credentials.get(&victim).await.unwrap();
    let mallory = sy.connect_plugin("mallory", secret.expose()).await.unwrap();
    let targets = [
        "switchyard.deliver.victim",
        "$KV.SWITCHYARD_CREDENTIALS.victim",
        "$KV.SWITCHYARD_REGISTRY.victim",
        "switchyard.events.acme.order.created",
        "_SY_INBOX.switchyard.victim.x",
    ];
    let mut observer = sy.admin.subscribe(">").await.unwrap();
    round_trip(&sy.admin).await;
    for target in targets {
        mallory
            .client
            .publish_with_reply("switchyard.control.rights.mallory", target, Bytes::new())
            .await
            .unwrap();
    }
    // The positive control, after them: an answer into its own inbox.
    let own = mallory.client.new_inbox();
    mallory
        .client
        .publish_with_reply(
            "switchyard.control.rights.mallory",
            own.clone(),
            Bytes::new(),
        )
        .await
        .unwrap();
    loop {
        let seen = timeout(WAIT, observer.next())
            .await
            .expect("the rights are answered into the plugin's own inbox")
            .unwrap();
        // The auth service reads the registry (every plugin's, for the operations they let
        // this one call): JetStream delivers the stored entries to its inbox under their own
        // subjects, acknowledgeable. Those are reads, not publishes onto the subject; a write
        // would change the entry, checked below.
        let delivered = seen
            .reply
            .as_ref()
            .is_some_and(|reply| reply.starts_with("$JS.ACK."));
        assert!(
            delivered || !targets.contains(&seen.subject.as_str()),
            "the auth service published onto {}",
            seen.subject
        );
        if seen.subject.as_str() == own {
            let rights: serde_json::Value = serde_json::from_slice(&seen.payload).unwrap();
            assert_eq!(rights["plugin"], "mallory");
            break;
        }
    }
    // The victim is untouched: its registration and its credential are as they were.
    assert_eq!(sy.registration("victim").await, registered);
    assert_eq!(sy.credentials.get(&victim).await.unwrap(), credential);
}

/// A receiver knows who sent a channel message from its subject, which the broker checked.
#[tokio::test]
async fn the_sender_of_a_channel_message_is_proven_by_the_broker() {
    let sy = SecuredSwitchyard::start().await;
    let alice = sy.register(manifest("alice", &["news"], &[]), acme()).await;
    let bob = sy.register(manifest("bob", &[], &["news"]), acme()).await;
    let alice = sy.connect_plugin("alice", alice.expose()).await.unwrap();
    let bob = sy.connect_plugin("bob", bob.expose()).await.unwrap();
    let mut news = bob
        .client
        .subscribe("switchyard.channel.acme.news.*")
        .await
        .unwrap();
    round_trip(&bob.client).await;
    // Posing as someone else is refused; as itself it arrives, naming it.
    for subject in [
        "switchyard.channel.acme.news.bob",
        "switchyard.channel.acme.news.admin",
        "switchyard.channel.acme.news.alice",
    ] {
        alice
            .client
            .publish(subject, subject.to_owned().into())
            .await
            .unwrap();
    }
    let first = timeout(WAIT, news.next()).await.unwrap().unwrap();
    assert_eq!(first.subject.as_str(), "switchyard.channel.acme.news.alice");
    // The server reports each violation asynchronously: wait for both.
    for refused in [
        "switchyard.channel.acme.news.bob",
        "switchyard.channel.acme.news.admin",
    ] {
        alice
            .events
            .wait_for_violation(refused, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{refused}: {e}"));
    }
    assert!(futures::FutureExt::now_or_never(news.next()).is_none());
}

/// With no auth service running, a revoked plugin loses its connection when its rights
/// expire (the JWT lifetime), and cannot come back.
#[tokio::test]
async fn revocation_fails_closed_without_an_auth_service() {
    let ttl = Duration::from_secs(3);
    let mut sy = SecuredSwitchyard::with_ttl(ttl).await;
    let secret = sy.register(manifest("revoked", &[], &[]), acme()).await;
    let plugin = sy.connect_plugin("revoked", secret.expose()).await.unwrap();
    sy.auth.take().expect("running").shutdown().await;
    let mut registration = sy.registration("revoked").await;
    registration.enabled = false;
    sy.update(&registration).await;
    let revoked_at = tokio::time::Instant::now();
    wait_until(ttl + WAIT, || async {
        plugin.events.count("User Authentication Expired") > 0
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "the server ends the connection when its rights expire: {e}; {:?}",
            plugin.events.all()
        )
    });
    assert!(
        revoked_at.elapsed() <= ttl + Duration::from_secs(2),
        "closed after {:?}",
        revoked_at.elapsed()
    );
    // Nobody answers the callout, so its reconnects are refused when the server's
    // authorization timeout passes. (async-nats reports a connection as connected before
    // the server has authorized it, so the refusal is what proves it.)
    wait_until(Duration::from_secs(20), || async {
        plugin.events.count("Authorization Violation") > 0
    })
    .await
    .unwrap_or_else(|e| panic!("the reconnect is refused: {e}; {:?}", plugin.events.all()));
}
