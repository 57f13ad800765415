//! Marking a plugin failed when one of its circuits keeps opening: after
//! `fail_after_opens` consecutive opens of a subscription's breaker with no success in between
//! (a manifest policy key; off by default), the dispatcher marks the plugin failed in the
//! registry, audited with an actor naming this dispatcher instance, and announces it.

use std::sync::Arc;

use switchyard_bus::Publisher;
use switchyard_control::audit::{Actor, AuditLog, Auditor};
use switchyard_control::lifecycle::failure;
use switchyard_control::registry::Registry;
use switchyard_schemas::{Namespace, PluginId};
use tokio_util::sync::CancellationToken;

use crate::pipeline::breaker::{CircuitBreaker, CircuitState};

/// What marking a plugin failed needs: the registry, the audit log and the lifecycle events,
/// as this dispatcher instance.
#[derive(Debug, Clone)]
pub(crate) struct FailureReporter {
    pub(crate) registry: Registry,
    pub(crate) client: async_nats::Client,
    pub(crate) namespace: Namespace,
    pub(crate) instance: String,
}

impl FailureReporter {
    /// Marks `plugin` failed for `reason`; what goes wrong is logged (the breaker keeps
    /// protecting the plugin meanwhile).
    async fn mark_failed(&self, plugin: &PluginId, reason: &str) {
        let js = async_nats::jetstream::new(self.client.clone());
        let log = match AuditLog::open(&js, &self.namespace).await {
            Ok(log) => log,
            Err(error) => {
                tracing::error!(%plugin, %error, "cannot mark the plugin failed: the audit log cannot be used");
                return;
            }
        };
        let actor = Actor::detect(
            &self.client,
            None,
            Some(format!("dispatcher {}", self.instance)),
        )
        .await;
        let auditor = Auditor::new(log, actor);
        let publisher = Publisher::new(
            self.client.clone(),
            self.namespace.clone(),
            switchyard_control::lifecycle::events::SOURCE,
        );
        match failure::mark_failed(&self.registry, &auditor, &publisher, plugin, reason).await {
            Ok(marked) => tracing::warn!(%plugin, %reason, ?marked, "plugin marked failed"),
            Err(error) => {
                tracing::error!(%plugin, %reason, %error, "cannot mark the plugin failed")
            }
        }
    }
}

/// Watches `breaker` until it has opened `threshold` times in a row with no success in
/// between, then marks the plugin failed; ends when stopped.
pub(crate) async fn fail_after_opens(
    breaker: Arc<CircuitBreaker>,
    threshold: u32,
    plugin: PluginId,
    subscription: String,
    reporter: FailureReporter,
    stop: CancellationToken,
) {
    let mut changes = breaker.subscribe();
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
        let state = *changes.borrow_and_update();
        let opens = breaker.opens_in_a_row();
        if state == CircuitState::Open && opens >= threshold {
            let reason = format!(
                "the circuit of subscription `{subscription}` opened {opens} times in a row \
                 without a success (fail_after_opens = {threshold})"
            );
            reporter.mark_failed(&plugin, &reason).await;
            return;
        }
    }
}
