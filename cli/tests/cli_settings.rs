//! Settings as an operator meets them with the built binary against a real nats-server:
//! values checked against what the manifest declares (all or nothing), secrets read from a
//! file and never printed — not by `settings show`, not in the audit log, not in the plain
//! settings' bucket — required settings holding back enabling, and an upgrade whose
//! declarations no longer admit what was set refused by name.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use switchyard_tests::{failed, run_switchyard, stdout, succeeded, TestServer};
use tempfile::TempDir;

const SECRET: &str = "pa55-w0rd-never-printed";

async fn switchyard(server: &TestServer, args: &[&str]) -> Output {
    run_switchyard(env!("CARGO_BIN_EXE_switchyard"), Some(&server.url()), args).await
}

/// A manifest of `mailer` at `version` declaring `retries` as an integer at most `max`, a
/// `mode` of two choices and a required secret `api_key`.
fn manifest(dir: &Path, version: &str, max: u32) -> PathBuf {
    let path = dir.join(format!("mailer-{version}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"[plugin]
id = "mailer"
version = "{version}"
core = "*"

[[subscriptions]]
name = "orders"
events = ["order.*"]

[settings]
retries = 3

[settings_schema.retries]
type = "integer"
min = 0
max = {max}

[settings_schema.mode]
type = "string"
choices = ["fast", "safe"]

[settings_schema.api_key]
type = "string"
secret = true
required = true
"#
        ),
    )
    .unwrap();
    path
}

fn json(output: &Output) -> Value {
    let text = succeeded(output);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// `settings show --json`'s row for `name`.
fn row<'a>(shown: &'a Value, name: &str) -> &'a Value {
    shown["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["name"] == name)
        .unwrap_or_else(|| panic!("no row {name} in {shown}"))
}

/// Every value of a key-value bucket's stream, as text.
async fn bucket_bytes(server: &TestServer, bucket: &str) -> String {
    let js = server.jetstream().await;
    let mut stream = js.get_stream(format!("KV_{bucket}")).await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let mut raw = String::new();
    for sequence in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            raw.push_str(&String::from_utf8_lossy(&message.payload));
        }
    }
    raw
}

#[tokio::test]
async fn settings_are_checked_secrets_kept_apart_and_required_ones_hold_back_enabling() {
    let server = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    let v1 = manifest(dir.path(), "1.0.0", 10);
    let path = v1.to_str().unwrap();

    // Approving at once is refused: the required secret has no value. Nothing is written.
    let error = failed(
        &switchyard(
            &server,
            &["plugins", "add", path, "--all-tenants", "--approve"],
        )
        .await,
    );
    assert!(error.contains("api_key"), "{error}");
    assert!(error.contains("set-secret"), "{error}");
    let listed = stdout(&switchyard(&server, &["plugins", "list"]).await);
    assert!(!listed.contains("mailer"), "{listed}");

    succeeded(&switchyard(&server, &["plugins", "add", path, "--all-tenants"]).await);
    let error = failed(&switchyard(&server, &["plugins", "approve", "mailer"]).await);
    assert!(error.contains("api_key"), "{error}");

    // Every refused value is named, and none of the batch is set.
    let error = failed(
        &switchyard(
            &server,
            &[
                "settings",
                "set",
                "mailer",
                "retries=11",
                "mode=slow",
                "nope=1",
                "api_key=x",
            ],
        )
        .await,
    );
    for expected in [
        "`retries`: 11 is out of range",
        "`mode`: \"slow\" is not one of",
        "no setting `nope`",
        "`api_key` is a secret",
    ] {
        assert!(error.contains(expected), "{expected} in:\n{error}");
    }
    let error = failed(
        &switchyard(
            &server,
            &["settings", "set", "mailer", "retries=2", "mode=slow"],
        )
        .await,
    );
    assert!(error.contains("mode"), "{error}");
    let shown = json(&switchyard(&server, &["settings", "show", "mailer", "--json"]).await);
    assert_eq!(row(&shown, "retries")["source"], "default", "{shown}");
    assert_eq!(row(&shown, "retries")["value"], 3, "{shown}");
    assert_eq!(shown["missing_required"], serde_json::json!(["api_key"]));

    succeeded(
        &switchyard(
            &server,
            &["settings", "set", "mailer", "retries=5", "mode=safe"],
        )
        .await,
    );
    let secret_file = dir.path().join("api_key");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let said = succeeded(
        &switchyard(
            &server,
            &[
                "settings",
                "set-secret",
                "mailer",
                "api_key",
                "--from-file",
                secret_file.to_str().unwrap(),
            ],
        )
        .await,
    );
    assert!(!said.contains(SECRET), "{said}");

    // Now it may run.
    succeeded(&switchyard(&server, &["plugins", "approve", "mailer"]).await);
    let shown_text = succeeded(&switchyard(&server, &["settings", "show", "mailer"]).await);
    assert!(shown_text.contains("<secret, set>"), "{shown_text}");
    let shown = json(&switchyard(&server, &["settings", "show", "mailer", "--json"]).await);
    assert_eq!(row(&shown, "retries")["value"], 5, "{shown}");
    assert_eq!(row(&shown, "api_key")["source"], "set", "{shown}");
    assert!(row(&shown, "api_key").get("value").is_none(), "{shown}");

    // The secret is nowhere an operator reads, nor in the plain settings' bucket.
    let audit = succeeded(
        &switchyard(
            &server,
            &["audit", "--json", "--action", "settings_changed"],
        )
        .await,
    );
    assert!(audit.contains("set secret api_key"), "{audit}");
    assert!(audit.contains("set retries = 5"), "{audit}");
    for printed in [&shown_text, &shown.to_string(), &audit] {
        assert!(
            !printed.contains(SECRET),
            "the secret was printed:\n{printed}"
        );
    }
    assert!(!bucket_bytes(&server, "SWITCHYARD_SETTINGS")
        .await
        .contains(SECRET));
    assert!(bucket_bytes(&server, "SWITCHYARD_SECRETS")
        .await
        .contains(SECRET));

    // A required setting cannot be taken back while the plugin runs.
    let error = failed(&switchyard(&server, &["settings", "unset", "mailer", "api_key"]).await);
    assert!(error.contains("disable it first"), "{error}");

    // An upgrade whose declarations refuse what was set is refused by name; one that admits
    // it passes.
    let tighter = manifest(dir.path(), "1.1.0", 4);
    let error = failed(
        &switchyard(
            &server,
            &["plugins", "add", tighter.to_str().unwrap(), "--all-tenants"],
        )
        .await,
    );
    assert!(error.contains("`retries`: 5 is out of range"), "{error}");
    let looser = manifest(dir.path(), "1.2.0", 20);
    succeeded(
        &switchyard(
            &server,
            &["plugins", "add", looser.to_str().unwrap(), "--all-tenants"],
        )
        .await,
    );

    // Removing the plugin forgets its settings and secrets.
    let removed = succeeded(&switchyard(&server, &["plugins", "remove", "mailer"]).await);
    assert!(removed.contains("forgot the settings"), "{removed}");
    succeeded(&switchyard(&server, &["plugins", "add", path, "--all-tenants"]).await);
    let shown = json(&switchyard(&server, &["settings", "show", "mailer", "--json"]).await);
    assert_eq!(row(&shown, "api_key")["source"], "none", "{shown}");
    assert_eq!(row(&shown, "retries")["source"], "default", "{shown}");
}

