//! `switchyard trust`: the publisher keys whose packages this deployment trusts.

use async_nats::jetstream;
use clap::{Args, Subcommand};
use serde::Serialize;
use switchyard_control::package::{PublisherKey, TrustEntry, TrustStore};

use super::audit::{auditor, ActorArgs};
use super::streams::NamespaceArgs;
use super::{print_json, CliError, NatsArgs, OutputArgs};
use crate::render::{printable, timestamp};
use crate::table::render_table;

#[derive(Debug, Subcommand)]
pub(crate) enum TrustCommand {
    /// Trust a publisher key (as printed by `switchyard package keygen`) under a name, or
    /// rename a trusted one. Packages it signs then install without an allowance. Recorded
    /// in the audit log (`trust_added`).
    Add(AddArgs),
    /// List the trusted publisher keys.
    List(ListArgs),
    /// Stop trusting a publisher key. Fails when it is not trusted. Recorded in the audit log
    /// (`trust_removed`).
    Remove(RemoveArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The publisher's public key (`V…`).
    key: String,
    /// Who it is, for people (e.g. the team or vendor).
    #[arg(long)]
    name: String,
    #[command(flatten)]
    actor: ActorArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The publisher's public key.
    key: String,
    #[command(flatten)]
    actor: ActorArgs,
}

pub(crate) async fn run(command: TrustCommand) -> Result<(), CliError> {
    match command {
        TrustCommand::Add(args) => add(args).await,
        TrustCommand::List(args) => list(args).await,
        TrustCommand::Remove(args) => remove(args).await,
    }
}

async fn open(nats: &NatsArgs, namespace: &NamespaceArgs) -> Result<TrustStore, CliError> {
    let client = nats.connect_options()?.connect().await?;
    Ok(TrustStore::open(&jetstream::new(client), &namespace.prefix).await?)
}

/// The trust bucket and the audit log with who is acting, opened before anything changes.
async fn open_audited(
    nats: &NatsArgs,
    namespace: &NamespaceArgs,
    actor: &ActorArgs,
) -> Result<(TrustStore, switchyard_control::audit::Auditor), CliError> {
    let client = nats.connect_options()?.connect().await?;
    let store = TrustStore::open(&jetstream::new(client.clone()), &namespace.prefix).await?;
    let auditor = auditor(nats, &client, &namespace.prefix, actor).await?;
    Ok((store, auditor))
}

async fn add(args: AddArgs) -> Result<(), CliError> {
    // The key is checked before connecting: a mistyped one is refused even with no server.
    let key = PublisherKey::new(args.key.trim())?;
    let (store, auditor) = open_audited(&args.nats, &args.namespace, &args.actor).await?;
    let new = store.add_audited(&key, &args.name, &auditor).await?;
    let verb = if new { "trusted" } else { "renamed" };
    println!("{verb} {key} as {:?}", args.name);
    Ok(())
}

async fn remove(args: RemoveArgs) -> Result<(), CliError> {
    let key = PublisherKey::new(args.key.trim())?;
    let (store, auditor) = open_audited(&args.nats, &args.namespace, &args.actor).await?;
    if !store.remove_audited(&key, &auditor).await? {
        return Err(CliError::BadArgument {
            argument: "key",
            reason: format!("{key} is not trusted (in {})", store.bucket()),
        });
    }
    println!("no longer trusted: {key}");
    Ok(())
}

/// `trust list --json`.
#[derive(Debug, Serialize)]
struct TrustReport {
    keys: Vec<TrustEntry>,
}

async fn list(args: ListArgs) -> Result<(), CliError> {
    let store = open(&args.nats, &args.namespace).await?;
    let keys = store.list().await?;
    if args.output.json {
        return print_json(&TrustReport { keys });
    }
    if keys.is_empty() {
        println!("no publisher key is trusted (in {})", store.bucket());
        return Ok(());
    }
    let rows: Vec<[String; 3]> = keys
        .iter()
        .map(|entry| {
            [
                entry.key.to_string(),
                printable(&entry.name),
                timestamp(entry.added_at),
            ]
        })
        .collect();
    print!("{}", render_table(["KEY", "NAME", "ADDED"], &rows));
    Ok(())
}
