//! Marking a plugin failed: what a dispatcher does when a plugin's circuit keeps opening, and
//! what a host does when its worker cannot be kept running.

use switchyard_bus::Publisher;
use switchyard_schemas::PluginId;

use super::events::{self, LifecycleEvent, LifecycleKind};
use crate::audit::Auditor;
use crate::registry::{LifecycleState, MarkedFailed, Registry, RegistryError};

/// Marks `plugin` failed for `reason` ([`Registry::mark_failed`]: audited as `plugin_failed`
/// by `auditor`'s actor), and announces it with `publisher` as the lifecycle event
/// `switchyard.plugin.failed` (state `failed`, the actor, and the reason as its detail). Its
/// events are held and its workers refused until an operator enables it again.
///
/// The change stands when the event cannot be published: that is logged, not returned.
///
/// # Errors
/// As [`Registry::mark_failed`].
pub async fn mark_failed(
    registry: &Registry,
    auditor: &Auditor,
    publisher: &Publisher,
    plugin: &PluginId,
    reason: &str,
) -> Result<MarkedFailed, RegistryError> {
    let marked = registry.mark_failed(plugin, reason, auditor).await?;
    if let MarkedFailed::Failed(registration) = &marked {
        let data = LifecycleEvent {
            plugin: plugin.to_string(),
            version: Some(registration.manifest.plugin.version.to_string()),
            state: Some(LifecycleState::Failed.to_string()),
            actor: Some(auditor.actor().name.clone()),
            detail: Some(reason.to_owned()),
        };
        if let Err(error) = events::announce(publisher, LifecycleKind::Failed, &data).await {
            tracing::warn!(%plugin, %error, "marked failed, but its lifecycle event was not published");
        }
    }
    Ok(marked)
}
