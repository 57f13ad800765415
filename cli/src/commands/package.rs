//! `switchyard package`: build, sign, verify, inspect and publish plugin packages, and make
//! publisher keys.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use async_nats::jetstream;
use clap::{Args, Subcommand};
use serde::Serialize;
use switchyard_control::lifecycle::install::PackageAllowances;
use switchyard_control::package::{
    build_from_dir, host_target, unpack, verify_for_install, Allowances, Package, PackageStore,
    PublisherKey, PublisherKeyPair, TrustStore, TrustedKeys, Verdict, Worker,
};
use switchyard_schemas::semver::Version;
use switchyard_schemas::{Manifest, PluginId};

use super::streams::NamespaceArgs;
use super::{print_json, CliError, NatsArgs, OutputArgs};
use crate::render::{parse_plugin_id, printable};

#[derive(Debug, Subcommand)]
pub(crate) enum PackageCommand {
    /// Build an unsigned package from a directory holding `plugin.toml`, `package.toml` (how
    /// the worker runs and which files go with it) and those files.
    Build(BuildArgs),
    /// Make a publisher key pair: write its seed to a new file readable by you only, and print
    /// its public key (what operators trust with `switchyard trust add`).
    Keygen(KeygenArgs),
    /// Sign a package with a publisher key, replacing any signature it had.
    Sign(SignArgs),
    /// Verify a package as installing would: its signature, every part against its index,
    /// and whether its publisher is trusted. Exits non-zero when it would be refused.
    ///
    /// The trusted keys are the ones given with `--trusted-keys` (no server needed), else
    /// the deployment's (`switchyard trust list`).
    Verify(VerifyArgs),
    /// Show what a package holds (parts, worker, signature) and what its plugin asks for
    /// (events, channels, tenants, limits, settings, dependencies).
    Inspect(InspectArgs),
    /// Publish a package to the deployment's package store as `{id}/{version}`, for the
    /// catalog. A tampered or badly signed package is refused; another package of the same
    /// version too, unless `--replace`.
    Publish(PublishArgs),
    /// Unpack a package's manifest and worker into a new or empty directory, as a host runs
    /// it: verified first as installing verifies it (refused when it would be), each part's
    /// digest checked again as it is written, every path kept inside the directory, and the
    /// worker's binary for the target made executable.
    Unpack(UnpackArgs),
}

#[derive(Debug, Args)]
pub(crate) struct UnpackArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The package file.
    #[arg(required_unless_present = "package")]
    file: Option<PathBuf>,
    /// Unpack a package of the deployment's package store instead: `ID@VERSION`, or `ID` for
    /// its highest published version.
    #[arg(long, value_name = "ID[@VERSION]", conflicts_with = "file")]
    package: Option<String>,
    /// The directory to unpack into; created when missing, and it must be empty.
    #[arg(long, value_name = "DIR")]
    into: PathBuf,
    /// The target triple whose binary to unpack [default: this host's].
    #[arg(long)]
    target: Option<String>,
    /// Publisher keys to trust instead of the deployment's (comma-separated or repeated).
    #[arg(long, value_name = "KEY", value_delimiter = ',')]
    trusted_keys: Vec<String>,
    /// Accept an unsigned package.
    #[arg(long)]
    allow_unsigned: bool,
    /// Accept a package signed by a key that is not trusted.
    #[arg(long)]
    allow_untrusted: bool,
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The directory holding plugin.toml, package.toml and the worker's files.
    dir: PathBuf,
    /// The package file to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// The file to write the seed (the secret half) to; it must not exist.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The package file.
    file: PathBuf,
    /// The publisher's seed file, from `switchyard package keygen`.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Write the signed package here instead of replacing the file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The package file.
    file: PathBuf,
    /// Publisher keys to trust instead of the deployment's (comma-separated or repeated).
    #[arg(long, value_name = "KEY", value_delimiter = ',')]
    trusted_keys: Vec<String>,
    /// Accept an unsigned package.
    #[arg(long)]
    allow_unsigned: bool,
    /// Accept a package signed by a key that is not trusted.
    #[arg(long)]
    allow_untrusted: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The package file.
    file: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The package file.
    file: PathBuf,
    /// Replace another package already published as the same version.
    #[arg(long)]
    replace: bool,
}

