//! `switchyard plugins approve | reject | history | rollback`: the operator's side of a
//! plugin's lifecycle after it was installed (`plugins add`).

use std::future::Future;

use clap::Args;
use serde::Serialize;
use switchyard_control::audit::{Action, Auditor};
use switchyard_control::lifecycle::approval::{Approval, Requested};
use switchyard_control::lifecycle::compat;
use switchyard_control::lifecycle::events::{self, LifecycleEvent, LifecycleKind};
use switchyard_control::lifecycle::rollback::{self, RollbackError, RollbackTarget};
use switchyard_control::registry::{
    Provenance, Registration, Registry, RegistryError, Revision, Snapshot, CONFLICT_ATTEMPTS,
};
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

/// Ends a lifecycle change that wrote `registration`: holds the plugin back when settings
/// changed meanwhile no longer fit it ([`hold_back_if_unfit`](super::settings::hold_back_if_unfit)),
/// then announces the change.
pub(crate) async fn conclude(
    nats: &NatsArgs,
    namespace: &NamespaceArgs,
    registry: &Registry,
    auditor: &Auditor,
    what: LifecycleKind,
    registration: &Registration,
) -> Result<(), CliError> {
    Box::pin(super::settings::hold_back_if_unfit(
        nats,
        &namespace.prefix,
        registry,
        registration,
        auditor,
    ))
    .await?;
    announce(
        nats,
        namespace,
        what,
        registration.plugin_id(),
        Some(registration),
        auditor,
    )
    .await;
    Ok(())
}

/// Announces a lifecycle change as an event (tenant `switchyard`, docs/lifecycle.md). The
/// change itself is stored already: a failed announcement is reported, not undone.
pub(crate) async fn announce(
    nats: &NatsArgs,
    namespace: &NamespaceArgs,
    what: LifecycleKind,
    plugin: &PluginId,
    registration: Option<&Registration>,
    auditor: &Auditor,
) {
    let data = LifecycleEvent {
        plugin: plugin.to_string(),
        version: registration.map(|r| r.manifest.plugin.version.to_string()),
        state: registration.map(|r| r.state().to_string()),
        actor: Some(auditor.actor().name.clone()),
        detail: None,
    };
    let announced = async {
        let bus = switchyard_bus::Bus::connect(&nats.connect_options()?)
            .await?
            .with_namespace(namespace.prefix.clone());
        let publisher = bus.publisher(events::SOURCE);
        events::announce(&publisher, what, &data).await?;
        Ok::<(), CliError>(())
    }
    .await;
    if let Err(error) = announced {
        eprintln!(
            "warning: the change is made, but its lifecycle event `{}` was not published: {error}",
            what.event_type()
        );
    }
}

/// Makes a lifecycle change against the registry as it is now, and makes it again when
/// another change to the registry came first.
///
/// `change` gets the registry's [`Snapshot`] (what its checks read) and a registry whose
/// writes are stored only while nothing has changed since that snapshot
/// ([`Registry::expecting`]). When a write is refused for a concurrent change, the whole
/// change (reading, checking, writing) is made again, at most [`CONFLICT_ATTEMPTS`] times; a
/// change refused by its checks on a later try fails with that refusal.
///
/// # Errors
/// What `change` fails with; [`CliError::KeptChanging`] when every try met a concurrent
/// change.
pub(crate) async fn retrying<T, F, Fut>(
    registry: &Registry,
    what: &str,
    mut change: F,
) -> Result<T, CliError>
where
    F: FnMut(Registry, Snapshot) -> Fut,
    Fut: Future<Output = Result<T, CliError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let snapshot = registry.snapshot().await?;
        let guarded = registry.expecting(snapshot.sequence);
        match change(guarded, snapshot).await {
            Err(CliError::Registry(RegistryError::Conflict { .. }))
                if attempt < CONFLICT_ATTEMPTS => {}
            Err(CliError::Registry(conflict @ RegistryError::Conflict { .. })) => {
                return Err(CliError::KeptChanging {
                    what: what.to_owned(),
                    attempts: attempt,
                    last: conflict.to_string(),
                })
            }
            other => return other,
        }
    }
}

/// The registration of `plugin` in `snapshot`, and every registration.
pub(crate) fn registered_in(
    registry: &Registry,
    snapshot: Snapshot,
    plugin: &PluginId,
) -> Result<(Registration, Vec<Registration>), CliError> {
    let installed = snapshot.registrations;
    let registration = installed
        .iter()
        .find(|r| r.plugin_id() == plugin)
        .cloned()
        .ok_or_else(|| CliError::NotRegistered {
            plugin: plugin.clone(),
            bucket: registry.bucket().to_owned(),
        })?;
    Ok((registration, installed))
}

