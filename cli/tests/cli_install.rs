//! Installing plugins from packages as an operator does it, with the built binary against a
//! real nats-server: what is refused (tampered, unsigned or untrusted without an allowance),
//! what an allowance records (with the registration and in the audit log), installing from the
//! package store, unpacking a package for a host, the audit of trusted keys and approvals, and
//! two operators adding conflicting plugins at the same moment.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use switchyard_control::package::PackageIndex;
use switchyard_control::registry::Registry;
use switchyard_schemas::Namespace;
use switchyard_tests::{failed, run_switchyard, stderr, succeeded, TestServer};

async fn switchyard(server: Option<&TestServer>, args: &[&str]) -> Output {
    let url = server.map(TestServer::url);
    run_switchyard(env!("CARGO_BIN_EXE_switchyard"), url.as_deref(), args).await
}

fn json(output: &Output) -> Value {
    let text = succeeded(output);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{text}"))
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// The worker binary's bytes in the packages made here: found again to tamper with.
fn worker_bytes(id: &str, version: &str) -> String {
    format!("a worker binary of {id} {version}")
}

/// A plugin's source directory: manifest (with `extra` TOML), worker binary, a data file.
fn source(root: &Path, id: &str, version: &str, extra: &str) -> PathBuf {
    let dir = root.join(format!("{id}-{version}"));
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(
        dir.join("plugin.toml"),
        format!(
            "[plugin]\nid = \"{id}\"\nversion = \"{version}\"\ncore = \"^0.1\"\n\n\
             [[subscriptions]]\nname = \"orders\"\nevents = [\"order.*\"]\n{extra}"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("bin/worker"), worker_bytes(id, version)).unwrap();
    std::fs::write(dir.join("data/rules.json"), "{\"rules\": []}").unwrap();
    std::fs::write(
        dir.join("package.toml"),
        "files = [\"data\"]\n\n[binaries]\nx86_64-unknown-linux-gnu = \"bin/worker\"\n\
         aarch64-unknown-linux-gnu = \"bin/worker\"\n",
    )
    .unwrap();
    dir
}

/// Builds `id` `version` into `root/{id}-{version}.pkg`, signed with `seed` when given.
async fn package(root: &Path, id: &str, version: &str, seed: Option<&Path>) -> PathBuf {
    let dir = source(root, id, version, "");
    let file = root.join(format!("{id}-{version}.pkg"));
    succeeded(
        &switchyard(
            None,
            &["package", "build", path(&dir), "--out", path(&file)],
        )
        .await,
    );
    if let Some(seed) = seed {
        succeeded(&switchyard(None, &["package", "sign", path(&file), "--key", path(seed)]).await);
    }
    file
}

/// A publisher key pair made with the CLI: its seed file and public key.
async fn keygen(root: &Path, name: &str) -> (PathBuf, String) {
    let seed = root.join(format!("{name}.nk"));
    let public = succeeded(&switchyard(None, &["package", "keygen", "--out", path(&seed)]).await);
    (seed, public.trim().to_owned())
}

/// A copy of the package `from` whose worker binary has one byte changed (same size).
fn tampered(from: &Path, id: &str, version: &str) -> PathBuf {
    let mut bytes = std::fs::read(from).unwrap();
    let needle = worker_bytes(id, version);
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .expect("the worker's bytes are in the package");
    bytes[at] ^= 0x20;
    let to = from.with_extension("tampered.pkg");
    std::fs::write(&to, bytes).unwrap();
    to
}

async fn registered(server: &TestServer) -> Vec<String> {
    let registry = Registry::open(&server.jetstream().await, &Namespace::default())
        .await
        .unwrap();
    let mut ids: Vec<String> = registry
        .list()
        .await
        .unwrap()
        .iter()
        .map(|r| r.plugin_id().to_string())
        .collect();
    ids.sort();
    ids
}

async fn add(server: &TestServer, what: &[&str]) -> Output {
    let mut args = vec!["plugins", "add"];
    args.extend_from_slice(what);
    args.extend_from_slice(&["--all-tenants", "--approve"]);
    switchyard(Some(server), &args).await
}

/// `plugins show <id> --json`.
async fn shown(server: &TestServer, id: &str) -> Value {
    json(&switchyard(Some(server), &["plugins", "show", id, "--json"]).await)
}

/// `audit --json` with these filters: the entries.
async fn audited(server: &TestServer, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "--json"];
    args.extend_from_slice(filters);
    let audit = json(&switchyard(Some(server), &args).await);
    audit["entries"].as_array().unwrap().clone()
}

#[tokio::test]
async fn packages_are_refused_unless_trusted_or_allowed_and_the_decision_is_recorded() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (seed, key) = keygen(root, "acme").await;

    // Unsigned, no allowance: refused, nothing registered or published.
    let unsigned = package(root, "billing", "1.0.0", None).await;
    let refused = failed(&add(&server, &[path(&unsigned)]).await);
    assert!(
        refused.contains("not signed") && refused.contains("not allowed for plugin billing"),
        "{refused}"
    );
    // Signed by a key nobody trusts: refused.
    let signed = package(root, "billing", "1.1.0", Some(&seed)).await;
    let refused = failed(&add(&server, &[path(&signed)]).await);
    assert!(refused.contains("does not trust"), "{refused}");
    // Tampered: refused whatever is allowed, naming the part.
    let broken = tampered(&signed, "billing", "1.1.0");
    let refused = failed(
        &add(
            &server,
            &[path(&broken), "--allow-unsigned", "--allow-untrusted"],
        )
        .await,
    );
    assert!(
        refused.contains("tampered") && refused.contains("bin/worker"),
        "{refused}"
    );
    assert!(registered(&server).await.is_empty());
    let catalog = json(&switchyard(Some(&server), &["catalog", "--json"]).await);
    assert_eq!(catalog["packages"], Value::Array(vec![]), "{catalog}");

    // Allowed explicitly: installed, the allowance recorded with who gave it.
    let output = add(
        &server,
        &[path(&signed), "--allow-untrusted", "--actor", "ticket-42"],
    )
    .await;
    let said = succeeded(&output);
    assert!(
        said.contains("signed by untrusted key") && said.contains("allowed by ticket-42"),
        "{said}"
    );
    let show = shown(&server, "billing").await;
    let provenance = &show["provenance"];
    assert_eq!(provenance["from"], "package", "{show}");
    assert_eq!(provenance["package"], "billing/1.1.0");
    assert_eq!(provenance["verdict"], "untrusted_key");
    assert_eq!(provenance["publisher_key"], key.as_str());
    assert!(
        provenance["allowed_by"]
            .as_str()
            .unwrap()
            .starts_with("ticket-42"),
        "{show}"
    );
    assert_eq!(provenance["sha256"].as_str().unwrap().len(), 64);
    let text = succeeded(&switchyard(Some(&server), &["plugins", "show", "billing"]).await);
    assert!(
        text.contains("installed from: package billing/1.1.0, signed by untrusted key"),
        "{text}"
    );
    let entries = audited(&server, &["--plugin", "billing"]).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["action"], "plugin_registered");
    assert_eq!(
        entries[0]["after"]["provenance"]["verdict"],
        "untrusted_key"
    );
    assert!(
        entries[0]["detail"]
            .as_str()
            .unwrap()
            .contains("allowed by ticket-42"),
        "{entries:?}"
    );
    // Installed from a file, it is in the package store for every dispatcher and host.
    let catalog = json(&switchyard(Some(&server), &["catalog", "--json"]).await);
    assert_eq!(
        catalog["packages"][0]["object"], "billing/1.1.0",
        "{catalog}"
    );

    // Trusted now, a newer version published to the store installs by name without an
    // allowance, recorded as signed by the trusted key.
    succeeded(
        &switchyard(
            Some(&server),
            &[
                "trust", "add", &key, "--name", "Acme Ltd", "--actor", "sec-team",
            ],
        )
        .await,
    );
    let newer = package(root, "billing", "1.2.0", Some(&seed)).await;
    succeeded(&switchyard(Some(&server), &["package", "publish", path(&newer)]).await);
    let said = succeeded(&add(&server, &["--package", "billing"]).await);
    assert!(said.contains("updated billing 1.2.0"), "{said}");
    let provenance = shown(&server, "billing").await["provenance"].clone();
    assert_eq!(provenance["verdict"], "trusted", "{provenance}");
    assert_eq!(provenance["publisher_name"], "Acme Ltd");
    assert_eq!(provenance["allowed_by"], Value::Null);
    let history =
        json(&switchyard(Some(&server), &["plugins", "history", "billing", "--json"]).await);
    let verdicts: Vec<&Value> = history["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["provenance"]["verdict"])
        .collect();
    assert_eq!(verdicts, ["untrusted_key", "trusted"], "{history}");
    let missing = failed(&add(&server, &["--package", "billing@9.0.0"]).await);
    assert!(
        missing.contains("no package billing/9.0.0 is published"),
        "{missing}"
    );

    // Trusting and distrusting keys are audited: who, which key, before and after.
    let added = audited(&server, &["--action", "trust_added"]).await;
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0]["target"], key.as_str());
    assert_eq!(added[0]["actor"]["declared"], "sec-team");
    assert_eq!(added[0]["before"], Value::Null);
    assert_eq!(added[0]["after"]["name"], "Acme Ltd");
    succeeded(
        &switchyard(
            Some(&server),
            &["trust", "remove", &key, "--actor", "sec-team"],
        )
        .await,
    );
    let removed = audited(&server, &["--action", "trust_removed"]).await;
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0]["before"]["name"], "Acme Ltd");
    assert_eq!(removed[0]["after"], Value::Null);
    // A key that is not trusted is not removed, and nothing is recorded.
    failed(&switchyard(Some(&server), &["trust", "remove", &key]).await);
    assert_eq!(
        audited(&server, &["--action", "trust_removed"]).await.len(),
        1
    );
}

