//! Marking a plugin failed when one of its circuits keeps opening: after
//! `fail_after_opens` consecutive opens of a subscription's breaker with no success in between
//! (a manifest policy key; off by default), the dispatcher marks the plugin failed in the
//! registry, audited with an actor naming this dispatcher instance, and announces it.

use std::sync::Arc;

use switchyard_control::lifecycle::failure::FailureReporter;
use switchyard_schemas::PluginId;
use tokio_util::sync::CancellationToken;

use crate::pipeline::breaker::{CircuitBreaker, CircuitState};

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
