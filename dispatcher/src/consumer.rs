//! One durable pull consumer per (plugin, subscription), and the loop that pulls from it.
//!
//! Each consumer's filter subjects are the subscription's event patterns for the plugin's
//! tenants, plus the subject its dead letters are replayed on. So each plugin has its own
//! cursor and lag, a slow plugin never holds back another, and a replay reaches only the
//! plugin that failed the event.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures::StreamExt;
use switchyard_schemas::manifest::Subscription;
use switchyard_schemas::{Namespace, PluginId};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pipeline::breaker::CircuitState;
use crate::pipeline::{deliver, DeliveryPath};
use crate::registry::TenantScope;

/// Added to the per-attempt timeout to get the consumer's ack wait: time for the ack itself
/// and for writing a dead letter.
pub const ACK_WAIT_MARGIN: Duration = Duration::from_secs(10);
/// How long one pull waits for messages before it is renewed.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How long a pull waits for more free delivery slots before it asks for fewer messages.
const PULL_GATHER: Duration = Duration::from_millis(1);
/// When stopping, how long to wait for messages the server has already sent in answer to the
/// current pull.
const STOP_DRAIN: Duration = Duration::from_millis(200);
/// The pause after a failed pull, so a broken consumer is not hammered.
const PULL_FAILURE_PAUSE: Duration = Duration::from_secs(1);
/// JetStream's cap on un-acked messages per consumer. The dispatcher bounds deliveries with
/// `max_in_flight` itself; this only has to be large enough that events waiting for a retry
/// (naked with a delay, still pending) never stop new ones from flowing.
const MAX_ACK_PENDING: i64 = 100_000;

/// The durable consumer name of a plugin's subscription: `{plugin}~{subscription}` (`~`
/// cannot occur in either token, so names never collide).
pub fn consumer_name(plugin: &PluginId, subscription: &str) -> String {
    format!("{plugin}~{subscription}")
}

/// The filter subjects of a subscription's consumer.
pub fn filter_subjects(
    namespace: &Namespace,
    plugin: &PluginId,
    tenants: &TenantScope,
    subscription: &Subscription,
) -> Vec<String> {
    let mut filters = Vec::new();
    for pattern in &subscription.events {
        match tenants.tenants() {
            None => filters.push(namespace.event_pattern_filter(None, pattern)),
            Some(tenants) => filters.extend(
                tenants
                    .iter()
                    .map(|tenant| namespace.event_pattern_filter(Some(tenant), pattern)),
            ),
        }
    }
    filters.push(namespace.redrive_filter(plugin, subscription.name.as_str()));
    filters
}

/// The JetStream configuration of a subscription's consumer.
pub fn consumer_config(
    namespace: &Namespace,
    plugin: &PluginId,
    tenants: &TenantScope,
    subscription: &Subscription,
) -> pull::Config {
    pull::Config {
        durable_name: Some(consumer_name(plugin, subscription.name.as_str())),
        description: Some(format!(
            "switchyard: plugin {plugin}, subscription {}",
            subscription.name
        )),
        filter_subjects: filter_subjects(namespace, plugin, tenants, subscription),
        // A newly registered plugin receives events published from now on.
        deliver_policy: DeliverPolicy::New,
        ack_policy: AckPolicy::Explicit,
        ack_wait: subscription.policy.timeout + ACK_WAIT_MARGIN,
        // Attempts are counted by the dispatcher, which dead-letters; JetStream never drops.
        max_deliver: -1,
        max_ack_pending: MAX_ACK_PENDING,
        ..Default::default()
    }
}

