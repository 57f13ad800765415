//! Per-plugin limits (`[limits]` in the manifest): what the control plane does with them, and
//! what nats-server does with them.
//!
//! The control plane writes a plugin's limits into the user JWT of each of its connections
//! (`subs`, `payload`), tells its workers, and replaces live connections when they change;
//! the first tests watch the auth callout's answers to see the JWTs it issues. nats-server
//! (2.15.1) does not apply a callout user's limits, though (shown with the auth service's
//! checks turned off), so the auth service checks the connections itself every second: the
//! other tests use raw async-nats plugin clients, never the SDK, and an administrator as the
//! observer. `docs/security.md` (Limits) and `docs/manifest.md` (`[limits]`) rest on them.

use std::time::Duration;

use async_nats::Subscriber;
use bytes::Bytes;
use data_encoding::BASE64URL_NOPAD;
use futures::StreamExt;
use serde_json::Value;
use switchyard_control::registry::TenantScope;
use switchyard_schemas::{Manifest, Tenant};
use switchyard_tests::{round_trip, wait_until, RawPlugin, Sealing, SecuredSwitchyard};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
/// How long to wait for one of several tries.
const RETRY: Duration = Duration::from_millis(200);
/// The cool-down of the tests that see it end: long enough to try a new login within it.
const COOL_DOWN: Duration = Duration::from_secs(5);
/// How long a plugin may take to come back after its cool-down: the cool-down, and
/// async-nats's pause between reconnects, which grows to 4 s.
const BACK: Duration = Duration::from_secs(20);

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
/// own reply inbox in the plugins' account (`$SYS._INBOX.…`). Readable only when they are not
/// sealed: start the tests that watch them with [`Sealing::Neither`].
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
    let sy = SecuredSwitchyard::start_with(Sealing::Neither).await;
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
        serde_json::json!({"max_subscriptions": 5, "max_payload": 2048,
            "max_connections": 8, "max_bytes_per_second": 8_388_608}),
        "{rights}"
    );
}

