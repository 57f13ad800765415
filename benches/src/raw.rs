//! The baseline: a raw async-nats program that does the dispatcher's work by hand, with
//! nothing of Switchyard in it. A durable pull consumer on a stream, pulled through
//! async-nats' own message stream; each message is sent as a request to a worker (a plain
//! subscriber that replies at once), and acknowledged when the reply comes, at most
//! `window` at once.
//!
//! [`RawVariant`] swaps in, one at a time, other ways of doing those steps (one-shot pulls
//! and confirmed acks, as Switchyard's dispatcher did before it had its own pull; Switchyard's
//! wire format), so that each one's share of a difference can be measured without the rest
//! of Switchyard's code.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::consumer::{pull, AckPolicy, PullConsumer};
use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use switchyard_bus::event_headers;
use switchyard_schemas::delivery::{header as dh, DeliveryInfo};
use switchyard_schemas::{header, Event, PluginId, Tenant};
use tokio::task::JoinSet;

use crate::clock;
use crate::drive::System;
use crate::latency::Recorder;
use crate::probe::{self, Probe};
use crate::server::BenchServer;
use crate::wire::Wire;
use crate::{BenchResult, Step};

const STREAM: &str = "BENCH";
const EVENTS: &str = "bench.events";
const DELIVER: &str = "bench.deliver";
const CONSUMER: &str = "bench-worker";
/// How long the baseline waits for a worker's reply; never reached in a healthy run.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a one-shot pull waits for messages, as Switchyard's.
const PULL_EXPIRES: Duration = Duration::from_secs(5);

/// How the baseline pulls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pull {
    /// async-nats' continuous pull stream (`consumer.stream()`), `window` per pull request.
    #[default]
    Stream,
    /// As Switchyard's dispatcher did at first: wait for a free slot, then one-shot `consumer.batch()` for every
    /// free slot (each with a fresh inbox subscription), and deliver each on its own task.
    Batch,
}

/// How the baseline acknowledges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ack {
    /// A plain, fire-and-forget `ack()`.
    #[default]
    Plain,
    /// As Switchyard's dispatcher did at first: `double_ack()`, waiting for the server's confirmation on a
    /// fresh inbox subscription per ack (SUB, PUB, MSG, UNSUB).
    Double,
    /// A confirmed ack sent as a request on the connection's shared reply inbox (PUB, MSG):
    /// the same guarantee as `Double` without a subscription per ack.
    Requested,
}

/// The baseline, with some other ways of pulling, acknowledging or encoding swapped in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawVariant {
    /// How it pulls.
    pub pull: Pull,
    /// How it acknowledges.
    pub ack: Ack,
    /// Carry Switchyard's wire format: the CloudEvents headers on publish, the delivery
    /// headers added on the request, the outcome header on the reply.
    pub headers: bool,
}

impl RawVariant {
    /// The plain baseline.
    pub const PLAIN: Self = Self {
        pull: Pull::Stream,
        ack: Ack::Plain,
        headers: false,
    };
}

/// The running baseline: a publisher, the pull-request-ack loop and the worker.
#[derive(Debug)]
pub struct RawSystem {
    js: jetstream::Context,
    payload: usize,
    /// With [`RawVariant::headers`]: the headers of a Switchyard event of the payload size.
    event_headers: Option<HeaderMap>,
    acked: Arc<AtomicU64>,
    clients: Vec<async_nats::Client>,
    tasks: JoinSet<()>,
}

impl RawSystem {
    /// Creates the stream and the consumer on `server` and starts the loop and the worker,
    /// which records latencies into `recorder`.
    ///
    /// # Errors
    /// When the stream, the consumer or a subscription cannot be set up.
    pub async fn start(
        server: &BenchServer,
        window: usize,
        payload: usize,
        variant: RawVariant,
        recorder: Arc<Recorder>,
    ) -> BenchResult<Self> {
        // Three connections, as Switchyard has: publisher, dispatcher, worker.
        let publisher = server.connect().await?;
        let dispatcher = server.connect().await?;
        let worker = server.connect().await?;
        let js = jetstream::new(publisher.clone());
        // The same storage as Switchyard's events stream, so both pay for the same writes.
        let stream = js
            .create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec![EVENTS.to_owned()],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .step("create the baseline stream")?;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: REQUEST_TIMEOUT * 2,
                max_ack_pending: 100_000,
                ..Default::default()
            })
            .await
            .step("create the baseline consumer")?;

        let mut tasks = JoinSet::new();
        let requests = worker
            .queue_subscribe(DELIVER, "workers".to_owned())
            .await
            .step("subscribe the baseline worker")?;
        tasks.spawn(serve(worker.clone(), requests, variant.headers, recorder));
        // The subscription must be known to the server before the first request.
        worker
            .flush()
            .await
            .step("flush the worker's subscription")?;

        let acked = Arc::new(AtomicU64::new(0));
        let deliver = Deliver {
            client: dispatcher.clone(),
            acked: Arc::clone(&acked),
            variant,
        };
        match variant.pull {
            Pull::Stream => tasks.spawn(stream_loop(consumer, window, deliver)),
            Pull::Batch => tasks.spawn(batch_loop(consumer, window, deliver)),
        };
        let event_headers = if variant.headers {
            let tenant = Tenant::new("bench").step("a tenant")?;
            let event = Event::builder(tenant, "urn:bench:publisher")
                .build(&Probe::sized(0, 0, payload))
                .step("build an event")?;
            Some(event_headers(&event))
        } else {
            None
        };
        Ok(Self {
            js,
            payload,
            event_headers,
            acked,
            clients: vec![publisher, dispatcher, worker],
            tasks,
        })
    }

    /// Stops the loop and the worker.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