#[tokio::test]
async fn an_empty_or_missing_secret_and_a_plugin_not_registered_are_refused() {
    let server = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    let error = failed(&switchyard(&server, &["settings", "show", "ghost"]).await);
    assert!(error.contains("no plugin `ghost`"), "{error}");
    succeeded(
        &switchyard(
            &server,
            &[
                "plugins",
                "add",
                manifest(dir.path(), "1.0.0", 10).to_str().unwrap(),
                "--all-tenants",
            ],
        )
        .await,
    );
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let error = failed(
        &switchyard(
            &server,
            &[
                "settings",
                "set-secret",
                "mailer",
                "api_key",
                "--from-file",
                empty.to_str().unwrap(),
            ],
        )
        .await,
    );
    assert!(error.contains("empty"), "{error}");
    let missing = dir.path().join("missing");
    let error = failed(
        &switchyard(
            &server,
            &[
                "settings",
                "set-secret",
                "mailer",
                "api_key",
                "--from-file",
                missing.to_str().unwrap(),
            ],
        )
        .await,
    );
    assert!(error.contains("missing"), "{error}");
    let error = failed(&switchyard(&server, &["settings", "set", "mailer", "retries"]).await);
    assert!(error.contains("has no `=`"), "{error}");
}

/// A manifest of `tuner` with a float, an array, a table and an integer setting.
fn tuner(dir: &Path) -> PathBuf {
    let path = dir.join("tuner.toml");
    std::fs::write(
        &path,
        r#"[plugin]
id = "tuner"
version = "1.0.0"
core = "*"

[[subscriptions]]
name = "orders"
events = ["order.*"]

[settings_schema.ratio]
type = "float"
min = 0.0
max = 1.0

[settings_schema.flags]
type = "array"

[settings_schema.tbl]
type = "table"

[settings_schema.retries]
type = "integer"
"#,
    )
    .unwrap();
    path
}

#[tokio::test]
async fn values_json_cannot_carry_and_odd_input_are_refused_by_name() {
    let server = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    let path = tuner(dir.path());
    succeeded(
        &switchyard(
            &server,
            &["plugins", "add", path.to_str().unwrap(), "--all-tenants"],
        )
        .await,
    );
    for (pair, expected) in [
        ("ratio=nan", "NaN or infinity"),
        ("flags=[nan]", "NaN or infinity"),
        ("tbl={x=inf}", "NaN or infinity"),
        ("tbl={d=1979-05-27}", "a date or time"),
        (
            "retries=9223372036854775808",
            "is not a value for `retries`",
        ),
    ] {
        let error = failed(&switchyard(&server, &["settings", "set", "tuner", pair]).await);
        assert!(error.contains(expected), "{pair}: {error}");
    }
    let error = failed(
        &switchyard(
            &server,
            &["settings", "set", "tuner", "retries=1", "retries=2"],
        )
        .await,
    );
    assert!(error.contains("given twice"), "{error}");
    let error = failed(&switchyard(&server, &["settings", "unset", "tuner", "nosuch"]).await);
    assert!(error.contains("declares no setting `nosuch`"), "{error}");
    // Nothing above was stored, and every command still reads the plugin's settings.
    let shown = json(&switchyard(&server, &["settings", "show", "tuner", "--json"]).await);
    assert_eq!(shown["values_revision"], 0, "{shown}");
    succeeded(
        &switchyard(
            &server,
            &["settings", "set", "tuner", "ratio=0.5", "tbl={x=1.5}"],
        )
        .await,
    );
    succeeded(&switchyard(&server, &["plugins", "list"]).await);
}
