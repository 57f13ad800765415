//! `switchyard services` as an operator runs it: the built binary against a real nats-server.
//! (What a service login may do is enforced by the broker: `tests/tests/security.rs`.)

use std::os::unix::fs::PermissionsExt;

use switchyard_tests::{failed, run_switchyard, stderr, stdout, succeeded, TestServer};

async fn switchyard(server: &TestServer, args: &[&str]) -> std::process::Output {
    run_switchyard(env!("CARGO_BIN_EXE_switchyard"), Some(&server.url()), args).await
}

#[tokio::test]
async fn services_are_added_listed_given_new_secrets_and_removed_with_audit_entries() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("shop.secret");

    let refused = switchyard(&server, &["services", "add", "shop"]).await;
    assert!(
        failed(&refused).contains("--tenant"),
        "a service needs its tenants named: {}",
        stderr(&refused)
    );
    let bad = switchyard(&server, &["services", "add", "sh op", "--tenant", "acme"]).await;
    assert!(!bad.status.success());

    let added = switchyard(
        &server,
        &[
            "services",
            "add",
            "shop",
            "--tenant",
            "acme",
            "--out",
            secret_file.to_str().unwrap(),
        ],
    )
    .await;
    let said = succeeded(&added);
    assert!(
        said.contains("service:shop") && said.contains("_SY_SERVICE.switchyard.shop"),
        "it says how to log in: {said}"
    );
    let first = std::fs::read_to_string(&secret_file).unwrap();
    assert!(first.trim().len() >= 40, "a secret of 256 bits");
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "readable by its owner only");

    let printed = switchyard(&server, &["services", "add", "shop", "--all-tenants"]).await;
    let second = succeeded(&printed).trim().to_owned();
    assert_ne!(second, first.trim(), "a new secret");
    assert!(!stdout(&printed).contains(first.trim()));

    let listed = succeeded(&switchyard(&server, &["services", "list"]).await);
    assert!(
        listed.contains("SERVICE") && listed.contains("shop"),
        "{listed}"
    );
    assert!(listed.contains("all tenants"), "{listed}");
    let json: serde_json::Value = serde_json::from_str(&succeeded(
        &switchyard(&server, &["services", "list", "--json"]).await,
    ))
    .unwrap();
    assert_eq!(json["services"][0]["name"], "shop");
    assert_eq!(json["services"][0]["tenants"], serde_json::Value::Null);
    assert!(
        !json.to_string().contains(&second),
        "no secret in a listing"
    );

    assert!(
        succeeded(&switchyard(&server, &["services", "remove", "shop"]).await)
            .contains("removed service shop")
    );
    assert!(
        succeeded(&switchyard(&server, &["services", "remove", "shop"]).await)
            .contains("there is no service shop")
    );
    let audit: serde_json::Value =
        serde_json::from_str(&succeeded(&switchyard(&server, &["audit", "--json"]).await)).unwrap();
    let text = audit.to_string();
    assert_eq!(text.matches("service_added").count(), 2, "{text}");
    assert_eq!(text.matches("service_removed").count(), 1, "{text}");
    assert!(
        !text.contains(&second) && !text.contains(first.trim()),
        "no secret in the log"
    );
}
