//! What durable writes cost: acknowledged JetStream publishes to a server with nats-server's
//! default sync (the file store is forced to disk every 2 minutes) against a server started
//! with `jetstream { sync_interval: always }` (every write on disk before it is
//! acknowledged), as `switchyard auth init` and `switchyard dev` configure it (README,
//! "Durability").
//!
//! Each run gets a fresh server whose `/jsz` is checked for the sync it was meant to have,
//! provisions Switchyard's events stream (small), publishes a few acknowledged events to warm
//! up, then publishes for a fixed time with `window` acknowledgements outstanding, timing
//! each publish from the call until its acknowledgement. Two publishers: Switchyard's
//! ([`switchyard_bus::Publisher::publish`]: a CloudEvents event with its headers and a
//! `Nats-Msg-Id`) and raw async-nats (`jetstream::Context::publish` of a bare payload to the
//! same stream).

use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use switchyard_bus::{Bus, StreamSettings, Streams};
use switchyard_schemas::{EventType, Namespace, Tenant, TypedEvent};

use crate::clock;
use crate::latency::Latencies;
use crate::probe::{pad_for, raw_payload, Probe};
use crate::server::BenchServer;
use crate::{BenchError, BenchResult, Step};

/// The events stream's size in these runs: a few seconds of publishes need far less than the
/// 4 GiB default.
const STREAM_BYTES: i64 = 512 * 1024 * 1024;
/// Publishes before the measured ones, not counted: connections, the stream's first block.
const WARM_UP: u64 = 200;
/// The tenant every event is published for.
const TENANT: &str = "bench";

/// How the server writes JetStream to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// nats-server's default: writes reach the OS at once and are forced to disk every 2
    /// minutes.
    Default,
    /// `jetstream { sync_interval: always }`: every write forced to disk before its
    /// acknowledgement (the server batches what arrives together).
    Always,
}

impl Sync {
    /// The server configuration for this sync (`None`: no configuration file).
    fn config(self) -> Option<&'static str> {
        match self {
            Sync::Default => None,
            Sync::Always => Some("jetstream {\n  sync_interval: always\n}\n"),
        }
    }
}

/// Who publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishWith {
    /// async-nats' `jetstream::Context::publish` of a bare payload.
    Raw,
    /// Switchyard's `Publisher::publish` of a typed event.
    Switchyard,
}

/// One measured run of acknowledged publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishRun {
    /// The server's sync.
    pub sync: Sync,
    /// The publisher.
    pub with: PublishWith,
    /// Publishes awaiting their acknowledgement at once (1: one after the other).
    pub window: usize,
    /// Body bytes per event.
    pub payload: usize,
    /// How long new publishes are started.
    pub duration: Duration,
}

/// What a run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublishMeasurement {
    /// Acknowledged publishes counted.
    pub published: u64,
    /// Acknowledged publishes per second, from the first measured publish to the last
    /// acknowledgement.
    pub per_second: f64,
    /// From each publish call until its acknowledgement.
    pub latency: Latencies,
}

/// Runs `run` on a fresh server.
///
/// # Errors
/// When the server does not run with the sync asked for, setting up fails, or a publish is
/// not acknowledged.
pub async fn run(run: &PublishRun) -> BenchResult<PublishMeasurement> {
    let server = BenchServer::start_with_config(run.sync.config()).await?;
    let syncs_always = server.syncs_always().await?;
    if syncs_always != (run.sync == Sync::Always) {
        return Err(BenchError::new(
            "check the server's sync",
            format!(
                "asked for {:?}, the server says sync_always = {syncs_always}",
                run.sync
            ),
        ));
    }
    let client = server.connect().await?;
    let namespace = Namespace::default();
    let defaults = Streams::defaults(&namespace);
    let bus = Bus::from_client(client.clone()).with_streams(Streams {
        events: StreamSettings {
            max_bytes: STREAM_BYTES,
            ..defaults.events
        },
        dead_letters: defaults.dead_letters,
        audit: defaults.audit,
    });
    bus.provision().await.step("provision the streams")?;
    let tenant = Tenant::new(TENANT).step("name the tenant")?;
    let event_type = EventType::new(Probe::TYPE).step("name the event type")?;
    let publisher = Publishing {
        subject: namespace.event(&tenant, &event_type),
        js: jetstream::new(client),
        bus: bus.publisher("urn:bench:durability"),
        tenant,
        pad: "x".repeat(pad_for(run.payload)),
        payload: run.payload,
        with: run.with,
    };

    for seq in 0..WARM_UP {
        publisher.publish(seq).await?;
    }
    let mut samples = Vec::new();
    let mut in_flight = FuturesUnordered::new();
    let mut seq = WARM_UP;
    let start = Instant::now();
    loop {
        let starting = start.elapsed() < run.duration;
        while starting && in_flight.len() < run.window.max(1) {
            in_flight.push(publisher.timed(seq));
            seq += 1;
        }
        match in_flight.next().await {
            Some(took) => samples.push(took?),
            None => break,
        }
    }
    let elapsed = start.elapsed();
    let published = samples.len() as u64;
    Ok(PublishMeasurement {
        published,
        per_second: published as f64 / elapsed.as_secs_f64(),
        latency: Latencies::from_samples(samples),
    })
}

/// Publishes one way or the other.
struct Publishing {
    subject: String,
    js: jetstream::Context,
    bus: switchyard_bus::Publisher,
    tenant: Tenant,
    pad: String,
    payload: usize,
    with: PublishWith,
}

impl Publishing {
    /// Publishes event `seq` and waits for its acknowledgement.
    async fn publish(&self, seq: u64) -> BenchResult<()> {
        let sent_ns = clock::now_ns();
        match self.with {
            PublishWith::Raw => {
                let payload: Bytes = raw_payload(seq, sent_ns, self.payload);
                self.js
                    .publish(self.subject.clone(), payload)
                    .await
                    .step("publish (raw)")?
                    .await
                    .step("acknowledgement (raw)")?;
            }
            PublishWith::Switchyard => {
                let probe = Probe {
                    seq,
                    sent_ns,
                    pad: self.pad.clone(),
                };
                self.bus
                    .publish(&self.tenant, &probe)
                    .await
                    .step("publish (Switchyard)")?;
            }
        }
        Ok(())
    }

    /// [`publish`](Self::publish), returning how long it took in nanoseconds.
    async fn timed(&self, seq: u64) -> BenchResult<u64> {
        let began = clock::now_ns();
        self.publish(seq).await?;
        Ok(clock::elapsed_ns(began))
    }
}
