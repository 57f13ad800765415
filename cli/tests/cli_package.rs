//! `switchyard package`, `trust` and `catalog` as a publisher and an operator run them: the
//! built binary, offline or against a real nats-server. Hostile packages are made here, from
//! the bytes up, with the `tar` crate.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use switchyard_control::package::{PackageIndex, PackageSignature, PublisherKeyPair};
use switchyard_tests::{failed, run_switchyard, stderr, succeeded, TestServer};

/// Runs `switchyard <args>`, against `server` when one is given (else nothing listens).
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

/// A plugin's source directory: its manifest (with these tags and category), a worker binary
/// and a data file.
fn source(root: &Path, id: &str, version: &str, tags: &[&str], category: &str) -> PathBuf {
    let dir = root.join(format!("{id}-{version}"));
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let tags: Vec<String> = tags.iter().map(|t| format!("{t:?}")).collect();
    std::fs::write(
        dir.join("plugin.toml"),
        format!(
            r#"[plugin]
id = "{id}"
version = "{version}"
core = "^0.1"
description = "The {id} plugin, for testing"
author = "Example Ltd"
tags = [{tags}]
category = "{category}"

[[subscriptions]]
name = "orders"
events = ["order.*"]

[channels]
send = ["alerts"]

[limits]
max_connections = 3

[settings]
webhook_url = "https://example.invalid/hook"
"#,
            tags = tags.join(", ")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("bin/worker"),
        format!("a worker binary of {id} {version}"),
    )
    .unwrap();
    std::fs::write(dir.join("data/rules.json"), "{\"rules\": []}").unwrap();
    std::fs::write(
        dir.join("package.toml"),
        "files = [\"data\"]\n\n[binaries]\nx86_64-unknown-linux-gnu = \"bin/worker\"\n",
    )
    .unwrap();
    dir
}

/// A publisher key made with the CLI: its seed file and public key.
async fn keygen(root: &Path, name: &str) -> (PathBuf, String) {
    let seed = root.join(format!("{name}.nk"));
    let output = switchyard(None, &["package", "keygen", "--out", path(&seed)]).await;
    let public = succeeded(&output).trim().to_owned();
    assert!(public.starts_with('V') && public.len() == 56, "{public}");
    (seed, public)
}

/// Builds the package of `dir` into `out` with the CLI, and signs it with `seed` if given.
async fn build(dir: &Path, out: &Path, seed: Option<&Path>) {
    succeeded(&switchyard(None, &["package", "build", path(dir), "--out", path(out)]).await);
    if let Some(seed) = seed {
        succeeded(&switchyard(None, &["package", "sign", path(out), "--key", path(seed)]).await);
    }
}

/// The archive's entries as (path, data).
fn entries(file: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(file).unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// Writes an archive of these entries, with the names as given (unchecked: `../x` too).
fn write_archive(file: &Path, entries: &[(String, Vec<u8>)]) {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, &data[..]).unwrap();
    }
    std::fs::write(file, builder.into_inner().unwrap()).unwrap();
}

/// Rewrites the package `from` into `to` with its index changed by `edit`, each part named by
/// `rename` (old → new), and signed again by `seed`: a package its publisher made hostile.
fn resign(
    from: &Path,
    to: &Path,
    seed: &Path,
    edit: impl FnOnce(&mut PackageIndex),
    rename: (&str, &str),
) {
    let mut parts = entries(from);
    let mut index = PackageIndex::decode_unchecked(&parts[0].1);
    edit(&mut index);
    let index_bytes = index.to_canonical_json();
    let signature: PackageSignature = PublisherKeyPair::read_seed_file(seed)
        .unwrap()
        .sign_index(&index_bytes);
    parts[0].1 = index_bytes;
    parts[1].1 = serde_json::to_vec(&signature).unwrap();
    for (name, _) in &mut parts {
        if name == rename.0 {
            *name = rename.1.to_owned();
        }
    }
    write_archive(to, &parts);
}

trait DecodeUnchecked {
    fn decode_unchecked(bytes: &[u8]) -> Self;
}

impl DecodeUnchecked for PackageIndex {
    fn decode_unchecked(bytes: &[u8]) -> Self {
        serde_json::from_slice(bytes).expect("the index is JSON")
    }
}

