//! Marking a plugin failed: what a dispatcher does when a plugin's circuit keeps opening, and
//! what a host does when its worker cannot be kept running.

use switchyard_bus::Publisher;
use switchyard_schemas::{Namespace, PluginId};

use super::events::{self, LifecycleEvent, LifecycleKind};
use crate::audit::{Actor, AuditLog, Auditor};
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

/// What marking a plugin failed needs, as one component instance (a dispatcher, a host): the
/// registry, its connection (for the audit log and the lifecycle event) and who it is.
#[derive(Debug, Clone)]
pub struct FailureReporter {
    /// The registry.
    pub registry: Registry,
    /// The component's connection.
    pub client: async_nats::Client,
    /// The deployment.
    pub namespace: Namespace,
    /// Who it is, as the audit entry's declared actor (`dispatcher d-1`, `host h-1`).
    pub component: String,
}

impl FailureReporter {
    /// The audit log, with this component as the actor.
    ///
    /// # Errors
    /// When the audit log cannot be opened.
    pub async fn auditor(&self) -> Result<Auditor, crate::audit::AuditError> {
        let js = async_nats::jetstream::new(self.client.clone());
        let log = AuditLog::open(&js, &self.namespace).await?;
        let actor = Actor::detect(&self.client, None, Some(self.component.clone())).await;
        Ok(Auditor::new(log, actor))
    }

    /// A publisher of lifecycle events.
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.client.clone(), self.namespace.clone(), events::SOURCE)
    }

    /// Marks `plugin` failed for `reason` ([`mark_failed`]); what goes wrong is logged, not
    /// returned: the caller goes on protecting the plugin its own way meanwhile.
    pub async fn mark_failed(&self, plugin: &PluginId, reason: &str) {
        let auditor = match self.auditor().await {
            Ok(auditor) => auditor,
            Err(error) => {
                tracing::error!(%plugin, %error, "cannot mark the plugin failed: the audit log cannot be used");
                return;
            }
        };
        let publisher = self.publisher();
        match mark_failed(&self.registry, &auditor, &publisher, plugin, reason).await {
            Ok(MarkedFailed::Failed(_)) => tracing::warn!(%plugin, %reason, "plugin marked failed"),
            Ok(MarkedFailed::AlreadyFailed) => {
                tracing::info!(%plugin, %reason, "the plugin is failed already")
            }
            Ok(MarkedFailed::NotRunning(state)) => {
                tracing::info!(%plugin, %reason, %state, "the plugin is not enabled; not marked failed")
            }
            Ok(MarkedFailed::NotRegistered) => {
                tracing::info!(%plugin, %reason, "the plugin is not registered; not marked failed")
            }
            Err(error) => {
                tracing::error!(%plugin, %reason, %error, "cannot mark the plugin failed")
            }
        }
    }
}
