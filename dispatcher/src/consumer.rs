//! One durable pull consumer per (plugin, subscription), and the loop that pulls from it.
//!
//! Each consumer's filter subjects are the subscription's event patterns for the plugin's
//! tenants, plus the subject its dead letters are replayed on. So each plugin has its own
//! cursor and lag, a slow plugin never holds back another, and a replay reaches only the
//! plugin that failed the event.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use switchyard_schemas::manifest::Subscription;
use switchyard_schemas::{Namespace, PluginId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pipeline::breaker::CircuitState;
use crate::pipeline::{deliver, DeliveryPath};
use crate::pull::{Pull, Pulled};
use crate::registry::TenantScope;

/// Added to the per-attempt timeout to get the consumer's ack wait: time for the ack itself
/// and for writing a dead letter.
pub const ACK_WAIT_MARGIN: Duration = Duration::from_secs(10);
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
/// `max_in_flight` at once, until `stop` is cancelled. Asks for more only while the
/// plugin's workers are present and its circuit is not open: the events already under way
/// are enough to find out when that changes.
///
/// `jetstream` must be a context on `path.client`, so that pull requests and acks go out on
/// the connection that subscribed the pull's inbox. Deliveries run on `deliveries`, so that
/// shutdown can wait for them.
pub async fn pull_loop(
    jetstream: async_nats::jetstream::Context,
    consumer: async_nats::jetstream::consumer::PullConsumer,
    path: Arc<DeliveryPath>,
    max_in_flight: usize,
    deliveries: TaskTracker,
    stop: CancellationToken,
    abort: CancellationToken,
) {
    let info = consumer.cached_info();
    let mut pull = loop {
        match Pull::open(jetstream.clone(), &info.stream_name, &info.name).await {
            Ok(pull) => break pull,
            Err(error) => {
                tracing::warn!(plugin = %path.plugin, %error, "cannot pull");
                pause_or_stop(&stop).await;
                if stop.is_cancelled() {
                    return;
                }
            }
        }
    };
    let slots = Arc::new(Semaphore::new(max_in_flight));
    // While some slots are asked for, more are asked for only in groups of this many, so that
    // a busy subscription sends one pull request per several messages, not one per message.
    let group = u32::try_from((max_in_flight / 4).max(1)).unwrap_or(u32::MAX);
    let mut circuit = path.breaker.subscribe();
    loop {
        let least = if pull.requested() == 0 { 1 } else { group };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            pulled = pull.next() => match pulled {
                Some(Pulled::Message(message, slot)) => {
                    spawn_delivery(&deliveries, &path, &slots, &abort, message, slot);
                }
                Some(Pulled::Released) => {}
                None => {
                    tracing::warn!(plugin = %path.plugin, "pull inbox closed");
                    return;
                }
            },
            free = free_slots(&path, &mut circuit, &slots, least) => {
                if let Err(error) = pull.request(free).await {
                    tracing::warn!(plugin = %path.plugin, %error, "pull failed");
                    pause_or_stop(&stop).await;
                }
            }
        }
    }
    // Messages the server has already sent are delivered like any other (they are under
    // way); then the pull is let go, and whatever comes later is redelivered by JetStream.
    let until = tokio::time::Instant::now() + STOP_DRAIN;
    while pull.requested() > 0 {
        match tokio::time::timeout_at(until, pull.next()).await {
            Ok(Some(Pulled::Message(message, slot))) => {
                spawn_delivery(&deliveries, &path, &slots, &abort, message, slot);
            }
            Ok(Some(Pulled::Released)) => {}
            Ok(None) | Err(_) => break,
        }
    }
}

/// Waits until the plugin can take more (workers present, circuit not open) and at least
/// `least` delivery slots are free, and takes every free slot.
async fn free_slots(
    path: &DeliveryPath,
    circuit: &mut tokio::sync::watch::Receiver<CircuitState>,
    slots: &Arc<Semaphore>,
    least: u32,
) -> OwnedSemaphorePermit {
    path.presence.wait_present().await;
    let _ = circuit.wait_for(|state| *state != CircuitState::Open).await;
    let mut free = Arc::clone(slots)
        .acquire_many_owned(least)
        .await
        .expect("the semaphore is never closed");
    let extra = slots.available_permits();
    if extra > 0 {
        if let Ok(more) = Arc::clone(slots).try_acquire_many_owned(extra as u32) {
            free.merge(more);
        }
    }
    free
}

/// Delivers one pulled message on its own task, in the slot it was asked for.
fn spawn_delivery(
    deliveries: &TaskTracker,
    path: &Arc<DeliveryPath>,
    slots: &Arc<Semaphore>,
    abort: &CancellationToken,
    message: async_nats::jetstream::Message,
    slot: Option<OwnedSemaphorePermit>,
) {
    let path = Arc::clone(path);
    let slots = Arc::clone(slots);
    let abort = abort.clone();
    deliveries.spawn(async move {
        // On abort (shutdown past its grace) the delivery is dropped un-acked, and
        // JetStream redelivers it after the ack wait.
        tokio::select! {
            () = abort.cancelled() => {}
            () = async {
                // A message of a request presumed lost still keeps the bound.
                let _slot = match slot {
                    Some(slot) => slot,
                    None => slots.acquire_owned().await.expect("the semaphore is never closed"),
                };
                let _in_flight = (path.stats.start(), path.metrics.start());
                let settled = deliver(&path, message).await;
                path.stats.record(&settled);
            } => {}
        }
    });
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
