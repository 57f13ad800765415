//! The plugin registry against a real nats-server: storing, reading, removing and listing
//! registrations, opening the bucket from several places at once, and watching it.

use std::time::Duration;

use async_nats::jetstream::stream::StorageType;
use futures::{Stream, StreamExt};
use switchyard_control::registry::{
    bucket_name, Registration, Registry, RegistryChange, RegistryError, RegistryOptions,
    TenantScope, HISTORY,
};
use switchyard_schemas::{Manifest, Namespace, PluginId, Tenant};
use switchyard_tests::TestServer;

/// How long a watch may take to show a change.
const DEADLINE: Duration = Duration::from_secs(10);

fn plugin(id: &str) -> PluginId {
    PluginId::new(id).unwrap()
}

fn tenants(names: &[&str]) -> TenantScope {
    TenantScope::only(names.iter().map(|name| Tenant::new(*name).unwrap())).unwrap()
}

/// A registration of plugin `id` in `version`, from a real manifest.
fn registration(id: &str, version: &str, scope: TenantScope) -> Registration {
    let manifest = Manifest::from_toml_str(&format!(
        r#"
        [plugin]
        id = "{id}"
        version = "{version}"
        core = "^0.1"

        [[subscriptions]]
        name = "orders"
        events = ["order.*", "invoice.>"]
        policy = {{ timeout = "2s", backoff = {{ fixed = ["1s", "1m"] }} }}

        [settings]
        retention_days = 90
        "#
    ))
    .unwrap();
    Registration {
        // What `put` stamps when no events stream exists yet: every event comes after it.
        start_sequence: Some(1),
        ..Registration::new(manifest, scope)
    }
}

async fn open(server: &TestServer) -> Registry {
    Registry::open(&server.jetstream().await, &Namespace::default())
        .await
        .unwrap()
}

/// The bucket under the registry, to write to it as someone bypassing the registry would.
async fn raw_bucket(server: &TestServer) -> async_nats::jetstream::kv::Store {
    server
        .jetstream()
        .await
        .get_key_value(bucket_name(&Namespace::default()))
        .await
        .unwrap()
}

/// The next change, failing the test if none comes within [`DEADLINE`].
async fn next_change(changes: &mut (impl Stream<Item = RegistryChange> + Unpin)) -> RegistryChange {
    tokio::time::timeout(DEADLINE, changes.next())
        .await
        .expect("a registry change within the deadline")
        .expect("the watch goes on")
}

fn put_of(change: &RegistryChange) -> (&str, String) {
    match change {
        RegistryChange::Put { registration, .. } => (
            registration.plugin_id().as_str(),
            registration.manifest.plugin.version.to_string(),
        ),
        other => panic!("expected a put, got {other:?}"),
    }
}

#[test]
fn registration_is_stored_as_json_with_an_rfc3339_time_and_reads_back_equal() {
    let manifest = Manifest::from_toml_str(include_str!("../manifests/audit-log.toml")).unwrap();
    let original = Registration::new(manifest, tenants(&["globex", "acme"]));
    let json: serde_json::Value = serde_json::to_value(&original).unwrap();
    assert_eq!(json["tenants"], serde_json::json!(["acme", "globex"]));
    assert_eq!(json["manifest"]["plugin"]["id"], "audit-log");
    let time = json["registered_at"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).is_ok(),
        "{time} is RFC 3339"
    );
    let read: Registration = serde_json::from_value(json).unwrap();
    assert_eq!(read, original);

    let all = Registration::new(original.manifest.clone(), TenantScope::All);
    assert_eq!(serde_json::to_value(&all).unwrap()["tenants"], "all");
}

#[test]
fn bucket_names_follow_the_stream_naming_rule() {
    assert_eq!(bucket_name(&Namespace::default()), "SWITCHYARD_REGISTRY");
    assert_eq!(
        bucket_name(&Namespace::new("my-app").unwrap()),
        "MY_APP_REGISTRY"
    );
}