#[tokio::test]
async fn unsigned_allowed_and_manifest_only_installs_record_where_they_came_from_and_who_approved()
{
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let root = root.path();

    let unsigned = package(root, "notifier", "1.0.0", None).await;
    succeeded(
        &add(
            &server,
            &[path(&unsigned), "--allow-unsigned", "--actor", "dev-lead"],
        )
        .await,
    );
    let show = shown(&server, "notifier").await;
    assert_eq!(show["provenance"]["verdict"], "unsigned", "{show}");
    assert!(show["provenance"]["allowed_by"]
        .as_str()
        .unwrap()
        .starts_with("dev-lead"));

    // The development path: a manifest alone, recorded as such.
    let manifest = source(root, "sketch", "0.1.0", "").join("plugin.toml");
    let installing = switchyard(
        Some(&server),
        &[
            "plugins",
            "add",
            path(&manifest),
            "--all-tenants",
            "--actor",
            "dev-lead",
        ],
    )
    .await;
    assert!(succeeded(&installing).contains("from manifest, no package"));
    let show = shown(&server, "sketch").await;
    assert_eq!(show["provenance"]["from"], "manifest", "{show}");
    assert_eq!(show["state"], "pending_approval");

    // An approval records the audit's actor: the registration and the entry agree.
    succeeded(
        &switchyard(
            Some(&server),
            &["plugins", "approve", "sketch", "--actor", "release-bot"],
        )
        .await,
    );
    let show = shown(&server, "sketch").await;
    let approved_by = show["approved_by"].as_str().unwrap();
    assert!(approved_by.starts_with("release-bot"), "{show}");
    let entries = audited(&server, &["--plugin", "sketch", "--action", "approved"]).await;
    assert_eq!(entries[0]["actor"]["name"].as_str().unwrap(), approved_by);
    let history = succeeded(&switchyard(Some(&server), &["plugins", "history", "sketch"]).await);
    assert!(
        history.contains("from manifest, no package") && history.contains("release-bot"),
        "{history}"
    );
}

