//! The management API's deployment calls from outside: installing and upgrading plugins from
//! packages, publishing packages and events, the streams, explaining an event and reading
//! logs, over raw HTTP and raw NATS against a real nats-server, dispatcher and console. Every
//! refusal is proven by an observer with full rights (the registry, the package store and the
//! streams read directly).

use serde_json::{json, Value};
use switchyard_control::audit::Action;
use switchyard_control::package::{PackageStore, PublisherKeyPair};
use switchyard_control::registry::InstalledFrom;
use switchyard_schemas::PluginId;
use switchyard_tests::{package_bytes, ConsoleFixture, HttpCall};

fn plugin(id: &str) -> PluginId {
    PluginId::new(id).unwrap()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// Uploads `bytes` as `token`: the status and the answer.
async fn upload(fx: &ConsoleFixture, token: &str, bytes: Vec<u8>, query: &str) -> (u16, Value) {
    fx.send(
        HttpCall::new("POST", format!("/api/v1/packages{query}"))
            .bearer(token)
            .bytes(bytes),
    )
    .await
}

/// The objects of the package store, as an observer with full rights sees them.
async fn stored_packages(fx: &ConsoleFixture) -> Vec<String> {
    let store = PackageStore::open(fx.sy.bus.jetstream(), fx.sy.namespace())
        .await
        .unwrap();
    let trust = switchyard_control::package::TrustedKeys::none();
    let mut objects: Vec<String> = store
        .catalog(&trust)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.object)
        .collect();
    objects.sort();
    objects
}

