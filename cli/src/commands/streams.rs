//! `switchyard streams`: provision and inspect the events and dead-letter streams.

use std::time::Duration;

use clap::{Args, Subcommand};
use switchyard_bus::{set_replicas, stream_name, Bus, Provisioned, StreamSettings, Streams};
use switchyard_dispatcher::auth::CredentialStore;
use switchyard_dispatcher::registry::{Registry, RegistryOptions};
use switchyard_dispatcher::status::StatusBoard;
use switchyard_schemas::Namespace;

use super::{CliError, NatsArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum StreamsCommand {
    /// Create the streams, or update them when their settings differ (safe to repeat).
    Provision(ProvisionArgs),
    /// Show what each stream holds.
    Info(InfoArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ProvisionArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// Copies of each stream, and of the registry, status and credentials buckets, kept in a
    /// cluster (1, 3 or 5).
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
}

#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
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
    provision_buckets(&bus, usize::from(args.replicas)).await
}

/// Gives the registry, status and credentials buckets the same number of replicas as the
/// streams, creating the ones that do not exist yet: losing a node must not lose the plugins'
/// registrations or credentials either. Dispatchers and the auth service open them as they are.
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
    for bucket in [
        registry.bucket().to_owned(),
        stream_name(ns, "STATUS"),
        credentials.bucket().to_owned(),
    ] {
        let provisioned = set_replicas(js, &format!("KV_{bucket}"), replicas).await?;
        println!("{bucket} (bucket): {}", describe(provisioned));
    }
    Ok(())
}

async fn info(args: InfoArgs) -> Result<(), CliError> {
    let bus = Bus::connect(&args.nats.connect_options()?)
        .await?
        .with_namespace(args.namespace.prefix);
    for settings in [&bus.streams().events, &bus.streams().dead_letters] {
        print_stream_state(&bus, settings).await?;
    }
    Ok(())
}

/// One line saying what a stream holds.
pub(crate) async fn print_stream_state(
    bus: &Bus,
    settings: &StreamSettings,
) -> Result<(), CliError> {
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
    let state = &info.state;
    println!(
        "  {}: {} messages, {} bytes, sequences {}..={}, {} consumers",
        settings.name,
        state.messages,
        state.bytes,
        state.first_sequence,
        state.last_sequence,
        state.consumer_count
    );
    Ok(())
}

pub(crate) fn describe(outcome: Provisioned) -> &'static str {
    match outcome {
        Provisioned::Created => "created",
        Provisioned::Updated => "updated to the requested settings",
        Provisioned::Unchanged => "already as requested",
    }
}
