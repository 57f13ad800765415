//! One scenario: a target system, a payload size, a load and a message count, run on a
//! fresh nats-server and measured.

use std::sync::Arc;
use std::time::Duration;

use switchyard_dispatcher::pipeline::breaker::BreakerConfig;

use crate::drive::{drive, Drive, Load, System};
use crate::latency::{Latencies, Recorder};
use crate::proc_stat::{CpuMeter, Pid};
use crate::raw::{RawSystem, RawVariant};
use crate::server::BenchServer;
use crate::switchyard::{PluginSpec, SwitchyardSystem};
use crate::wire::Wire;
use crate::BenchResult;

/// The longest a scenario may take to settle before it counts as stalled.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The system a scenario runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// The raw async-nats baseline with `window` deliveries in flight.
    Raw {
        /// Deliveries in flight.
        window: u32,
        /// How it pulls and acknowledges.
        variant: RawVariant,
    },
    /// Switchyard with these plugins.
    Switchyard {
        /// The registered plugins, each with its own worker.
        plugins: Vec<PluginSpec>,
        /// The dispatcher's circuit breaker.
        breaker: BreakerConfig,
    },
}

impl Target {
    /// Switchyard with one healthy plugin of `window` deliveries in flight.
    pub fn switchyard(window: u32) -> Self {
        Self::fan_out(1, window)
    }

    /// Switchyard with `plugins` healthy plugins of `window` each, all subscribed to the
    /// same events.
    pub fn fan_out(plugins: usize, window: u32) -> Self {
        Self::Switchyard {
            plugins: (0..plugins)
                .map(|i| PluginSpec::healthy(format!("bench-{i}"), window))
                .collect(),
            breaker: BreakerConfig::default(),
        }
    }

    /// The plain raw baseline.
    pub fn raw(window: u32) -> Self {
        Self::Raw {
            window,
            variant: RawVariant::PLAIN,
        }
    }

    /// The raw baseline carrying Switchyard's wire format: the same CloudEvents headers on
    /// each event, the delivery header on each request, the outcome header on each reply.
    /// What a hand-written program delivering the same events costs.
    pub fn raw_same_wire(window: u32) -> Self {
        Self::Raw {
            window,
            variant: RawVariant {
                headers: true,
                ..RawVariant::PLAIN
            },
        }
    }

    /// How many settled deliveries complete a run of `events` events.
    fn settlements(&self, events: u64) -> u64 {
        match self {
            Target::Raw { .. } => events,
            Target::Switchyard { plugins, .. } => {
                events * plugins.iter().filter(|p| p.counted).count() as u64
            }
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// What runs.
    pub target: Target,
    /// Body bytes per event.
    pub payload: usize,
    /// How fast events are published.
    pub load: Load,
    /// How many events are published.
    pub events: u64,
}

/// What a scenario measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Events published per second of the run, counting an event once it is settled for
    /// every counted plugin (first publish to last settlement).
    pub events_per_sec: f64,
    /// Events published per second while publishing (to check a paced rate was held).
    pub publish_rate: f64,
    /// Publish-to-handled latencies, taken by the workers at receipt.
    pub latency: Latencies,
    /// CPU time of this process (publisher, dispatcher, workers) per event.
    pub process_cpu_per_event: Duration,
    /// CPU time of nats-server per event.
    pub server_cpu_per_event: Duration,
    /// Messages sent plus received per event, over the system's connections.
    pub wire_messages_per_event: f64,
    /// Payload and header bytes sent plus received per event.
    pub wire_bytes_per_event: f64,
}

/// Runs `scenario` on a fresh nats-server.
///
/// # Errors
/// When setting up fails, a publish fails, or deliveries stall.
pub async fn run(scenario: &Scenario) -> BenchResult<Measurement> {
    let server = BenchServer::start().await?;
    let recorder = Arc::new(Recorder::default());
    let settlements = scenario.target.settlements(scenario.events);
    let measured = match &scenario.target {
        Target::Raw { window, variant } => {
            let system = RawSystem::start(
                &server,
                *window as usize,
                scenario.payload,
                *variant,
                Arc::clone(&recorder),
            )
            .await?;
            let measured = measure(&server, &system, scenario, settlements).await;
            system.shutdown().await;
            measured?
        }
        Target::Switchyard { plugins, breaker } => {
            let system = SwitchyardSystem::start(
                &server,
                plugins,
                *breaker,
                scenario.payload,
                Arc::clone(&recorder),
            )
            .await?;
            let measured = measure(&server, &system, scenario, settlements).await;
            system.shutdown().await;
            measured?
        }
    };
    let (drive, process_cpu, server_cpu, wire) = measured;
    let events = scenario.events as f64;
    let per_event = |cpu: Duration| cpu.div_f64(events);
    Ok(Measurement {
        events_per_sec: events / drive.elapsed.as_secs_f64(),
        publish_rate: events / drive.publishing.as_secs_f64(),
        latency: recorder.summary(),
        process_cpu_per_event: per_event(process_cpu),
        server_cpu_per_event: per_event(server_cpu),
        wire_messages_per_event: wire.messages as f64 / events,
        wire_bytes_per_event: wire.bytes as f64 / events,
    })
}

async fn measure<S: System>(
    server: &BenchServer,
    system: &S,
    scenario: &Scenario,
    settlements: u64,
) -> BenchResult<(Drive, Duration, Duration, Wire)> {
    let wire = system.wire();
    let process = CpuMeter::start(Pid::OwnProcess);
    let nats = server.pid().map(CpuMeter::start);
    let drive = drive(
        system,
        scenario.load,
        scenario.events,
        settlements,
        SETTLE_TIMEOUT,
    )
    .await?;
    let server_cpu = nats.map_or(Duration::ZERO, |meter| meter.used());
    Ok((drive, process.used(), server_cpu, system.wire().since(wire)))
}