#[tokio::test]
async fn build_sign_and_verify_round_trip_offline_and_against_the_deployments_trust() {
    let root = tempfile::tempdir().unwrap();
    let dir = source(root.path(), "audit-log", "1.2.0", &["audit"], "compliance");
    let file = root.path().join("audit-log.pkg");
    let (seed, public) = keygen(root.path(), "publisher").await;
    // The seed is the publisher's secret: readable by its owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&seed).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = switchyard(None, &["package", "keygen", "--out", path(&seed)]).await;
    assert!(failed(&again).contains("exists"), "{}", stderr(&again));

    let built = switchyard(
        None,
        &["package", "build", path(&dir), "--out", path(&file)],
    )
    .await;
    assert!(
        succeeded(&built).contains("audit-log 1.2.0, 3 parts"),
        "{}",
        succeeded(&built)
    );
    let signed = switchyard(
        None,
        &["package", "sign", path(&file), "--key", path(&seed)],
    )
    .await;
    assert!(succeeded(&signed).contains(&public));

    // Offline, with the key given.
    let verified = switchyard(
        None,
        &["package", "verify", path(&file), "--trusted-keys", &public],
    )
    .await;
    let text = succeeded(&verified);
    assert!(text.starts_with("ok: audit-log 1.2.0: signed by"), "{text}");
    assert!(
        text.contains(&public) && text.contains("every part intact"),
        "{text}"
    );

    // What it holds and asks for.
    let inspected = json(&switchyard(None, &["package", "inspect", path(&file), "--json"]).await);
    assert_eq!(inspected["plugin"]["id"], "audit-log");
    assert_eq!(inspected["plugin"]["tags"], serde_json::json!(["audit"]));
    assert_eq!(inspected["signature"]["key"], public.as_str());
    assert_eq!(inspected["signature"]["valid"], true);
    assert_eq!(inspected["tampered"], Value::Null);
    let parts: Vec<&str> = inspected["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(parts, ["plugin.toml", "bin/worker", "data/rules.json"]);
    assert_eq!(
        inspected["worker"]["binaries"]["x86_64-unknown-linux-gnu"],
        "bin/worker"
    );
    let asks = &inspected["asks"];
    assert_eq!(
        asks["subscriptions"][0]["events"],
        serde_json::json!(["order.*"])
    );
    assert_eq!(asks["channels"]["send"], serde_json::json!(["alerts"]));
    assert_eq!(asks["tenants"], Value::Null);
    assert_eq!(asks["limits"]["max_connections"], 3);
    assert_eq!(
        asks["settings"]["webhook_url"],
        "https://example.invalid/hook"
    );
    let text = succeeded(&switchyard(None, &["package", "inspect", path(&file)]).await);
    for line in [
        "audit-log 1.2.0 (core ^0.1)",
        "events (orders): order.*",
        "channels: send alerts; receive none",
        "tenants: none named in the manifest",
        "max_connections 3",
        "settings: webhook_url",
    ] {
        assert!(text.contains(line), "`{line}` in:\n{text}");
    }

    // Against the deployment: refused until an operator trusts the key, then accepted.
    let server = TestServer::start().await;
    let untrusted = switchyard(Some(&server), &["package", "verify", path(&file)]).await;
    let error = failed(&untrusted);
    assert!(
        error.contains("a key this deployment does not trust") && error.contains(&public),
        "{error}"
    );
    succeeded(
        &switchyard(
            Some(&server),
            &["trust", "add", &public, "--name", "Example Ltd"],
        )
        .await,
    );
    let trusted = switchyard(Some(&server), &["package", "verify", path(&file), "--json"]).await;
    let report = json(&trusted);
    assert_eq!(report["accepted"], true);
    assert_eq!(report["verdict"], "trusted");
    assert_eq!(report["publisher"], public.as_str());
    assert_eq!(report["publisher_name"], "Example Ltd");
}

#[tokio::test]
async fn trust_add_and_remove_take_effect_and_only_publisher_keys_are_trusted() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let dir = source(root.path(), "billing", "0.3.0", &["invoices"], "finance");
    let file = root.path().join("billing.pkg");
    let (seed, public) = keygen(root.path(), "publisher").await;
    let (_, other) = keygen(root.path(), "other").await;
    build(&dir, &file, Some(&seed)).await;

    let listed = succeeded(&switchyard(Some(&server), &["trust", "list"]).await);
    assert!(listed.contains("no publisher key is trusted"), "{listed}");
    // Trusting another publisher does not make this package trusted.
    succeeded(&switchyard(Some(&server), &["trust", "add", &other, "--name", "Other"]).await);
    let refused = failed(&switchyard(Some(&server), &["package", "verify", path(&file)]).await);
    assert!(
        refused.contains(&public) && refused.contains("not allowed"),
        "{refused}"
    );

    let added = switchyard(
        Some(&server),
        &["trust", "add", &public, "--name", "Billing team"],
    )
    .await;
    assert_eq!(
        succeeded(&added).trim(),
        format!("trusted {public} as \"Billing team\"")
    );
    succeeded(&switchyard(Some(&server), &["package", "verify", path(&file)]).await);
    let listed = json(&switchyard(Some(&server), &["trust", "list", "--json"]).await);
    let names: Vec<(&str, &str)> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["key"].as_str().unwrap(), k["name"].as_str().unwrap()))
        .collect();
    let mut expected = vec![(public.as_str(), "Billing team"), (other.as_str(), "Other")];
    expected.sort();
    assert_eq!(names, expected);

    let removed = switchyard(Some(&server), &["trust", "remove", &public]).await;
    assert_eq!(
        succeeded(&removed).trim(),
        format!("no longer trusted: {public}")
    );
    failed(&switchyard(Some(&server), &["package", "verify", path(&file)]).await);
    let again = failed(&switchyard(Some(&server), &["trust", "remove", &public]).await);
    assert!(again.contains("is not trusted"), "{again}");

    // An explicit allowance for this plugin lets an untrusted package through.
    let allowed = switchyard(
        Some(&server),
        &["package", "verify", path(&file), "--allow-untrusted"],
    )
    .await;
    assert!(
        succeeded(&allowed).contains("accepted as allowed"),
        "{}",
        succeeded(&allowed)
    );

    // A seed, an account key or a mistyped key is refused before anything is stored.
    let seed_text = std::fs::read_to_string(&seed).unwrap();
    let as_seed = failed(
        &switchyard(
            Some(&server),
            &["trust", "add", seed_text.trim(), "--name", "x"],
        )
        .await,
    );
    assert!(as_seed.contains("seed"), "{as_seed}");
    let mut typo = public.clone();
    typo.replace_range(20..21, if &typo[20..21] == "A" { "B" } else { "A" });
    failed(&switchyard(Some(&server), &["trust", "add", &typo, "--name", "x"]).await);
    let account = "AAAHEWB2LUZVCD5KKI6D6PFWPGHO2LVFFUJGZYNX3M4UL3GGXRRAXWJH";
    let wrong = failed(&switchyard(Some(&server), &["trust", "add", account, "--name", "x"]).await);
    assert!(
        wrong.contains("not a publisher key") || wrong.contains("not a public key"),
        "{wrong}"
    );
}

