//! Rolling a plugin back to an earlier revision of its registration: what `switchyard plugins
//! rollback` does, and what a host does by itself when a new version fails its health checks.

use switchyard_schemas::PluginId;
use time::OffsetDateTime;

use super::compat;
use crate::audit::{Action, Auditor};
use crate::registry::{Registration, Registry, RegistryError, Snapshot};

/// Which revision to go back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTarget {
    /// The latest earlier revision of another version.
    PreviousVersion,
    /// This revision, as `plugins history` lists it.
    Revision(u64),
}

/// Why a rollback is not possible.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RollbackError {
    /// The plugin is not registered.
    #[error("no plugin `{plugin}` is registered (in `{bucket}`)")]
    NotRegistered {
        /// The plugin.
        plugin: PluginId,
        /// The registry's bucket.
        bucket: String,
    },
    /// No such revision, no earlier one of another version, or a removal.
    #[error("{0}")]
    NoTarget(String),
    /// The earlier revision no longer fits beside the plugins installed now.
    #[error("rolling {plugin} back to revision {revision} is refused:\n{problems}")]
    Incompatible {
        /// The plugin.
        plugin: PluginId,
        /// The revision.
        revision: u64,
        /// Every problem, one per line.
        problems: String,
    },
    /// The registry could not be read or written.
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// A rollback worked out against one snapshot of the registry, not written yet.
#[derive(Debug, Clone)]
pub struct RollbackPlan {
    /// The registration now.
    pub current: Registration,
    /// The registration it goes back to, with the current state (enabled, failed) and a new
    /// time of registration; its approval comes back with it.
    pub restored: Registration,
    /// The revision restored.
    pub revision: u64,
}

/// Works out rolling `plugin` back to `target` as `snapshot` has it: the earlier revision must
/// fit beside the plugins installed now (a downgrade is allowed).
///
/// # Errors
/// [`RollbackError`].
pub async fn plan(
    registry: &Registry,
    snapshot: Snapshot,
    plugin: &PluginId,
    target: RollbackTarget,
) -> Result<RollbackPlan, RollbackError> {
    let installed = snapshot.registrations;
    let current = installed
        .iter()
        .find(|r| r.plugin_id() == plugin)
        .cloned()
        .ok_or_else(|| RollbackError::NotRegistered {
            plugin: plugin.clone(),
            bucket: registry.bucket().to_owned(),
        })?;
    let revisions = registry.history(plugin).await?;
    let found = match target {
        RollbackTarget::Revision(revision) => revisions
            .iter()
            .find(|r| r.revision == revision)
            .ok_or_else(|| {
                RollbackError::NoTarget(format!(
                    "{plugin} has no revision {revision} (see `switchyard plugins history {plugin}`)"
                ))
            })?,
        RollbackTarget::PreviousVersion => revisions
            .iter()
            .rev()
            .find(|r| {
                r.registration.as_ref().is_some_and(|old| {
                    old.manifest.plugin.version != current.manifest.plugin.version
                })
            })
            .ok_or_else(|| {
                RollbackError::NoTarget(format!(
                    "{plugin} has no earlier revision of another version to go back to"
                ))
            })?,
    };
    let Some(old) = found.registration.clone() else {
        return Err(RollbackError::NoTarget(format!(
            "revision {} is a removal",
            found.revision
        )));
    };
    compat::check_install(&old.manifest, &installed, &compat::core_version(), true).map_err(
        |refused| RollbackError::Incompatible {
            plugin: plugin.clone(),
            revision: found.revision,
            problems: refused.to_string(),
        },
    )?;
    let mut restored = old;
    // The revision's approval comes back with it: a rollback never runs what was not
    // approved. Its state now is the current one, where that was approved.
    restored.enabled = current.enabled;
    restored.failure = current.failure.clone();
    restored.pending_upgrade = None;
    restored.registered_at = OffsetDateTime::now_utc();
    let same = restored.manifest == current.manifest
        && restored.tenants == current.tenants
        && restored.approval == current.approval
        && restored.provenance == current.provenance
        && current.pending_upgrade.is_none();
    if same {
        return Err(RollbackError::NoTarget(format!(
            "revision {} holds what is installed now ({plugin} {}): nothing to roll back",
            found.revision, current.manifest.plugin.version
        )));
    }
    Ok(RollbackPlan {
        current,
        restored,
        revision: found.revision,
    })
}

/// Writes `plan` (conditionally, when `registry` expects a sequence), audited as
/// `rolled_back` with `why` after the versions when given. Returns the new revision.
///
/// # Errors
/// As [`Registry::put_recorded`].
pub async fn apply(
    registry: &Registry,
    plan: &RollbackPlan,
    why: Option<&str>,
    auditor: &Auditor,
) -> Result<u64, RegistryError> {
    let plugin = plan.current.plugin_id();
    let mut done = format!(
        "rolled {plugin} back from {} to {} (revision {})",
        plan.current.manifest.plugin.version, plan.restored.manifest.plugin.version, plan.revision
    );
    if let Some(why) = why {
        done.push_str(": ");
        done.push_str(why);
    }
    Ok(registry
        .put_recorded(
            &plan.restored,
            Action::RolledBack,
            Some(&plan.current),
            done,
            auditor,
        )
        .await?
        .revision)
}