#[tokio::test]
async fn put_get_list_and_remove_round_trip() {
    let server = TestServer::start().await;
    let registry = open(&server).await;

    let billing = registration("billing", "2.0.0", TenantScope::All);
    let audit = registration("audit-log", "1.2.0", tenants(&["acme"]));
    let first = registry.put(&billing).await.unwrap();
    let second = registry.put(&audit).await.unwrap();
    assert!(second > first, "revisions grow: {first} then {second}");

    assert_eq!(
        registry.get(&plugin("audit-log")).await.unwrap(),
        Some(audit.clone())
    );
    assert_eq!(registry.get(&plugin("nobody")).await.unwrap(), None);
    assert_eq!(
        registry.list().await.unwrap(),
        [audit.clone(), billing.clone()],
        "sorted by id"
    );

    assert!(registry.remove(&plugin("audit-log")).await.unwrap());
    assert_eq!(registry.get(&plugin("audit-log")).await.unwrap(), None);
    assert_eq!(registry.list().await.unwrap(), [billing]);
    assert!(
        !registry.remove(&plugin("audit-log")).await.unwrap(),
        "already removed"
    );
    assert!(!registry.remove(&plugin("never-registered")).await.unwrap());
}

#[tokio::test]
async fn putting_an_id_again_replaces_it_and_keeps_the_history() {
    let server = TestServer::start().await;
    let registry = open(&server).await;
    registry
        .put(&registration("audit-log", "1.2.0", TenantScope::All))
        .await
        .unwrap();
    let upgrade = registration("audit-log", "1.3.0", tenants(&["acme", "globex"]));
    registry.put(&upgrade).await.unwrap();

    assert_eq!(
        registry.get(&plugin("audit-log")).await.unwrap(),
        Some(upgrade)
    );
    assert_eq!(registry.list().await.unwrap().len(), 1);

    // The earlier revision is still there to roll back to.
    let bucket = raw_bucket(&server).await;
    let history: Vec<_> = bucket
        .history("audit-log")
        .await
        .unwrap()
        .map(|entry| entry.unwrap())
        .collect()
        .await;
    assert_eq!(history.len(), 2);
    let config = &bucket.stream.cached_info().config;
    assert_eq!(config.max_messages_per_subject, HISTORY);
    assert_eq!(config.storage, StorageType::File);
    assert_eq!(config.num_replicas, 1);
}

#[tokio::test]
async fn opening_again_and_concurrently_shares_one_bucket() {
    let server = TestServer::start().await;
    let (js_a, js_b) = (server.jetstream().await, server.jetstream().await);
    let namespace = Namespace::default();
    let (a, b) = tokio::join!(
        Registry::open(&js_a, &namespace),
        Registry::open(&js_b, &namespace)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.bucket(), b.bucket());

    let audit = registration("audit-log", "1.2.0", TenantScope::All);
    a.put(&audit).await.unwrap();
    assert_eq!(
        b.get(&plugin("audit-log")).await.unwrap(),
        Some(audit.clone())
    );

    let reopened = open(&server).await;
    assert_eq!(reopened.list().await.unwrap(), [audit]);
}

