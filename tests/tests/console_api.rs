//! The management API from outside: raw HTTP and raw NATS clients against a real nats-server,
//! dispatcher and console. Every refusal is proven by an observer with full rights (the
//! registry and the audit log read directly), not by the refused caller.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use switchyard_control::audit::Action;
use switchyard_schemas::PluginId;
use switchyard_tests::{manifest, ConsoleFixture, HttpCall};

const DEADLINE: Duration = Duration::from_secs(20);

fn plugin(id: &str) -> PluginId {
    PluginId::new(id).unwrap()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn each_role_is_refused_what_it_may_not_do_and_nothing_changes() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    fx.install_pending("pending-one").await;
    let before = fx.sy.registry.get(&plugin("pending-one")).await.unwrap();

    let changes = [
        ("/api/v1/plugins/pending-one/approve", json!({})),
        ("/api/v1/plugins/pending-one/reject", json!({})),
        ("/api/v1/plugins/pending-one/enable", json!({})),
        ("/api/v1/plugins/pending-one/disable", json!({})),
        ("/api/v1/plugins/pending-one/rollback", json!({})),
        (
            "/api/v1/dead-letters/replay",
            json!({"plugin": "pending-one"}),
        ),
    ];
    let admin_only = [
        (
            "/api/v1/dead-letters/purge",
            json!({"plugin": "pending-one", "all": true}),
        ),
        (
            "/api/v1/operators",
            json!({"name": "mallory", "role": "admin"}),
        ),
    ];
    for (path, body) in changes.iter().chain(admin_only.iter()) {
        let (status, answer) = fx.post(&fx.viewer, path, body).await;
        assert_eq!(status, 403, "viewer {path}: {answer}");
        assert_eq!(code(&answer), "management.forbidden");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("role viewer may not"),
            "{answer}"
        );
    }
    for (path, body) in &admin_only {
        let (status, answer) = fx.post(&fx.operator, path, body).await;
        assert_eq!(status, 403, "operator {path}: {answer}");
    }
    for token in [&fx.viewer, &fx.operator] {
        let (status, _) = fx.get(token, "/api/v1/operators").await;
        assert_eq!(status, 403);
        let (status, _) = fx.delete(token, "/api/v1/operators/admin").await;
        assert_eq!(status, 403);
    }
    // No token, a made-up one, a real name with a wrong secret, another scheme.
    for call in [
        HttpCall::new("GET", "/api/v1/plugins"),
        HttpCall::new("GET", "/api/v1/plugins").bearer("admin.not-the-secret"),
        HttpCall::new("GET", "/api/v1/plugins").bearer("nobody.x"),
        HttpCall::new("GET", "/api/v1/plugins").bearer("no-dot-at-all"),
        HttpCall::new("GET", "/api/v1/plugins").header("authorization", "Basic YWRtaW46YWRtaW4="),
        HttpCall::new("POST", "/api/v1/plugins/pending-one/approve"),
    ] {
        let (status, answer) = fx.send(call.clone()).await;
        assert_eq!(status, 401, "{call:?}: {answer}");
        assert_eq!(code(&answer), "management.unauthenticated");
    }

    // The observer: nothing changed, no operator was added, and every refusal is recorded.
    let after = fx.sy.registry.get(&plugin("pending-one")).await.unwrap();
    assert_eq!(before, after, "a refused call changed the registration");
    let operators = fx.console.management().operators().list().await.unwrap();
    assert_eq!(operators.len(), 3, "a refused call added an operator");
    let audit = fx.audit().await;
    let refused: Vec<_> = audit
        .iter()
        .filter(|e| e.entry.action == Action::ApiRefused)
        .collect();
    let by_viewer = refused
        .iter()
        .filter(|e| e.entry.actor.name == "viewer (viewer) via http")
        .count();
    assert_eq!(
        by_viewer,
        changes.len() + admin_only.len() + 2,
        "{refused:#?}"
    );
    assert!(refused
        .iter()
        .any(|e| e.entry.actor.name.starts_with("anonymous via http")));
    assert!(
        !audit.iter().any(|e| matches!(
            e.entry.action,
            Action::Approved | Action::Rejected | Action::PluginEnabled | Action::OperatorAdded
        ) && e.entry.actor.name.contains("via http")),
        "a refused call left the record of a change"
    );

    // What a viewer may do, it may: and each read is recorded.
    for path in [
        "/api/v1/whoami",
        "/api/v1/overview",
        "/api/v1/plugins",
        "/api/v1/plugins/pending-one",
        "/api/v1/approvals",
        "/api/v1/dead-letters",
        "/api/v1/audit",
    ] {
        let (status, answer) = fx.get(&fx.viewer, path).await;
        assert_eq!(status, 200, "{path}: {answer}");
    }
    let (_, approvals) = fx.get(&fx.viewer, "/api/v1/approvals").await;
    assert_eq!(approvals["approvals"][0]["plugin"], "pending-one");
    assert_eq!(approvals["approvals"][0]["kind"], "install");
    let viewed = fx
        .audit()
        .await
        .iter()
        .filter(|e| e.entry.action == Action::ApiViewed)
        .count();
    assert!(viewed >= 8, "reads are recorded: {viewed}");
}