pub(crate) async fn run(command: PackageCommand) -> Result<(), CliError> {
    match command {
        PackageCommand::Build(args) => build(&args),
        PackageCommand::Keygen(args) => keygen(&args),
        PackageCommand::Sign(args) => sign(&args),
        PackageCommand::Verify(args) => verify(args).await,
        PackageCommand::Inspect(args) => inspect(&args),
        PackageCommand::Publish(args) => publish(args).await,
        PackageCommand::Unpack(args) => Box::pin(unpack_package(args)).await,
    }
}

/// `ID@VERSION`, or `ID` alone (`None`: the highest version published).
pub(crate) fn parse_package_ref(text: &str) -> Result<(PluginId, Option<Version>), CliError> {
    let (plugin, version) = match text.split_once('@') {
        Some((plugin, version)) => (plugin, Some(version)),
        None => (text, None),
    };
    let plugin = parse_plugin_id(plugin.trim()).map_err(|reason| CliError::BadArgument {
        argument: "--package",
        reason,
    })?;
    let version = version
        .map(|v| Version::parse(v.trim()))
        .transpose()
        .map_err(|e| CliError::BadArgument {
            argument: "--package",
            reason: format!("not a version after `@`: {e}"),
        })?;
    Ok((plugin, version))
}

/// What `--allow-unsigned` and `--allow-untrusted` allow `package`.
pub(crate) fn allowances(package: &Package, unsigned: bool, untrusted: bool) -> Allowances {
    PackageAllowances {
        unsigned,
        untrusted,
    }
    .for_package(package)
}

/// The keys given with `--trusted-keys`, else the deployment's (none when it never trusted
/// one).
async fn trusted_keys(
    nats: &NatsArgs,
    namespace: &NamespaceArgs,
    given: &[String],
) -> Result<TrustedKeys, CliError> {
    if given.is_empty() {
        let client = nats.connect_options()?.connect().await?;
        let js = jetstream::new(client);
        return Ok(
            match TrustStore::open_existing(&js, &namespace.prefix).await? {
                Some(store) => store.trusted_keys().await?,
                None => TrustedKeys::none(),
            },
        );
    }
    given
        .iter()
        .map(|key| Ok((PublisherKey::new(key.trim())?, "--trusted-keys".to_owned())))
        .collect()
}

async fn unpack_package(args: UnpackArgs) -> Result<(), CliError> {
    let package = match (&args.file, &args.package) {
        (_, Some(wanted)) => {
            let (plugin, version) = parse_package_ref(wanted)?;
            let client = args.nats.connect_options()?.connect().await?;
            let store = PackageStore::open(&jetstream::new(client), &args.namespace.prefix).await?;
            switchyard_control::lifecycle::install::fetch_stored(&store, &plugin, version)
                .await?
                .0
        }
        // clap makes sure one of the two is given.
        (file, None) => Package::read_file(file.as_deref().unwrap_or(Path::new("")))?,
    };
    let trust = trusted_keys(&args.nats, &args.namespace, &args.trusted_keys).await?;
    let allow = allowances(&package, args.allow_unsigned, args.allow_untrusted);
    let target = args.target.clone().unwrap_or_else(host_target);
    let unpacked = unpack(&package, &trust, &allow, &args.into, &target)?;
    let plugin = &unpacked.installable.manifest.plugin;
    println!(
        "unpacked {} {} into {}: {} files; worker: {}; {}",
        plugin.id,
        plugin.version,
        unpacked.dir.display(),
        unpacked.files.len(),
        printable(&unpacked.command.join(" ")),
        printable(&unpacked.installable.verdict.to_string())
    );
    Ok(())
}

fn build(args: &BuildArgs) -> Result<(), CliError> {
    let package = build_from_dir(&args.dir)?;
    let manifest = package.manifest()?;
    write_file(&args.out, package.bytes())?;
    println!(
        "built {}: {} {}, {} parts, {} bytes, unsigned (sign it with `switchyard package sign`)",
        args.out.display(),
        manifest.plugin.id,
        manifest.plugin.version,
        package.index().parts.len(),
        package.bytes().len()
    );
    Ok(())
}

