//! A plugin's fit beside the installed ones, as an operator meets it with the built binary
//! against a real nats-server: `core`, `requires`, `conflicts`, downgrades, removal of a
//! required plugin, and enabling with a requirement disabled. Every refusal names the manifest
//! line at fault and writes nothing.

use std::path::{Path, PathBuf};
use std::process::Output;

use switchyard_control::registry::Registry;
use switchyard_schemas::Namespace;
use switchyard_tests::{failed, run_switchyard, succeeded, TestServer};
use tempfile::TempDir;

async fn switchyard(server: &TestServer, args: &[&str]) -> Output {
    run_switchyard(env!("CARGO_BIN_EXE_switchyard"), Some(&server.url()), args).await
}

/// Writes a manifest for `id` at `version` with `extra` TOML after its `[plugin]` table.
fn manifest(dir: &TempDir, id: &str, version: &str, core: &str, extra: &str) -> PathBuf {
    let path = dir.path().join(format!("{id}-{version}.toml"));
    std::fs::write(
        &path,
        format!(
            "[plugin]\nid = \"{id}\"\nversion = \"{version}\"\ncore = \"{core}\"\n\n\
             [[subscriptions]]\nname = \"orders\"\nevents = [\"order.*\"]\n{extra}"
        ),
    )
    .unwrap();
    path
}

async fn add(server: &TestServer, path: &Path, more: &[&str]) -> Output {
    let mut args = vec![
        "plugins",
        "add",
        path.to_str().unwrap(),
        "--all-tenants",
        "--approve",
    ];
    args.extend_from_slice(more);
    switchyard(server, &args).await
}