#[tokio::test]
async fn changing_a_plugins_limits_replaces_its_live_connections() {
    let sy = SecuredSwitchyard::start_with(Sealing::Neither).await;
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
/// This test shows it, with the auth service's own checks off (no system login): the JWT says
/// 5 subscriptions and 2 KiB, and the server lets a sixth subscription and a larger message
/// through. When a nats-server upgrade makes it fail, the limits have become enforced: update
/// `docs/security.md` and `docs/manifest.md`, and turn this into the test that the sixth
/// subscription and the larger message are refused.
#[tokio::test]
async fn nats_server_does_not_apply_a_callout_users_limits() {
    let mut sy = SecuredSwitchyard::start_with(Sealing::Neither).await;
    sy.restart_auth_without_system(None).await;
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

// ---- the auth service's own checks -----------------------------------------------------------

/// A subscription of a plugin connection, to show that the connection is alive without adding
/// a subscription to it (a round trip would, and could take it over its limit).
struct Listening {
    subject: String,
    subscription: Subscriber,
}

impl Listening {
    /// Subscribes `plugin` to `count` subjects in its own inbox.
    async fn subscribe(plugin: &RawPlugin, id: &str, count: usize) -> Vec<Self> {
        let mut listening = Vec::new();
        for n in 0..count {
            let subject = format!("_SY_INBOX.switchyard.{id}.q{n}.{}", rand_token());
            let subscription = plugin.client.subscribe(subject.clone()).await.unwrap();
            listening.push(Self {
                subject,
                subscription,
            });
        }
        listening
    }

    /// Waits until a message the administrator publishes arrives: the subscription is in place
    /// on the server and its connection is up. The administrator publishes again and again:
    /// nothing orders its publish after the plugin's subscription, which went on another
    /// connection.
    async fn receives(&mut self, sy: &SecuredSwitchyard) {
        let arrived = timeout(WAIT, async {
            loop {
                sy.admin
                    .publish(self.subject.clone(), self.subject.clone().into())
                    .await
                    .unwrap();
                sy.admin.flush().await.unwrap();
                if let Ok(message) = timeout(RETRY, self.subscription.next()).await {
                    return message;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} receives", self.subject))
        .expect("the subscription is open");
        assert_eq!(arrived.payload, self.subject.as_bytes());
    }
}

/// A token that keeps one connection's subjects apart from another's.
fn rand_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("t{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Waits until `plugin` has been disconnected.
async fn disconnected(plugin: &RawPlugin, what: &str) {
    wait_until(WAIT, || async { plugin.events.count("disconnected") > 0 })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{what} is disconnected: {e}; it saw {:?}",
                plugin.events.all()
            )
        });
}

/// Waits until `plugin`'s reconnects are refused: the cool-down.
async fn refused_on_reconnect(plugin: &RawPlugin, what: &str) {
    wait_until(WAIT, || async {
        plugin.events.count("Authorization Violation") > 0
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{what} is refused when it reconnects: {e}; it saw {:?}",
            plugin.events.all()
        )
    });
}

/// Asserts that a new login of `plugin` is refused. A refused login is an error at connect
/// with async-nats; should `connect` return first (it does when the callout never answers),
/// the client must then be told "Authorization Violation" and never get through.
async fn assert_login_refused(sy: &SecuredSwitchyard, plugin: &str, secret: &str) {
    match sy.connect_plugin(plugin, secret).await {
        Err(error) => assert!(
            error.to_string().to_lowercase().contains("authorization"),
            "{error}"
        ),
        Ok(late) => {
            refused_on_reconnect(&late, "a new login").await;
            assert_eq!(late.events.count("connected"), 0, "{:?}", late.events.all());
        }
    }
}

/// Waits until the server's log holds `text`: nats-server logs the reason the callout gives for
/// a refusal, which the client is not told.
async fn logged(sy: &SecuredSwitchyard, text: &str) {
    let log = sy.server().server().log_file();
    wait_until(WAIT, || async {
        std::fs::read_to_string(log).is_ok_and(|log| log.contains(text))
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the server logs `{text}`:\n{}",
            sy.server().server().log_tail()
        )
    });
}

#[tokio::test]
async fn a_connection_over_max_subscriptions_is_disconnected_and_its_plugin_cools_down() {
    let mut sy = SecuredSwitchyard::start().await;
    // A short cool-down, to see it end.
    let xkey = Some(sy.setup.xkey.clone());
    sy.restart_auth_configured(xkey, |config| {
        config.quota_cooldown = COOL_DOWN;
    })
    .await;
    let secret = sy
        .register(manifest("subs", "max_subscriptions = 3"), acme())
        .await;

    // Exactly at the limit: fine.
    let at_limit = sy.connect_plugin("subs", secret.expose()).await.unwrap();
    let mut kept = Listening::subscribe(&at_limit, "subs", 3).await;
    for listening in &mut kept {
        listening.receives(&sy).await;
    }

    // One over, on another connection of the same plugin: disconnected, and its reconnects
    // refused for the cool-down; so is a new login.
    let over = sy.connect_plugin("subs", secret.expose()).await.unwrap();
    // Kept: dropping them would unsubscribe.
    let _extra = Listening::subscribe(&over, "subs", 4).await;
    disconnected(&over, "the connection holding 4 subscriptions").await;
    refused_on_reconnect(&over, "the disconnected connection").await;
    assert_login_refused(&sy, "subs", secret.expose()).await;
    logged(
        &sy,
        "plugin `subs` exceeded a quota (4 subscriptions on one connection, over its \
         max_subscriptions of 3)",
    )
    .await;

    // The cool-down ends: it connects again (and, subscribing 4 again, goes again).
    wait_until(BACK, || async { over.events.count("connected") >= 2 })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "it reconnects after the cool-down: {e}; {:?}",
                over.events.all()
            )
        });

    // The connection at its limit was never touched, and still receives.
    assert_eq!(at_limit.events.all(), ["connected"]);
    kept[0].receives(&sy).await;
}

