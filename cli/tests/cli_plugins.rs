//! `switchyard plugins` as an operator runs it: the built binary against a real nats-server.

use std::path::{Path, PathBuf};
use std::process::Output;

use switchyard_control::registry::{Registry, TenantScope};
use switchyard_schemas::{Namespace, PluginId};
use switchyard_tests::{failed, run_switchyard, stdout, succeeded, TestServer};

/// A manifest from `tests/manifests/` of the workspace.
fn manifest(file_name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/manifests")
        .join(file_name)
}

/// Runs `switchyard <args>`, against `server` when one is given.
async fn switchyard(server: Option<&TestServer>, args: &[&str]) -> Output {
    let url = server.map(TestServer::url);
    run_switchyard(env!("CARGO_BIN_EXE_switchyard"), url.as_deref(), args).await
}

async fn registry(server: &TestServer) -> Registry {
    Registry::open(&server.jetstream().await, &Namespace::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn add_registers_a_plugin_that_list_then_shows_and_adding_again_updates_it() {
    let server = TestServer::start().await;
    let path = manifest("audit-log.toml");
    let path = path.to_str().unwrap();

    let added = switchyard(
        Some(&server),
        &[
            "plugins",
            "add",
            path,
            "--tenant",
            "globex",
            "--tenant",
            "acme",
            "--approve",
        ],
    )
    .await;
    assert_eq!(
        succeeded(&added).trim(),
        "installed audit-log 1.2.0 for acme, globex (revision 1, enabled); from manifest, no \
         package"
    );

    let listed = succeeded(&switchyard(Some(&server), &["plugins", "list"]).await);
    let mut lines = listed.lines();
    let header = lines.next().unwrap();
    for column in ["PLUGIN", "VERSION", "TENANTS", "SUBSCRIPTIONS"] {
        assert!(header.contains(column), "{header}");
    }
    let row = lines.next().unwrap();
    for cell in [
        "audit-log",
        "1.2.0",
        "acme, globex",
        "orders: order.*, invoice.>; refunds: refund.issued",
    ] {
        assert!(row.contains(cell), "`{cell}` in `{row}`");
    }
    assert_eq!(lines.next(), None);

    // Serving all tenants asks for more than was approved: approved at once here.
    let updated = switchyard(
        Some(&server),
        &["plugins", "add", path, "--all-tenants", "--approve"],
    )
    .await;
    assert!(
        succeeded(&updated).starts_with("updated audit-log 1.2.0 for all tenants (revision 2"),
        "{}",
        stdout(&updated)
    );
    let stored = registry(&server)
        .await
        .get(&PluginId::new("audit-log").unwrap())
        .await
        .unwrap()
        .expect("registered");
    assert_eq!(stored.tenants, TenantScope::All);
}

#[tokio::test]
async fn an_invalid_manifest_is_refused_with_every_problem_and_nothing_is_registered() {
    let server = TestServer::start().await;
    let path = manifest("invalid.toml");
    let output = switchyard(
        Some(&server),
        &[
            "plugins",
            "add",
            path.to_str().unwrap(),
            "--all-tenants",
            "--approve",
        ],
    )
    .await;
    let errors = failed(&output);
    for key in [
        "plugin.id",
        "plugin.version",
        "subscriptions[0].policy.timeout",
    ] {
        assert!(errors.contains(key), "`{key}` in:\n{errors}");
    }
    assert!(registry(&server).await.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn remove_unregisters_and_names_an_unknown_plugin() {
    let server = TestServer::start().await;
    let path = manifest("audit-log.toml");
    succeeded(
        &switchyard(
            Some(&server),
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

    let removed = switchyard(Some(&server), &["plugins", "remove", "audit-log"]).await;
    assert_eq!(succeeded(&removed).trim(), "removed audit-log");
    assert!(registry(&server).await.list().await.unwrap().is_empty());
    let listed = succeeded(&switchyard(Some(&server), &["plugins", "list"]).await);
    assert!(listed.contains("no plugins are registered"), "{listed}");

    let unknown = switchyard(Some(&server), &["plugins", "remove", "ghost"]).await;
    let error = failed(&unknown);
    assert!(error.contains("no plugin `ghost` is registered"), "{error}");
}

#[tokio::test]
async fn add_needs_exactly_one_of_tenant_and_all_tenants() {
    let path = manifest("audit-log.toml");
    let path = path.to_str().unwrap();
    // Whether the plugin is new (it must name its tenants) or installed (an upgrade keeps
    // them) is the registry's to say: refused against a server, with nothing written.
    let server = TestServer::start().await;
    let neither = failed(&switchyard(Some(&server), &["plugins", "add", path]).await);
    assert!(
        neither.contains("--tenant") && neither.contains("--all-tenants"),
        "{neither}"
    );
    assert!(registry(&server).await.list().await.unwrap().is_empty());
    let both = failed(
        &switchyard(
            None,
            &["plugins", "add", path, "--tenant", "acme", "--all-tenants"],
        )
        .await,
    );
    assert!(both.contains("cannot be used with"), "{both}");
    let bad_tenant = failed(&switchyard(None, &["plugins", "add", path, "--tenant", "a.b"]).await);
    assert!(bad_tenant.contains("a.b"), "{bad_tenant}");
}

#[tokio::test]
async fn help_describes_each_verb() {
    let help = succeeded(&switchyard(None, &["plugins", "--help"]).await);
    for verb in ["add", "remove", "list"] {
        assert!(
            help.lines().any(|line| line.trim_start().starts_with(verb)),
            "`{verb}` in:\n{help}"
        );
    }
    let top = succeeded(&switchyard(None, &["--help"]).await);
    assert!(top.contains("Register, remove and list plugins"), "{top}");
}

#[tokio::test]
async fn operations_are_shown_and_their_callers_are_part_of_the_approval() {
    let server = TestServer::start().await;
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk/examples/tax-rates/plugin.toml");
    let path = path.to_str().unwrap();
    let added = switchyard(Some(&server), &["plugins", "add", path, "--tenant", "acme"]).await;
    let said = format!("{}{}", stdout(&added), switchyard_tests::stderr(&added));
    assert!(
        said.contains("`rate` by plugin `order-validator`") && said.contains("`rate` by services"),
        "what it asks for names who may call: {said}"
    );
    let shown = succeeded(&switchyard(Some(&server), &["plugins", "show", "tax-rates"]).await);
    assert!(
        shown.contains(
            "rate (tax.query 1.0.0 -> tax.rate 1.0.0): timeout 2s, rate 200/s (burst 200), \
             16 in flight, idempotent; callers: operators, services, plugin order-validator; \
             tenants: every tenant of the plugin"
        ),
        "{shown}"
    );
}

/// The NATS client's info lines (its connects) stay out of a command's output unless asked
/// for, and `RUST_LOG=off` silences everything.
#[tokio::test]
async fn a_command_prints_no_client_logs_unless_asked() {
    let server = TestServer::start().await;
    let quiet = switchyard(Some(&server), &["plugins", "list"]).await;
    assert!(quiet.status.success());
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(!stderr.contains("async_nats"), "{stderr}");
    for filter in ["off", "async_nats=info"] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["plugins", "list"])
            .env("SWITCHYARD_NATS_URL", server.url())
            .env("RUST_LOG", filter)
            .output()
            .await
            .unwrap();
        assert!(output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            stderr.contains("connected successfully"),
            filter != "off",
            "RUST_LOG={filter}: {stderr}"
        );
    }
}
