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
    let mut args = vec!["plugins", "add", path.to_str().unwrap(), "--all-tenants"];
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
