//! `switchyard streams`: provision and inspect the events, dead-letter and audit streams.

use std::fmt::Write as _;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;
use switchyard_bus::report::{stream_report, StreamReport};
use switchyard_bus::Bus;
use switchyard_dispatcher::provision::{self, Limits};
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
    let limits = Limits {
        replicas: usize::from(args.replicas),
        events_max_age: args.events_max_age,
        events_max_bytes: args.events_max_bytes,
        dlq_max_age: args.dlq_max_age,
        dlq_max_bytes: args.dlq_max_bytes,
        audit_max_age: args.audit_max_age,
        audit_max_bytes: args.audit_max_bytes,
    };
    let bus = Bus::connect(&args.nats.connect_options()?)
        .await?
        .with_namespace(args.namespace.prefix);
    for done in Box::pin(provision::provision(&bus, &limits)).await? {
        match done.kind {
            "stream" => println!("{}: {}", done.name, describe(done.outcome)),
            kind => println!("{} ({kind}): {}", done.name, describe(done.outcome)),
        }
    }
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
        streams.push(
            stream_report(bus.jetstream(), settings)
                .await
                .map_err(|e| CliError::nats("read the stream", e))?,
        );
    }
    if args.output.json {
        return print_json(&StreamsReport { streams });
    }
    for stream in &streams {
        print!("{}", describe_report(stream));
    }
    Ok(())
}

/// `streams info --json`.
#[derive(Debug, Serialize)]
struct StreamsReport {
    streams: Vec<StreamReport>,
}

/// The text form of a stream's report: the stream's line, its limits, and its placement when
/// clustered.
fn describe_report(report: &StreamReport) -> String {
    let limit = |value: String, none: bool| if none { "none".to_owned() } else { value };
    let mut out = format!(
        "{}: {} messages, {} bytes, sequences {}..={}, {} consumers\n",
        report.name,
        report.messages,
        report.bytes,
        report.first_sequence,
        report.last_sequence,
        report.consumers
    );
    let _ =
        writeln!(
        out,
        "  replicas {}, max bytes {}, max age {}, duplicate window {}, storage {}, discard {}{}",
        report.replicas,
        limit(report.max_bytes.to_string(), report.max_bytes < 0),
        limit(
            humantime::format_duration(Duration::from_secs(report.max_age_secs)).to_string(),
            report.max_age_secs == 0
        ),
        humantime::format_duration(Duration::from_secs(report.duplicate_window_secs)),
        report.storage,
        report.discard,
        if report.append_only { ", append-only" } else { "" }
    );
    if let Some(cluster) = &report.cluster {
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

pub(crate) use switchyard_dispatcher::provision::describe;