/// Pulls from `consumer` and delivers each message on its own task, at most
/// `max_in_flight` at once, until `stop` is cancelled. Does not pull while the plugin's
/// workers are absent or its circuit is open: held events are enough to find out when that
/// changes.
///
/// Deliveries run on `deliveries`, so that shutdown can wait for them.
pub async fn pull_loop(
    consumer: async_nats::jetstream::consumer::PullConsumer,
    path: Arc<DeliveryPath>,
    max_in_flight: usize,
    deliveries: TaskTracker,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    let mut circuit = path.breaker.subscribe();
    loop {
        let ready = async {
            path.presence.wait_present().await;
            let _ = circuit.wait_for(|state| *state != CircuitState::Open).await;
            let mut permits = Arc::clone(&slots)
                .acquire_many_owned(1)
                .await
                .expect("the semaphore is never closed");
            // Take every free slot: one pull asks for as many messages as can be delivered.
            // Under load slots free up one at a time; gathering them for a moment makes one
            // pull per several messages instead of one per message (each pull subscribes and
            // unsubscribes an inbox).
            let wanted = (max_in_flight / 2).max(1);
            let gather_until = tokio::time::Instant::now() + PULL_GATHER;
            loop {
                let extra = slots.available_permits();
                if extra > 0 {
                    if let Ok(more) = Arc::clone(&slots).try_acquire_many_owned(extra as u32) {
                        permits.merge(more);
                    }
                }
                if permits.num_permits() >= wanted {
                    break;
                }
                tokio::select! {
                    more = Arc::clone(&slots).acquire_owned() => {
                        permits.merge(more.expect("the semaphore is never closed"));
                    }
                    () = tokio::time::sleep_until(gather_until) => break,
                }
            }
            permits
        };
        let mut permits = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            permits = ready => permits,
        };
        let wanted = permits.num_permits();
        let batch = consumer
            .batch()
            .max_messages(wanted)
            .expires(PULL_EXPIRES)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                tracing::warn!(plugin = %path.plugin, %error, "pull failed");
                pause_or_stop(&stop).await;
                continue;
            }
        };
        let mut stopping = false;
        loop {
            let next = if stopping {
                // Messages the server has already sent are delivered like any other (they
                // are under way); then the pull is let go.
                match tokio::time::timeout(STOP_DRAIN, batch.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            } else {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {
                        stopping = true;
                        continue;
                    }
                    next = batch.next() => next,
                }
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    // Typically the server going away (409 shutdown). A pull sent at once
                    // would reach the dying server and be lost with it, leaving nothing to
                    // re-pull until the client's own batch timer fires; a short pause lets
                    // the client reconnect first.
                    tracing::warn!(plugin = %path.plugin, %error, "pull interrupted");
                    if !stopping {
                        pause_or_stop(&stop).await;
                    }
                    break;
                }
                None => break,
            };
            let Some(permit) = permits.split(1) else {
                // More messages than asked for cannot arrive; keep the bound regardless.
                tracing::warn!("pull returned more messages than requested");
                break;
            };
            let path = Arc::clone(&path);
            let abort = abort.clone();
            deliveries.spawn(async move {
                // On abort (shutdown past its grace) the delivery is dropped un-acked, and
                // JetStream redelivers it after the ack wait.
                let _in_flight = (path.stats.start(), path.metrics.start());
                tokio::select! {
                    settled = deliver(&path, message) => path.stats.record(&settled),
                    () = abort.cancelled() => {}
                }
                drop(permit);
            });
        }
        if stop.is_cancelled() {
            return;
        }
    }
}

async fn pause_or_stop(stop: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(PULL_FAILURE_PAUSE) => {}
        () = stop.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use switchyard_schemas::manifest::Manifest;
    use switchyard_schemas::Tenant;

    use super::*;

    fn subscription() -> (PluginId, Subscription) {
        let manifest = Manifest::from_toml_str(
            r#"
            [plugin]
            id = "audit"
            version = "1.0.0"
            core = "*"

            [[subscriptions]]
            name = "orders"
            events = ["order.*", "invoice.paid"]
            [subscriptions.policy]
            timeout = "3s"
            "#,
        )
        .unwrap();
        (
            manifest.plugin.id.clone(),
            manifest.subscriptions[0].clone(),
        )
    }

    #[test]
    fn filters_cover_each_pattern_for_each_tenant_and_the_replays() {
        let (plugin, sub) = subscription();
        let tenants =
            TenantScope::only([Tenant::new("acme").unwrap(), Tenant::new("globex").unwrap()])
                .unwrap();
        let filters = filter_subjects(&Namespace::default(), &plugin, &tenants, &sub);
        assert_eq!(
            filters,
            [
                "switchyard.events.acme.order.*",
                "switchyard.events.globex.order.*",
                "switchyard.events.acme.invoice.paid",
                "switchyard.events.globex.invoice.paid",
                "switchyard.redrive.audit.orders.>",
            ]
        );
        let all = filter_subjects(&Namespace::default(), &plugin, &TenantScope::All, &sub);
        assert_eq!(all[0], "switchyard.events.*.order.*");
    }

    #[test]
    fn the_ack_wait_follows_the_timeout() {
        let (plugin, sub) = subscription();
        let config = consumer_config(&Namespace::default(), &plugin, &TenantScope::All, &sub);
        assert_eq!(config.ack_wait, Duration::from_secs(3) + ACK_WAIT_MARGIN);
        assert_eq!(config.durable_name.as_deref(), Some("audit~orders"));
        assert_eq!(config.max_deliver, -1);
    }
}
