//! Rolling a new version out on this host, instance by instance: an instance of the new
//! version (a candidate) starts beside the old one; once it has run for `[run] health_grace`
//! without ending (and, when the old one sent heartbeats, has sent one), it replaces the old
//! one, and the next instance follows. A candidate that ends, cannot start, or stays silent
//! where the old one was not fails the upgrade: it is stopped, the old instances keep
//! running, this host does not try that version again, and it rolls the plugin back to the
//! version before, audited with why.

use std::time::Duration;

use switchyard_control::lifecycle::events::{self, LifecycleEvent, LifecycleKind};
use switchyard_control::lifecycle::rollback::{self, RollbackTarget};
use switchyard_control::registry::{RegistryError, CONFLICT_ATTEMPTS};
use switchyard_control::settings::SettingsStore;
use switchyard_schemas::PluginId;

use super::instance::Running;
use super::shared::Shared;
use crate::report::InstanceState;

/// What a candidate's trial shows so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It passed: it replaces the old instance.
    Healthy,
    /// It failed, for this reason.
    Failed(String),
    /// Not yet known.
    Pending,
}

/// Judges `candidate` against its `health_grace` and `heartbeat_timeout`; `old_beats`: whether
/// the instance it would replace sent heartbeats (then it must too); `heard`: whether it sent
/// one.
pub(crate) fn judge(
    candidate: &Running,
    health_grace: Duration,
    old_beats: bool,
    heard: bool,
) -> Verdict {
    let report = candidate.report.lock().expect("never poisoned").clone();
    let ended = match report.state {
        InstanceState::CannotStart | InstanceState::CrashLoop => true,
        InstanceState::Restarting => true,
        InstanceState::Running | InstanceState::Preparing => report.restarts > 0,
    };
    if ended || candidate.is_finished() {
        let how = report.last_end.unwrap_or_else(|| report.state.to_string());
        return Verdict::Failed(format!(
            "its instance {} ended during its health check: {how}",
            report.slot
        ));
    }
    let running_for = candidate.since.elapsed();
    if old_beats && !heard && running_for >= health_grace {
        return Verdict::Failed(format!(
            "its instance {} sent no heartbeat within its health_grace of {} s, as the version \
             before did",
            report.slot,
            health_grace.as_secs()
        ));
    }
    if report.state == InstanceState::Running
        && running_for >= health_grace
        && (heard || !old_beats)
    {
        return Verdict::Healthy;
    }
    Verdict::Pending
}

/// Rolls `plugin` back from `failed_version` to the version before, audited with `why` as
/// this host; does nothing when the registry no longer holds that version (another host rolled
/// it back, or an operator moved on). What goes wrong is logged: the old instances keep
/// running here whatever happens.
pub(crate) async fn roll_back(shared: &Shared, plugin: &PluginId, failed_version: &str, why: &str) {
    let registry = &shared.failures.registry;
    let auditor = match shared.failures.auditor().await {
        Ok(auditor) => auditor,
        Err(error) => {
            return tracing::error!(%plugin, %error, "cannot roll back: the audit log cannot be used")
        }
    };
    let why = format!(
        "{failed_version} failed its health check on host {}: {why}",
        shared.name
    );
    for _ in 0..CONFLICT_ATTEMPTS {
        let snapshot = match registry.snapshot().await {
            Ok(snapshot) => snapshot,
            Err(error) => return tracing::error!(%plugin, %error, "cannot roll back"),
        };
        let still_there = snapshot.registrations.iter().any(|r| {
            r.plugin_id() == plugin && r.manifest.plugin.version.to_string() == failed_version
        });
        if !still_there {
            return;
        }
        let guarded = registry.expecting(snapshot.sequence);
        let plan = match rollback::plan(&guarded, snapshot, plugin, RollbackTarget::PreviousVersion)
            .await
        {
            Ok(plan) => plan,
            Err(error) => {
                return tracing::error!(%plugin, %error, %why, "cannot roll back; the version before keeps running here")
            }
        };
        let js = async_nats::jetstream::new(shared.client.clone());
        if let Ok(Some(store)) = SettingsStore::open_existing(&js, &shared.namespace).await {
            if let Ok(set) = store.get(plugin).await {
                let unfit = set.unfit_for(&plan.restored.manifest, plan.current.enabled);
                if !unfit.is_empty() {
                    return tracing::error!(%plugin, problems = %unfit.join("; "), %why, "cannot roll back: the settings do not fit the version before");
                }
            }
        }
        match rollback::apply(&guarded, &plan, Some(&why), &auditor).await {
            Ok(revision) => {
                tracing::warn!(%plugin, revision, %why, "rolled back");
                let data = LifecycleEvent {
                    plugin: plugin.to_string(),
                    version: Some(plan.restored.manifest.plugin.version.to_string()),
                    state: Some(plan.restored.state().to_string()),
                    actor: Some(auditor.actor().name.clone()),
                    detail: Some(why.clone()),
                };
                let publisher = shared.failures.publisher();
                if let Err(error) =
                    events::announce(&publisher, LifecycleKind::RolledBack, &data).await
                {
                    tracing::warn!(%plugin, %error, "rolled back, but its lifecycle event was not published");
                }
                return;
            }
            Err(RegistryError::Conflict { .. }) => {}
            Err(error) => return tracing::error!(%plugin, %error, %why, "cannot roll back"),
        }
    }
    tracing::error!(%plugin, %why, "cannot roll back: the registry kept changing");
}
