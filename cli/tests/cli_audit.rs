//! The audit log as an operator meets it: the built binary changes plugins, credentials and
//! dead letters against a real nats-server, each change leaves exactly one entry saying who
//! did what, before and after, `switchyard audit` lists and filters them, no secret ever
//! reaches the stream, and a change whose entry cannot be stored fails loudly without losing
//! the entry.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchyard_control::audit::sequence_ranges;
use switchyard_control::auth::CredentialStore;
use switchyard_control::registry::Registry;
use switchyard_schemas::delivery::{ErrorCode, Outcome};
use switchyard_schemas::{Namespace, PluginId};
use switchyard_tests::{
    failed, manifest, stderr, stdout, succeeded, Behaviour, Switchyard, TestConfig, TestServer,
    TestWorker,
};
use time::format_description::well_known::Rfc3339;

const DEADLINE: Duration = Duration::from_secs(20);

/// A setting value that stands for a secret in a manifest: it must never reach the log.
const SETTING_SECRET: &str = "sk-live-0123456789abcdef";

/// A server with two logins in one account: `admin` (the operator's) and `anyone`, whom
/// clients without a login (the harness's) become.
const LOGINS: &str = r#"
accounts {
  SY {
    jetstream: enabled
    users: [
      { user: admin, password: "admin-pw" }
      { user: anyone, password: "anyone-pw" }
    ]
  }
}
no_auth_user: anyone
"#;

/// Runs `switchyard <args>` against `url` as the OS user `alice`.
async fn switchyard(url: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .env_remove("SWITCHYARD_PREFIX")
        .env_remove("SWITCHYARD_NATS_CREDS")
        .env_remove("SWITCHYARD_ACTOR")
        .env_remove("RUST_LOG")
        .env_remove("LOGNAME")
        .env("USER", "alice")
        .env("SWITCHYARD_NATS_URL", url)
        .output()
        .await
        .expect("running switchyard")
}

fn json(output: &Output) -> Value {
    let text = succeeded(output);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{text}"))
}

/// The entries `switchyard audit --json <args>` lists.
async fn entries(url: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let listed = json(&switchyard(url, &all).await);
    listed["entries"].as_array().expect("a list").clone()
}

fn actions(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["action"].as_str().unwrap_or("?"))
        .collect()
}

/// A manifest for `audit-log` 1.2.0 with a secret in its settings, written to `dir`.
fn manifest_file(dir: &Path) -> PathBuf {
    manifest_of(dir, "audit-log", "1.2.0", r#"["order.*"]"#)
}

/// A manifest of `plugin` in `version` subscribing to `events` (a TOML list), with a secret in
/// its settings, written to `dir`.
fn manifest_of(dir: &Path, plugin: &str, version: &str, events: &str) -> PathBuf {
    let path = dir.join(format!("{plugin}-{version}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"
            [plugin]
            id = "{plugin}"
            version = "{version}"
            core = "*"

            [[subscriptions]]
            name = "orders"
            events = {events}

            [settings]
            api_key = "{SETTING_SECRET}"
            "#
        ),
    )
    .unwrap();
    path
}

/// Every byte the audit stream holds: each message's subject, headers and body.
async fn raw_stream(server: &TestServer) -> String {
    let js = server.jetstream().await;
    let mut stream = js.get_stream("SWITCHYARD_AUDIT").await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let mut raw = String::new();
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        raw.push_str(&message.subject);
        for (name, values) in message.headers.iter() {
            for value in values {
                raw.push_str(&format!("{name}: {value}\n"));
            }
        }
        raw.push_str(&String::from_utf8_lossy(&message.payload));
    }
    raw
}

/// The secret in `SWITCHYARD_PLUGIN_TOKEN=...` on standard output.
fn printed_secret(output: &Output) -> String {
    stdout(output)
        .lines()
        .find_map(|line| line.strip_prefix("SWITCHYARD_PLUGIN_TOKEN="))
        .unwrap_or_else(|| panic!("no secret printed:\n{}", stdout(output)))
        .to_owned()
}

