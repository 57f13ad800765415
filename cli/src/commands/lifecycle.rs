//! `switchyard plugins approve | reject | history | rollback`: the operator's side of a
//! plugin's lifecycle after it was installed (`plugins add`).

use clap::Args;
use serde::Serialize;
use switchyard_control::lifecycle::events::{self};
use switchyard_control::lifecycle::operate::{OperateError, Operator, Outcome};
use switchyard_control::registry::{Provenance, Registry, Revision};
use switchyard_schemas::PluginId;
use time::OffsetDateTime;

use super::audit::{auditor, ActorArgs};
use super::plugins::{open_registry, PluginArgs, StatusArgs};
use super::streams::NamespaceArgs;
use super::{print_json, CliError, NatsArgs};
use crate::render::{parse_plugin_id, printable, timestamp};
use crate::table::render_table;

#[derive(Debug, Args)]
pub(crate) struct ApproveArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The plugin whose installation, or pending upgrade, to approve.
    #[arg(value_parser = parse_plugin_id)]
    plugin: PluginId,
    /// Approve a new installation but leave it disabled (`plugins enable` starts it).
    #[arg(long)]
    disabled: bool,
    #[command(flatten)]
    actor: ActorArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The plugin.
    #[arg(value_parser = parse_plugin_id)]
    plugin: PluginId,
    /// The revision to go back to, as `plugins history` lists it [default: the latest
    /// earlier revision of another version].
    #[arg(long, value_name = "REV")]
    to: Option<u64>,
    #[command(flatten)]
    actor: ActorArgs,
}

/// A publisher of lifecycle events.
async fn announcer(
    nats: &NatsArgs,
    namespace: &NamespaceArgs,
) -> Result<switchyard_bus::Publisher, CliError> {
    let bus = switchyard_bus::Bus::connect(&nats.connect_options()?)
        .await?
        .with_namespace(namespace.prefix.clone());
    Ok(bus.publisher(events::SOURCE))
}

/// The lifecycle verbs, acting as who runs the command: the registry and the audit log are
/// opened before anything changes, so that a log that cannot be used refuses the change.
pub(crate) async fn operator(
    nats: &NatsArgs,
    namespace: &NamespaceArgs,
    actor: &ActorArgs,
) -> Result<Operator, CliError> {
    let client = nats.connect_options()?.connect().await?;
    let js = async_nats::jetstream::new(client.clone());
    let registry = Registry::open(&js, &namespace.prefix).await?;
    let auditor = auditor(nats, &client, &namespace.prefix, actor).await?;
    let announcer = announcer(nats, namespace).await?;
    Ok(Operator::new(
        js,
        namespace.prefix.clone(),
        registry,
        auditor,
        announcer,
    ))
}

/// Prints what a verb did: its line, what the plugin may do now, and any warning.
pub(crate) fn print_outcome(outcome: &Outcome) {
    for line in outcome.message.lines() {
        println!("{}", printable(line));
    }
    for line in &outcome.rights {
        println!("  {line}");
    }
    for line in &outcome.also {
        println!("{}", printable(line));
    }
    for warning in &outcome.warnings {
        eprintln!("warning: {warning}");
    }
}

pub(crate) async fn approve(args: ApproveArgs) -> Result<(), CliError> {
    let operator = operator(&args.nats, &args.namespace, &args.actor).await?;
    print_outcome(&operator.approve(&args.plugin, args.disabled).await?);
    Ok(())
}

pub(crate) async fn reject(args: PluginArgs) -> Result<(), CliError> {
    let operator = operator(&args.nats, &args.namespace, &args.actor).await?;
    print_outcome(&operator.reject(&args.plugin).await?);
    Ok(())
}

/// One revision in `plugins history --json`.
#[derive(Debug, Serialize)]
struct RevisionJson {
    revision: u64,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    /// `removed` for a removal, else the lifecycle state then.
    state: String,
    version: Option<String>,
    pending_upgrade: Option<String>,
    approved_by: Option<String>,
    /// Where it was installed from, or null (stored by a program directly, or before this
    /// was recorded).
    provenance: Option<Provenance>,
}

impl RevisionJson {
    fn of(revision: &Revision) -> Self {
        let registration = revision.registration.as_ref();
        Self {
            revision: revision.revision,
            at: revision.at,
            state: registration.map_or_else(|| "removed".to_owned(), |r| r.state().to_string()),
            version: registration.map(|r| r.manifest.plugin.version.to_string()),
            pending_upgrade: registration
                .and_then(|r| r.pending_upgrade.as_ref())
                .map(|p| p.manifest.plugin.version.to_string()),
            approved_by: registration
                .and_then(|r| r.approval.as_ref())
                .map(|a| a.by.clone()),
            provenance: registration.and_then(|r| r.provenance.clone()),
        }
    }
}

pub(crate) async fn history(args: StatusArgs) -> Result<(), CliError> {
    let registry = open_registry(&args.nats, &args.namespace).await?;
    let revisions = registry.history(&args.plugin).await?;
    let rows: Vec<RevisionJson> = revisions.iter().map(RevisionJson::of).collect();
    if args.output.json {
        #[derive(Serialize)]
        struct History {
            plugin: String,
            revisions: Vec<RevisionJson>,
        }
        return print_json(&History {
            plugin: args.plugin.to_string(),
            revisions: rows,
        });
    }
    if rows.is_empty() {
        return Err(CliError::NotRegistered {
            plugin: args.plugin,
            bucket: registry.bucket().to_owned(),
        });
    }
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.revision.to_string(),
                timestamp(r.at),
                r.version.clone().unwrap_or_else(|| "-".to_owned()),
                match &r.pending_upgrade {
                    Some(version) => format!("{}, upgrade to {version} pending", r.state),
                    None => r.state.clone(),
                },
                r.approved_by.clone().unwrap_or_else(|| "-".to_owned()),
                r.provenance
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |p| printable(&p.to_string())),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            ["REV", "AT", "VERSION", "STATE", "APPROVED BY", "FROM"],
            &table
        )
    );
    Ok(())
}

pub(crate) async fn rollback(args: RollbackArgs) -> Result<(), CliError> {
    let operator = operator(&args.nats, &args.namespace, &args.actor).await?;
    let outcome = operator
        .rollback(&args.plugin, args.to)
        .await
        .map_err(|error| match error {
            OperateError::NoTarget(reason) => CliError::BadArgument {
                argument: if args.to.is_some() { "--to" } else { "plugin" },
                reason,
            },
            other => other.into(),
        })?;
    print_outcome(&outcome);
    Ok(())
}