/// The installed plugins and versions, read with a full-rights client.
async fn installed(server: &TestServer) -> Vec<(String, String)> {
    let registry = Registry::open(&server.jetstream().await, &Namespace::default())
        .await
        .unwrap();
    registry
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.plugin_id().to_string(),
                r.manifest.plugin.version.to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_plugin_for_another_core_or_needing_an_absent_plugin_is_refused_by_line() {
    let server = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    let future = manifest(&dir, "future", "1.0.0", "^9.0", "");
    let error = failed(&add(&server, &future, &[]).await);
    assert!(
        error.contains(&format!("{}:4: plugin.core", future.display())),
        "{error}"
    );
    assert!(
        error.contains("`^9.0`") && error.contains("0.1.0 runs"),
        "{error}"
    );

    let needy = manifest(
        &dir,
        "maps",
        "1.0.0",
        "*",
        "\n[dependencies]\nrequires = { geo = \"^1.2\" }\n",
    );
    let error = failed(&add(&server, &needy, &[]).await);
    assert!(
        error.contains(&format!(
            "{}:11: dependencies.requires.geo",
            needy.display()
        )),
        "{error}"
    );
    assert!(error.contains("not installed"), "{error}");
    assert!(
        installed(&server).await.is_empty(),
        "nothing was registered"
    );

    // The requirement in a version outside the range, then in range.
    succeeded(&add(&server, &manifest(&dir, "geo", "1.1.0", "*", ""), &[]).await);
    let error = failed(&add(&server, &needy, &[]).await);
    assert!(error.contains("1.1.0 is installed"), "{error}");
    succeeded(&add(&server, &manifest(&dir, "geo", "1.3.0", "*", ""), &[]).await);
    succeeded(&add(&server, &needy, &[]).await);
    assert_eq!(
        installed(&server).await,
        [
            ("geo".to_owned(), "1.3.0".to_owned()),
            ("maps".to_owned(), "1.0.0".to_owned())
        ]
    );

    // An upgrade of `geo` out of the range `maps` needs, and its downgrade, are refused.
    let geo_2 = manifest(&dir, "geo", "2.0.0", "*", "");
    let error = failed(&add(&server, &geo_2, &[]).await);
    assert!(error.contains("`maps` requires it as `^1.2`"), "{error}");
    let geo_old = manifest(&dir, "geo", "1.2.0", "*", "");
    let error = failed(&add(&server, &geo_old, &[]).await);
    assert!(
        error.contains("plugin.version") && error.contains("--allow-downgrade"),
        "{error}"
    );
    succeeded(&add(&server, &geo_old, &["--allow-downgrade"]).await);
    assert!(installed(&server)
        .await
        .contains(&("geo".to_owned(), "1.2.0".to_owned())));
}

#[tokio::test]
async fn conflicts_are_refused_both_ways() {
    let server = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    succeeded(&add(&server, &manifest(&dir, "old-audit", "1.0.0", "*", ""), &[]).await);
    let audit = manifest(
        &dir,
        "audit",
        "2.0.0",
        "*",
        "\n[dependencies]\nconflicts = [\"old-audit\"]\n",
    );
    let error = failed(&add(&server, &audit, &[]).await);
    assert!(error.contains("dependencies.conflicts"), "{error}");
    assert!(
        error.contains("conflicts with plugin `old-audit`"),
        "{error}"
    );

    // Installed first, the conflicting one refuses the other.
    succeeded(&switchyard(&server, &["plugins", "remove", "old-audit"]).await);
    succeeded(&add(&server, &audit, &[]).await);
    let error = failed(&add(&server, &manifest(&dir, "old-audit", "1.0.0", "*", ""), &[]).await);
    assert!(error.contains("`audit` conflicts with it"), "{error}");
}

#[tokio::test]
async fn a_required_plugin_is_removed_only_with_its_dependents_and_enabled_only_after_them() {
    let server = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    succeeded(&add(&server, &manifest(&dir, "geo", "1.0.0", "*", ""), &[]).await);
    let maps = manifest(
        &dir,
        "maps",
        "1.0.0",
        "*",
        "\n[dependencies]\nrequires = { geo = \"^1\" }\n",
    );
    succeeded(&add(&server, &maps, &[]).await);
    let app = manifest(
        &dir,
        "app",
        "1.0.0",
        "*",
        "\n[dependencies]\nrequires = { maps = \"*\" }\n",
    );
    succeeded(&add(&server, &app, &[]).await);

    let error = failed(&switchyard(&server, &["plugins", "remove", "geo"]).await);
    assert!(error.contains("`maps` requires it"), "{error}");
    assert!(error.contains("--cascade"), "{error}");
    assert_eq!(installed(&server).await.len(), 3);

    // Disabled, `geo` holds `maps` back from being enabled.
    succeeded(&switchyard(&server, &["plugins", "disable", "maps"]).await);
    succeeded(&switchyard(&server, &["plugins", "disable", "geo"]).await);
    let error = failed(&switchyard(&server, &["plugins", "enable", "maps"]).await);
    assert!(
        error.contains("`geo`, which is installed but not enabled"),
        "{error}"
    );
    succeeded(&switchyard(&server, &["plugins", "enable", "geo"]).await);
    succeeded(&switchyard(&server, &["plugins", "enable", "maps"]).await);

    let removed = succeeded(&switchyard(&server, &["plugins", "remove", "geo", "--cascade"]).await);
    let order: Vec<&str> = removed
        .lines()
        .filter_map(|line| line.strip_prefix("removed "))
        .collect();
    assert_eq!(order, ["app", "maps", "geo"], "dependents first");
    assert!(installed(&server).await.is_empty());
}

/// The lifecycle with a dispatcher running and a raw worker: an installation waits for
/// approval (its events wait too), an upgrade asking for more waits while the approved
/// version keeps running, and a rollback restores the earlier version with its approval.
#[tokio::test]
async fn installs_wait_for_approval_and_upgrades_asking_for_more_wait_for_it_again() {
    use switchyard_schemas::delivery::Outcome;
    use switchyard_tests::{Behaviour, Switchyard, TestWorker};

    let sy = Switchyard::start().await;
    let server = &sy.server;
    let dir = TempDir::new().unwrap();
    let url = sy.url();
    let worker = TestWorker::start(&url, sy.namespace(), "billing", |_| {
        Behaviour::Reply(Outcome::Done)
    })
    .await;

    let v1 = manifest(&dir, "billing", "1.0.0", "*", "");
    let installed_text = succeeded(
        &switchyard(
            server,
            &["plugins", "add", v1.to_str().unwrap(), "--tenant", "acme"],
        )
        .await,
    );
    assert!(
        installed_text.contains("pending approval"),
        "{installed_text}"
    );
    assert!(
        installed_text.contains("events: order.*"),
        "{installed_text}"
    );
    let listed = succeeded(&switchyard(server, &["plugins", "list"]).await);
    assert!(listed.contains("pending approval"), "{listed}");

    // An event published while it waits is not delivered, and not lost.
    let waiting = sy.publish_orders("acme", 0..1).await;
    // A negative check has to give the dispatcher a chance to get it wrong.
    assert!(
        worker
            .wait_for(1, std::time::Duration::from_millis(500))
            .await
            .is_err(),
        "nothing is delivered before approval"
    );
    let approved = succeeded(&switchyard(server, &["plugins", "approve", "billing"]).await);
    assert!(
        approved.contains("approved billing 1.0.0 (enabled"),
        "{approved}"
    );
    worker
        .wait_for(1, std::time::Duration::from_secs(15))
        .await
        .expect("the event published before the approval is delivered after it");
    assert_eq!(worker.received()[0].event.attributes.id, waiting[0]);

    // Same rights, new version: at once.
    let v1_1 = manifest(&dir, "billing", "1.1.0", "*", "");
    let updated = succeeded(
        &switchyard(
            server,
            &["plugins", "add", v1_1.to_str().unwrap(), "--tenant", "acme"],
        )
        .await,
    );
    assert!(updated.contains("updated billing 1.1.0"), "{updated}");

    // More rights: it waits, and 1.1.0 keeps running.
    let v2 = manifest(
        &dir,
        "billing",
        "2.0.0",
        "*",
        "\n[[subscriptions]]\nname = \"invoices\"\nevents = [\"invoice.*\"]\n\n[channels]\nsend = [\"alerts\"]\n",
    );
    let waits = succeeded(
        &switchyard(
            server,
            &["plugins", "add", v2.to_str().unwrap(), "--tenant", "acme"],
        )
        .await,
    );
    assert!(waits.contains("2.0.0 waits for approval"), "{waits}");
    assert!(waits.contains("receive events `invoice.*`"), "{waits}");
    assert!(waits.contains("send on channel `alerts`"), "{waits}");
    let registry = Registry::open(&server.jetstream().await, &Namespace::default())
        .await
        .unwrap();
    let billing = switchyard_schemas::PluginId::new("billing").unwrap();
    let stored = registry.get(&billing).await.unwrap().unwrap();
    assert_eq!(stored.manifest.plugin.version.to_string(), "1.1.0");
    sy.publish_orders("acme", 1..2).await;
    worker
        .wait_for(2, std::time::Duration::from_secs(15))
        .await
        .expect("the approved version keeps receiving");

    succeeded(&switchyard(server, &["plugins", "approve", "billing"]).await);
    let stored = registry.get(&billing).await.unwrap().unwrap();
    assert_eq!(stored.manifest.plugin.version.to_string(), "2.0.0");
    assert!(stored.approval.is_some() && stored.pending_upgrade.is_none());

    let history = succeeded(&switchyard(server, &["plugins", "history", "billing"]).await);
    for version in ["1.0.0", "1.1.0", "2.0.0"] {
        assert!(history.contains(version), "{history}");
    }
    let rolled = succeeded(&switchyard(server, &["plugins", "rollback", "billing"]).await);
    assert!(rolled.contains("from 2.0.0 to 1.1.0"), "{rolled}");
    let stored = registry.get(&billing).await.unwrap().unwrap();
    assert_eq!(stored.manifest.plugin.version.to_string(), "1.1.0");
    assert!(stored.is_active());

    // Each change was announced as an event of the tenant `switchyard`, in order.
    let announced = succeeded(
        &switchyard(
            server,
            &[
                "events",
                "tail",
                "--tenant",
                "switchyard",
                "--type",
                "switchyard.plugin.*",
                "--all",
                "--count",
                "6",
                "--json",
            ],
        )
        .await,
    );
    let kinds: Vec<String> = announced
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["event"]["data"]["plugin"], "billing");
            value["event"]["type"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "switchyard.plugin.installed",
            "switchyard.plugin.approved",
            "switchyard.plugin.upgraded",
            "switchyard.plugin.upgrade-proposed",
            "switchyard.plugin.upgraded",
            "switchyard.plugin.rolled-back",
        ]
    );
}