#[tokio::test]
async fn connections_beyond_max_connections_are_disconnected_then_refused() {
    let mut sy = SecuredSwitchyard::start().await;
    let xkey = Some(sy.setup.xkey.clone());
    sy.restart_auth_configured(xkey, |config| {
        config.quota_cooldown = COOL_DOWN;
    })
    .await;
    let secret = sy
        .register(manifest("pool", "max_connections = 3"), acme())
        .await;
    // Exactly at the limit: fine.
    let mut pool = Vec::new();
    for _ in 0..3 {
        let plugin = sy.connect_plugin("pool", secret.expose()).await.unwrap();
        round_trip(&plugin.client).await;
        pool.push(plugin);
    }

    // The operator lowers the limit (which leaves the rights, and so the connections, as they
    // are): the next check disconnects the newest, and its plugin cools down.
    let mut registration = sy.registration("pool").await;
    registration.manifest = manifest("pool", "max_connections = 2");
    sy.update(&registration).await;
    let newest = &pool[2];
    disconnected(newest, "the newest connection").await;
    refused_on_reconnect(newest, "the newest connection").await;
    logged(
        &sy,
        "plugin `pool` exceeded a quota (3 connections, over its max_connections of 2)",
    )
    .await;

    // After the cool-down, the callout counts: a login that would make a third connection is
    // refused, the reconnecting one and a new one alike.
    wait_until(BACK, || async {
        std::fs::read_to_string(sy.server().server().log_file()).is_ok_and(|log| {
            log.contains(
                "plugin `pool` would exceed a quota: 3 connections, over its max_connections of 2",
            )
        })
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the callout refuses a third connection:\n{}",
            sy.server().server().log_tail()
        )
    });
    assert_login_refused(&sy, "pool", secret.expose()).await;
    assert_eq!(
        newest.events.count("connected"),
        1,
        "{:?}",
        newest.events.all()
    );

    // The two oldest are untouched, and live.
    for plugin in &pool[..2] {
        round_trip(&plugin.client).await;
        assert_eq!(plugin.events.all(), ["connected"]);
    }
}

#[tokio::test]
async fn a_plugin_sending_over_max_bytes_per_second_is_disconnected_and_one_within_is_not() {
    let mut sy = SecuredSwitchyard::start().await;
    let xkey = Some(sy.setup.xkey.clone());
    sy.restart_auth_configured(xkey, |config| {
        config.quota_cooldown = COOL_DOWN;
    })
    .await;
    let tight = "max_subscriptions = 2\nmax_connections = 2\nmax_bytes_per_second = \"16KiB\"";
    let steady_secret = sy.register(manifest("steady", tight), acme()).await;
    let chatty_secret = sy.register(manifest("chatty", tight), acme()).await;

    // Within every limit: two connections of two subscriptions each, 4 KiB sent.
    let mut steady = Vec::new();
    for _ in 0..2 {
        let plugin = sy
            .connect_plugin("steady", steady_secret.expose())
            .await
            .unwrap();
        let mut listening = Listening::subscribe(&plugin, "steady", 2).await;
        for one in &mut listening {
            one.receives(&sy).await;
        }
        plugin
            .client
            .publish(
                "switchyard.channel.acme.alerts.steady",
                Bytes::from(vec![b's'; 4096]),
            )
            .await
            .unwrap();
        steady.push((plugin, listening));
    }

    // 256 KiB at once on its granted channel, 16 times its rate over any second.
    let chatty = sy
        .connect_plugin("chatty", chatty_secret.expose())
        .await
        .unwrap();
    for _ in 0..64 {
        chatty
            .client
            .publish(
                "switchyard.channel.acme.alerts.chatty",
                Bytes::from(vec![b'c'; 4096]),
            )
            .await
            .unwrap();
    }
    chatty.client.flush().await.unwrap();
    disconnected(&chatty, "the plugin sending 256 KiB at once").await;
    refused_on_reconnect(&chatty, "the plugin over its rate").await;
    assert_login_refused(&sy, "chatty", chatty_secret.expose()).await;
    logged(&sy, "over its max_bytes_per_second of 16384").await;
    // Its cool-down ends, and it comes back: checks ran all along.
    wait_until(BACK, || async { chatty.events.count("connected") >= 2 })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "it reconnects after the cool-down: {e}; {:?}",
                chatty.events.all()
            )
        });

    for (plugin, listening) in &mut steady {
        assert_eq!(plugin.events.all(), ["connected"]);
        listening[1].receives(&sy).await;
    }
}
