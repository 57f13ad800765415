//! The package format in memory: building, signing, every refusal of the reader, and the
//! verdicts. (The commands and the stores are tried from outside in `cli/tests/cli_package.rs`.)

use std::collections::BTreeMap;

use super::*;

const MANIFEST: &str = r#"
[plugin]
id = "audit-log"
version = "1.2.0"
core = "^0.1"
description = "Writes every order event to the audit log"
tags = ["audit"]
category = "compliance"

[[subscriptions]]
name = "orders"
events = ["order.created"]
"#;

fn source_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plugin.toml"), MANIFEST).unwrap();
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::write(dir.path().join("bin/worker"), b"\x7fELF a worker binary").unwrap();
    std::fs::create_dir_all(dir.path().join("data/.cache")).unwrap();
    std::fs::write(dir.path().join("data/rules.json"), b"{}").unwrap();
    std::fs::write(dir.path().join("data/.cache/skip"), b"left out").unwrap();
    std::fs::write(
        dir.path().join("package.toml"),
        "files = [\"data\"]\n[binaries]\nx86_64-unknown-linux-gnu = \"bin/worker\"\n",
    )
    .unwrap();
    dir
}

fn built() -> Package {
    build_from_dir(source_dir().path()).unwrap()
}

/// The archive's entries as (path, data).
fn entries(package: &Package) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(&package.bytes()[..]);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            (path, data)
        })
        .collect()
}

/// An archive of these entries, written as given (paths unchecked).
fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut header = tar::Header::new_ustar();
        let name = &mut header.as_ustar_mut().unwrap().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn a_built_package_holds_the_manifest_first_and_reads_back() {
    let package = built();
    let paths: Vec<&str> = package
        .index()
        .parts
        .iter()
        .map(|p| p.path.as_str())
        .collect();
    assert_eq!(paths, ["plugin.toml", "bin/worker", "data/rules.json"]);
    assert_eq!(
        package.index().worker,
        Worker::Binaries(BTreeMap::from([(
            "x86_64-unknown-linux-gnu".to_owned(),
            "bin/worker".to_owned()
        )]))
    );
    assert_eq!(package.manifest().unwrap().plugin.id.as_str(), "audit-log");
    assert_eq!(package.verdict(&TrustedKeys::none()), Verdict::Unsigned);
    let again = Package::from_bytes(package.bytes().clone()).unwrap();
    assert_eq!(again.index(), package.index());
    // Building twice gives the same bytes.
    assert_eq!(built().bytes(), package.bytes());
}

#[test]
fn verdicts_follow_the_signature_and_the_trust() {
    let publisher = PublisherKeyPair::generate();
    let signed = built().signed(&publisher).unwrap();
    let key = publisher.public_key().clone();
    assert_eq!(
        signed.verdict(&TrustedKeys::none()),
        Verdict::UntrustedKey { key: key.clone() }
    );
    let trust = TrustedKeys::none().with(key.clone(), "Example");
    assert!(signed.verdict(&trust).is_trusted());

    let plugin = switchyard_schemas::PluginId::new("audit-log").unwrap();
    verify_for_install(&signed, &trust, &Allowances::none()).unwrap();
    let refused =
        verify_for_install(&signed, &TrustedKeys::none(), &Allowances::none()).unwrap_err();
    assert!(
        matches!(refused, InstallRefusal::NotAllowed { .. }),
        "{refused}"
    );
    let allowed = Allowances::none().allow(plugin.clone(), Allow::Untrusted);
    verify_for_install(&signed, &TrustedKeys::none(), &allowed).unwrap();
    let unsigned = built();
    assert!(verify_for_install(&unsigned, &trust, &allowed).is_err());
    let other = Allowances::none().allow(
        switchyard_schemas::PluginId::new("other").unwrap(),
        Allow::Unsigned,
    );
    assert!(verify_for_install(&unsigned, &trust, &other).is_err());
    let allowed = allowed.allow(plugin, Allow::Unsigned);
    assert_eq!(
        verify_for_install(&unsigned, &trust, &allowed)
            .unwrap()
            .verdict,
        Verdict::Unsigned
    );

    // Another key's signature under this key's name.
    let impostor = PublisherKeyPair::generate();
    let mut forged = impostor.sign_index(signed.index_bytes());
    forged.key = key.to_string();
    let forged = signed.with_signature(Some(&forged)).unwrap();
    let verdict = forged.verdict(&trust);
    assert!(matches!(verdict, Verdict::BadSignature { .. }), "{verdict}");
    assert!(matches!(
        verify_for_install(&forged, &trust, &allowed),
        Err(InstallRefusal::Failed(_))
    ));
}