#[tokio::test]
async fn an_unsigned_package_is_refused_unless_allowed_for_it() {
    let root = tempfile::tempdir().unwrap();
    let dir = source(root.path(), "audit-log", "1.2.0", &["audit"], "compliance");
    let file = root.path().join("audit-log.pkg");
    build(&dir, &file, None).await;
    let (_, public) = keygen(root.path(), "publisher").await;

    let refused = switchyard(
        None,
        &["package", "verify", path(&file), "--trusted-keys", &public],
    )
    .await;
    let error = failed(&refused);
    assert!(
        error.contains("refused: not signed; not allowed for plugin audit-log"),
        "{error}"
    );
    let allowed = switchyard(
        None,
        &[
            "package",
            "verify",
            path(&file),
            "--trusted-keys",
            &public,
            "--allow-unsigned",
        ],
    )
    .await;
    assert!(succeeded(&allowed).contains("not signed, accepted as allowed"));
    // Allowing untrusted keys does not allow unsigned packages.
    failed(
        &switchyard(
            None,
            &[
                "package",
                "verify",
                path(&file),
                "--trusted-keys",
                &public,
                "--allow-untrusted",
            ],
        )
        .await,
    );
}

#[tokio::test]
async fn one_byte_flipped_in_any_part_is_refused_naming_the_part() {
    let root = tempfile::tempdir().unwrap();
    let dir = source(root.path(), "audit-log", "1.2.0", &["audit"], "compliance");
    let file = root.path().join("audit-log.pkg");
    let (seed, public) = keygen(root.path(), "publisher").await;
    build(&dir, &file, Some(&seed)).await;
    let bytes = std::fs::read(&file).unwrap();
    let index: Value = serde_json::from_slice(&entries(&file)[0].1).unwrap();

    let mut archive = tar::Archive::new(&bytes[..]);
    let positions: Vec<(String, u64, u64)> = archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            (name, entry.raw_file_position(), entry.size())
        })
        .filter(|(name, ..)| !name.starts_with(".package/"))
        .collect();
    assert_eq!(positions.len(), 3);
    for (part, offset, size) in positions {
        let mut tampered = bytes.clone();
        tampered[usize::try_from(offset + size / 2).unwrap()] ^= 0x20;
        let tampered_file = root.path().join("tampered.pkg");
        std::fs::write(&tampered_file, &tampered).unwrap();
        let output = switchyard(
            None,
            &[
                "package",
                "verify",
                path(&tampered_file),
                "--trusted-keys",
                &public,
                "--allow-unsigned",
                "--allow-untrusted",
            ],
        )
        .await;
        let error = failed(&output);
        let expected = index["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["path"] == part.as_str())
            .unwrap()["sha256"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            error.contains(&format!(
                "refused: tampered: part {part:?} does not match the index: sha256 expected \
                 {expected}, actual "
            )),
            "{part}: {error}"
        );
        // inspect still shows it, and says so.
        let inspected = json(
            &switchyard(
                None,
                &["package", "inspect", path(&tampered_file), "--json"],
            )
            .await,
        );
        assert_eq!(inspected["tampered"]["part"], part.as_str());
    }
}