#[tokio::test]
async fn an_operator_installs_and_upgrades_signed_packages_and_trust_is_set_aside_only_by_admins() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    let publisher = PublisherKeyPair::generate();
    let key = publisher.public_key().to_string();
    let (status, _) = fx
        .post(
            &fx.admin,
            "/api/v1/trust",
            &json!({"key": key, "name": "Acme builds"}),
        )
        .await;
    assert_eq!(status, 200);

    // Publishing: a viewer may not; bytes that are not a package are refused by name.
    let v1 = package_bytes("geo", "1.0.0", "", Some(&publisher));
    let (status, _) = upload(&fx, &fx.viewer, v1.clone(), "").await;
    assert_eq!(status, 403);
    assert!(stored_packages(&fx).await.is_empty(), "a refusal published");
    let (status, answer) = upload(&fx, &fx.operator, b"not a package".to_vec(), "").await;
    assert_eq!((status, code(&answer)), (400, "management.bad-request"));
    assert!(answer.to_string().contains("not a package"), "{answer}");
    let (status, published) = upload(&fx, &fx.operator, v1.clone(), "").await;
    assert_eq!(status, 200, "{published}");
    assert_eq!(published["object"], "geo/1.0.0");
    assert_eq!(published["outcome"], "new");
    // Another package as the same version: refused; replacing it takes an admin.
    let other_v1 = package_bytes("geo", "1.0.0", "# another build\n", Some(&publisher));
    let (status, answer) = upload(&fx, &fx.operator, other_v1.clone(), "").await;
    assert_eq!(
        (status, code(&answer)),
        (409, "management.conflict"),
        "{answer}"
    );
    let (status, _) = upload(&fx, &fx.operator, other_v1.clone(), "?replace=true").await;
    assert_eq!(status, 403, "an operator replaced a published package");
    let (status, again) = upload(&fx, &fx.operator, v1, "").await;
    assert_eq!(
        (status, again["outcome"].as_str()),
        (200, Some("unchanged"))
    );

    // Installing: a viewer may not; a new plugin needs tenants.
    let install = json!({"package": "geo@1.0.0", "tenants": ["acme"]});
    let (status, _) = fx.post(&fx.viewer, "/api/v1/plugins", &install).await;
    assert_eq!(status, 403);
    assert!(fx.sy.registry.get(&plugin("geo")).await.unwrap().is_none());
    let (status, answer) = fx
        .post(&fx.operator, "/api/v1/plugins", &json!({"package": "geo"}))
        .await;
    assert_eq!((status, code(&answer)), (400, "management.bad-request"));
    assert!(answer.to_string().contains("name the tenants"), "{answer}");
    let (status, answer) = fx
        .post(
            &fx.operator,
            "/api/v1/plugins",
            &json!({"package": "geo@9.9.9", "tenants": ["acme"]}),
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (404, "management.not-found"),
        "{answer}"
    );

    let (status, installed) = fx.post(&fx.operator, "/api/v1/plugins", &install).await;
    assert_eq!(status, 200, "{installed}");
    assert_eq!(installed["state"], "pending_approval");
    assert!(
        installed["rights"]
            .as_array()
            .is_some_and(|r| !r.is_empty()),
        "{installed}"
    );
    let stored = fx.sy.registry.get(&plugin("geo")).await.unwrap().unwrap();
    assert!(stored.awaiting_approval);
    let provenance = stored.provenance.as_ref().unwrap();
    assert_eq!(provenance.from, InstalledFrom::Package);
    assert_eq!(provenance.package.as_deref(), Some("geo/1.0.0"));
    assert_eq!(provenance.verdict.as_deref(), Some("trusted"));
    // The bytes of an installed version are not replaced, not even by an admin.
    let (status, answer) = upload(&fx, &fx.admin, other_v1, "?replace=true").await;
    assert_eq!(
        (status, code(&answer)),
        (409, "management.conflict"),
        "{answer}"
    );
    assert!(answer.to_string().contains("is installed"), "{answer}");
    let store = PackageStore::open(fx.sy.bus.jetstream(), fx.sy.namespace())
        .await
        .unwrap();
    let kept = store
        .get(&plugin("geo"), &"1.0.0".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.sha256(),
        stored.provenance.as_ref().unwrap().sha256.clone().unwrap()
    );

    // Installing the same package again changes nothing and writes no revision.
    let (status, again) = fx.post(&fx.operator, "/api/v1/plugins", &install).await;
    assert_eq!(
        (status, again["changed"].as_bool()),
        (200, Some(false)),
        "{again}"
    );
    let replaced = fx
        .audit()
        .await
        .iter()
        .filter(|e| e.entry.action == Action::PluginReplaced)
        .count();
    assert_eq!(replaced, 0, "a repeat wrote a revision");
    let (status, _) = fx
        .post(&fx.operator, "/api/v1/plugins/geo/approve", &json!({}))
        .await;
    assert_eq!(status, 200);
    // Rolling back to what is installed now would only write an empty revision.
    let current = fx.sy.registry.history(&plugin("geo")).await.unwrap();
    let latest = current.last().unwrap().revision;
    let (status, answer) = fx
        .post(
            &fx.operator,
            "/api/v1/plugins/geo/rollback",
            &json!({"to": latest}),
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (409, "management.conflict"),
        "{answer}"
    );
    assert!(
        answer.to_string().contains("nothing to roll back"),
        "{answer}"
    );

    // An upgrade that asks for more waits for approval; the approved version keeps running.
    let v2 = package_bytes(
        "geo",
        "2.0.0",
        "\n[[subscriptions]]\nname = \"refunds\"\nevents = [\"refund.*\"]\n",
        Some(&publisher),
    );
    let (status, _) = upload(&fx, &fx.operator, v2, "").await;
    assert_eq!(status, 200);
    let (status, answer) = fx
        .post(
            &fx.operator,
            "/api/v1/plugins/other/upgrade",
            &json!({"package": "geo@2.0.0"}),
        )
        .await;
    assert_eq!((status, code(&answer)), (400, "management.bad-request"));
    let (status, upgraded) = fx
        .post(
            &fx.operator,
            "/api/v1/plugins/geo/upgrade",
            &json!({"package": "geo@2.0.0"}),
        )
        .await;
    assert_eq!(status, 200, "{upgraded}");
    assert!(
        upgraded["message"]
            .as_str()
            .unwrap()
            .contains("waits for approval"),
        "{upgraded}"
    );
    let stored = fx.sy.registry.get(&plugin("geo")).await.unwrap().unwrap();
    assert_eq!(stored.manifest.plugin.version.to_string(), "1.0.0");
    assert_eq!(
        stored
            .pending_upgrade
            .as_ref()
            .map(|p| p.manifest.plugin.version.to_string()),
        Some("2.0.0".to_owned())
    );

    // An unsigned package: refused to an operator, and installed by an admin who allows it.
    let unsigned = package_bytes("maps", "1.0.0", "", None);
    let (status, _) = upload(&fx, &fx.operator, unsigned, "").await;
    assert_eq!(status, 200);
    let plain = json!({"package": "maps", "all_tenants": true});
    let (status, answer) = fx.post(&fx.operator, "/api/v1/plugins", &plain).await;
    assert_eq!(
        (status, code(&answer)),
        (409, "management.conflict"),
        "{answer}"
    );
    assert!(answer.to_string().contains("unsigned"), "{answer}");
    let allowed = json!({"package": "maps", "all_tenants": true, "allow_unsigned": true});
    let (status, _) = fx.post(&fx.operator, "/api/v1/plugins", &allowed).await;
    assert_eq!(status, 403, "an operator set the trust aside");
    assert!(fx.sy.registry.get(&plugin("maps")).await.unwrap().is_none());
    let (status, answer) = fx.post(&fx.admin, "/api/v1/plugins", &allowed).await;
    assert_eq!(status, 200, "{answer}");

    // A manifest alone is the development path: an admin's only.
    let manifest = "[plugin]\nid = \"dev-only\"\nversion = \"0.1.0\"\ncore = \"^0.1\"\n\n\
                    [[subscriptions]]\nname = \"all\"\nevents = [\"order.created\"]\n";
    let body = json!({"manifest": manifest, "all_tenants": true, "approve": true});
    let (status, _) = fx.post(&fx.operator, "/api/v1/plugins", &body).await;
    assert_eq!(status, 403);
    let (status, answer) = fx.post(&fx.admin, "/api/v1/plugins", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["state"], "enabled");
    // A manifest that does not fit beside the others is refused naming its line.
    let conflicting = "[plugin]\nid = \"clash\"\nversion = \"0.1.0\"\ncore = \"^0.1\"\n\n\
                       [[subscriptions]]\nname = \"all\"\nevents = [\"order.created\"]\n\n\
                       [dependencies]\nconflicts = [\"dev-only\"]\n";
    let (status, answer) = fx
        .post(
            &fx.admin,
            "/api/v1/plugins",
            &json!({"manifest": conflicting, "all_tenants": true}),
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (409, "management.conflict"),
        "{answer}"
    );
    assert!(
        answer.to_string().contains("clash (manifest):11:"),
        "{answer}"
    );
    assert!(fx
        .sy
        .registry
        .get(&plugin("clash"))
        .await
        .unwrap()
        .is_none());

    let audit = fx.audit().await;
    let by = |action: Action, actor: &str, target: &str| {
        audit.iter().any(|e| {
            e.entry.action == action && e.entry.actor.name == actor && e.entry.target == target
        })
    };
    assert!(by(
        Action::PackagePublished,
        "operator (operator) via http",
        "geo/1.0.0"
    ));
    assert!(by(
        Action::PluginRegistered,
        "operator (operator) via http",
        "geo"
    ));
    assert!(by(
        Action::PluginReplaced,
        "operator (operator) via http",
        "geo"
    ));
    assert!(by(
        Action::PluginRegistered,
        "admin (admin) via http",
        "maps"
    ));
    assert!(by(
        Action::ApiRefused,
        "viewer (viewer) via http",
        "plugins.install geo"
    ));
}