#[tokio::test]
async fn an_operator_approves_over_http_and_the_change_is_the_one_the_cli_makes() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    fx.install_pending("approved-one").await;
    let (status, answer) = fx
        .post(
            &fx.operator,
            "/api/v1/plugins/approved-one/approve",
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["changed"], true);
    assert_eq!(answer["state"], "enabled");
    assert!(answer["message"]
        .as_str()
        .unwrap()
        .starts_with("approved approved-one 1.0.0 (enabled"));
    assert!(!answer["rights"].as_array().unwrap().is_empty());

    let stored = fx
        .sy
        .registry
        .get(&plugin("approved-one"))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.is_active() && !stored.awaiting_approval);
    assert_eq!(
        stored.approval.as_ref().unwrap().by,
        "operator (operator) via http"
    );
    let audit = fx.audit().await;
    let approved = audit
        .iter()
        .find(|e| e.entry.action == Action::Approved)
        .expect("the approval is recorded");
    assert_eq!(approved.entry.actor.name, "operator (operator) via http");
    assert_eq!(approved.entry.target, "approved-one");

    // Again: nothing is waiting; not a failure, and not a change.
    let (status, answer) = fx
        .post(
            &fx.operator,
            "/api/v1/plugins/approved-one/approve",
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["changed"], false);
    // A plugin that is not there is a typed 404, recorded as a failed call.
    let (status, answer) = fx
        .post(&fx.operator, "/api/v1/plugins/ghost/enable", &json!({}))
        .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(code(&answer), "management.not-found");
    assert!(fx
        .audit()
        .await
        .iter()
        .any(|e| e.entry.action == Action::ApiFailed && e.entry.target == "plugins.enable ghost"));
    // Rolling back with no earlier version is a conflict that names the problem.
    let (status, answer) = fx
        .post(
            &fx.operator,
            "/api/v1/plugins/approved-one/rollback",
            &json!({}),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
}

