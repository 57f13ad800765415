//! One durable pull consumer per (plugin, subscription), and the loop that pulls from it.
//!
//! Each consumer's filter subjects are the subscription's event patterns for the plugin's
//! tenants, plus the subject its dead letters are replayed on. So each plugin has its own
//! cursor and lag, a slow plugin never holds back another, and a replay reaches only the
//! plugin that failed the event.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};

use futures::future::{Fuse, FusedFuture, FutureExt};
use futures::stream::{FuturesUnordered, StreamExt};
use switchyard_schemas::manifest::Subscription;
use switchyard_schemas::{Namespace, PluginId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::pipeline::{deliver, DeliveryPath};
use crate::pull::{Pull, Pulled};
use switchyard_control::registry::TenantScope;

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

/// The JetStream configuration of a subscription's consumer, starting at `start_sequence`
/// (the registration's; see [`Registration::start_sequence`]) when it is new.
///
/// [`Registration::start_sequence`]: switchyard_control::registry::Registration::start_sequence
pub fn consumer_config(
    namespace: &Namespace,
    plugin: &PluginId,
    tenants: &TenantScope,
    subscription: &Subscription,
    start_sequence: Option<u64>,
) -> pull::Config {
    pull::Config {
        durable_name: Some(consumer_name(plugin, subscription.name.as_str())),
        description: Some(format!(
            "switchyard: plugin {plugin}, subscription {}",
            subscription.name
        )),
        filter_subjects: filter_subjects(namespace, plugin, tenants, subscription),
        // A plugin receives every event published after its registration was acknowledged,
        // however long before its consumer is created.
        deliver_policy: match start_sequence {
            Some(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            None => DeliverPolicy::New,
        },
        ack_policy: AckPolicy::Explicit,
        ack_wait: subscription.policy.timeout + ACK_WAIT_MARGIN,
        // Attempts are counted by the dispatcher, which dead-letters; JetStream never drops.
        max_deliver: -1,
        max_ack_pending: MAX_ACK_PENDING,
        ..Default::default()
    }
}

/// Pulls from `consumer` and delivers, at most `max_in_flight` at once, until `stop` is
/// cancelled; then finishes the deliveries under way unless `abort` is cancelled first.
/// Returns how many deliveries the abort dropped (un-acked: JetStream redelivers them).
///
/// Asks for more only while the plugin's workers are present and its circuit admits
/// attempts: an open circuit fetches nothing until its cooldown ends, and then the event
/// that becomes its probe.
///
/// The deliveries run on this task, not one task each: the ones that become ready together
/// (a batch of pulled messages, a burst of replies) are polled in one go, so their requests
/// and acks reach the connection together and leave in one write. A task per delivery had
/// each one woken, and its message written, on its own (docs/performance.md).
///
/// `jetstream` must be a context on the connection of `path.replies`, so that requests, pull
/// requests and acks share one connection and its writes.
pub async fn pull_loop(
    jetstream: async_nats::jetstream::Context,
    consumer: async_nats::jetstream::consumer::PullConsumer,
    path: Arc<DeliveryPath>,
    max_in_flight: usize,
    stop: CancellationToken,
    abort: CancellationToken,
) -> usize {
    let info = consumer.cached_info();
    let mut pull = loop {
        match Pull::open(jetstream.clone(), &info.stream_name, &info.name).await {
            Ok(pull) => break pull,
            Err(error) => {
                tracing::warn!(plugin = %path.plugin, %error, "cannot pull");
                tokio::select! {
                    () = tokio::time::sleep(PULL_FAILURE_PAUSE) => {}
                    () = stop.cancelled() => return 0,
                }
            }
        }
    };
    let slots = Arc::new(Semaphore::new(max_in_flight));
    // While some slots are asked for, more are asked for only in groups of this many, so that
    // a busy subscription sends one pull request per several messages, not one per message.
    let group = u32::try_from((max_in_flight / 4).max(1)).unwrap_or(u32::MAX);
    let mut under_way = FuturesUnordered::new();
    // After a failed pull request, none is sent until then, so a broken consumer is not
    // hammered; deliveries under way go on meanwhile.
    let mut paused_until: Option<Instant> = None;
    // Pull requests refused in a row (a consumer without a leader answers at once): each
    // waits longer before the next, so a broken consumer costs no CPU.
    let mut refusals = Refusals::default();
    // The wait for free slots outlives the loop's turns: a turn per settled delivery would
    // otherwise look at presence and breaker and queue on the semaphore again each time.
    // It is made anew only when it has finished, or when how many it waits for changes.
    let mut asking = pin!(free_slots(&path, &slots, 1).fuse());
    let mut asked_least = 1;
    loop {
        let least = if pull.requested() == 0 { 1 } else { group };
        if asking.is_terminated() || least != asked_least {
            asking.set(free_slots(&path, &slots, least).fuse());
            asked_least = least;
        }
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(()) = under_way.next(), if !under_way.is_empty() => {}
            pulled = pull.next() => match pulled {
                Some(Pulled::Message(message, slot)) => {
                    if refusals.recovered() {
                        tracing::info!(plugin = %path.plugin, "pulls answered again");
                    }
                    under_way.push(delivery(&path, &slots, message, slot));
                }
                Some(Pulled::Released) => {}
                Some(Pulled::Refused(why)) => {
                    let pause = refusals.refused();
                    if refusals.count == 1 || refusals.count % REFUSALS_LOGGED_EVERY == 0 {
                        tracing::warn!(plugin = %path.plugin, %why, refusals = refusals.count, ?pause, "pull refused; backing off");
                    }
                    paused_until = Some(Instant::now() + pause);
                }
                None => {
                    tracing::warn!(plugin = %path.plugin, "pull inbox closed");
                    break;
                }
            },
            () = sleep_until_some(paused_until), if paused_until.is_some() => paused_until = None,
            free = &mut asking, if paused_until.is_none() => {
                if let Err(error) = pull.request(free).await {
                    tracing::warn!(plugin = %path.plugin, %error, "pull failed");
                    paused_until = Some(Instant::now() + PULL_FAILURE_PAUSE);
                }
            }
        }
    }
    // Slots still being waited for go back before the last deliveries need them.
    asking.set(Fuse::terminated());
    // Messages the server has already sent are delivered like any other (they are under
    // way); then the pull is let go, and whatever comes later is redelivered by JetStream.
    let drain_until = Instant::now() + STOP_DRAIN;
    let mut draining = true;
    loop {
        draining &= pull.requested() > 0;
        if !draining && under_way.is_empty() {
            return 0;
        }
        tokio::select! {
            biased;
            () = abort.cancelled() => return under_way.len(),
            Some(()) = under_way.next(), if !under_way.is_empty() => {}
            pulled = tokio::time::timeout_at(drain_until, pull.next()), if draining => {
                match pulled {
                    Ok(Some(Pulled::Message(message, slot))) => {
                        under_way.push(delivery(&path, &slots, message, slot));
                    }
                    Ok(Some(Pulled::Released | Pulled::Refused(_))) => {}
                    Ok(None) | Err(_) => draining = false,
                }
            }
        }
    }
}

/// Refusals are logged at the first and then every this many in a row.
const REFUSALS_LOGGED_EVERY: u32 = 20;
/// The first pause after a refused pull; it doubles with each refusal in a row.
const FIRST_REFUSAL_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between refused pulls.
const MAX_REFUSAL_PAUSE: Duration = Duration::from_secs(5);

/// Pull requests refused in a row, and the pause before the next.
#[derive(Debug, Default)]
struct Refusals {
    count: u32,
}

impl Refusals {
    /// Counts a refusal; returns how long to wait before asking again.
    fn refused(&mut self) -> Duration {
        self.count = self.count.saturating_add(1);
        let doublings = self.count.saturating_sub(1).min(16);
        FIRST_REFUSAL_PAUSE
            .saturating_mul(1 << doublings)
            .min(MAX_REFUSAL_PAUSE)
    }

    /// A message arrived: true when refusals had been counted (and are now forgotten).
    fn recovered(&mut self) -> bool {
        std::mem::take(&mut self.count) > 0
    }
}

/// Sleeps until `until`; never wakes for `None`.
async fn sleep_until_some(until: Option<Instant>) {
    match until {
        Some(until) => tokio::time::sleep_until(until).await,
        None => std::future::pending().await,
    }
}

/// Waits until at least `least` delivery slots are free and the plugin can take more
/// (workers present, circuit not open or its cooldown over), and takes every free slot.
///
/// The plugin is looked at after the slots are had, right before they are asked for: this
/// wait can last across many deliveries, and one of them may have opened the circuit.
async fn free_slots(
    path: &DeliveryPath,
    slots: &Arc<Semaphore>,
    least: u32,
) -> OwnedSemaphorePermit {
    let mut free = Arc::clone(slots)
        .acquire_many_owned(least)
        .await
        .expect("the semaphore is never closed");
    path.presence.wait_present().await;
    path.breaker.until_admitting().await;
    let extra = slots.available_permits();
    if extra > 0 {
        if let Ok(more) = Arc::clone(slots).try_acquire_many_owned(extra as u32) {
            free.merge(more);
        }
    }
    free
}

/// Delivers one pulled message in the slot it was asked for. Dropped (at an abort), it
/// leaves the message un-acked, and JetStream redelivers it after the ack wait.
async fn delivery(
    path: &DeliveryPath,
    slots: &Arc<Semaphore>,
    message: async_nats::jetstream::Message,
    slot: Option<OwnedSemaphorePermit>,
) {
    // A message of a request presumed lost still keeps the bound.
    let _slot = match slot {
        Some(slot) => slot,
        None => Arc::clone(slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed"),
    };
    let _in_flight = (path.stats.start(), path.metrics.start());
    let settled = deliver(path, message).await;
    path.stats.record(&settled);
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
    fn refused_pulls_back_off_doubling_to_a_ceiling_and_recover_at_once() {
        let mut refusals = Refusals::default();
        let pauses: Vec<Duration> = (0..10).map(|_| refusals.refused()).collect();
        assert_eq!(pauses[0], FIRST_REFUSAL_PAUSE);
        assert_eq!(pauses[1], FIRST_REFUSAL_PAUSE * 2);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(pauses[9], MAX_REFUSAL_PAUSE);
        assert!(refusals.recovered());
        assert!(!refusals.recovered());
        assert_eq!(refusals.refused(), FIRST_REFUSAL_PAUSE);
    }

    #[test]
    fn the_ack_wait_follows_the_timeout() {
        let (plugin, sub) = subscription();
        let config = consumer_config(
            &Namespace::default(),
            &plugin,
            &TenantScope::All,
            &sub,
            None,
        );
        assert_eq!(config.ack_wait, Duration::from_secs(3) + ACK_WAIT_MARGIN);
        assert_eq!(config.durable_name.as_deref(), Some("audit~orders"));
        assert_eq!(config.max_deliver, -1);
    }
}
