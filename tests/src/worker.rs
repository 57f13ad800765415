//! A plugin worker built on plain async-nats, the way a worker in another language would be
//! written from `docs/wire-format.md`: it answers deliveries on the plugin's delivery subject
//! with whatever the test's behaviour says, and records what it received.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use futures::StreamExt;
use switchyard_bus::{decode_event, server_addrs};
use switchyard_schemas::delivery::{header as dh, DeliveryInfo, Outcome};
use switchyard_schemas::{Event, EventId, Namespace, PluginId};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::wait::{wait_until, TimedOut};

/// One delivery as the worker saw it.
#[derive(Debug, Clone)]
pub struct ReceivedDelivery {
    /// The delivery headers.
    pub info: DeliveryInfo,
    /// The event.
    pub event: Event,
    /// When it arrived.
    pub received_at: Instant,
    /// The subject the worker answers on. All but its last token are the same for every
    /// request of one dispatcher connection (async-nats multiplexes replies on one inbox per
    /// connection), so tests can tell which dispatcher instance delivered.
    pub reply_subject: String,
}

/// What the worker does with a delivery.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Reply at once.
    Reply(Outcome),
    /// Reply after a pause (on its own task, so deliveries overlap).
    ReplyAfter(Duration, Outcome),
    /// Never reply (the dispatcher times out).
    Ignore,
}

type Handler = dyn Fn(&ReceivedDelivery) -> Behaviour + Send + Sync;

/// A running worker of one plugin. Dropping it disconnects the worker.
pub struct TestWorker {
    received: Arc<Mutex<Vec<ReceivedDelivery>>>,
    in_flight: Arc<Mutex<(usize, usize)>>,
    task: JoinHandle<()>,
}

impl TestWorker {
    /// Connects to `url` (one server, or a comma-separated list such as a cluster's, failing
    /// over between them) as a worker of `plugin` (queue group = the plugin id), announces
    /// itself, and serves deliveries with `handler`.
    ///
    /// # Panics
    /// When `url` is not a server list, or the worker cannot connect or subscribe.
    pub async fn start(
        url: &str,
        namespace: &Namespace,
        plugin: &str,
        handler: impl Fn(&ReceivedDelivery) -> Behaviour + Send + Sync + 'static,
    ) -> Self {
        let servers = server_addrs(url).expect("a server URL or a comma-separated list of them");
        let client = async_nats::connect(servers).await.expect("worker connects");
        let plugin = PluginId::new(plugin).expect("valid plugin id");
        let mut deliveries = client
            .queue_subscribe(namespace.delivery(&plugin), plugin.to_string())
            .await
            .expect("worker subscribes");
        client
            .publish(namespace.worker_hello(&plugin), "".into())
            .await
            .expect("worker says hello");
        client.flush().await.expect("worker flushes");

        let received = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(Mutex::new((0usize, 0usize)));
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn({
            let received = Arc::clone(&received);
            let in_flight = Arc::clone(&in_flight);
            async move {
                while let Some(message) = deliveries.next().await {
                    let Some(reply) = message.reply.clone() else {
                        continue;
                    };
                    let headers = message.headers.clone().unwrap_or_default();
                    if headers.get(dh::PROBE).is_some() {
                        let _ = client.publish(reply, "".into()).await;
                        continue;
                    }
                    let lookup = |name: &str| headers.get(name).map(|v| v.as_str());
                    let info = DeliveryInfo::decode(lookup).expect("valid delivery headers");
                    let event = decode_event(Some(&headers), message.payload.clone())
                        .expect("a delivered event decodes");
                    let delivery = ReceivedDelivery {
                        info,
                        event,
                        received_at: Instant::now(),
                        reply_subject: reply.to_string(),
                    };
                    let behaviour = handler(&delivery);
                    received.lock().unwrap().push(delivery);
                    let (outcome, pause) = match behaviour {
                        Behaviour::Ignore => continue,
                        Behaviour::Reply(outcome) => (outcome, Duration::ZERO),
                        Behaviour::ReplyAfter(pause, outcome) => (outcome, pause),
                    };
                    let client = client.clone();
                    let in_flight = Arc::clone(&in_flight);
                    {
                        let mut counts = in_flight.lock().unwrap();
                        counts.0 += 1;
                        counts.1 = counts.1.max(counts.0);
                    }
                    tokio::spawn(async move {
                        tokio::time::sleep(pause).await;
                        let (pairs, body) = outcome.to_reply();
                        let mut headers = HeaderMap::new();
                        for (name, value) in pairs {
                            headers.insert(name, value);
                        }
                        in_flight.lock().unwrap().0 -= 1;
                        let _ = client.publish_with_headers(reply, headers, body).await;
                    });
                }
            }
        });
        Self {
            received,
            in_flight,
            task,
        }
    }

    /// Everything received so far, in order of arrival.
    pub fn received(&self) -> Vec<ReceivedDelivery> {
        self.received.lock().unwrap().clone()
    }

    /// The event id of every delivery so far, in order of arrival (an id delivered twice is
    /// listed twice). Cheaper than [`received`](Self::received) for many deliveries.
    pub fn received_ids(&self) -> Vec<EventId> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|delivery| delivery.event.attributes.id.clone())
            .collect()
    }

    /// How many deliveries have arrived.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// The most deliveries this worker held unanswered at once.
    pub fn max_concurrent(&self) -> usize {
        self.in_flight.lock().unwrap().1
    }

    /// Waits until at least `n` deliveries have arrived.
    ///
    /// # Errors
    /// [`TimedOut`] when they have not within `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Result<(), TimedOut> {
        wait_until(timeout, || async { self.count() >= n }).await
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.task.abort();
    }
}