#[tokio::test]
async fn unpacking_verifies_first_keeps_inside_the_directory_and_makes_the_worker_executable() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let (seed, key) = keygen(root, "acme").await;
    let file = package(root, "billing", "1.0.0", Some(&seed)).await;

    let into = root.join("installed");
    let unpacked = succeeded(
        &switchyard(
            None,
            &[
                "package",
                "unpack",
                path(&file),
                "--into",
                path(&into),
                "--trusted-keys",
                &key,
                "--target",
                "x86_64-unknown-linux-gnu",
            ],
        )
        .await,
    );
    assert!(unpacked.contains("unpacked billing 1.0.0"), "{unpacked}");
    assert_eq!(
        std::fs::read_to_string(into.join("bin/worker")).unwrap(),
        worker_bytes("billing", "1.0.0")
    );
    assert!(std::fs::read_to_string(into.join("plugin.toml"))
        .unwrap()
        .contains("billing"));
    assert!(into.join("data/rules.json").is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &str| {
            std::fs::metadata(into.join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("bin/worker"), 0o755);
        assert_eq!(mode("data/rules.json"), 0o644);
        assert_eq!(mode("plugin.toml"), 0o644);
    }
    // Never over what is there.
    let again = failed(
        &switchyard(
            None,
            &[
                "package",
                "unpack",
                path(&file),
                "--into",
                path(&into),
                "--trusted-keys",
                &key,
            ],
        )
        .await,
    );
    assert!(again.contains("is not empty"), "{again}");

    // Refused before anything is written: tampered, untrusted, a target it has no binary for.
    for (package, extra, expected) in [
        (
            tampered(&file, "billing", "1.0.0"),
            vec!["--trusted-keys", key.as_str()],
            "tampered",
        ),
        (file.clone(), vec![], "does not trust"),
        (
            file.clone(),
            vec![
                "--trusted-keys",
                key.as_str(),
                "--target",
                "riscv64gc-unknown-linux-gnu",
            ],
            "no worker binary for riscv64gc-unknown-linux-gnu",
        ),
    ] {
        let target = root.join(format!("refused-{}", expected.len()));
        let mut args = vec!["package", "unpack", path(&package), "--into", path(&target)];
        args.extend(extra);
        let output = switchyard(Some(&server), &args).await;
        assert!(failed(&output).contains(expected), "{}", stderr(&output));
        assert!(
            !target.join("bin/worker").exists(),
            "nothing written for {expected}"
        );
    }

    // A package whose index names a path outside the directory is refused, nothing escapes.
    let hostile = root.join("hostile.pkg");
    let mut index: PackageIndex = {
        let bytes = std::fs::read(&file).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let mut first = archive.entries().unwrap().next().unwrap().unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut first, &mut data).unwrap();
        serde_json::from_slice(&data).unwrap()
    };
    index.parts[1].path = "../escaped".to_owned();
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in [
        (".package/index.json", index.to_canonical_json()),
        (
            "plugin.toml",
            std::fs::read(into.join("plugin.toml")).unwrap(),
        ),
        ("../escaped", b"out".to_vec()),
    ] {
        let mut header = tar::Header::new_ustar();
        header.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, &data[..]).unwrap();
    }
    std::fs::write(&hostile, builder.into_inner().unwrap()).unwrap();
    let target = root.join("nested/hostile");
    let output = switchyard(
        None,
        &[
            "package",
            "unpack",
            path(&hostile),
            "--into",
            path(&target),
            "--trusted-keys",
            &key,
        ],
    )
    .await;
    assert!(
        failed(&output).contains("bad part path \"../escaped\""),
        "{}",
        stderr(&output)
    );
    assert!(!root.join("nested/escaped").exists());

    // From the store by name, once published.
    succeeded(&switchyard(Some(&server), &["package", "publish", path(&file)]).await);
    let from_store = root.join("from-store");
    succeeded(
        &switchyard(
            Some(&server),
            &[
                "package",
                "unpack",
                "--package",
                "billing@1.0.0",
                "--into",
                path(&from_store),
                "--trusted-keys",
                &key,
                "--target",
                "aarch64-unknown-linux-gnu",
            ],
        )
        .await,
    );
    assert!(from_store.join("bin/worker").is_file());
}

#[tokio::test]
async fn two_operators_adding_conflicting_plugins_at_once_cannot_both_succeed() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let (a, b) = (format!("left{round}"), format!("right{round}"));
        let left = source(
            root.path(),
            &a,
            "1.0.0",
            &format!("\n[dependencies]\nconflicts = [\"{b}\"]\n"),
        )
        .join("plugin.toml");
        let right = source(root.path(), &b, "1.0.0", "").join("plugin.toml");
        let (left, right) = ([path(&left)], [path(&right)]);
        let (first, second) = tokio::join!(add(&server, &left), add(&server, &right));
        let won = [&first, &second]
            .iter()
            .filter(|output| output.status.success())
            .count();
        assert_eq!(
            won,
            1,
            "round {round}: exactly one wins\n--- left:\n{}\n--- right:\n{}",
            stderr(&first),
            stderr(&second)
        );
        let lost = if first.status.success() {
            &second
        } else {
            &first
        };
        assert!(stderr(lost).contains("conflict"), "{}", stderr(lost));
        let installed = registered(&server).await;
        let of_round: Vec<&String> = installed
            .iter()
            .filter(|id| **id == a || **id == b)
            .collect();
        assert_eq!(of_round.len(), 1, "round {round}: {installed:?}");
    }
}
