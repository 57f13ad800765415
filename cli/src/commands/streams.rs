//! `switchyard streams`: provision and inspect the events, dead-letter and audit streams.

use std::fmt::Write as _;
use std::time::Duration;

use async_nats::jetstream::stream::{DiscardPolicy, StorageType};
use clap::{Args, Subcommand};
use serde::Serialize;
use switchyard_bus::{set_replicas, stream_name, Bus, Provisioned, StreamSettings, Streams};
use switchyard_control::auth::CredentialStore;
use switchyard_control::package::{PackageStore, PackageStoreOptions, TrustStore};
use switchyard_control::registry::{Registry, RegistryOptions};
use switchyard_control::settings::{self, SettingsStore};
use switchyard_dispatcher::status::StatusBoard;
use switchyard_schemas::Namespace;

use super::{print_json, CliError, NatsArgs, OutputArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum StreamsCommand {
    /// Create the streams, or update them when their settings differ (safe to repeat).
    Provision(ProvisionArgs),
    /// Show each stream's settings (replicas, limits, duplicate window, storage, discard
    /// policy), what it holds, and where it lives in a cluster (leader, replicas current or
    /// lagging).
    Info(InfoArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ProvisionArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// Copies of each stream, of the registry, status, credentials, trust, settings and
    /// secrets buckets and of the packages object store, kept in a cluster (1, 3 or 5).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    replicas: u8,
    /// How long events are kept, e.g. `7d`.
    #[arg(long, value_parser = humantime::parse_duration)]
    events_max_age: Option<Duration>,
    /// The most bytes the events stream keeps.
    #[arg(long)]
    events_max_bytes: Option<i64>,
    /// How long dead letters are kept, e.g. `30d`.
    #[arg(long, value_parser = humantime::parse_duration)]
    dlq_max_age: Option<Duration>,
    /// The most bytes the dead-letter stream keeps.
    #[arg(long)]
    dlq_max_bytes: Option<i64>,
    /// How long audit entries are kept, e.g. `400d` (`0s`: until the stream is full; the
    /// default is 365 days).
    #[arg(long, value_parser = humantime::parse_duration)]
    audit_max_age: Option<Duration>,
    /// The most bytes the audit stream keeps; when full, changes that need an entry fail.
    #[arg(long)]
    audit_max_bytes: Option<i64>,
}

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// The subject prefix of the deployment.
#[derive(Debug, Clone, Args)]
pub(crate) struct NamespaceArgs {
    /// Subject prefix of this deployment.
    #[arg(long, env = "SWITCHYARD_PREFIX", default_value = switchyard_schemas::DEFAULT_PREFIX, value_parser = parse_namespace)]
    pub(crate) prefix: Namespace,
}

fn parse_namespace(raw: &str) -> Result<Namespace, String> {
    Namespace::new(raw).map_err(|e| e.to_string())
}

pub(crate) async fn run(command: StreamsCommand) -> Result<(), CliError> {
    match command {
        StreamsCommand::Provision(args) => provision(args).await,
        StreamsCommand::Info(args) => info(args).await,
    }
}

async fn provision(args: ProvisionArgs) -> Result<(), CliError> {
    let ns = args.namespace.prefix;
    let defaults = Streams::defaults(&ns);
    let streams = Streams {
        events: StreamSettings {
            replicas: usize::from(args.replicas),
            max_age: args.events_max_age.unwrap_or(defaults.events.max_age),
            max_bytes: args.events_max_bytes.unwrap_or(defaults.events.max_bytes),
            ..defaults.events
        },
        dead_letters: StreamSettings {
            replicas: usize::from(args.replicas),
            max_age: args.dlq_max_age.unwrap_or(defaults.dead_letters.max_age),
            max_bytes: args
                .dlq_max_bytes
                .unwrap_or(defaults.dead_letters.max_bytes),
            ..defaults.dead_letters
        },
        audit: audit_settings(
            &defaults.audit,
            usize::from(args.replicas),
            args.audit_max_age,
            args.audit_max_bytes,
        ),
    };
    let bus = Bus::connect(&args.nats.connect_options()?)
        .await?
        .with_namespace(ns)
        .with_streams(streams);
    let report = bus.provision().await?;
    println!("{}: {}", bus.streams().events.name, describe(report.events));
    println!(
        "{}: {}",
        bus.streams().dead_letters.name,
        describe(report.dead_letters)
    );
    println!("{}: {}", bus.streams().audit.name, describe(report.audit));
    provision_buckets(&bus, usize::from(args.replicas)).await
}

/// The audit stream's settings: the defaults with the operator's replicas and limits. A max
/// age shorter than the duplicate window shortens the window (JetStream requires it).
fn audit_settings(
    defaults: &StreamSettings,
    replicas: usize,
    max_age: Option<Duration>,
    max_bytes: Option<i64>,
) -> StreamSettings {
    let max_age = max_age.unwrap_or(defaults.max_age);
    let duplicate_window = if max_age.is_zero() {
        defaults.duplicate_window
    } else {
        defaults.duplicate_window.min(max_age)
    };
    StreamSettings {
        replicas,
        max_age,
        max_bytes: max_bytes.unwrap_or(defaults.max_bytes),
        duplicate_window,
        ..defaults.clone()
    }
}

/// Gives the registry, status, credentials, trust, settings and secrets buckets and the
/// packages object store the same number of replicas as the streams, creating the ones that
/// do not exist yet: losing a node must not lose the plugins' registrations, credentials,
/// trusted keys, settings or packages either. Dispatchers and the auth service open them as
/// they are.
async fn provision_buckets(bus: &Bus, replicas: usize) -> Result<(), CliError> {
    let js = bus.jetstream();
    let ns = bus.namespace();
    let registry = Registry::open_with(js, ns, &RegistryOptions { replicas })
        .await
        .map_err(|e| CliError::nats("open the registry", e))?;
    StatusBoard::open(js, ns)
        .await
        .map_err(|e| CliError::nats("open the status bucket", e))?;
    let credentials = CredentialStore::open(js, ns)
        .await
        .map_err(|e| CliError::nats("open the credentials bucket", e))?;
    let trust = TrustStore::open_with(js, ns, replicas)
        .await
        .map_err(|e| CliError::nats("open the trust bucket", e))?;
    Box::pin(SettingsStore::open(js, ns, replicas)).await?;
    for bucket in [
        registry.bucket().to_owned(),
        stream_name(ns, "STATUS"),
        credentials.bucket().to_owned(),
        trust.bucket().to_owned(),
        settings::values_bucket(ns),
        settings::secrets_bucket(ns),
    ] {
        let provisioned = set_replicas(js, &format!("KV_{bucket}"), replicas).await?;
        println!("{bucket} (bucket): {}", describe(provisioned));
    }
    let packages = PackageStore::open_with(js, ns, &PackageStoreOptions { replicas })
        .await
        .map_err(|e| CliError::nats("open the packages object store", e))?;
    let provisioned = set_replicas(js, &format!("OBJ_{}", packages.bucket()), replicas).await?;
    println!(
        "{} (object store): {}",
        packages.bucket(),
        describe(provisioned)
    );
    Ok(())
}

async fn info(args: InfoArgs) -> Result<(), CliError> {
    let bus = Bus::connect(&args.nats.connect_options()?)
        .await?
        .with_namespace(args.namespace.prefix);
    let mut streams = Vec::new();
    for settings in [
        &bus.streams().events,
        &bus.streams().dead_letters,
        &bus.streams().audit,
    ] {
        streams.push(stream_report(&bus, settings).await?);
    }
    if args.output.json {
        return print_json(&StreamsReport { streams });
    }
    for stream in &streams {
        print!("{}", stream.describe());
    }
    Ok(())
}

/// `streams info --json`.
#[derive(Debug, Serialize)]
struct StreamsReport {
    streams: Vec<StreamReport>,
}

/// What one stream holds and how it is configured and placed.
#[derive(Debug, Serialize)]
struct StreamReport {
    name: String,
    replicas: usize,
    /// `-1` means no limit, as in JetStream.
    max_bytes: i64,
    /// Zero means no limit.
    max_age_secs: u64,
    duplicate_window_secs: u64,
    /// `file` or `memory`.
    storage: &'static str,
    /// `new` (a full stream refuses messages) or `old` (it drops the oldest).
    discard: &'static str,
    /// The server refuses to delete, purge or roll up its messages.
    append_only: bool,
    messages: u64,
    bytes: u64,
    first_sequence: u64,
    last_sequence: u64,
    consumers: usize,
    /// Present when the stream is on a JetStream cluster.
    cluster: Option<Placement>,
}

/// Where a clustered stream lives.
#[derive(Debug, Serialize)]
struct Placement {
    name: Option<String>,
    leader: Option<String>,
    replicas: Vec<Peer>,
}

/// One replica other than the leader.
#[derive(Debug, Serialize)]
struct Peer {
    name: String,
    /// Caught up with the leader.
    current: bool,
    offline: bool,
    /// Operations behind the leader, when the server says.
    lag: Option<u64>,
    /// Milliseconds since the leader last heard from it.
    active_ms: u64,
}

/// Reads a stream's configuration, state and placement.
async fn stream_report(bus: &Bus, settings: &StreamSettings) -> Result<StreamReport, CliError> {
    let mut stream = bus
        .jetstream()
        .get_stream(&settings.name)
        .await
        .map_err(|e| {
            CliError::nats(
                "look up stream",
                format!(
                    "{}: {e} (run `switchyard streams provision`)",
                    settings.name
                ),
            )
        })?;
    let info = stream
        .info()
        .await
        .map_err(|e| CliError::nats("read stream info", e))?;
    let config = &info.config;
    let state = &info.state;
    // A single server reports a "cluster" of its own with no peers and no name: not placement.
    let cluster = info
        .cluster
        .as_ref()
        .filter(|c| c.name.is_some() || !c.replicas.is_empty())
        .map(|c| Placement {
            name: c.name.clone(),
            leader: c.leader.clone(),
            replicas: c
                .replicas
                .iter()
                .map(|p| Peer {
                    name: p.name.clone(),
                    current: p.current,
                    offline: p.offline,
                    lag: p.lag,
                    active_ms: u64::try_from(p.active.as_millis()).unwrap_or(u64::MAX),
                })
                .collect(),
        });
    Ok(StreamReport {
        name: config.name.clone(),
        replicas: config.num_replicas,
        max_bytes: config.max_bytes,
        max_age_secs: config.max_age.as_secs(),
        duplicate_window_secs: config.duplicate_window.as_secs(),
        storage: match config.storage {
            StorageType::File => "file",
            StorageType::Memory => "memory",
        },
        discard: match config.discard {
            DiscardPolicy::New => "new",
            DiscardPolicy::Old => "old",
        },
        append_only: config.deny_delete && config.deny_purge && !config.allow_rollup,
        messages: state.messages,
        bytes: state.bytes,
        first_sequence: state.first_sequence,
        last_sequence: state.last_sequence,
        consumers: state.consumer_count,
        cluster,
    })
}

impl StreamReport {
    /// The text form: the stream's line, its limits, and its placement when clustered.
    fn describe(&self) -> String {
        let limit = |value: String, none: bool| if none { "none".to_owned() } else { value };
        let mut out = format!(
            "{}: {} messages, {} bytes, sequences {}..={}, {} consumers\n",
            self.name,
            self.messages,
            self.bytes,
            self.first_sequence,
            self.last_sequence,
            self.consumers
        );
        let _ = writeln!(
            out,
            "  replicas {}, max bytes {}, max age {}, duplicate window {}, storage {}, discard {}{}",
            self.replicas,
            limit(self.max_bytes.to_string(), self.max_bytes < 0),
            limit(
                humantime::format_duration(Duration::from_secs(self.max_age_secs)).to_string(),
                self.max_age_secs == 0
            ),
            humantime::format_duration(Duration::from_secs(self.duplicate_window_secs)),
            self.storage,
            self.discard,
            if self.append_only { ", append-only" } else { "" }
        );
        if let Some(cluster) = &self.cluster {
            let peers: Vec<String> = cluster
                .replicas
                .iter()
                .map(|p| {
                    let state = if p.offline {
                        "offline".to_owned()
                    } else if p.current {
                        "current".to_owned()
                    } else {
                        match p.lag {
                            Some(lag) => format!("lagging by {lag}"),
                            None => "lagging".to_owned(),
                        }
                    };
                    format!("{} {state}", p.name)
                })
                .collect();
            let _ = writeln!(
                out,
                "  cluster {}: leader {}; replicas: {}",
                cluster.name.as_deref().unwrap_or("-"),
                cluster
                    .leader
                    .as_deref()
                    .unwrap_or("none (no leader elected)"),
                if peers.is_empty() {
                    "none".to_owned()
                } else {
                    peers.join(", ")
                }
            );
        }
        out
    }
}

pub(crate) fn describe(outcome: Provisioned) -> &'static str {
    match outcome {
        Provisioned::Created => "created",
        Provisioned::Updated => "updated to the requested settings",
        Provisioned::Unchanged => "already as requested",
    }
}