#[test]
fn a_flipped_byte_in_any_part_is_named() {
    let publisher = PublisherKeyPair::generate();
    let signed = built().signed(&publisher).unwrap();
    let trust = TrustedKeys::none().with(publisher.public_key().clone(), "Example");
    for part in signed.parts() {
        let offset = part.data.as_ptr() as usize - signed.bytes().as_ptr() as usize;
        let mut bytes = signed.bytes().to_vec();
        bytes[offset + part.data.len() / 2] ^= 0x01;
        let tampered = Package::from_bytes(bytes).unwrap();
        match tampered.verdict(&trust) {
            Verdict::Tampered(tampering) => {
                assert_eq!(tampering.part, part.entry.path);
                assert_eq!(tampering.expected_sha256, part.entry.sha256);
                assert_ne!(tampering.actual_sha256, part.entry.sha256);
            }
            other => panic!("{}: {other}", part.entry.path),
        }
    }
}

#[test]
fn the_reader_refuses_what_a_package_may_not_be() {
    let package = built();
    let parts = entries(&package);
    let get = |path: &str| parts.iter().find(|(p, _)| p == path).unwrap().1.clone();
    let index = get(INDEX_ENTRY);
    let manifest = get("plugin.toml");
    let worker = get("bin/worker");
    let rules = get("data/rules.json");
    let ok = archive(&[
        (INDEX_ENTRY, &index),
        ("plugin.toml", &manifest),
        ("bin/worker", &worker),
        ("data/rules.json", &rules),
    ]);
    Package::from_bytes(ok.clone()).unwrap();

    let refused = |bytes: Vec<u8>, expected: &str| {
        let err = Package::from_bytes(bytes).unwrap_err().to_string();
        assert!(err.contains(expected), "`{expected}` in: {err}");
    };
    // An entry escaping the directory, in the archive.
    refused(
        archive(&[
            (INDEX_ENTRY, &index),
            ("plugin.toml", &manifest),
            ("../x", &worker),
        ]),
        "bad part path \"../x\"",
    );
    // Parts out of order, missing, or extra.
    refused(
        archive(&[
            (INDEX_ENTRY, &index),
            ("plugin.toml", &manifest),
            ("data/rules.json", &rules),
            ("bin/worker", &worker),
        ]),
        "expected \"bin/worker\" here",
    );
    refused(
        archive(&[(INDEX_ENTRY, &index), ("plugin.toml", &manifest)]),
        "does not hold",
    );
    refused(
        archive(&[
            (INDEX_ENTRY, &index),
            ("plugin.toml", &manifest),
            ("bin/worker", &worker),
            ("data/rules.json", &rules),
            ("data/extra", b"x"),
        ]),
        "the index does not list it",
    );
    // A part shorter than the index says.
    refused(
        archive(&[
            (INDEX_ENTRY, &index),
            ("plugin.toml", &manifest),
            ("bin/worker", &worker[1..]),
            ("data/rules.json", &rules),
        ]),
        "the index says",
    );
    // No index first.
    refused(
        archive(&[("plugin.toml", &manifest)]),
        "expected \".package/index.json\"",
    );
    // Bytes after the end, a cut-off archive, a broken checksum, a link.
    let mut trailing = ok.clone();
    trailing.extend_from_slice(b"hidden");
    refused(trailing, "after the end of the archive");
    refused(ok[..ok.len() - 1100].to_vec(), "truncated");
    let mut checksum = ok.clone();
    checksum[0] ^= 1;
    refused(checksum, "checksum");
    let mut link = ok.clone();
    let second = 512 + index.len().div_ceil(512) * 512;
    link[second + 156] = b'2';
    let mut header = tar::Header::new_old();
    header
        .as_mut_bytes()
        .copy_from_slice(&link[second..second + 512]);
    header.set_cksum();
    link[second..second + 512].copy_from_slice(header.as_bytes());
    refused(link, "Symlink");
    refused(Vec::new(), "truncated");
    refused(vec![0; 1024], "no entry");
}