#[tokio::test]
async fn streams_events_explanations_and_logs_over_http_and_nats() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    let _worker = fx.failing_plugin("billing").await;

    // A browser saying the request comes from another site is refused without an Origin too.
    let (status, _) = fx
        .send(
            HttpCall::new("GET", "/api/v1/streams")
                .bearer(&fx.viewer)
                .header("sec-fetch-site", "cross-site"),
        )
        .await;
    assert_eq!(status, 403);
    let (status, streams) = fx.get(&fx.viewer, "/api/v1/streams").await;
    assert_eq!(status, 200, "{streams}");
    let names: Vec<&str> = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{streams}");
    let events_before = streams["streams"][0]["last_sequence"].as_u64().unwrap();

    // Publishing: an operator's; a viewer's refusal stores nothing.
    let event = json!({"tenant": "acme", "type": "order.created", "data": {"total": 0}});
    let (status, _) = fx.post(&fx.viewer, "/api/v1/events", &event).await;
    assert_eq!(status, 403);
    let (_, streams) = fx.get(&fx.viewer, "/api/v1/streams").await;
    assert_eq!(
        streams["streams"][0]["last_sequence"].as_u64(),
        Some(events_before),
        "a refused publish stored an event"
    );
    let (status, answer) = fx
        .post(
            &fx.operator,
            "/api/v1/events",
            &json!({"tenant": "acme", "type": "order..created"}),
        )
        .await;
    assert_eq!((status, code(&answer)), (400, "management.bad-request"));
    let (status, stored) = fx.post(&fx.operator, "/api/v1/events", &event).await;
    assert_eq!(status, 200, "{stored}");
    let id = stored["id"].as_str().unwrap().to_owned();
    let sequence = stored["sequence"].as_u64().unwrap();
    assert!(sequence > events_before);

    // Explaining it: the failing plugin dead-letters it, and the explanation says so.
    let path = format!("/api/v1/events/{id}/explain");
    switchyard_tests::wait_until(std::time::Duration::from_secs(20), || async {
        let (status, explained) = fx.get(&fx.viewer, &path).await;
        status == 200 && explained.to_string().contains("dead_lettered")
    })
    .await
    .expect("the explanation shows the dead letter");
    let (_, explained) = fx.get(&fx.viewer, &path).await;
    assert_eq!(explained["copies"][0]["sequence"].as_u64(), Some(sequence));
    assert_eq!(explained["copies"][0]["plugins"][0]["plugin"], "billing");
    let (status, answer) = fx
        .get(&fx.viewer, "/api/v1/events/no-such-event/explain")
        .await;
    assert_eq!((status, code(&answer)), (404, "management.not-found"));
    let (status, _) = fx
        .get(
            &fx.viewer,
            &format!("/api/v1/events/{id}/explain?since=yesterday"),
        )
        .await;
    assert_eq!(status, 400);

    // A replay's id is predictable: an event published with it first must not make the
    // stream drop the replay while the dead letter is deleted.
    let dead_letter = explained["copies"][0]["plugins"][0]["dead_letter"]
        .as_u64()
        .unwrap();
    let forged_id = format!("redrive:{sequence}:{dead_letter}");
    let (status, answer) = fx
        .post(
            &fx.operator,
            "/api/v1/events",
            &json!({"tenant": "acme", "type": "nothing.here", "id": forged_id}),
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (400, "management.bad-request"),
        "{answer}"
    );
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", forged_id.as_str());
    headers.insert("ce-id", "forged");
    let subject = fx.sy.namespace().event(
        &switchyard_schemas::Tenant::new("acme").unwrap(),
        &switchyard_schemas::EventType::new("nothing.here").unwrap(),
    );
    let raw = async_nats::jetstream::new(fx.sy.server.client().await);
    raw.publish_with_headers(subject, headers, "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let replay = json!({"plugin": "billing", "sequences": [dead_letter]});
    let (status, answer) = fx
        .post(&fx.operator, "/api/v1/dead-letters/replay", &replay)
        .await;
    assert_eq!(
        (status, code(&answer)),
        (409, "management.conflict"),
        "{answer}"
    );
    assert!(
        answer.to_string().contains("the dead letter is kept"),
        "{answer}"
    );
    let (status, _) = fx
        .get(&fx.viewer, &format!("/api/v1/dead-letters/{dead_letter}"))
        .await;
    assert_eq!(status, 200, "the dead letter was deleted without a replay");

    // Logs: no host ran a worker here; said, not failed. Bounds are checked.
    let (status, logs) = fx.get(&fx.viewer, "/api/v1/plugins/billing/logs").await;
    assert_eq!(status, 200, "{logs}");
    assert_eq!(logs["lines"].as_array().map(Vec::len), Some(0));
    let (status, _) = fx
        .get(&fx.viewer, "/api/v1/plugins/billing/logs?lines=1001")
        .await;
    assert_eq!(status, 400);

    // Provisioning: an admin's; small limits, applied to the stream.
    let limits = json!({"replicas": 1, "events_max_bytes": 64 * 1024 * 1024});
    let (status, _) = fx
        .post(&fx.operator, "/api/v1/streams/provision", &limits)
        .await;
    assert_eq!(status, 403);
    let (status, provisioned) = fx
        .post(&fx.admin, "/api/v1/streams/provision", &limits)
        .await;
    assert_eq!(status, 200, "{provisioned}");
    let (_, streams) = fx.get(&fx.viewer, "/api/v1/streams").await;
    assert_eq!(
        streams["streams"][0]["max_bytes"].as_i64(),
        Some(64 * 1024 * 1024)
    );
    for refused in [
        json!({"replicas": 9}),
        // Ages JetStream would wrap around into short ones, and byte limits too small for
        // the audit stream to record the change: refused, nothing changed.
        json!({"audit_max_age_secs": 36_028_797_019_136_768_u64}),
        json!({"dlq_max_age_secs": 3_153_600_001_u64}),
        json!({"audit_max_bytes": 1}),
    ] {
        let (status, answer) = fx
            .post(&fx.admin, "/api/v1/streams/provision", &refused)
            .await;
        assert_eq!(status, 400, "{refused}: {answer}");
    }
    let (_, streams) = fx.get(&fx.viewer, "/api/v1/streams").await;
    assert_eq!(
        streams["streams"][2]["max_bytes"],
        json!(
            switchyard_bus::Streams::defaults(fx.sy.namespace())
                .audit
                .max_bytes
        )
    );

    // The same calls over NATS, refusals included.
    let client = fx.sy.server.client().await;
    let prefix = fx.sy.namespace().prefix().to_owned();
    let nats = |verb: &str, token: &str, body: Vec<u8>| {
        let client = client.clone();
        let subject = format!("{prefix}.manage.{verb}");
        let token = token.to_owned();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Authorization", format!("Bearer {token}").as_str());
            let reply = client
                .request_with_headers(subject, headers, body.into())
                .await
                .expect("the service answers");
            let status = reply
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Service-Error-Code"))
                .map_or(200, |code| code.as_str().parse::<u16>().unwrap());
            (
                status,
                serde_json::from_slice::<Value>(&reply.payload).unwrap(),
            )
        }
    };
    let (status, info) = nats("streams.info", &fx.viewer, b"{}".to_vec()).await;
    assert_eq!(
        (status, info["streams"].as_array().map(Vec::len)),
        (200, Some(3))
    );
    let body = serde_json::to_vec(&json!({"event_id": id})).unwrap();
    let (status, explained) = nats("explain", &fx.viewer, body).await;
    assert_eq!(status, 200, "{explained}");
    let (status, _) = nats(
        "events.publish",
        &fx.viewer,
        serde_json::to_vec(&event).unwrap(),
    )
    .await;
    assert_eq!(status, 403);
    let package = package_bytes("over-nats", "1.0.0", "", None);
    let (status, _) = nats("packages.publish", &fx.viewer, package.clone()).await;
    assert_eq!(status, 403);
    let (status, published) = nats("packages.publish", &fx.operator, package).await;
    assert_eq!(status, 200, "{published}");
    let install = json!({"package": "over-nats", "all_tenants": true, "allow_unsigned": true});
    let (status, _) = nats(
        "plugins.install",
        &fx.operator,
        serde_json::to_vec(&install).unwrap(),
    )
    .await;
    assert_eq!(status, 403, "an operator set the trust aside over NATS");
    let (status, installed) = nats(
        "plugins.install",
        &fx.admin,
        serde_json::to_vec(&install).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{installed}");
    assert!(fx
        .sy
        .registry
        .get(&plugin("over-nats"))
        .await
        .unwrap()
        .is_some());

    let audit = fx.audit().await;
    assert!(audit
        .iter()
        .any(|e| e.entry.action == Action::EventPublished
            && e.entry.actor.name == "operator (operator) via http"
            && e.entry.detail.as_deref().is_some_and(|d| d.contains(&id))));
    assert!(audit
        .iter()
        .any(|e| e.entry.action == Action::StreamsProvisioned
            && e.entry.actor.name == "admin (admin) via http"));
    assert!(audit
        .iter()
        .any(|e| e.entry.action == Action::PackagePublished
            && e.entry.actor.name == "operator (operator) via nats"));
}