#[tokio::test]
async fn a_dead_letter_is_replayed_over_http_and_delivered_again() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    let flaky = fx.failing_plugin("flaky").await;
    fx.sy.publish_orders("acme", 0..2).await;
    fx.sy.wait_for_dead_letters(2, DEADLINE).await;

    let (status, listed) = fx
        .get(
            &fx.viewer,
            "/api/v1/dead-letters?plugin=flaky&tenant=acme&limit=1",
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["dead_letters"].as_array().unwrap().len(), 1);
    assert_eq!(listed["truncated"], true);
    let sequence = listed["dead_letters"][0]["sequence"].as_u64().unwrap();
    let (status, shown) = fx
        .get(&fx.viewer, &format!("/api/v1/dead-letters/{sequence}"))
        .await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["code"], "order.invalid");
    assert_eq!(shown["original"]["form"], "copy");

    flaky.recover();
    let (status, replayed) = fx
        .post(
            &fx.operator,
            "/api/v1/dead-letters/replay",
            &json!({"plugin": "flaky", "sequences": [sequence]}),
        )
        .await;
    assert_eq!(status, 200, "{replayed}");
    assert_eq!(replayed["replayed"], 1);
    flaky
        .worker
        .wait_for(3, DEADLINE)
        .await
        .expect("the replay is delivered");
    let (_, left) = fx
        .get(&fx.viewer, "/api/v1/dead-letters?plugin=flaky")
        .await;
    assert_eq!(left["dead_letters"].as_array().unwrap().len(), 1);
    let (_, overview) = fx.get(&fx.viewer, "/api/v1/overview").await;
    assert_eq!(overview["dead_letters"], 1, "{overview}");

    // An admin purges the other; an operator could not.
    let (status, _) = fx
        .post(
            &fx.operator,
            "/api/v1/dead-letters/purge",
            &json!({"plugin": "flaky", "all": true}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, purged) = fx
        .post(
            &fx.admin,
            "/api/v1/dead-letters/purge",
            &json!({"plugin": "flaky", "all": true}),
        )
        .await;
    assert_eq!(status, 200, "{purged}");
    assert_eq!(purged["purged"], 1);
    let audit = fx.audit().await;
    for (action, actor) in [
        (Action::DlqReplayed, "operator (operator) via http"),
        (Action::DlqPurged, "admin (admin) via http"),
    ] {
        assert!(
            audit
                .iter()
                .any(|e| e.entry.action == action && e.entry.actor.name == actor),
            "{action} by {actor}"
        );
    }
}