#[test]
fn the_head_reads_from_a_prefix_and_asks_for_more_until_it_can() {
    let publisher = PublisherKeyPair::generate();
    let signed = built().signed(&publisher).unwrap();
    let bytes = signed.bytes();
    let total = bytes.len() as u64;
    let mut needed = None;
    for cut in (0..bytes.len()).step_by(97) {
        if let Some(head) = PackageHead::parse(&bytes[..cut], total).unwrap() {
            needed.get_or_insert(cut);
            assert_eq!(head.index, *signed.index());
            assert_eq!(head.manifest.plugin.id.as_str(), "audit-log");
            assert_eq!(
                head.signature.unwrap().verify(&head.index_bytes).unwrap(),
                *publisher.public_key()
            );
        } else {
            assert!(needed.is_none(), "a head once read must stay read ({cut})");
        }
    }
    assert!(needed.is_some());
}

#[test]
fn building_refuses_what_it_cannot_package() {
    let dir = source_dir();
    std::fs::write(
        dir.path().join("package.toml"),
        "command = [\"python3\", \"worker.py\"]\n[binaries]\nx86_64-unknown-linux-gnu = \"bin/worker\"\n",
    )
    .unwrap();
    let err = build_from_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("both"), "{err}");

    std::fs::write(
        dir.path().join("package.toml"),
        "files = [\"../outside\"]\ncommand = [\"x\"]\n",
    )
    .unwrap();
    let err = build_from_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("\"../outside\""), "{err}");

    // A file beyond the part limit is refused before it is read (a sparse file).
    let big = std::fs::File::create(dir.path().join("big")).unwrap();
    big.set_len(MAX_PART_BYTES + 1).unwrap();
    std::fs::write(
        dir.path().join("package.toml"),
        "files = [\"big\"]\ncommand = [\"x\"]\n",
    )
    .unwrap();
    let err = build_from_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("MAX_PART_BYTES"), "{err}");

    std::fs::write(dir.path().join("plugin.toml"), "[plugin]\nid = \"a b\"\n").unwrap();
    std::fs::write(dir.path().join("package.toml"), "command = [\"x\"]\n").unwrap();
    let err = build_from_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("plugin.id"), "{err}");
}

#[test]
fn unpacking_verifies_first_then_writes_the_manifest_and_an_executable_worker() {
    let package = built();
    let target = "x86_64-unknown-linux-gnu";
    let plugin = switchyard_schemas::PluginId::new("audit-log").unwrap();
    let allow = Allowances::none().allow(plugin, Allow::Unsigned);
    let out = tempfile::tempdir().unwrap();

    // Unsigned and not allowed: refused, nothing written.
    let dir = out.path().join("refused");
    let refused = unpack(
        &package,
        &TrustedKeys::none(),
        &Allowances::none(),
        &dir,
        target,
    );
    assert!(
        matches!(refused, Err(UnpackError::Refused(_))),
        "{refused:?}"
    );
    assert!(!dir.exists());
    // No binary for the target: refused before the directory is made.
    let other = unpack(
        &package,
        &TrustedKeys::none(),
        &allow,
        &dir,
        "riscv64gc-unknown-linux-gnu",
    );
    assert!(
        matches!(&other, Err(UnpackError::NoBinary { available, .. }) if available == target),
        "{other:?}"
    );
    assert!(!dir.exists());

    let dir = out.path().join("audit-log");
    let unpacked = unpack(&package, &TrustedKeys::none(), &allow, &dir, target).unwrap();
    assert_eq!(
        unpacked.files,
        ["plugin.toml", "bin/worker", "data/rules.json"]
    );
    assert_eq!(unpacked.command, ["bin/worker"]);
    assert_eq!(unpacked.installable.verdict, Verdict::Unsigned);
    assert_eq!(
        std::fs::read(dir.join("bin/worker")).unwrap(),
        b"\x7fELF a worker binary"
    );
    assert_eq!(
        std::fs::read_to_string(&unpacked.manifest).unwrap(),
        MANIFEST
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode =
            |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(unpacked.executable.as_deref().unwrap()), 0o755);
        assert_eq!(mode(&dir.join("data/rules.json")), 0o644);
    }
    // Never over files that are there.
    let again = unpack(&package, &TrustedKeys::none(), &allow, &dir, target);
    assert!(
        matches!(again, Err(UnpackError::NotEmpty { .. })),
        "{again:?}"
    );
}

#[test]
fn the_host_target_is_a_triple() {
    let target = host_target();
    assert!(target.starts_with(std::env::consts::ARCH), "{target}");
    assert!(target.split('-').count() >= 3, "{target}");
}
