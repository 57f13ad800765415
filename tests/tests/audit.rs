//! The audit log against a real nats-server: the stream is append-only for everyone (a raw
//! client with every right cannot delete, purge or roll up an entry, nor take those settings
//! back), a retried append is stored once, filters, the audited registry operations, and a
//! start that never changes an existing audit stream.

use std::time::Duration;

use async_nats::jetstream::{self, stream::RetentionPolicy};
use switchyard_bus::{Bus, StreamSettings, Streams};
use switchyard_control::audit::{
    Action, Actor, AuditEntry, AuditError, AuditFilter, AuditLog, Auditor,
};
use switchyard_control::registry::{Registration, Registry, TenantScope};
use switchyard_dispatcher::{Dispatcher, DispatcherConfig};
use switchyard_schemas::{Namespace, PluginId};
use switchyard_tests::{manifest, TestServer};

const STREAM: &str = "SWITCHYARD_AUDIT";

async fn open(server: &TestServer) -> AuditLog {
    AuditLog::open(&server.jetstream().await, &Namespace::default())
        .await
        .expect("the audit log opens")
}

/// Asserts that the server refused a request with `refusal`.
fn refused<T: std::fmt::Debug, E: std::fmt::Debug>(result: Result<T, E>, refusal: &str) {
    match result {
        Ok(value) => panic!("expected `{refusal}`, got {value:?}"),
        Err(error) => {
            let error = format!("{error:?}");
            assert!(error.contains(refusal), "expected `{refusal}`: {error}");
        }
    }
}

/// How many messages the audit stream holds.
async fn stored(js: &jetstream::Context) -> u64 {
    let mut stream = js.get_stream(STREAM).await.unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test]
async fn provisioning_creates_an_append_only_audit_stream_kept_a_year() {
    let server = TestServer::start().await;
    let bus = Bus::from_client(server.client().await);
    bus.provision().await.unwrap();
    let mut stream = bus.jetstream().get_stream(STREAM).await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.subjects, ["switchyard.audit.>"]);
    assert_eq!(config.retention, RetentionPolicy::Limits);
    assert!(config.deny_delete, "deny_delete");
    assert!(config.deny_purge, "deny_purge");
    assert!(!config.allow_rollup, "no rollups");
    assert_eq!(config.max_age, Duration::from_secs(365 * 24 * 3600));
    assert_eq!(config.duplicate_window, Duration::from_secs(3600));
}

#[tokio::test]
async fn a_client_with_every_right_cannot_delete_purge_or_roll_up_an_entry() {
    let server = TestServer::start().await;
    let log = open(&server).await;
    let entry = AuditEntry::new(Actor::declared("ops"), Action::PluginRemoved, "billing")
        .detail("removed billing");
    let sequence = log.append(&entry).await.unwrap();

    // A plain client of the account: no permission limits at all.
    let js = server.jetstream().await;
    let stream = js.get_stream(STREAM).await.unwrap();
    let deleted = stream.delete_message(sequence).await;
    refused(deleted, "message delete not permitted");
    // Secure erase (overwrite, then delete), as a bare API request.
    let client = server.client().await;
    let answer = client
        .request(
            format!("$JS.API.STREAM.MSG.DELETE.{STREAM}"),
            format!(r#"{{"seq":{sequence}}}"#).into(),
        )
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(
        answer["error"]["description"], "message delete not permitted",
        "secure erase refused: {answer}"
    );
    refused(stream.purge().await, "stream purge not permitted");
    refused(
        stream.purge().filter("switchyard.audit.>").await,
        "stream purge not permitted",
    );
    refused(stream.purge().keep(0).await, "stream purge not permitted");

    // A rollup replaces everything on its subject (or the stream) with one message.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Rollup", "all");
    let rollup = js
        .publish_with_headers(
            "switchyard.audit.plugin_removed.billing",
            headers,
            "{}".into(),
        )
        .await
        .unwrap()
        .await;
    refused(rollup, "rollup not permitted");

    // Nor can the settings be taken back.
    let config = js
        .get_stream(STREAM)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    for (refusal, changed) in [
        ("can not cancel deny message deletes", {
            let mut c = config.clone();
            c.deny_delete = false;
            c
        }),
        ("can not cancel deny purge", {
            let mut c = config.clone();
            c.deny_purge = false;
            c
        }),
        ("roll-ups require the purge permission", {
            let mut c = config.clone();
            c.allow_rollup = true;
            c
        }),
    ] {
        refused(js.update_stream(changed).await, refusal);
    }

    let entries = log.list(&AuditFilter::default()).await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].sequence, sequence);
    assert_eq!(entries[0].entry, entry);
    assert_eq!(stored(&js).await, 1, "nothing removed, nothing added");
}