/// The registry, and the audit log with who is acting: opened before anything changes, so
/// that a log that cannot be used refuses the change.
async fn open_audited(
    nats: &NatsArgs,
    namespace: &NamespaceArgs,
    actor: &ActorArgs,
) -> Result<(Registry, Auditor), CliError> {
    let client = nats.connect_options()?.connect().await?;
    let registry = Registry::open(
        &async_nats::jetstream::new(client.clone()),
        &namespace.prefix,
    )
    .await?;
    let auditor = auditor(nats, &client, &namespace.prefix, actor).await?;
    Ok((registry, auditor))
}

/// Prints what is approved, one line each.
fn print_rights(rights: &Requested) {
    for line in rights.describe() {
        println!("  {line}");
    }
}

pub(crate) async fn approve(args: ApproveArgs) -> Result<(), CliError> {
    let (registry, auditor) = open_audited(&args.nats, &args.namespace, &args.actor).await?;
    let what = format!("approving {}", args.plugin);
    let approved = retrying(&registry, &what, |registry, snapshot| {
        approve_once(&args, &auditor, registry, snapshot)
    })
    .await?;
    if let Some((kind, registration)) = &approved {
        conclude(
            &args.nats,
            &args.namespace,
            &registry,
            &auditor,
            *kind,
            registration,
        )
        .await?;
    }
    Ok(())
}

/// One try of `plugins approve` against `snapshot`: what to announce, if anything changed.
async fn approve_once(
    args: &ApproveArgs,
    auditor: &Auditor,
    registry: Registry,
    snapshot: Snapshot,
) -> Result<Option<(LifecycleKind, Registration)>, CliError> {
    let (mut registration, installed) = registered_in(&registry, snapshot, &args.plugin)?;
    let before = registration.clone();
    if let Some(upgrade) = registration.pending_upgrade.take() {
        let manifest = upgrade.manifest;
        // The others may have changed since it was proposed.
        compat::check_install(&manifest, &installed, &compat::core_version(), true).map_err(
            |refused| CliError::Incompatible {
                what: format!("approving the upgrade of {}", args.plugin),
                problems: refused.to_string(),
            },
        )?;
        Box::pin(super::settings::check_settings_allow(
            &args.nats,
            &args.namespace.prefix,
            &manifest,
            registration.enabled,
        ))
        .await?;
        let from = registration.manifest.plugin.version.clone();
        registration.approval = Some(Approval::by_actor(
            &manifest,
            &registration.tenants,
            auditor.actor(),
        ));
        registration.manifest = manifest;
        registration.provenance = upgrade.provenance;
        registration.registered_at = OffsetDateTime::now_utc();
        let done = format!(
            "approved the upgrade of {} from {from} to {}",
            args.plugin, registration.manifest.plugin.version
        );
        let revision = registry
            .put_recorded(
                &registration,
                Action::Approved,
                Some(&before),
                done,
                auditor,
            )
            .await?
            .revision;
        println!(
            "approved the upgrade of {} from {from} to {} (revision {revision}); it asks for:",
            args.plugin, registration.manifest.plugin.version
        );
        print_rights(&registration.approved_rights());
        return Ok(Some((LifecycleKind::Upgraded, registration)));
    }
    if !registration.awaiting_approval {
        println!("{} has nothing waiting for approval", args.plugin);
        return Ok(None);
    }
    registration.awaiting_approval = false;
    registration.enabled = !args.disabled;
    if registration.enabled {
        compat::check_enable(&registration, &installed).map_err(|refused| {
            CliError::Incompatible {
                what: format!("enabling {} (approve it with --disabled)", args.plugin),
                problems: refused.to_string(),
            }
        })?;
        Box::pin(super::settings::check_settings_allow(
            &args.nats,
            &args.namespace.prefix,
            &registration.manifest,
            true,
        ))
        .await?;
    }
    registration.approval = Some(Approval::by_actor(
        &registration.manifest,
        &registration.tenants,
        auditor.actor(),
    ));
    let done = format!(
        "approved {} {} ({})",
        args.plugin,
        registration.manifest.plugin.version,
        registration.state()
    );
    let revision = registry
        .put_recorded(
            &registration,
            Action::Approved,
            Some(&before),
            done,
            auditor,
        )
        .await?
        .revision;
    println!(
        "approved {} {} ({}, revision {revision}); it may:",
        args.plugin,
        registration.manifest.plugin.version,
        registration.state()
    );
    print_rights(&registration.approved_rights());
    Ok(Some((LifecycleKind::Approved, registration)))
}

