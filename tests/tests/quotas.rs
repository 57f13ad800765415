//! Per-plugin limits (`[limits]` in the manifest): what the control plane does with them, and
//! what nats-server does with them.
//!
//! The control plane writes a plugin's limits into the user JWT of each of its connections
//! (`subs`, `payload`), tells its workers, and replaces live connections when they change;
//! the tests below watch the auth callout's answers to see the JWTs it issues. nats-server
//! (2.15.1) does not apply a callout user's limits, though: the last test pins that down with
//! raw async-nats plugin clients and an administrator as the observer, and is what
//! `docs/security.md` (Limits) and `docs/manifest.md` (`[limits]`) rest on.

use std::time::Duration;

use async_nats::Subscriber;
use bytes::Bytes;
use data_encoding::BASE64URL_NOPAD;
use futures::StreamExt;
use serde_json::Value;
use switchyard_dispatcher::registry::TenantScope;
use switchyard_schemas::{Manifest, Tenant};
use switchyard_tests::{round_trip, wait_until, SecuredSwitchyard};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// A plugin that sends and receives `alerts`, with `limits` as its `[limits]` table.
fn manifest(plugin: &str, limits: &str) -> Manifest {
    Manifest::from_toml_str(&format!(
        r#"
        [plugin]
        id = "{plugin}"
        version = "1.0.0"
        core = "*"
        [channels]
        send = ["alerts"]
        receive = ["alerts"]
        [limits]
        {limits}
        "#
    ))
    .expect("valid manifest")
}

fn acme() -> TenantScope {
    TenantScope::only([Tenant::new("acme").unwrap()]).unwrap()
}

/// The claims of a JWT, read without checking its signature.
fn claims(token: &str) -> Value {
    let body = token.split('.').nth(1).expect("a JWT has three parts");
    let json = BASE64URL_NOPAD
        .decode(body.as_bytes())
        .expect("the claims are base64url");
    serde_json::from_slice(&json).expect("the claims are JSON")
}

/// The auth callout's answers, seen by the administrator: nats-server waits for them on its
/// own reply inbox in the plugins' account (`$SYS._INBOX.…`).
struct CalloutAnswers(Subscriber);

impl CalloutAnswers {
    async fn watch(sy: &SecuredSwitchyard) -> Self {
        let answers = sy.admin.subscribe("$SYS._INBOX.>").await.unwrap();
        round_trip(&sy.admin).await;
        Self(answers)
    }

    /// The `nats` claims of the next user JWT issued to a connection of `plugin`.
    async fn next_user(&mut self, plugin: &str) -> Value {
        let prefix = format!("plugin:{plugin}:");
        loop {
            let answer = timeout(WAIT, self.0.next())
                .await
                .unwrap_or_else(|_| panic!("the callout answers a connection of {plugin}"))
                .expect("the subscription is open");
            let Ok(token) = std::str::from_utf8(&answer.payload) else {
                continue;
            };
            let response = claims(token);
            let Some(user_jwt) = response["nats"]["jwt"].as_str() else {
                continue;
            };
            let user = claims(user_jwt);
            if user["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&prefix))
            {
                return user;
            }
        }
    }
}

#[tokio::test]
async fn the_limits_go_into_the_jwt_and_the_rights_a_worker_is_told() {
    let sy = SecuredSwitchyard::start().await;
    let secret = sy
        .register(
            manifest("limited", "max_subscriptions = 5\nmax_payload = \"2KiB\""),
            acme(),
        )
        .await;
    let mut answers = CalloutAnswers::watch(&sy).await;
    let plugin = sy
        .connect_plugin("limited", secret.expose())
        .await
        .expect("a registered plugin connects");

    let user = answers.next_user("limited").await;
    assert_eq!(user["nats"]["subs"], 5, "{user}");
    assert_eq!(user["nats"]["payload"], 2048, "{user}");
    assert_eq!(user["nats"]["data"], -1, "{user}");

    let rights = timeout(
        WAIT,
        plugin
            .client
            .request("switchyard.control.rights.limited", Bytes::new()),
    )
    .await
    .expect("the control plane answers in time")
    .expect("the control plane answers");
    let rights: Value = serde_json::from_slice(&rights.payload).unwrap();
    assert_eq!(
        rights["limits"],
        serde_json::json!({"max_subscriptions": 5, "max_payload": 2048}),
        "{rights}"
    );
}

#[tokio::test]
async fn changing_a_plugins_limits_replaces_its_live_connections() {
    let sy = SecuredSwitchyard::start().await;
    let secret = sy.register(manifest("tuned", ""), acme()).await;
    let mut answers = CalloutAnswers::watch(&sy).await;
    let plugin = sy.connect_plugin("tuned", secret.expose()).await.unwrap();
    let before = answers.next_user("tuned").await;
    assert_eq!(before["nats"]["subs"], 1000, "the default: {before}");
    assert_eq!(
        before["nats"]["payload"], 1_048_576,
        "the default: {before}"
    );

    // Nothing but the limits changes; the connection is replaced all the same.
    let mut registration = sy.registration("tuned").await;
    registration.manifest = manifest("tuned", "max_subscriptions = 5");
    sy.update(&registration).await;
    let after = answers.next_user("tuned").await;
    assert_eq!(after["nats"]["subs"], 5, "{after}");
    assert_eq!(after["nats"]["payload"], 1_048_576, "{after}");
    assert_ne!(
        before["name"], after["name"],
        "the connection's name carries another fingerprint"
    );
    wait_until(WAIT, || async { plugin.events.count("connected") >= 2 })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the plugin reconnects: {e}; it saw {:?}",
                plugin.events.all()
            )
        });
    assert!(plugin.events.count("disconnected") >= 1);
}