fn keygen(args: &KeygenArgs) -> Result<(), CliError> {
    let pair = PublisherKeyPair::generate();
    pair.write_seed_file(&args.out)?;
    eprintln!(
        "wrote the publisher seed to {} (keep it secret); its public key:",
        args.out.display()
    );
    println!("{}", pair.public_key());
    Ok(())
}

fn sign(args: &SignArgs) -> Result<(), CliError> {
    let publisher = PublisherKeyPair::read_seed_file(&args.key)?;
    let package = Package::read_file(&args.file)?;
    // A package is signed only as it was built: a tampered one is not given a signature.
    package
        .check_parts()
        .map_err(|tampering| CliError::BadArgument {
            argument: "package",
            reason: format!("not signed: {tampering}"),
        })?;
    let replaced = package.signature().is_some();
    let signed = package.signed(&publisher)?;
    let out = args.out.as_deref().unwrap_or(&args.file);
    write_file(out, signed.bytes())?;
    println!(
        "signed {} as {}{}",
        out.display(),
        publisher.public_key(),
        if replaced {
            " (replacing its signature)"
        } else {
            ""
        }
    );
    Ok(())
}

/// `package verify --json`.
#[derive(Debug, Serialize)]
struct VerifyReport {
    accepted: bool,
    verdict: &'static str,
    plugin: Option<String>,
    version: Option<String>,
    publisher: Option<String>,
    publisher_name: Option<String>,
    tampered_part: Option<String>,
    reason: Option<String>,
}

async fn verify(args: VerifyArgs) -> Result<(), CliError> {
    let package = Package::read_file(&args.file)?;
    let trust = trusted_keys(&args.nats, &args.namespace, &args.trusted_keys).await?;
    let allow = allowances(&package, args.allow_unsigned, args.allow_untrusted);
    let decision = verify_for_install(&package, &trust, &allow);
    if args.output.json {
        let verdict = match &decision {
            Ok(installable) => Some(&installable.verdict),
            Err(refusal) => refusal.verdict(),
        };
        let manifest = decision.as_ref().ok().map(|i| &i.manifest);
        let report = VerifyReport {
            accepted: decision.is_ok(),
            verdict: verdict.map_or("invalid_manifest", Verdict::kind),
            plugin: manifest.map(|m| m.plugin.id.to_string()),
            version: manifest.map(|m| m.plugin.version.to_string()),
            publisher: verdict.and_then(|v| match v {
                Verdict::Trusted { publisher } => Some(publisher.key.to_string()),
                Verdict::UntrustedKey { key } => Some(key.to_string()),
                Verdict::BadSignature { key, .. } => Some(key.clone()),
                _ => None,
            }),
            publisher_name: verdict.and_then(|v| match v {
                Verdict::Trusted { publisher } => Some(publisher.name.clone()),
                _ => None,
            }),
            tampered_part: verdict.and_then(|v| match v {
                Verdict::Tampered(tampering) => Some(tampering.part.clone()),
                _ => None,
            }),
            reason: decision.as_ref().err().map(ToString::to_string),
        };
        print_json(&report)?;
        return match decision {
            Ok(_) => Ok(()),
            Err(refusal) => Err(refusal.into()),
        };
    }
    let installable = decision?;
    let plugin = &installable.manifest.plugin;
    let allowed = match installable.verdict {
        Verdict::Trusted { .. } => "",
        _ => ", accepted as allowed",
    };
    println!(
        "ok: {} {}: {}{allowed}; {} parts, {} bytes",
        plugin.id,
        plugin.version,
        printable(&installable.verdict.to_string()),
        package.index().parts.len(),
        package.bytes().len()
    );
    Ok(())
}

async fn publish(args: PublishArgs) -> Result<(), CliError> {
    let package = Package::read_file(&args.file)?;
    let client = args.nats.connect_options()?.connect().await?;
    let js = jetstream::new(client);
    let store = PackageStore::open(&js, &args.namespace.prefix).await?;
    let (name, outcome) = store.publish(&package, args.replace).await?;
    let signer = switchyard_control::package::signer_of(&package);
    let what = outcome.describe();
    println!(
        "{what} {name} in {} ({} bytes, {signer})",
        store.bucket(),
        package.bytes().len()
    );
    Ok(())
}