#[tokio::test]
async fn every_plugin_change_leaves_one_entry_with_who_what_before_and_after_and_no_secret() {
    let server = TestServer::with_config(TestConfig::text(LOGINS)).await;
    let url = format!("nats://admin:admin-pw@127.0.0.1:{}", server.port());
    let url = url.as_str();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_file(dir.path());
    let path = path.to_str().unwrap();
    let out = dir.path().join("token");
    let out = out.to_str().unwrap();

    let run = |args: &'static [&'static str]| switchyard(url, args);
    let ok = |output: Output| succeeded(&output);
    ok(switchyard(
        url,
        &[
            "plugins",
            "add",
            path,
            "--approve",
            "--tenant",
            "acme",
            "--tenant",
            "globex",
        ],
    )
    .await);
    ok(switchyard(
        url,
        &[
            "plugins",
            "add",
            path,
            "--approve",
            "--all-tenants",
            "--actor",
            "release-bot",
        ],
    )
    .await);
    ok(run(&["plugins", "disable", "audit-log"]).await);
    let again = ok(run(&["plugins", "disable", "audit-log"]).await);
    assert_eq!(again.trim(), "audit-log is disabled already");
    ok(run(&["plugins", "enable", "audit-log"]).await);
    let first = printed_secret(&run(&["plugins", "credentials", "audit-log"]).await);
    ok(switchyard(url, &["plugins", "credentials", "audit-log", "--out", out]).await);
    let second = std::fs::read_to_string(out).unwrap().trim().to_owned();
    ok(run(&["plugins", "credentials", "audit-log", "--revoke"]).await);
    let third = printed_secret(&run(&["plugins", "credentials", "audit-log"]).await);
    ok(run(&["plugins", "remove", "audit-log"]).await);

    let listed = entries(url, &[]).await;
    assert_eq!(
        actions(&listed),
        [
            "plugin_registered",
            "plugin_replaced",
            "plugin_disabled",
            "plugin_enabled",
            "credentials_issued",
            "credentials_rotated",
            "credentials_revoked",
            "credentials_issued",
            "plugin_removed",
            "credentials_revoked",
        ],
        "one entry per change, none for a change that changed nothing:\n{listed:#?}"
    );
    let mut last_sequence = 0;
    for entry in &listed {
        assert_eq!(entry["target"], "audit-log", "{entry}");
        let actor = &entry["actor"];
        assert_eq!(actor["nats_user"], "admin", "{entry}");
        assert_eq!(actor["os_user"], "alice", "{entry}");
        let name = actor["name"].as_str().unwrap();
        if entry["action"] == "plugin_replaced" {
            assert_eq!(actor["declared"], "release-bot");
            assert!(name.starts_with("release-bot (admin via alice@"), "{name}");
        } else {
            assert!(actor["declared"].is_null(), "{entry}");
            assert!(name.starts_with("admin via alice@"), "{name}");
        }
        for time in ["stored", "time"] {
            let text = entry[time].as_str().unwrap_or_default();
            assert!(
                time::OffsetDateTime::parse(text, &Rfc3339).is_ok(),
                "{time}: {entry}"
            );
        }
        let sequence = entry["sequence"].as_u64().unwrap();
        assert!(sequence > last_sequence, "oldest first: {entry}");
        last_sequence = sequence;
        for field in ["id", "before", "after", "detail"] {
            assert!(entry.get(field).is_some(), "{field} in {entry}");
        }
    }

    let [registered, replaced, disabled, enabled, issued, rotated, revoked, reissued, removed, revoked_with] =
        std::array::from_fn(|i| &listed[i]);
    assert!(registered["before"].is_null());
    assert_eq!(registered["after"]["version"], "1.2.0");
    assert_eq!(
        registered["after"]["tenants"],
        serde_json::json!(["acme", "globex"])
    );
    assert_eq!(
        registered["after"]["settings"],
        serde_json::json!(["api_key"])
    );
    assert_eq!(replaced["before"], registered["after"]);
    assert_eq!(replaced["after"]["all_tenants"], true);
    assert!(replaced["after"]["tenants"].is_null());
    assert_eq!(disabled["before"]["enabled"], true);
    assert_eq!(disabled["after"]["enabled"], false);
    assert_eq!(enabled["before"], disabled["after"]);
    assert_eq!(enabled["after"]["enabled"], true);
    assert!(issued["before"].is_null());
    let first_id = &issued["after"]["credential_id"];
    assert!(first_id.is_string(), "{issued}");
    assert_eq!(rotated["before"]["credential_id"], *first_id);
    assert_ne!(rotated["after"]["credential_id"], *first_id);
    assert_eq!(revoked["before"], rotated["after"]);
    assert!(revoked["after"].is_null());
    assert!(reissued["before"].is_null(), "a revoked credential is gone");
    assert_eq!(removed["before"]["version"], "1.2.0");
    assert!(removed["after"].is_null());
    assert_eq!(revoked_with["before"], reissued["after"]);
    let why = revoked_with["detail"].as_str().unwrap();
    assert!(why.contains("with the plugin's removal"), "{why}");

    // No secret, no digest of one and no setting value in any byte of the stream.
    let raw = raw_stream(&server).await;
    assert!(raw.contains("credential_id"), "the stream is read");
    for secret in [&first, &second, &third] {
        assert_eq!(secret.len(), 43, "{secret}");
        assert!(
            !raw.contains(secret.as_str()),
            "a secret in the audit stream"
        );
    }
    assert!(!raw.contains("sha256"), "a digest in the audit stream");
    assert!(
        !raw.contains(SETTING_SECRET),
        "a setting value in the audit stream"
    );
    assert!(!raw.contains("admin-pw"), "a password in the audit stream");

    // Filters, and the table.
    let table = succeeded(&switchyard(url, &["audit", "--action", "plugin_disabled"]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "a header and one entry:\n{table}");
    for column in ["SEQ", "STORED", "ACTOR", "ACTION", "TARGET", "DETAIL"] {
        assert!(lines[0].contains(column), "{column} in {}", lines[0]);
    }
    for cell in [
        "admin via alice@",
        "plugin_disabled",
        "audit-log",
        "disabled audit-log",
    ] {
        assert!(lines[1].contains(cell), "{cell} in {}", lines[1]);
    }
    let by_bot = entries(url, &["--actor", "release-bot"]).await;
    assert_eq!(actions(&by_bot), ["plugin_replaced"]);
    assert_eq!(entries(url, &["--actor", "alice"]).await.len(), 10);
    assert!(entries(url, &["--actor", "bob"]).await.is_empty());
    let first_two = entries(url, &["--plugin", "audit-log", "--limit", "2"]).await;
    assert_eq!(
        actions(&first_two),
        ["plugin_registered", "plugin_replaced"]
    );
    let revocations = entries(url, &["--action", "credentials_revoked"]).await;
    assert_eq!(revocations.len(), 2);
    assert_eq!(entries(url, &["--since", "1h"]).await.len(), 10);
    assert!(entries(url, &["--until", "1h"]).await.is_empty());
    assert!(entries(url, &["--plugin", "billing"]).await.is_empty());
    let none = succeeded(&switchyard(url, &["audit", "--plugin", "billing"]).await);
    assert_eq!(none.trim(), "no audit entries match (in SWITCHYARD_AUDIT)");
    let stored = listed[4]["stored"].as_str().unwrap();
    let since = entries(url, &["--since", stored]).await;
    assert_eq!(since.first().map(|e| &e["id"]), Some(&listed[4]["id"]));
    let unknown = failed(&switchyard(url, &["audit", "--action", "plugin_exploded"]).await);
    assert!(unknown.contains("plugin_registered"), "{unknown}");
}