/// nats-server applies a user's `subs` and `payload` only when the connection presented that
/// user JWT itself. For a connection authorized through the auth callout it clears the
/// connection's JWT before applying limits (`processClientOrLeafCallout`, then
/// `applyAccountLimits`, which reads user limits from the connection's own JWT only), so such
/// a connection gets only its account's and the server's limits.
///
/// This test shows it: the JWT says 5 subscriptions and 2 KiB, and the server lets a sixth
/// subscription and a larger message through. When a nats-server upgrade makes it fail, the
/// limits have become enforced: update `docs/security.md` and `docs/manifest.md`, and turn
/// this into the test that the sixth subscription and the larger message are refused.
#[tokio::test]
async fn nats_server_does_not_apply_a_callout_users_limits() {
    let sy = SecuredSwitchyard::start().await;
    let secret = sy
        .register(
            manifest("flooder", "max_subscriptions = 5\nmax_payload = \"2KiB\""),
            acme(),
        )
        .await;
    let mut answers = CalloutAnswers::watch(&sy).await;
    let plugin = sy.connect_plugin("flooder", secret.expose()).await.unwrap();
    let user = answers.next_user("flooder").await;
    assert_eq!(
        (&user["nats"]["subs"], &user["nats"]["payload"]),
        (&Value::from(5), &Value::from(2048)),
        "the JWT carries the limits: {user}"
    );
    // The server told the client its own limit, not the user's.
    assert_eq!(plugin.client.server_info().max_payload, 1024 * 1024);

    // Six subscriptions, in the plugin's own inbox, where it may subscribe.
    let mut subscriptions = Vec::new();
    for n in 0..6 {
        let subject = format!("_SY_INBOX.switchyard.flooder.s{n}");
        subscriptions.push((
            subject.clone(),
            plugin.client.subscribe(subject).await.unwrap(),
        ));
    }
    round_trip(&plugin.client).await;
    for (subject, _) in &subscriptions {
        sy.admin
            .publish(subject.clone(), subject.clone().into())
            .await
            .unwrap();
    }
    sy.admin.flush().await.unwrap();
    for (subject, subscription) in &mut subscriptions {
        let message = timeout(WAIT, subscription.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{subject} receives; the plugin saw {:?}",
                    plugin.events.all()
                )
            })
            .expect("the subscription is open");
        assert_eq!(message.payload, subject.as_bytes());
    }

    // Exactly 2 KiB, then 2 KiB + 1, on its granted channel: both reach the observer.
    let mut observer = sy.admin.subscribe("switchyard.channel.>").await.unwrap();
    round_trip(&sy.admin).await;
    let channel = "switchyard.channel.acme.alerts.flooder";
    for size in [2048, 2049] {
        plugin
            .client
            .publish(channel, Bytes::from(vec![b'x'; size]))
            .await
            .unwrap();
        let seen = timeout(WAIT, observer.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{size} bytes arrive; the plugin saw {:?}",
                    plugin.events.all()
                )
            })
            .unwrap();
        assert_eq!((seen.subject.as_str(), seen.payload.len()), (channel, size));
    }

    // Nothing was refused, and the connection stayed up.
    round_trip(&plugin.client).await;
    let seen = plugin.events.all();
    assert_eq!(seen, ["connected"], "{seen:?}");
}