#[tokio::test]
async fn operators_are_managed_by_admins_and_a_removed_token_stops_working() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    let (status, added) = fx
        .post(
            &fx.admin,
            "/api/v1/operators",
            &json!({"name": "bob", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 200, "{added}");
    let token = added["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("bob."));
    let (status, who) = fx.get(&token, "/api/v1/whoami").await;
    assert_eq!((status, who["role"].as_str()), (200, Some("viewer")));
    // Added again: a new token, and the old one stops working at once.
    let (_, again) = fx
        .post(
            &fx.admin,
            "/api/v1/operators",
            &json!({"name": "bob", "role": "operator"}),
        )
        .await;
    let (status, _) = fx.get(&token, "/api/v1/whoami").await;
    assert_eq!(status, 401);
    let token = again["token"].as_str().unwrap().to_owned();
    let (status, _) = fx.delete(&fx.admin, "/api/v1/operators/bob").await;
    assert_eq!(status, 200);
    let (status, _) = fx.get(&token, "/api/v1/whoami").await;
    assert_eq!(status, 401);
    let (status, answer) = fx.delete(&fx.admin, "/api/v1/operators/bob").await;
    assert_eq!(status, 404, "{answer}");
    // An admin does not demote or remove themselves here: the session would end, and the
    // deployment could be left without an admin.
    let (status, answer) = fx
        .post(
            &fx.admin,
            "/api/v1/operators",
            &json!({"name": "admin", "role": "viewer"}),
        )
        .await;
    assert_eq!(
        (status, code(&answer)),
        (409, "management.conflict"),
        "{answer}"
    );
    let (status, answer) = fx.delete(&fx.admin, "/api/v1/operators/admin").await;
    assert_eq!(
        (status, code(&answer)),
        (409, "management.conflict"),
        "{answer}"
    );
    let (status, who) = fx.get(&fx.admin, "/api/v1/whoami").await;
    assert_eq!((status, who["role"].as_str()), (200, Some("admin")));
    // The stored entry never holds the token.
    let audit = fx.audit().await;
    let text = serde_json::to_string(&audit.iter().map(|e| &e.entry).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains(token.split_once('.').unwrap().1));
    assert!(audit
        .iter()
        .any(|e| e.entry.action == Action::OperatorRemoved && e.entry.target == "operator:bob"));
}

#[tokio::test]
async fn hostile_requests_get_clear_errors_and_change_nothing() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    fx.install_pending("target").await;
    let before = fx.sy.registry.get(&plugin("target")).await.unwrap();
    let admin = fx.admin.clone();
    let cases = [
        (
            HttpCall::new("POST", "/api/v1/plugins/target/approve")
                .bearer(&admin)
                .header("content-type", "application/json")
                .header("origin", "http://evil.example"),
            403,
            "another site",
        ),
        (
            HttpCall::new("POST", "/api/v1/plugins/target/approve")
                .bearer(&admin)
                .json(&json!({"disabled": "yes"})),
            400,
            "bad body",
        ),
        (
            HttpCall::new("POST", "/api/v1/plugins/target/approve")
                .bearer(&admin)
                .json(&json!({"disabled": false, "tenants": ["all"]})),
            400,
            "unknown field",
        ),
        (
            HttpCall::new("POST", "/api/v1/plugins/Not%20An%20Id/approve").bearer(&admin),
            400,
            "bad plugin id",
        ),
        (
            HttpCall::new("POST", "/api/v1/plugins/target/explode").bearer(&admin),
            404,
            "no such plugin action",
        ),
        (
            HttpCall::new("GET", "/api/v1/dead-letters/-1").bearer(&admin),
            400,
            "bad dead-letter sequence",
        ),
        (
            HttpCall::new("GET", "/api/v1/dead-letters?limit=many").bearer(&admin),
            400,
            "limit",
        ),
        (
            HttpCall::new("GET", "/api/v1/audit?action=drop_tables").bearer(&admin),
            400,
            "unknown audit action",
        ),
        (
            HttpCall::new("GET", "/api/v1/nothing-here").bearer(&admin),
            404,
            "no such API route",
        ),
        (
            HttpCall::new("POST", "/api/v1/dead-letters/purge")
                .bearer(&admin)
                .json(&json!({"plugin": "target"})),
            400,
            "either `sequences` or `all",
        ),
    ];
    for (call, status, says) in cases {
        let (got, answer) = fx.send(call.clone()).await;
        assert_eq!(got, status, "{call:?}: {answer}");
        assert!(
            answer.to_string().contains(says),
            "{call:?}: {answer} should say {says}"
        );
    }
    for (path, says) in [
        ("/api/v1/dead-letters?tenant=%3Cimg%3E", "bad tenant filter"),
        ("/api/v1/dead-letters?code=*", "bad code filter"),
    ] {
        let (status, answer) = fx.get(&admin, path).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(answer.to_string().contains(says), "{answer}");
    }
    let (status, _) = fx
        .send(HttpCall::new("PUT", "/api/v1/plugins").bearer(&admin))
        .await;
    assert_eq!(status, 404);

    // Every one of them is in the audit log: refusals and failures alike, as the admin's.
    let audit = fx.audit().await;
    let by_admin = |action: Action, says: &str| {
        audit.iter().any(|e| {
            e.entry.action == action
                && e.entry.actor.name == "admin (admin) via http"
                && e.entry.detail.as_deref().unwrap_or_default().contains(says)
        })
    };
    assert!(
        by_admin(Action::ApiRefused, "another site"),
        "cross-site refusal not recorded"
    );
    for says in [
        "bad body",
        "unknown field",
        "bad plugin id",
        "no such plugin action",
        "bad dead-letter sequence",
        "unknown audit action",
        "no such API route: GET /api/v1/nothing-here",
        "no such API route: PUT /api/v1/plugins",
        "bad tenant filter",
    ] {
        assert!(
            by_admin(Action::ApiFailed, says),
            "failure `{says}` not recorded"
        );
    }

    // The limit plus one: a body over 64 KiB is refused before it is read.
    let big = json!({"disabled": false, "pad": "x".repeat(64 * 1024)});
    let (status, _) = fx
        .post(&admin, "/api/v1/plugins/target/approve", &big)
        .await;
    assert_eq!(status, 413);
    assert_eq!(before, fx.sy.registry.get(&plugin("target")).await.unwrap());

    // The console's page carries a policy that loads nothing from elsewhere.
    let (status, page) = fx.send(HttpCall::new("GET", "/")).await;
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("/assets/app.js"));
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_strict_and_the_live_view_streams() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    fx.install_pending("streamed").await;
    let (status, event) = fx.first_event(&fx.viewer, "/api/v1/live").await;
    assert_eq!(status, 200);
    assert!(event.starts_with("event: overview"), "{event}");
    let data: Value = serde_json::from_str(
        event
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(data["plugins"][0]["id"], "streamed");
    assert_eq!(data["approvals"][0]["plugin"], "streamed");
    let (status, _) = fx.first_event("viewer.wrong", "/api/v1/live").await;
    assert_eq!(status, 401);

    let (status, headers, who) = fx
        .send_for_headers(
            HttpCall::new("POST", "/api/v1/session").json(&json!({"token": fx.operator})),
        )
        .await;
    assert_eq!(status, 200, "{who}");
    let cookie = headers["set-cookie"].to_str().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert_eq!(who["name"], "operator");
    let (status, _) = fx
        .send(HttpCall::new("POST", "/api/v1/session").json(&json!({"token": "operator.nope"})))
        .await;
    assert_eq!(status, 401);
    let (status, who) = fx
        .send(
            HttpCall::new("GET", "/api/v1/whoami")
                .header("cookie", &format!("switchyard_session={}", fx.operator)),
        )
        .await;
    assert_eq!((status, who["role"].as_str()), (200, Some("operator")));
}

#[tokio::test]
async fn the_nats_service_answers_the_same_calls_only_into_inboxes() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    fx.install_pending("over-nats").await;
    let client = fx.sy.server.client().await;
    let prefix = fx.sy.namespace().prefix().to_owned();
    let request = |verb: &str, token: Option<&str>, body: Value| {
        let client = client.clone();
        let subject = format!("{prefix}.manage.{verb}");
        let token = token.map(str::to_owned);
        async move {
            let mut headers = async_nats::HeaderMap::new();
            if let Some(token) = token {
                headers.insert("Authorization", format!("Bearer {token}").as_str());
            }
            client
                .request_with_headers(subject, headers, serde_json::to_vec(&body).unwrap().into())
                .await
                .expect("the service answers")
        }
    };
    let answer = request("plugins.list", Some(&fx.viewer), json!({})).await;
    let listed: Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(listed["plugins"][0]["id"], "over-nats");

    let refused = request(
        "plugins.approve",
        Some(&fx.viewer),
        json!({"plugin": "over-nats"}),
    )
    .await;
    let headers = refused.headers.as_ref().unwrap();
    assert_eq!(
        headers.get("Nats-Service-Error-Code").unwrap().as_str(),
        "403"
    );
    let anonymous = request("plugins.list", None, json!({})).await;
    assert_eq!(
        anonymous
            .headers
            .as_ref()
            .unwrap()
            .get("Nats-Service-Error-Code")
            .unwrap()
            .as_str(),
        "401"
    );
    let approved = request(
        "plugins.approve",
        Some(&fx.operator),
        json!({"plugin": "over-nats"}),
    )
    .await;
    let approved: Value = serde_json::from_slice(&approved.payload).unwrap();
    assert_eq!(approved["changed"], true, "{approved}");
    let stored = fx
        .sy
        .registry
        .get(&plugin("over-nats"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.approval.unwrap().by, "operator (operator) via nats");

    // Discovery as any NATS tool does it.
    let ping = client
        .request("$SRV.PING.switchyard-management", "".into())
        .await
        .expect("the service answers a ping");
    let ping: Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], "switchyard-management");

    // A reply subject outside _INBOX. is never published to: the console holds a trusted
    // login, and the caller chose the subject.
    let mut trap = client
        .subscribe(format!("{prefix}.events.acme.trap"))
        .await
        .unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {}", fx.admin).as_str());
    client
        .publish_with_reply_and_headers(
            format!("{prefix}.manage.plugins.list"),
            format!("{prefix}.events.acme.trap"),
            headers,
            "{}".into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    // Answers that come after it show that it was handled.
    for _ in 0..3 {
        request("plugins.list", Some(&fx.viewer), json!({})).await;
    }
    let leaked = tokio::time::timeout(Duration::from_millis(500), trap.next()).await;
    assert!(
        leaked.is_err(),
        "the console published to a subject the caller chose"
    );
    let bad = request("plugins.show", Some(&fx.viewer), json!({"plugin": 7})).await;
    assert_eq!(
        bad.headers
            .as_ref()
            .unwrap()
            .get("Nats-Service-Error-Code")
            .unwrap()
            .as_str(),
        "400"
    );
}