#[tokio::test]
async fn a_retried_append_is_stored_once() {
    let server = TestServer::start().await;
    let log = open(&server).await;
    let entry = AuditEntry::new(Actor::declared("ops"), Action::DlqPurged, "billing");
    let first = log.append(&entry).await.unwrap();
    let again = log.append(&entry).await.unwrap();
    assert_eq!(again, first, "the retry is acknowledged as the first");
    // Another log on another connection, the same entry: still once.
    let elsewhere = open(&server).await;
    assert_eq!(elsewhere.append(&entry).await.unwrap(), first);
    assert_eq!(stored(&server.jetstream().await).await, 1);

    let other = AuditEntry::new(Actor::declared("ops"), Action::DlqPurged, "billing");
    assert_eq!(log.append(&other).await.unwrap(), first + 1);
}

#[tokio::test]
async fn filters_narrow_by_actor_action_target_time_and_count() {
    let server = TestServer::start().await;
    let log = open(&server).await;
    let alice = Actor::new(
        Some("admin".into()),
        Some("alice".into()),
        Some("h1".into()),
        None,
    );
    let bob = Actor::new(
        Some("admin".into()),
        Some("bob".into()),
        Some("h2".into()),
        Some("release".into()),
    );
    let entries = [
        AuditEntry::new(alice.clone(), Action::PluginRegistered, "billing"),
        AuditEntry::new(bob.clone(), Action::PluginRegistered, "audit-log"),
        AuditEntry::new(alice.clone(), Action::PluginDisabled, "billing"),
        // A target that is not a subject token: stored under `_`, found by its full name.
        AuditEntry::new(bob.clone(), Action::TrustAdded, "key 1.a"),
        AuditEntry::new(alice.clone(), Action::TrustAdded, "key 2.b"),
    ];
    for entry in &entries {
        log.append(entry).await.unwrap();
    }
    let ids = |filter: AuditFilter| {
        let log = log.clone();
        async move {
            log.list(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|stored| stored.entry.id)
                .collect::<Vec<_>>()
        }
    };
    let id = |i: usize| entries[i].id.clone();

    assert_eq!(
        ids(AuditFilter::default()).await,
        (0..5).map(id).collect::<Vec<_>>(),
        "all, oldest first"
    );
    let billing = AuditFilter {
        target: Some("billing".into()),
        ..Default::default()
    };
    assert_eq!(ids(billing.clone()).await, [id(0), id(2)]);
    let registered = AuditFilter {
        action: Some(Action::PluginRegistered),
        ..Default::default()
    };
    assert_eq!(ids(registered).await, [id(0), id(1)]);
    let key = AuditFilter {
        target: Some("key 1.a".into()),
        ..Default::default()
    };
    assert_eq!(ids(key).await, [id(3)]);
    for (who, expected) in [
        ("alice", vec![id(0), id(2), id(4)]),
        ("bob@h2", vec![id(1), id(3)]),
        ("release", vec![id(1), id(3)]),
        ("admin", (0..5).map(id).collect()),
        ("admin via alice@h1", vec![id(0), id(2), id(4)]),
        ("carol", vec![]),
    ] {
        let filter = AuditFilter {
            actor: Some(who.into()),
            ..Default::default()
        };
        assert_eq!(ids(filter).await, expected, "actor {who}");
    }
    let limited = AuditFilter {
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(ids(limited).await, [id(0), id(1)]);
    let none = AuditFilter {
        action: Some(Action::RolledBack),
        ..Default::default()
    };
    assert!(ids(none).await.is_empty());

    // Times are the server's times of storage.
    let all = log.list(&AuditFilter::default()).await.unwrap();
    let (first, last) = (all[0].stored, all[4].stored);
    let window = |since, until| AuditFilter {
        since,
        until,
        ..Default::default()
    };
    assert_eq!(ids(window(Some(first), Some(last))).await.len(), 5);
    assert_eq!(ids(window(Some(last), None)).await.last(), Some(&id(4)));
    assert!(ids(window(Some(last + Duration::from_secs(1)), None))
        .await
        .is_empty());
    assert!(ids(window(None, Some(first - Duration::from_secs(1))))
        .await
        .is_empty());
    for stored in &all {
        let skew = (stored.stored - stored.entry.time).abs();
        assert!(skew < time::Duration::seconds(30), "{skew}");
    }
}

#[tokio::test]
async fn the_registrys_recorded_writes_say_who_what_and_before_and_after() {
    let server = TestServer::start().await;
    let js = server.jetstream().await;
    let registry = Registry::open(&js, &Namespace::default()).await.unwrap();
    let auditor = Auditor::new(open(&server).await, Actor::declared("ops"));
    let plugin = PluginId::new("billing").unwrap();

    let first = Registration::new(manifest("billing", ""), TenantScope::All);
    let recorded = registry
        .put_recorded(
            &first,
            Action::PluginRegistered,
            None,
            "registered billing",
            &auditor,
        )
        .await
        .unwrap();
    let mut disabled = first.clone();
    disabled.enabled = false;
    registry
        .put_recorded(
            &disabled,
            Action::PluginDisabled,
            Some(&first),
            "disabled billing",
            &auditor,
        )
        .await
        .unwrap();
    assert!(registry.unregister(&plugin, &auditor).await.unwrap());
    assert!(
        !registry.unregister(&plugin, &auditor).await.unwrap(),
        "nothing removed, nothing recorded"
    );

    let entries = auditor.log().list(&AuditFilter::default()).await.unwrap();
    let actions: Vec<Action> = entries.iter().map(|s| s.entry.action).collect();
    assert_eq!(
        actions,
        [
            Action::PluginRegistered,
            Action::PluginDisabled,
            Action::PluginRemoved
        ]
    );
    assert_eq!(entries[0].sequence, recorded.audit_sequence);
    for stored in &entries {
        assert_eq!(stored.entry.target, "billing");
        assert_eq!(stored.entry.actor.name, "ops");
    }
    let [registered, disabled, removed] = [0, 1, 2].map(|i| &entries[i].entry);
    assert!(registered.before.is_none());
    assert_eq!(registered.after.as_ref().unwrap()["version"], "1.0.0");
    assert_eq!(
        registered.detail.as_deref(),
        Some(format!("registered billing; revision {}", recorded.revision).as_str())
    );
    assert_eq!(disabled.before, registered.after);
    assert_eq!(disabled.after.as_ref().unwrap()["state"], "disabled");
    assert_eq!(removed.before, disabled.after);
    assert!(removed.after.is_none());
}

#[tokio::test]
async fn an_audit_stream_that_allows_deletes_refuses_changes_and_starts_and_is_left_alone() {
    let server = TestServer::start().await;
    let js = server.jetstream().await;
    js.create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["switchyard.audit.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let Err(AuditError::Stream { reason }) = AuditLog::open(&js, &Namespace::default()).await
    else {
        panic!("a deletable audit stream is refused");
    };
    assert!(
        reason.contains(STREAM)
            && reason.contains("allows deleting messages, purging")
            && reason.contains("streams provision"),
        "{reason}"
    );
    let Err(error) = Dispatcher::start(server.client().await, DispatcherConfig::default()).await
    else {
        panic!("the start is refused");
    };
    assert!(error.to_string().contains("append-only"), "{error}");
    let mut stream = js.get_stream(STREAM).await.unwrap();
    assert!(
        !stream.info().await.unwrap().config.deny_delete,
        "unchanged"
    );

    // The operator's provisioning makes it append-only; then it serves.
    Bus::from_client(server.client().await)
        .provision()
        .await
        .unwrap();
    assert!(stream.info().await.unwrap().config.deny_delete);
    open(&server).await;
}

#[tokio::test]
async fn a_start_keeps_the_audit_limits_an_operator_chose() {
    let server = TestServer::start().await;
    let defaults = Streams::defaults(&Namespace::default());
    let chosen = Streams {
        audit: StreamSettings {
            max_age: Duration::from_secs(3 * 365 * 24 * 3600),
            max_bytes: 64 * 1024 * 1024,
            ..defaults.audit.clone()
        },
        ..defaults
    };
    Bus::from_client(server.client().await)
        .with_streams(chosen)
        .provision()
        .await
        .unwrap();
    let dispatcher = Dispatcher::start(server.client().await, DispatcherConfig::default())
        .await
        .expect("the dispatcher starts");
    dispatcher.shutdown().await;
    open(&server).await;
    let js = server.jetstream().await;
    let mut stream = js.get_stream(STREAM).await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.max_age, Duration::from_secs(3 * 365 * 24 * 3600));
    assert_eq!(config.max_bytes, 64 * 1024 * 1024);
}