#[tokio::test]
async fn a_signature_by_another_key_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = source(root.path(), "audit-log", "1.2.0", &["audit"], "compliance");
    let file = root.path().join("audit-log.pkg");
    let (seed, public) = keygen(root.path(), "publisher").await;
    let (impostor_seed, impostor) = keygen(root.path(), "impostor").await;
    build(&dir, &file, Some(&seed)).await;

    // Signed again by the impostor: a valid signature, by a key nobody trusts.
    let resigned = root.path().join("resigned.pkg");
    succeeded(
        &switchyard(
            None,
            &[
                "package",
                "sign",
                path(&file),
                "--key",
                path(&impostor_seed),
                "--out",
                path(&resigned),
            ],
        )
        .await,
    );
    let error = failed(
        &switchyard(
            None,
            &[
                "package",
                "verify",
                path(&resigned),
                "--trusted-keys",
                &public,
            ],
        )
        .await,
    );
    assert!(
        error.contains(&format!("signed by {impostor}, a key")),
        "{error}"
    );

    // The impostor's signature under the trusted publisher's name: a bad signature, refused
    // even where untrusted packages are allowed.
    let mut parts = entries(&resigned);
    let mut signature: PackageSignature = serde_json::from_slice(&parts[1].1).unwrap();
    signature.key = public.clone();
    parts[1].1 = serde_json::to_vec(&signature).unwrap();
    let forged = root.path().join("forged.pkg");
    write_archive(&forged, &parts);
    let output = switchyard(
        None,
        &[
            "package",
            "verify",
            path(&forged),
            "--trusted-keys",
            &public,
            "--allow-untrusted",
            "--allow-unsigned",
            "--json",
        ],
    )
    .await;
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["accepted"], false);
    assert_eq!(report["verdict"], "bad_signature");
    assert_eq!(report["publisher"], public.as_str());
    let error = failed(&output);
    assert!(
        error.contains("bad signature") && error.contains("does not verify"),
        "{error}"
    );
}

#[tokio::test]
async fn an_index_that_lies_about_a_size_or_holds_an_escaping_path_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = source(root.path(), "audit-log", "1.2.0", &["audit"], "compliance");
    let file = root.path().join("audit-log.pkg");
    let (seed, public) = keygen(root.path(), "publisher").await;
    build(&dir, &file, Some(&seed)).await;
    let verify = |file: PathBuf| {
        let public = public.clone();
        async move {
            let output = switchyard(
                None,
                &["package", "verify", path(&file), "--trusted-keys", &public],
            )
            .await;
            failed(&output)
        }
    };

    // Signed by the trusted publisher, so the signature is no obstacle: the reader is.
    let lying = root.path().join("lying.pkg");
    resign(
        &file,
        &lying,
        &seed,
        |index| index.parts[1].size += 1,
        ("", ""),
    );
    let error = verify(lying).await;
    assert!(
        error.contains("part \"bin/worker\": the index says"),
        "{error}"
    );

    let escaping = root.path().join("escaping.pkg");
    resign(
        &file,
        &escaping,
        &seed,
        |index| {
            index.parts[2].path = "../x".into();
        },
        ("data/rules.json", "../x"),
    );
    let error = verify(escaping).await;
    assert!(error.contains("bad part path \"../x\""), "{error}");

    let absolute = root.path().join("absolute.pkg");
    resign(
        &file,
        &absolute,
        &seed,
        |index| {
            index.parts[2].path = "/etc/cron.d/x".into();
        },
        ("data/rules.json", "/etc/cron.d/x"),
    );
    let error = verify(absolute).await;
    assert!(error.contains("bad part path \"/etc/cron.d/x\""), "{error}");

    let huge = root.path().join("huge.pkg");
    resign(
        &file,
        &huge,
        &seed,
        |index| index.parts[1].size = 1 << 40,
        ("", ""),
    );
    let error = verify(huge).await;
    assert!(error.contains("MAX_PART_BYTES"), "{error}");
}