#[tokio::test]
async fn trust_services_and_the_catalog_are_managed_by_admins_only() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    let pair = switchyard_control::package::PublisherKeyPair::generate();
    let key = pair.public_key().to_string();
    let trust = json!({"key": key, "name": "Acme builds"});
    let service = json!({"name": "billing", "tenants": ["acme"]});
    for token in [&fx.viewer, &fx.operator] {
        let (status, _) = fx.post(token, "/api/v1/trust", &trust).await;
        assert_eq!(status, 403);
        let (status, _) = fx.post(token, "/api/v1/services", &service).await;
        assert_eq!(status, 403);
        let (status, _) = fx.get(token, "/api/v1/trust").await;
        assert_eq!(status, 200, "a viewer reads what is trusted");
    }
    let (_, listed) = fx.get(&fx.viewer, "/api/v1/trust").await;
    assert_eq!(
        listed["keys"].as_array().unwrap().len(),
        0,
        "a refusal trusted the key"
    );

    let (status, added) = fx.post(&fx.admin, "/api/v1/trust", &trust).await;
    assert_eq!(status, 200, "{added}");
    let (_, listed) = fx.get(&fx.viewer, "/api/v1/trust").await;
    assert_eq!(listed["keys"][0]["key"], key.as_str());
    let (status, catalog) = fx.get(&fx.viewer, "/api/v1/catalog").await;
    assert_eq!(
        (status, catalog["packages"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (status, _) = fx.delete(&fx.admin, &format!("/api/v1/trust/{key}")).await;
    assert_eq!(status, 200);
    let (status, answer) = fx
        .post(
            &fx.admin,
            "/api/v1/trust",
            &json!({"key": "SEED-NOT-A-KEY", "name": "x"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");

    let (status, added) = fx.post(&fx.admin, "/api/v1/services", &service).await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["user"], "service:billing");
    let secret = added["secret"].as_str().unwrap().to_owned();
    let (_, services) = fx.get(&fx.viewer, "/api/v1/services").await;
    assert_eq!(services["services"][0]["name"], "billing");
    assert_eq!(services["services"][0]["tenants"][0], "acme");
    assert!(
        !services.to_string().contains(&secret),
        "a listing shows the secret"
    );
    let (status, _) = fx.delete(&fx.admin, "/api/v1/services/billing").await;
    assert_eq!(status, 200);
    let (status, _) = fx
        .post(&fx.admin, "/api/v1/services", &json!({"name": "billing"}))
        .await;
    assert_eq!(status, 400);

    let audit = fx.audit().await;
    for action in [
        Action::TrustAdded,
        Action::TrustRemoved,
        Action::ServiceAdded,
        Action::ServiceRemoved,
    ] {
        assert!(
            audit
                .iter()
                .any(|e| e.entry.action == action && e.entry.actor.name == "admin (admin) via http"),
            "{action}"
        );
    }
    let stored =
        serde_json::to_string(&audit.iter().map(|e| &e.entry).collect::<Vec<_>>()).unwrap();
    assert!(
        !stored.contains(&secret),
        "the audit log holds a service secret"
    );
}

#[tokio::test]
async fn only_an_admin_removes_a_plugin_and_its_settings_and_credential_go_with_it() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    fx.sy
        .register(manifest("leaving", "max_attempts = 1"))
        .await;
    let (status, answer) = fx.delete(&fx.operator, "/api/v1/plugins/leaving").await;
    assert_eq!(status, 403, "{answer}");
    assert!(fx
        .sy
        .registry
        .get(&plugin("leaving"))
        .await
        .unwrap()
        .is_some());
    let (status, answer) = fx
        .delete(&fx.admin, "/api/v1/plugins/leaving?cascade=maybe")
        .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = fx.delete(&fx.admin, "/api/v1/plugins/leaving").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["message"], "removed leaving");
    assert!(fx
        .sy
        .registry
        .get(&plugin("leaving"))
        .await
        .unwrap()
        .is_none());
    let (status, _) = fx.delete(&fx.admin, "/api/v1/plugins/leaving").await;
    assert_eq!(status, 404);
    assert!(fx
        .audit()
        .await
        .iter()
        .any(|e| e.entry.action == Action::PluginRemoved
            && e.entry.actor.name == "admin (admin) via http"));
}

#[tokio::test]
async fn an_admin_issues_and_revokes_a_plugins_secret_and_only_the_hash_is_kept() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    fx.sy.register(manifest("keyed", "max_attempts = 1")).await;
    let (status, _) = fx
        .post(
            &fx.operator,
            "/api/v1/plugins/keyed/credentials",
            &json!({}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = fx
        .post(&fx.admin, "/api/v1/plugins/ghost/credentials", &json!({}))
        .await;
    assert_eq!(status, 404);
    let (status, issued) = fx
        .post(&fx.admin, "/api/v1/plugins/keyed/credentials", &json!({}))
        .await;
    assert_eq!(status, 200, "{issued}");
    let secret = issued["secret"].as_str().unwrap().to_owned();
    let store =
        switchyard_control::auth::CredentialStore::open(fx.sy.bus.jetstream(), fx.sy.namespace())
            .await
            .unwrap();
    let stored = store.get(&plugin("keyed")).await.unwrap().unwrap();
    assert!(
        stored.accepts(&secret),
        "the secret issued is the one stored"
    );
    let (status, revoked) = fx
        .delete(&fx.admin, "/api/v1/plugins/keyed/credentials")
        .await;
    assert_eq!((status, revoked["revoked"].as_bool()), (200, Some(true)));
    assert!(store.get(&plugin("keyed")).await.unwrap().is_none());
    let audit = fx.audit().await;
    let text = serde_json::to_string(&audit.iter().map(|e| &e.entry).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains(&secret), "the audit log holds the secret");
    for action in [Action::CredentialsIssued, Action::CredentialsRevoked] {
        assert!(audit
            .iter()
            .any(|e| e.entry.action == action && e.entry.actor.name == "admin (admin) via http"));
    }
}

#[tokio::test]
async fn operators_change_settings_admins_set_secrets_and_no_secret_is_shown_or_recorded() {
    let fx = Box::pin(ConsoleFixture::start()).await;
    let manifest = switchyard_tests::settings_manifest("greeter");
    fx.sy.register(manifest).await;
    let change = json!({"set": {"greeting": "bonjour", "retries": 5}});
    let (status, _) = fx
        .post(&fx.viewer, "/api/v1/plugins/greeter/settings", &change)
        .await;
    assert_eq!(status, 403);
    let (status, changed) = fx
        .post(&fx.operator, "/api/v1/plugins/greeter/settings", &change)
        .await;
    assert_eq!(status, 200, "{changed}");
    assert!(changed["message"]
        .as_str()
        .unwrap()
        .contains("set greeting = \"bonjour\""));
    // A value the manifest refuses, and a name it does not declare, change nothing.
    for bad in [
        json!({"set": {"retries": "many"}}),
        json!({"set": {"colour": "red"}}),
        json!({"unset": ["colour"]}),
    ] {
        let (status, answer) = fx
            .post(&fx.operator, "/api/v1/plugins/greeter/settings", &bad)
            .await;
        assert!(status == 400 || status == 409, "{bad}: {status} {answer}");
    }

    let secret = "s3cret-value-never-shown";
    let put = |token: &str| {
        HttpCall::new("PUT", "/api/v1/plugins/greeter/secrets/token")
            .bearer(token)
            .json(&json!({"value": secret}))
    };
    let (status, _) = fx.send(put(&fx.operator)).await;
    assert_eq!(status, 403, "an operator sets a secret");
    let (status, answer) = fx.send(put(&fx.admin)).await;
    assert_eq!(status, 200, "{answer}");

    let (status, shown) = fx.get(&fx.viewer, "/api/v1/plugins/greeter/settings").await;
    assert_eq!(status, 200, "{shown}");
    let row = |name: &str| {
        shown["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(row("greeting")["value"], "bonjour");
    assert_eq!(row("retries")["value"], 5);
    assert_eq!(row("token")["source"], "set");
    assert!(row("token").get("value").is_none());
    let (_, detail) = fx.get(&fx.viewer, "/api/v1/plugins/greeter").await;
    let audit = fx.audit().await;
    let recorded =
        serde_json::to_string(&audit.iter().map(|e| &e.entry).collect::<Vec<_>>()).unwrap();
    for text in [shown.to_string(), detail.to_string(), recorded] {
        assert!(
            !text.contains(secret),
            "a secret is shown or recorded: {text}"
        );
    }
    assert!(audit
        .iter()
        .any(|e| e.entry.action == Action::SettingsChanged
            && e.entry.actor.name == "admin (admin) via http"
            && e.entry.detail.as_deref() == Some("set secret token")));
}

#[tokio::test]
async fn an_operator_calls_an_operation_and_the_call_is_recorded() {
    use switchyard_plugin_sdk::{Plugin, WorkerSettings};
    use switchyard_tests::{operations_manifest, wait_for_operation, Quote, QuoteRequest};

    let fx = Box::pin(ConsoleFixture::start()).await;
    let manifest = operations_manifest("pricing", &[("quote", "")]);
    fx.sy.register(manifest.clone()).await;
    let plugin = Plugin::new(manifest).operation("quote", |req: QuoteRequest, _ctx| async move {
        Ok(Quote {
            cents: 100 * u64::from(req.quantity),
            note: req.sku,
        })
    });
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(plugin.run_with(
        WorkerSettings::new(fx.sy.url()),
        stop.clone().cancelled_owned(),
    ));
    wait_for_operation(&fx.sy.server.client().await, "pricing", "quote").await;

    let call = json!({"tenant": "acme", "data": {"sku": "tea", "quantity": 3}});
    let (status, _) = fx
        .post(
            &fx.viewer,
            "/api/v1/plugins/pricing/operations/quote",
            &call,
        )
        .await;
    assert_eq!(status, 403);
    let (status, answer) = fx
        .post(
            &fx.operator,
            "/api/v1/plugins/pricing/operations/quote",
            &call,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["response"]["cents"], 300);
    // A request the operation cannot read is its typed error, not the API's.
    let (status, answer) = fx
        .post(
            &fx.operator,
            "/api/v1/plugins/pricing/operations/quote",
            &json!({"tenant": "acme", "data": {"sku": 7}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["error"]["code"], "call.bad-request", "{answer}");
    let (status, _) = fx
        .post(
            &fx.operator,
            "/api/v1/plugins/pricing/operations/quote",
            &json!({"tenant": "acme", "timeout_ms": 0}),
        )
        .await;
    assert_eq!(status, 400);
    let calls: Vec<_> = fx
        .audit()
        .await
        .into_iter()
        .filter(|e| e.entry.action == Action::OperationCalled)
        .collect();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(calls[0].entry.target, "pricing.quote");
    assert_eq!(calls[0].entry.actor.name, "operator (operator) via http");
    stop.cancel();
}