/// `package inspect --json`.
#[derive(Debug, Serialize)]
struct InspectReport {
    file: PathBuf,
    size: usize,
    plugin: Option<serde_json::Value>,
    manifest_problem: Option<String>,
    signature: Option<SignatureReport>,
    tampered: Option<switchyard_control::package::Tampering>,
    worker: Worker,
    parts: Vec<switchyard_control::package::PartEntry>,
    asks: Option<Asks>,
}

#[derive(Debug, Serialize)]
struct SignatureReport {
    key: String,
    valid: bool,
    problem: Option<String>,
}

/// What the plugin asks an operator to grant.
#[derive(Debug, Serialize)]
struct Asks {
    subscriptions: serde_json::Value,
    channels: serde_json::Value,
    /// The manifest names no tenants: an operator chooses them when registering.
    tenants: Option<Vec<String>>,
    limits: serde_json::Value,
    settings: serde_json::Value,
    dependencies: serde_json::Value,
}

fn inspect(args: &InspectArgs) -> Result<(), CliError> {
    let package = Package::read_file(&args.file)?;
    let tampered = package.check_parts().err();
    let signature = package.signature().map(|signature| {
        let checked = signature.verify(package.index_bytes());
        SignatureReport {
            key: signature.key.clone(),
            valid: checked.is_ok(),
            problem: checked.err(),
        }
    });
    let manifest = package.manifest();
    let canonical = manifest
        .as_ref()
        .ok()
        .map(serde_json::to_value)
        .transpose()?;
    let section = |key: &str| {
        canonical
            .as_ref()
            .and_then(|value| value.get(key).cloned())
            .unwrap_or(serde_json::Value::Null)
    };
    let asks = canonical.as_ref().map(|_| Asks {
        subscriptions: section("subscriptions"),
        channels: section("channels"),
        tenants: None,
        limits: section("limits"),
        settings: section("settings"),
        dependencies: section("dependencies"),
    });
    let report = InspectReport {
        file: args.file.clone(),
        size: package.bytes().len(),
        plugin: canonical.as_ref().map(|_| section("plugin")),
        manifest_problem: manifest.as_ref().err().map(ToString::to_string),
        signature,
        tampered,
        worker: package.index().worker.clone(),
        parts: package.index().parts.clone(),
        asks,
    };
    if args.output.json {
        return print_json(&report);
    }
    print!("{}", describe(&report, manifest.ok().as_ref()));
    Ok(())
}