#[tokio::test]
async fn approvals_rejections_and_rollbacks_are_recorded() {
    let server = TestServer::start().await;
    let url = server.url();
    let url = url.as_str();
    let dir = tempfile::tempdir().unwrap();
    let v1 = manifest_of(dir.path(), "audit-log", "1.2.0", r#"["order.*"]"#);
    let v2 = manifest_of(
        dir.path(),
        "audit-log",
        "2.0.0",
        r#"["order.*", "invoice.*"]"#,
    );
    let other = manifest_of(dir.path(), "other", "1.0.0", r#"["order.*"]"#);
    let (v1, v2, other) = (
        v1.to_str().unwrap(),
        v2.to_str().unwrap(),
        other.to_str().unwrap(),
    );
    let all = "--all-tenants";
    for args in [
        &["plugins", "add", v1, all][..],
        &["plugins", "approve", "audit-log", "--actor", "carol"],
        // Asks for more (invoice.*): waits for approval.
        &["plugins", "add", v2, all],
        &["plugins", "reject", "audit-log"],
        &["plugins", "add", v2, all, "--approve"],
        &["plugins", "rollback", "audit-log"],
        &["plugins", "add", other, all],
        &["plugins", "reject", "other"],
    ] {
        succeeded(&switchyard(url, args).await);
    }
    let listed = entries(url, &[]).await;
    assert_eq!(
        actions(&listed),
        [
            "plugin_registered",
            "approved",
            "plugin_replaced",
            "rejected",
            "plugin_replaced",
            "rolled_back",
            "plugin_registered",
            "rejected",
        ],
        "{listed:#?}"
    );
    let [installed, approved, proposed, rejected, upgraded, rolled_back, _, removed] =
        std::array::from_fn(|i| &listed[i]);
    assert_eq!(installed["after"]["state"], "pending_approval");
    assert_eq!(approved["before"], installed["after"]);
    assert_eq!(approved["after"]["state"], "enabled");
    assert!(approved["after"]["approved_by"].is_string(), "{approved}");
    let name = approved["actor"]["name"].as_str().unwrap();
    assert!(name.starts_with("carol (alice@"), "{name}");
    assert_eq!(
        proposed["after"]["version"], "1.2.0",
        "the approved one runs"
    );
    assert_eq!(proposed["after"]["pending_upgrade"], "2.0.0");
    assert_eq!(rejected["before"], proposed["after"]);
    assert!(rejected["after"]["pending_upgrade"].is_null(), "{rejected}");
    assert_eq!(upgraded["after"]["version"], "2.0.0");
    assert_eq!(rolled_back["before"]["version"], "2.0.0");
    assert_eq!(rolled_back["after"]["version"], "1.2.0");
    assert_eq!(removed["target"], "other");
    assert_eq!(removed["before"]["state"], "pending_approval");
    assert!(removed["after"].is_null(), "{removed}");
    let detail = removed["detail"].as_str().unwrap();
    assert!(detail.contains("its installation is removed"), "{detail}");
}

/// A Switchyard whose plugin `a` fails every order while `failing` is set, with `n` orders
/// dead-lettered.
async fn with_dead_letters(n: u32) -> (Switchyard, TestWorker, Arc<AtomicBool>) {
    // Boxed: the fixture's start is a large future.
    let sy = Box::pin(Switchyard::start()).await;
    sy.register(manifest("a", "max_attempts = 1")).await;
    let failing = Arc::new(AtomicBool::new(true));
    let worker = TestWorker::start(&sy.url(), sy.namespace(), "a", {
        let failing = Arc::clone(&failing);
        move |_| {
            if failing.load(Ordering::SeqCst) {
                Behaviour::Reply(Outcome::Failed {
                    code: ErrorCode::new("order.invalid").unwrap(),
                    reason: "no lines".into(),
                })
            } else {
                Behaviour::Reply(Outcome::Done)
            }
        }
    })
    .await;
    sy.publish_orders("acme", 0..n).await;
    sy.wait_for_dead_letters(n as usize, DEADLINE).await;
    (sy, worker, failing)
}

#[tokio::test]
async fn dlq_replay_and_purge_record_the_plugin_and_the_dead_letters() {
    let (sy, _worker, failing) = with_dead_letters(2).await;
    let url = sy.url();
    let replayed: Vec<u64> = sy.dead_letters().await.iter().map(|d| d.sequence).collect();
    failing.store(false, Ordering::SeqCst);
    succeeded(&switchyard(&url, &["dlq", "replay", "--plugin", "a"]).await);

    failing.store(true, Ordering::SeqCst);
    sy.publish_orders("acme", 10..13).await;
    let letters = sy.wait_for_dead_letters(3, DEADLINE).await;
    let purged: Vec<u64> = letters.iter().map(|d| d.sequence).collect();
    let one = purged[1].to_string();
    succeeded(&switchyard(&url, &["dlq", "purge", "--plugin", "a", &one]).await);
    succeeded(&switchyard(&url, &["dlq", "purge", "--plugin", "a", "--all"]).await);
    // Nothing left: nothing done, nothing recorded.
    let nothing = succeeded(&switchyard(&url, &["dlq", "purge", "--plugin", "a", "--all"]).await);
    assert_eq!(nothing.trim(), "purged 0");

    let listed = entries(&url, &[]).await;
    assert_eq!(
        actions(&listed),
        ["dlq_replayed", "dlq_purged", "dlq_purged"],
        "{listed:#?}"
    );
    for entry in &listed {
        assert_eq!(entry["target"], "a");
        // A server without logins: no NATS user, the OS user and host.
        assert!(entry["actor"]["nats_user"].is_null(), "{entry}");
        let name = entry["actor"]["name"].as_str().unwrap();
        assert!(name.starts_with("alice@"), "{name}");
    }
    let replay = &listed[0];
    assert_eq!(
        replay["before"],
        serde_json::json!({ "dead_letters": sequence_ranges(&replayed), "count": 2 })
    );
    assert_eq!(replay["after"]["count"], 2);
    let replays = replay["after"]["event_sequences"].as_str().unwrap();
    assert!(!replays.is_empty(), "{replay}");
    let detail = replay["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("replayed 2 dead letters of a"),
        "{detail}"
    );
    assert_eq!(
        listed[1]["before"],
        serde_json::json!({ "dead_letters": one, "count": 1 })
    );
    assert_eq!(
        listed[2]["before"],
        serde_json::json!({
            "dead_letters": sequence_ranges(&[purged[0], purged[2]]),
            "count": 2
        })
    );
    assert!(listed[2]["after"].is_null());
}

#[tokio::test]
async fn a_change_whose_entry_cannot_be_stored_fails_loudly_and_keeps_the_entry() {
    let server = TestServer::start().await;
    let url = server.url();
    // An append-only audit stream that holds one entry and refuses more.
    server
        .jetstream()
        .await
        .create_stream(async_nats::jetstream::stream::Config {
            name: "SWITCHYARD_AUDIT".into(),
            subjects: vec!["switchyard.audit.>".into()],
            max_messages: 1,
            discard: async_nats::jetstream::stream::DiscardPolicy::New,
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = manifest_file(dir.path());
    succeeded(
        &switchyard(
            &url,
            &[
                "plugins",
                "add",
                path.to_str().unwrap(),
                "--all-tenants",
                "--approve",
            ],
        )
        .await,
    );

    let output = switchyard(&url, &["plugins", "disable", "audit-log"]).await;
    let error = failed(&output);
    assert!(
        error.contains("disabled audit-log, but its audit entry could not be stored")
            && error.contains("the change stands, unrecorded")
            && error.contains(r#""action":"plugin_disabled""#)
            && error.contains(r#""target":"audit-log""#),
        "{error}"
    );
    let js = server.jetstream().await;
    let plugin = PluginId::new("audit-log").unwrap();
    let registry = Registry::open(&js, &Namespace::default()).await.unwrap();
    let registration = registry.get(&plugin).await.unwrap().expect("registered");
    assert!(!registration.enabled, "the change stands");

    // A secret issued unrecorded still reaches its workers; the command fails all the same.
    let output = switchyard(&url, &["plugins", "credentials", "audit-log"]).await;
    let error = failed(&output);
    assert!(
        error.contains("issued a secret for audit-log, but its audit entry could not be stored"),
        "{error}"
    );
    let secret = printed_secret(&output);
    assert!(
        !error.contains(&secret),
        "the message does not show the secret"
    );
    let stored = CredentialStore::open(&js, &Namespace::default())
        .await
        .unwrap()
        .get(&plugin)
        .await
        .unwrap()
        .expect("issued");
    assert!(stored.accepts(&secret));
    assert!(
        stderr(&output).contains("credentials_issued"),
        "{}",
        stderr(&output)
    );
}