impl System for RawSystem {
    async fn publish(&self, seq: u64) -> BenchResult<()> {
        let payload = probe::raw_payload(seq, clock::now_ns(), self.payload);
        let ack = match &self.event_headers {
            None => self.js.publish(EVENTS, payload).await,
            Some(headers) => {
                // A fresh id per event, or JetStream's de-duplication would drop it.
                let mut headers = headers.clone();
                let id = format!("bench-{seq}");
                headers.insert(header::NATS_MSG_ID, id.as_str());
                headers.insert(header::ID, id.as_str());
                self.js.publish_with_headers(EVENTS, headers, payload).await
            }
        };
        ack.step("publish")?.await.step("await the publish ack")?;
        Ok(())
    }

    fn settled(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    fn wire(&self) -> Wire {
        Wire::of(&self.clients)
    }
}

/// The worker: records the latency and replies at once.
async fn serve(
    client: async_nats::Client,
    mut requests: async_nats::Subscriber,
    headers: bool,
    recorder: Arc<Recorder>,
) {
    let mut done = HeaderMap::new();
    done.insert(dh::OUTCOME, "done");
    while let Some(request) = requests.next().await {
        if let Some((_, sent_ns)) = probe::read_raw(&request.payload) {
            recorder.record(sent_ns);
        }
        let Some(reply) = request.reply else {
            continue;
        };
        let _ = if headers {
            client
                .publish_with_headers(reply, done.clone(), Bytes::new())
                .await
        } else {
            client.publish(reply, Bytes::new()).await
        };
    }
}

/// One delivery: request to the worker, then ack.
#[derive(Debug, Clone)]
struct Deliver {
    client: async_nats::Client,
    acked: Arc<AtomicU64>,
    variant: RawVariant,
}

impl Deliver {
    async fn run(&self, message: jetstream::Message) {
        let mut request = async_nats::Request::new()
            .payload(message.payload.clone())
            .timeout(Some(REQUEST_TIMEOUT));
        if self.variant.headers {
            request = request.headers(delivery_headers(&message));
        }
        if self.client.send_request(DELIVER, request).await.is_err() {
            return; // Not acked: redelivered after the ack wait, as in the real thing.
        }
        let acked = match self.variant.ack {
            Ack::Plain => message.ack().await,
            Ack::Double => message.double_ack().await,
            Ack::Requested => match message.reply.clone() {
                Some(reply) => self
                    .client
                    .request(reply, Bytes::from_static(b"+ACK"))
                    .await
                    .map(drop)
                    .map_err(Into::into),
                None => Ok(()),
            },
        };
        if acked.is_ok() {
            self.acked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The message's headers plus the delivery protocol's, as Switchyard's dispatcher sends.
fn delivery_headers(message: &jetstream::Message) -> HeaderMap {
    let sequence = message.info().map_or(0, |info| info.stream_sequence);
    let info = DeliveryInfo {
        attempt: 1,
        max_attempts: 5,
        deadline: SystemTime::now() + REQUEST_TIMEOUT,
        timeout: REQUEST_TIMEOUT,
        plugin: PluginId::new("bench").expect("a valid plugin id"),
        subscription: "probes".to_owned(),
        stream_sequence: sequence,
    };
    let mut headers = message.headers.clone().unwrap_or_default();
    for (name, value) in info.headers() {
        headers.insert(name, value);
    }
    headers
}

/// The idiomatic loop: async-nats' continuous pull stream, `window` deliveries at once.
async fn stream_loop(consumer: PullConsumer, window: usize, deliver: Deliver) {
    // With a batch of one, async-nats' stream now and then stalls for whole pull expiries
    // (83/s instead of ~2,500/s; not investigated further), so it asks for at least two;
    // `for_each_concurrent` still delivers one at a time.
    let Ok(messages) = consumer
        .stream()
        .max_messages_per_batch(window.max(2))
        .messages()
        .await
    else {
        return;
    };
    messages
        .for_each_concurrent(window, |message| {
            let deliver = deliver.clone();
            async move {
                if let Ok(message) = message {
                    deliver.run(message).await;
                }
            }
        })
        .await;
}

/// Switchyard's first way of pulling: wait for a free slot, take every free slot, and ask for
/// that many messages in one batch; deliver each on its own task.
async fn batch_loop(consumer: PullConsumer, window: usize, deliver: Deliver) {
    let slots = Arc::new(tokio::sync::Semaphore::new(window));
    let mut deliveries = JoinSet::new();
    loop {
        let Ok(mut permits) = Arc::clone(&slots).acquire_many_owned(1).await else {
            return;
        };
        let extra = slots.available_permits();
        if extra > 0 {
            if let Ok(more) = Arc::clone(&slots).try_acquire_many_owned(extra as u32) {
                permits.merge(more);
            }
        }
        let Ok(mut batch) = consumer
            .batch()
            .max_messages(permits.num_permits())
            .expires(PULL_EXPIRES)
            .messages()
            .await
        else {
            continue;
        };
        while let Some(Ok(message)) = batch.next().await {
            let Some(permit) = permits.split(1) else {
                break;
            };
            let deliver = deliver.clone();
            deliveries.spawn(async move {
                deliver.run(message).await;
                drop(permit);
            });
            // Reap finished tasks so the set does not grow with the run.
            while deliveries.try_join_next().is_some() {}
        }
    }
}