/// The text form of `package inspect`.
fn describe(report: &InspectReport, manifest: Option<&Manifest>) -> String {
    let mut out = String::new();
    match manifest {
        Some(manifest) => {
            let plugin = &manifest.plugin;
            let _ = write!(
                out,
                "{} {} (core {})",
                plugin.id, plugin.version, plugin.core
            );
            if let Some(description) = &plugin.description {
                let _ = write!(out, ": {}", printable(description));
            }
            out.push('\n');
            let about: Vec<String> = [
                ("author", &plugin.author),
                ("license", &plugin.license),
                ("homepage", &plugin.homepage),
                ("repository", &plugin.repository),
            ]
            .into_iter()
            .filter_map(|(key, value)| value.as_ref().map(|v| format!("{key} {}", printable(v))))
            .collect();
            if !about.is_empty() {
                let _ = writeln!(out, "  {}", about.join("; "));
            }
            if !plugin.tags.is_empty() || plugin.category.is_some() {
                let tags: Vec<&str> = plugin.tags.iter().map(|t| t.as_str()).collect();
                let _ = writeln!(
                    out,
                    "  tags: {}; category: {}",
                    if tags.is_empty() {
                        "none".to_owned()
                    } else {
                        tags.join(", ")
                    },
                    plugin.category.as_ref().map_or("none", |c| c.as_str())
                );
            }
        }
        None => {
            let _ = writeln!(
                out,
                "manifest: {}",
                printable(report.manifest_problem.as_deref().unwrap_or("unreadable"))
            );
        }
    }
    match &report.signature {
        None => out.push_str("signature: none (unsigned)\n"),
        Some(signature) if signature.valid => {
            let _ = writeln!(
                out,
                "signature: by {} (it verifies; whether the key is trusted: `switchyard package verify`)",
                signature.key
            );
        }
        Some(signature) => {
            let _ = writeln!(
                out,
                "signature: BAD, claims the key {}: {}",
                printable(&format!("{:?}", signature.key)),
                printable(signature.problem.as_deref().unwrap_or("-"))
            );
        }
    }
    let total: u64 = report.parts.iter().map(|p| p.size).sum();
    match &report.tampered {
        None => {
            let _ = writeln!(
                out,
                "parts: {}, {total} bytes, each matching the index",
                report.parts.len()
            );
        }
        Some(tampering) => {
            let _ = writeln!(
                out,
                "parts: {}, {total} bytes; TAMPERED: {}",
                report.parts.len(),
                tampering
            );
        }
    }
    for part in &report.parts {
        let _ = writeln!(
            out,
            "  {:>10}  {}  {}",
            part.size,
            &part.sha256[..16],
            part.path
        );
    }
    match &report.worker {
        Worker::Binaries(targets) => {
            out.push_str("worker: a binary per target\n");
            for (target, path) in targets {
                let _ = writeln!(out, "  {target}: {path}");
            }
        }
        Worker::Command(words) => {
            let _ = writeln!(out, "worker: runs `{}`", printable(&words.join(" ")));
        }
    }
    if let Some(manifest) = manifest {
        out.push_str("asks for:\n");
        if manifest.subscriptions.is_empty() {
            out.push_str("  events: none\n");
        }
        for subscription in &manifest.subscriptions {
            let events: Vec<&str> = subscription.events.iter().map(|e| e.as_str()).collect();
            let _ = writeln!(
                out,
                "  events ({}): {} (schema versions {})",
                subscription.name,
                events.join(", "),
                subscription.versions
            );
        }
        let names = |list: &[switchyard_schemas::ChannelName]| {
            if list.is_empty() {
                "none".to_owned()
            } else {
                list.iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let _ = writeln!(
            out,
            "  channels: send {}; receive {}",
            names(&manifest.channels.send),
            names(&manifest.channels.receive)
        );
        out.push_str(
            "  tenants: none named in the manifest; an operator chooses them when registering\n",
        );
        let limits = report
            .asks
            .as_ref()
            .and_then(|asks| asks.limits.as_object().cloned())
            .unwrap_or_default();
        let limits: Vec<String> = limits
            .iter()
            .map(|(key, value)| {
                format!(
                    "{key} {}",
                    value.as_str().map_or(value.to_string(), str::to_owned)
                )
            })
            .collect();
        let _ = writeln!(out, "  limits: {}", limits.join(", "));
        let settings: Vec<String> = manifest.settings.keys().map(|k| printable(k)).collect();
        let _ = writeln!(
            out,
            "  settings: {}",
            if settings.is_empty() {
                "none".to_owned()
            } else {
                settings.join(", ")
            }
        );
        let requires: Vec<String> = manifest
            .dependencies
            .requires
            .iter()
            .map(|(id, range)| format!("{id} {range}"))
            .collect();
        let conflicts: Vec<&str> = manifest
            .dependencies
            .conflicts
            .iter()
            .map(|id| id.as_str())
            .collect();
        let _ = writeln!(
            out,
            "  dependencies: requires {}; conflicts with {}",
            if requires.is_empty() {
                "none".to_owned()
            } else {
                requires.join(", ")
            },
            if conflicts.is_empty() {
                "none".to_owned()
            } else {
                conflicts.join(", ")
            }
        );
    }
    out
}

/// Writes `bytes` to `path` through a temporary file beside it, so that a reader never sees
/// half a package and a failed write leaves the old file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| CliError::Io {
            action,
            path,
            source,
        }
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staged = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&staged, bytes).map_err(io("write", &staged))?;
    std::fs::rename(&staged, path).map_err(|source| {
        let _ = std::fs::remove_file(&staged);
        CliError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        }
    })
}