pub(crate) async fn reject(args: PluginArgs) -> Result<(), CliError> {
    let (registry, auditor) = open_audited(&args.nats, &args.namespace, &args.actor).await?;
    let what = format!("rejecting {}", args.plugin);
    let rejected = retrying(&registry, &what, |registry, snapshot| {
        reject_once(&args, &auditor, registry, snapshot)
    })
    .await?;
    if rejected {
        announce(
            &args.nats,
            &args.namespace,
            LifecycleKind::Rejected,
            &args.plugin,
            None,
            &auditor,
        )
        .await;
    }
    Ok(())
}

/// One try of `plugins reject` against `snapshot`: whether something was rejected.
async fn reject_once(
    args: &PluginArgs,
    auditor: &Auditor,
    registry: Registry,
    snapshot: Snapshot,
) -> Result<bool, CliError> {
    let (mut registration, _) = registered_in(&registry, snapshot, &args.plugin)?;
    let before = registration.clone();
    if let Some(upgrade) = registration.pending_upgrade.take() {
        let done = format!(
            "rejected the upgrade of {} to {}; {} stays",
            args.plugin, upgrade.manifest.plugin.version, registration.manifest.plugin.version
        );
        let revision = registry
            .put_recorded(
                &registration,
                Action::Rejected,
                Some(&before),
                done,
                auditor,
            )
            .await?
            .revision;
        println!(
            "rejected the upgrade of {} to {}; {} stays (revision {revision})",
            args.plugin, upgrade.manifest.plugin.version, registration.manifest.plugin.version
        );
    } else if registration.awaiting_approval {
        let done = format!("rejected {}: its installation is removed", args.plugin);
        registry
            .remove_recorded(&args.plugin, Action::Rejected, done, auditor)
            .await?;
        println!("rejected {}: its installation is removed", args.plugin);
    } else {
        println!("{} has nothing waiting for approval", args.plugin);
        return Ok(false);
    }
    Ok(true)
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
    let (registry, auditor) = open_audited(&args.nats, &args.namespace, &args.actor).await?;
    let what = format!("rolling {} back", args.plugin);
    let restored = retrying(&registry, &what, |registry, snapshot| {
        rollback_once(&args, &auditor, registry, snapshot)
    })
    .await?;
    conclude(
        &args.nats,
        &args.namespace,
        &registry,
        &auditor,
        LifecycleKind::RolledBack,
        &restored,
    )
    .await
}

/// One try of `plugins rollback` against `snapshot`: the registration restored.
async fn rollback_once(
    args: &RollbackArgs,
    auditor: &Auditor,
    registry: Registry,
    snapshot: Snapshot,
) -> Result<Registration, CliError> {
    let target = match args.to {
        Some(revision) => RollbackTarget::Revision(revision),
        None => RollbackTarget::PreviousVersion,
    };
    let plan = rollback::plan(&registry, snapshot, &args.plugin, target)
        .await
        .map_err(|error| match error {
            RollbackError::NotRegistered { plugin, bucket } => {
                CliError::NotRegistered { plugin, bucket }
            }
            RollbackError::NoTarget(reason) => CliError::BadArgument {
                argument: if args.to.is_some() { "--to" } else { "plugin" },
                reason,
            },
            RollbackError::Incompatible {
                plugin,
                revision,
                problems,
            } => CliError::Incompatible {
                what: format!("rolling {plugin} back to revision {revision}"),
                problems,
            },
            RollbackError::Registry(error) => error.into(),
            other => CliError::BadArgument {
                argument: "plugin",
                reason: other.to_string(),
            },
        })?;
    Box::pin(super::settings::check_settings_allow(
        &args.nats,
        &args.namespace.prefix,
        &plan.restored.manifest,
        plan.current.enabled,
    ))
    .await?;
    let revision = rollback::apply(&registry, &plan, None, auditor).await?;
    println!(
        "rolled {} back from {} to {} (revision {} restored as {revision}; {})",
        args.plugin,
        plan.current.manifest.plugin.version,
        plan.restored.manifest.plugin.version,
        plan.revision,
        plan.restored.state()
    );
    Ok(plan.restored)
}