#[tokio::test]
async fn a_bucket_the_server_cannot_create_is_a_request_error() {
    let server = TestServer::start().await;
    // One server cannot keep three copies.
    let refused = Registry::open_with(
        &server.jetstream().await,
        &Namespace::default(),
        &RegistryOptions { replicas: 3 },
    )
    .await;
    assert!(
        matches!(&refused, Err(RegistryError::Request { bucket, .. }) if bucket == "SWITCHYARD_REGISTRY"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_empty_tenant_scope_is_never_stored() {
    let server = TestServer::start().await;
    let registry = open(&server).await;
    let nobody = registration("audit-log", "1.2.0", TenantScope::Only(Default::default()));
    assert!(matches!(
        registry.put(&nobody).await,
        Err(RegistryError::Encode { plugin: refused, .. }) if refused == plugin("audit-log")
    ));
    assert_eq!(registry.get(&plugin("audit-log")).await.unwrap(), None);
}

#[tokio::test]
async fn namespaces_have_separate_registries() {
    let server = TestServer::start().await;
    let js = server.jetstream().await;
    let staging = Registry::open(&js, &Namespace::new("staging").unwrap())
        .await
        .unwrap();
    assert_eq!(staging.bucket(), "STAGING_REGISTRY");
    staging
        .put(&registration("audit-log", "1.2.0", TenantScope::All))
        .await
        .unwrap();
    assert!(open(&server).await.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn watch_yields_current_entries_then_live_puts_and_removals() {
    let server = TestServer::start().await;
    let registry = open(&server).await;
    registry
        .put(&registration("audit-log", "1.2.0", TenantScope::All))
        .await
        .unwrap();
    registry
        .put(&registration("billing", "2.0.0", tenants(&["acme"])))
        .await
        .unwrap();
    // Replaced before the watch: only the current version is replayed.
    registry
        .put(&registration("audit-log", "1.3.0", TenantScope::All))
        .await
        .unwrap();

    let mut changes = registry.watch().await.unwrap();
    let mut replayed = vec![
        put_of(&next_change(&mut changes).await),
        put_of(&next_change(&mut changes).await),
    ]
    .into_iter()
    .map(|(id, version)| (id.to_owned(), version))
    .collect::<Vec<_>>();
    replayed.sort();
    assert_eq!(
        replayed,
        [
            ("audit-log".to_owned(), "1.3.0".to_owned()),
            ("billing".to_owned(), "2.0.0".to_owned())
        ]
    );

    let revision = registry
        .put(&registration("search", "0.1.0", TenantScope::All))
        .await
        .unwrap();
    match next_change(&mut changes).await {
        RegistryChange::Put {
            registration,
            revision: seen,
        } => {
            assert_eq!(registration.plugin_id().as_str(), "search");
            assert_eq!(seen, revision);
        }
        other => panic!("expected the put of `search`, got {other:?}"),
    }

    assert!(registry.remove(&plugin("billing")).await.unwrap());
    match next_change(&mut changes).await {
        RegistryChange::Removed {
            plugin: removed, ..
        } => assert_eq!(removed, plugin("billing")),
        other => panic!("expected the removal of `billing`, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_of_an_empty_bucket_yields_later_puts() {
    let server = TestServer::start().await;
    let registry = open(&server).await;
    let mut changes = registry.watch().await.unwrap();

    registry
        .put(&registration("audit-log", "1.2.0", TenantScope::All))
        .await
        .unwrap();
    assert_eq!(
        put_of(&next_change(&mut changes).await),
        ("audit-log", "1.2.0".to_owned())
    );
}

#[tokio::test]
async fn watch_replays_removals_still_in_the_history() {
    let server = TestServer::start().await;
    let registry = open(&server).await;
    registry
        .put(&registration("gone", "1.0.0", TenantScope::All))
        .await
        .unwrap();
    assert!(registry.remove(&plugin("gone")).await.unwrap());

    let mut changes = registry.watch().await.unwrap();
    assert!(matches!(
        next_change(&mut changes).await,
        RegistryChange::Removed { plugin: removed, .. } if removed == plugin("gone")
    ));
}

#[tokio::test]
async fn garbage_in_the_bucket_is_reported_and_never_ends_the_watch() {
    let server = TestServer::start().await;
    let registry = open(&server).await;
    let bucket = raw_bucket(&server).await;
    bucket.put("junk", "not json".into()).await.unwrap();

    // Before the watch: replayed as invalid.
    let mut changes = registry.watch().await.unwrap();
    assert!(matches!(
        next_change(&mut changes).await,
        RegistryChange::Invalid { key, reason } if key == "junk" && !reason.is_empty()
    ));

    // Live: a valid registration stored under another plugin's key is invalid too.
    let spoof = serde_json::to_vec(&registration("audit-log", "1.2.0", TenantScope::All)).unwrap();
    bucket.put("billing", spoof.into()).await.unwrap();
    match next_change(&mut changes).await {
        RegistryChange::Invalid { key, reason } => {
            assert_eq!(key, "billing");
            assert!(reason.contains("audit-log"), "{reason}");
        }
        other => panic!("expected an invalid entry, got {other:?}"),
    }

    // And the watch goes on.
    registry
        .put(&registration("search", "0.1.0", TenantScope::All))
        .await
        .unwrap();
    assert_eq!(
        put_of(&next_change(&mut changes).await),
        ("search", "0.1.0".to_owned())
    );

    // Reads name the bad entry; removing it repairs the registry.
    assert!(matches!(
        registry.get(&plugin("junk")).await,
        Err(RegistryError::Corrupt { key, .. }) if key == "junk"
    ));
    assert!(matches!(
        registry.list().await,
        Err(RegistryError::Corrupt { key, .. }) if key == "billing"
    ));
    assert!(registry.remove(&plugin("junk")).await.unwrap());
    assert!(registry.remove(&plugin("billing")).await.unwrap());
    let listed: Vec<_> = registry
        .list()
        .await
        .unwrap()
        .iter()
        .map(|registration| registration.plugin_id().to_string())
        .collect();
    assert_eq!(listed, ["search"]);
}

#[tokio::test]
async fn a_registration_is_stamped_with_the_next_event_sequence() {
    let sy = Box::pin(switchyard_tests::Switchyard::without_dispatcher()).await;
    sy.publish_orders("acme", 0..3).await;
    let unstamped = Registration::new(switchyard_tests::manifest("audit", ""), TenantScope::All);
    sy.registry.put(&unstamped).await.unwrap();
    let stored = sy.registry.get(&plugin("audit")).await.unwrap().unwrap();
    assert_eq!(stored.start_sequence, Some(4));
    // A stamp already there (disable, enable) is kept.
    sy.publish_orders("acme", 3..5).await;
    sy.registry.put(&stored).await.unwrap();
    let again = sy.registry.get(&plugin("audit")).await.unwrap().unwrap();
    assert_eq!(again.start_sequence, Some(4));
}

#[tokio::test]
async fn a_write_expecting_an_older_registry_is_refused_naming_the_change_that_came_first() {
    let server = TestServer::start().await;
    let registry = open(&server).await;
    registry
        .put(&registration("alpha", "1.0.0", TenantScope::All))
        .await
        .unwrap();
    let snapshot = registry.snapshot().await.unwrap();
    assert_eq!(snapshot.registrations.len(), 1);

    // Another operator's change lands between the read and the write.
    let other = open(&server).await;
    other
        .put(&registration("beta", "1.0.0", TenantScope::All))
        .await
        .unwrap();
    let stale = registry.expecting(snapshot.sequence);
    let refused = stale
        .put(&registration("gamma", "1.0.0", TenantScope::All))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, RegistryError::Conflict { changed, .. } if changed.contains("`beta`")),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("changed since it was read"),
        "{refused}"
    );
    assert!(registry.get(&plugin("gamma")).await.unwrap().is_none());
    assert!(matches!(
        stale.remove(&plugin("alpha")).await.unwrap_err(),
        RegistryError::Conflict { .. }
    ));
    assert!(registry.get(&plugin("alpha")).await.unwrap().is_some());

    // Against a fresh snapshot the writes go through, one after another.
    let fresh = registry.snapshot().await.unwrap();
    assert_eq!(fresh.registrations.len(), 2);
    let current = registry.expecting(fresh.sequence);
    current
        .put(&registration("gamma", "1.0.0", TenantScope::All))
        .await
        .unwrap();
    assert!(current.remove(&plugin("alpha")).await.unwrap());
    let names: Vec<String> = registry
        .list()
        .await
        .unwrap()
        .iter()
        .map(|r| r.plugin_id().to_string())
        .collect();
    assert_eq!(names, ["beta", "gamma"]);
}