#[tokio::test]
async fn upgrade_needs_an_installed_plugin_and_keeps_its_tenants() {
    let server = TestServer::start().await;
    let dir = TempDir::new().unwrap();
    let v1 = manifest(&dir, "geo", "1.0.0", "*", "");
    let v2 = manifest(&dir, "geo", "1.1.0", "*", "");
    let error = failed(&switchyard(&server, &["plugins", "upgrade", v2.to_str().unwrap()]).await);
    assert!(error.contains("geo is not installed"), "{error}");
    // A new plugin must name its tenants.
    let error = failed(&switchyard(&server, &["plugins", "add", v1.to_str().unwrap()]).await);
    assert!(error.contains("name the tenants"), "{error}");
    succeeded(
        &switchyard(
            &server,
            &[
                "plugins",
                "add",
                v1.to_str().unwrap(),
                "--tenant",
                "acme",
                "--approve",
            ],
        )
        .await,
    );
    succeeded(&switchyard(&server, &["plugins", "upgrade", v2.to_str().unwrap()]).await);
    let registry = Registry::open(&server.jetstream().await, &Namespace::default())
        .await
        .unwrap();
    let geo = registry
        .get(&"geo".parse().unwrap())
        .await
        .unwrap()
        .expect("installed");
    assert_eq!(geo.manifest.plugin.version.to_string(), "1.1.0");
    assert_eq!(geo.tenants.to_string(), "acme");
}