#[tokio::test]
async fn oversized_input_is_refused_with_the_limit_named() {
    let root = tempfile::tempdir().unwrap();
    // A package file over 256 MiB (sparse: nothing is written) is refused before reading.
    let big = root.path().join("big.pkg");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(256 * 1024 * 1024 + 1)
        .unwrap();
    let error = failed(&switchyard(None, &["package", "inspect", path(&big)]).await);
    assert!(
        error.contains("is 268435457 bytes; at most 268435456 are allowed (MAX_PACKAGE_BYTES)"),
        "{error}"
    );

    // A worker binary over the part limit is refused when building.
    let dir = source(root.path(), "audit-log", "1.2.0", &["audit"], "compliance");
    std::fs::File::create(dir.join("bin/worker"))
        .unwrap()
        .set_len(128 * 1024 * 1024 + 1)
        .unwrap();
    let out = root.path().join("out.pkg");
    let error =
        failed(&switchyard(None, &["package", "build", path(&dir), "--out", path(&out)]).await);
    assert!(
        error.contains("\"bin/worker\" is 134217729 bytes") && error.contains("MAX_PART_BYTES"),
        "{error}"
    );
    assert!(!out.exists());

    // An index over its limit.
    let padded = root.path().join("padded.pkg");
    let mut index = vec![b' '; 512 * 1024 + 1];
    index[0] = b'{';
    write_archive(&padded, &[(".package/index.json".to_owned(), index)]);
    let error = failed(&switchyard(None, &["package", "inspect", path(&padded)]).await);
    assert!(error.contains("MAX_INDEX_BYTES"), "{error}");

    // Not a package at all.
    let text = root.path().join("text.pkg");
    std::fs::write(&text, "just some text").unwrap();
    let error = failed(&switchyard(None, &["package", "inspect", path(&text)]).await);
    assert!(error.contains("not a readable package"), "{error}");
}

#[tokio::test]
async fn the_catalog_lists_what_is_published_and_finds_it_by_tag_category_and_text() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let (seed, public) = keygen(root.path(), "publisher").await;
    let (other_seed, other) = keygen(root.path(), "other").await;
    succeeded(
        &switchyard(
            Some(&server),
            &["trust", "add", &public, "--name", "Example"],
        )
        .await,
    );
    let plugins = [
        (
            "audit-log",
            "1.2.0",
            &["audit", "orders"][..],
            "compliance",
            Some(&seed),
        ),
        (
            "billing",
            "0.3.0",
            &["invoices"][..],
            "finance",
            Some(&other_seed),
        ),
        ("geo-lookup", "2.0.0", &["Maps"][..], "enrichment", None),
    ];
    for (id, version, tags, category, key) in plugins {
        let dir = source(root.path(), id, version, tags, category);
        let file = root.path().join(format!("{id}.pkg"));
        build(&dir, &file, key.map(PathBuf::as_path)).await;
        let published = switchyard(Some(&server), &["package", "publish", path(&file)]).await;
        assert!(
            succeeded(&published)
                .starts_with(&format!("published {id}/{version} in SWITCHYARD_PACKAGES")),
            "{}",
            succeeded(&published)
        );
    }

    let all = json(&switchyard(Some(&server), &["catalog", "--json"]).await);
    let rows: Vec<(String, String, String, bool)> = all["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["version"].as_str().unwrap().to_owned(),
                p["signature"].as_str().unwrap().to_owned(),
                p["trusted"].as_bool().unwrap(),
            )
        })
        .collect();
    let row = |id: &str, version: &str, signature: &str, trusted| {
        (
            id.to_owned(),
            version.to_owned(),
            signature.to_owned(),
            trusted,
        )
    };
    assert_eq!(
        rows,
        [
            row("audit-log", "1.2.0", "trusted", true),
            row("billing", "0.3.0", "untrusted", false),
            row("geo-lookup", "2.0.0", "unsigned", false),
        ]
    );
    let audit = &all["packages"][0];
    assert_eq!(audit["publisher"], public.as_str());
    assert_eq!(audit["publisher_name"], "Example");
    assert_eq!(audit["description"], "The audit-log plugin, for testing");
    assert_eq!(audit["category"], "compliance");
    assert_eq!(audit["tags"], serde_json::json!(["audit", "orders"]));
    assert_eq!(all["packages"][1]["publisher"], other.as_str());

    let ids = |output: &Output| -> Vec<String> {
        json(output)["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let by_tag = switchyard(Some(&server), &["catalog", "--tag", "ORDERS", "--json"]).await;
    assert_eq!(ids(&by_tag), ["audit-log"]);
    let by_tag = switchyard(Some(&server), &["catalog", "--tag", "maps", "--json"]).await;
    assert_eq!(ids(&by_tag), ["geo-lookup"]);
    let by_category = switchyard(
        Some(&server),
        &["catalog", "--category", "finance", "--json"],
    )
    .await;
    assert_eq!(ids(&by_category), ["billing"]);
    let by_text = switchyard(Some(&server), &["catalog", "--search", "GEO", "--json"]).await;
    assert_eq!(ids(&by_text), ["geo-lookup"]);
    let both = switchyard(
        Some(&server),
        &[
            "catalog",
            "--tag",
            "audit",
            "--category",
            "finance",
            "--json",
        ],
    )
    .await;
    assert!(ids(&both).is_empty());

    let table =
        succeeded(&switchyard(Some(&server), &["catalog", "--category", "compliance"]).await);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for column in [
        "PLUGIN",
        "VERSION",
        "PUBLISHER",
        "CATEGORY",
        "TAGS",
        "DESCRIPTION",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let line = lines.next().unwrap();
    assert!(
        line.contains("audit-log") && line.contains("(Example)"),
        "{line}"
    );
    assert_eq!(lines.next(), None);

    // Trust removed: the catalog says so at once.
    succeeded(&switchyard(Some(&server), &["trust", "remove", &public]).await);
    let all = json(&switchyard(Some(&server), &["catalog", "--tag", "audit", "--json"]).await);
    assert_eq!(all["packages"][0]["signature"], "untrusted");
    assert_eq!(all["packages"][0]["trusted"], false);
}

#[tokio::test]
async fn a_version_is_published_once_and_a_tampered_package_not_at_all() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let (seed, _) = keygen(root.path(), "publisher").await;
    let dir = source(root.path(), "audit-log", "1.2.0", &["audit"], "compliance");
    let file = root.path().join("audit-log.pkg");
    build(&dir, &file, Some(&seed)).await;
    succeeded(&switchyard(Some(&server), &["package", "publish", path(&file)]).await);
    let again = switchyard(Some(&server), &["package", "publish", path(&file)]).await;
    assert!(
        succeeded(&again).starts_with("already published, unchanged: audit-log/1.2.0"),
        "{}",
        succeeded(&again)
    );

    // Another build of the same version.
    std::fs::write(dir.join("bin/worker"), "another worker").unwrap();
    let changed = root.path().join("changed.pkg");
    build(&dir, &changed, Some(&seed)).await;
    let refused = failed(&switchyard(Some(&server), &["package", "publish", path(&changed)]).await);
    assert!(
        refused.contains("another package is published as audit-log/1.2.0 already"),
        "{refused}"
    );
    let replaced = switchyard(
        Some(&server),
        &["package", "publish", path(&changed), "--replace"],
    )
    .await;
    assert!(succeeded(&replaced).starts_with("replaced audit-log/1.2.0"));

    // A flipped byte in the worker: not stored.
    let mut bytes = std::fs::read(&changed).unwrap();
    let at = bytes
        .windows(b"another worker".len())
        .position(|w| w == b"another worker")
        .unwrap();
    bytes[at] ^= 0x20;
    let tampered = root.path().join("tampered.pkg");
    std::fs::write(&tampered, &bytes).unwrap();
    let refused =
        failed(&switchyard(Some(&server), &["package", "publish", path(&tampered)]).await);
    assert!(
        refused.contains("not published: tampered: part \"bin/worker\""),
        "{refused}"
    );
    let listed = json(&switchyard(Some(&server), &["catalog", "--json"]).await);
    assert_eq!(listed["packages"].as_array().unwrap().len(), 1);
}
