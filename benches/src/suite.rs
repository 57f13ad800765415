//! The benchmark suite: which scenarios run, in which pairs, and the tables they fill.
//!
//! Every comparison runs its baseline and its candidate back to back (alternating when
//! repeated, and taking the median), each on a fresh nats-server, so that both see the
//! same machine at nearly the same moment.

use std::time::Duration;

use switchyard_dispatcher::pipeline::breaker::BreakerConfig;

use crate::drive::Load;
use crate::durability::{self, PublishMeasurement, PublishRun, PublishWith, Sync};
use crate::idle::{self, IdleReport};
use crate::raw::{Ack, Pull, RawVariant};
use crate::report::{self, Table};
use crate::scenario::{self, Measurement, Scenario, Target};
use crate::switchyard::{Behaviour, PluginSpec};
use crate::telemetry::Sinks;
use crate::BenchResult;

/// The parts of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// Flat-out throughput and latency, Switchyard against the raw baseline, by window and
    /// payload.
    Throughput,
    /// Latency at paced rates, Switchyard against the raw baseline.
    Latency,
    /// Fan-out of each event to 1, 4 and 16 plugins.
    FanOut,
    /// A healthy plugin beside one whose every attempt times out.
    Neighbour,
    /// The retry and dead-letter path at a 10 % failure rate.
    Failures,
    /// Registered plugins that receive nothing.
    Idle,
    /// Which ways of pulling, acknowledging and encoding explain a gap: the raw baseline
    /// with each of them swapped in (one-shot pulls and confirmed acks, as Switchyard's
    /// dispatcher did at first; Switchyard's wire format), beside Switchyard itself.
    Attribution,
    /// Switchyard with telemetry off (no providers: the no-op globals) against telemetry on
    /// (SDK providers recording every span and metric into memory), in the same run.
    Telemetry,
    /// Acknowledged publishes to a server with the default sync against one with
    /// `sync_interval: always`, in the same run: what durable writes cost.
    Durability,
    /// Calls of a plugin's operation through a dispatcher against raw request/reply to a raw
    /// responder, one call at a time and 32 at once.
    Operations,
    /// Switchyard alone, flat out at window 32, long enough for a profiler to watch (not
    /// part of the default suite).
    Profile,
}

impl Group {
    /// Every group, in the order the suite runs them.
    pub const ALL: [Group; 10] = [
        Group::Throughput,
        Group::Latency,
        Group::FanOut,
        Group::Neighbour,
        Group::Failures,
        Group::Idle,
        Group::Attribution,
        Group::Telemetry,
        Group::Durability,
        Group::Operations,
    ];
}

/// How much of the suite to run, and how hard.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteOptions {
    /// The groups to run.
    pub groups: Vec<Group>,
    /// Multiplies every event count (0.1 for a smoke run).
    pub scale: f64,
    /// Runs per scenario; the median is reported.
    pub repeat: usize,
    /// Plugins in the idle-plugins measurement.
    pub idle_plugins: usize,
    /// How long idle CPU is measured.
    pub idle_for: Duration,
}

impl Default for SuiteOptions {
    fn default() -> Self {
        Self {
            groups: Group::ALL.to_vec(),
            scale: 1.0,
            repeat: 1,
            idle_plugins: 1000,
            idle_for: Duration::from_secs(20),
        }
    }
}

/// Windows (deliveries in flight) of the throughput comparison.
const WINDOWS: [u32; 3] = [1, 32, 256];
/// Payload sizes (body bytes) of the throughput comparison.
const PAYLOADS: [usize; 2] = [128, 1024];
/// Paced rates of the latency comparison, events per second.
const PACED_RATES: [u32; 2] = [2_000, 5_000];
/// Windows of the latency comparison.
const PACED_WINDOWS: [u32; 2] = [32, 256];
/// How long a paced run lasts.
const PACED_DURATION: Duration = Duration::from_secs(2);
/// The payload of the shape-of-cost scenarios.
const SHAPE_PAYLOAD: usize = 128;
/// The window of the shape-of-cost scenarios.
const SHAPE_WINDOW: u32 = 32;
/// Publishes outstanding in the durability comparison: one at a time (the latency of a lone
/// publish), and 32 (what the server can batch into one sync).
const DURABILITY_WINDOWS: [usize; 2] = [1, 32];
/// How long each durability run publishes, before `--scale`.
const DURABILITY_DURATION: Duration = Duration::from_secs(2);

/// Runs the suite, printing each table as soon as it is complete; returns them all.
///
/// # Errors
/// The first scenario that fails.
pub async fn run(options: &SuiteOptions) -> BenchResult<Vec<Table>> {
    let suite = Suite { options };
    let mut tables = Vec::new();
    for group in &options.groups {
        let table = match group {
            Group::Throughput => suite.throughput().await?,
            Group::Latency => suite.latency().await?,
            Group::FanOut => suite.fan_out().await?,
            Group::Neighbour => suite.neighbour().await?,
            Group::Failures => suite.failures().await?,
            Group::Idle => suite.idle().await?,
            Group::Attribution => suite.attribution().await?,
            Group::Telemetry => suite.telemetry().await?,
            Group::Durability => suite.durability().await?,
            Group::Operations => suite.operations().await?,
            Group::Profile => suite.profile().await?,
        };
        println!("{}", table.render());
        tables.push(table);
    }
    Ok(tables)
}

struct Suite<'a> {
    options: &'a SuiteOptions,
}

impl Suite<'_> {
    /// `base` events, scaled, at least 100.
    fn events(&self, base: u64) -> u64 {
        ((base as f64 * self.options.scale) as u64).max(100)
    }

    /// Flat-out events for a window: a window of 1 is slow, so it gets fewer.
    fn flat_out_events(&self, window: u32) -> u64 {
        self.events(if window == 1 { 3_000 } else { 20_000 })
    }

    fn scenario(&self, target: Target, payload: usize, load: Load, events: u64) -> Scenario {
        Scenario {
            target,
            payload,
            load,
            events,
        }
    }

    /// Runs `scenarios` `repeat` times each, interleaved, and returns each one's median run
    /// (by throughput).
    async fn measure(&self, scenarios: &[Scenario]) -> BenchResult<Vec<Measurement>> {
        let repeat = self.options.repeat.max(1);
        let mut runs: Vec<Vec<Measurement>> = vec![Vec::with_capacity(repeat); scenarios.len()];
        for _ in 0..repeat {
            for (scenario, runs) in scenarios.iter().zip(&mut runs) {
                // Boxed: a scenario's future holds a whole system and is large.
                runs.push(Box::pin(scenario::run(scenario)).await?);
            }
        }
        Ok(runs
            .into_iter()
            .map(|mut runs| {
                runs.sort_by(|a, b| a.events_per_sec.total_cmp(&b.events_per_sec));
                runs[runs.len() / 2]
            })
            .collect())
    }

    async fn operations(&self) -> BenchResult<Table> {
        let mut table = Table::new(
            "Operations: calls through a dispatcher to an SDK worker (sy) against raw async-nats \
             request/reply to a raw responder (raw), same payload, same calls in flight",
            &[
                "in flight",
                "raw",
                "sy",
                "sy/raw",
                "raw p50",
                "raw p99",
                "sy p50",
                "sy p99",
            ],
        );
        for in_flight in [1_usize, 32] {
            let calls = self.events(if in_flight == 1 { 2_000 } else { 20_000 });
            let repeat = self.options.repeat.max(1);
            let (mut raws, mut sys) = (Vec::new(), Vec::new());
            for _ in 0..repeat {
                raws.push(Box::pin(crate::calls::raw(calls, in_flight, SHAPE_PAYLOAD)).await?);
                sys.push(
                    Box::pin(crate::calls::switchyard(calls, in_flight, SHAPE_PAYLOAD)).await?,
                );
            }
            let median = |mut runs: Vec<crate::calls::CallMeasurement>| {
                runs.sort_by(|a, b| a.calls_per_sec.total_cmp(&b.calls_per_sec));
                runs[runs.len() / 2]
            };
            let (raw, sy) = (median(raws), median(sys));
            table.row(vec![
                in_flight.to_string(),
                report::rate(raw.calls_per_sec),
                report::rate(sy.calls_per_sec),
                report::ratio(sy.calls_per_sec / raw.calls_per_sec),
                report::duration(raw.latencies.p50),
                report::duration(raw.latencies.p99),
                report::duration(sy.latencies.p50),
                report::duration(sy.latencies.p99),
            ]);
        }
        table.note(format!(
            "{SHAPE_PAYLOAD}-byte payloads; a call is a request from the caller to a dispatcher, \
             which checks it and forwards it to the worker, and the worker's answer back the \
             same way: two request/reply hops against raw's one"
        ));
        Ok(table)
    }

    async fn throughput(&self) -> BenchResult<Table> {
        let mut table = Table::new(
            "Throughput, flat out: Switchyard (sy) against raw async-nats, bare (raw) and with \
             Switchyard's wire format (wire)",
            &[
                "window",
                "payload",
                "raw",
                "wire",
                "sy",
                "sy/raw",
                "sy/wire",
                "raw p50",
                "raw p99",
                "sy p50",
                "sy p99",
                "cpu/event raw",
                "cpu/event wire",
                "cpu/event sy",
            ],
        );
        for window in WINDOWS {
            for payload in PAYLOADS {
                let events = self.flat_out_events(window);
                let measured = self
                    .measure(&[
                        self.scenario(Target::raw(window), payload, Load::FlatOut, events),
                        self.scenario(
                            Target::raw_same_wire(window),
                            payload,
                            Load::FlatOut,
                            events,
                        ),
                        self.scenario(Target::switchyard(window), payload, Load::FlatOut, events),
                    ])
                    .await?;
                let [raw, wire, sy] = [measured[0], measured[1], measured[2]];
                table.row(vec![
                    window.to_string(),
                    format!("{payload} B"),
                    report::rate(raw.events_per_sec),
                    report::rate(wire.events_per_sec),
                    report::rate(sy.events_per_sec),
                    report::ratio(sy.events_per_sec / raw.events_per_sec),
                    report::ratio(sy.events_per_sec / wire.events_per_sec),
                    report::duration(raw.latency.p50),
                    report::duration(raw.latency.p99),
                    report::duration(sy.latency.p50),
                    report::duration(sy.latency.p99),
                    cpu(&raw),
                    cpu(&wire),
                    cpu(&sy),
                ]);
            }
        }
        table.note(
            "Events/s from first publish to last ack; latency from publish to the worker's \
             receipt (flat out it includes the backlog). raw: bare payloads, no headers. wire: \
             the same program carrying Switchyard's wire format (the events' CloudEvents \
             headers, the delivery header, the outcome header). cpu/event: this process \
             (publisher, dispatcher, worker) + nats-server.",
        );
        Ok(table)
    }

    async fn latency(&self) -> BenchResult<Table> {
        let mut table = Table::new(
            "Latency at a paced rate, publish to handled",
            &[
                "rate",
                "window",
                "raw p50",
                "raw p99",
                "sy p50",
                "sy p99",
                "added p50",
                "added p99",
                "held raw/sy",
            ],
        );
        for per_second in PACED_RATES {
            for window in PACED_WINDOWS {
                let load = Load::Paced { per_second };
                let events =
                    self.events((f64::from(per_second) * PACED_DURATION.as_secs_f64()) as u64);
                let [raw, sy] = self
                    .pair(
                        self.scenario(Target::raw(window), SHAPE_PAYLOAD, load, events),
                        self.scenario(Target::switchyard(window), SHAPE_PAYLOAD, load, events),
                    )
                    .await?;
                table.row(vec![
                    report::rate(f64::from(per_second)),
                    window.to_string(),
                    report::duration(raw.latency.p50),
                    report::duration(raw.latency.p99),
                    report::duration(sy.latency.p50),
                    report::duration(sy.latency.p99),
                    report::difference(sy.latency.p50, raw.latency.p50),
                    report::difference(sy.latency.p99, raw.latency.p99),
                    format!(
                        "{}/{}",
                        report::rate(raw.publish_rate),
                        report::rate(sy.publish_rate)
                    ),
                ]);
            }
        }
        table.note(format!(
            "{SHAPE_PAYLOAD} B payloads; events published in 1 ms steps; \"held\" is the \
             publish rate achieved."
        ));
        Ok(table)
    }

    async fn fan_out(&self) -> BenchResult<Table> {
        let mut table = Table::new(
            "Fan-out: each event to every plugin",
            &[
                "plugins",
                "events/s",
                "deliveries/s",
                "vs 1 plugin (events)",
                "sy p99",
            ],
        );
        let events = self.events(3_000);
        let scenarios: Vec<Scenario> = [1, 4, 16]
            .into_iter()
            .map(|n| {
                self.scenario(
                    Target::fan_out(n, SHAPE_WINDOW),
                    SHAPE_PAYLOAD,
                    Load::FlatOut,
                    events,
                )
            })
            .collect();
        let measured = self.measure(&scenarios).await?;
        for (plugins, m) in [1, 4, 16].into_iter().zip(&measured) {
            table.row(vec![
                plugins.to_string(),
                report::rate(m.events_per_sec),
                report::rate(m.events_per_sec * plugins as f64),
                report::ratio(m.events_per_sec / measured[0].events_per_sec),
                report::duration(m.latency.p99),
            ]);
        }
        table.note(format!(
            "Window {SHAPE_WINDOW}, {SHAPE_PAYLOAD} B, flat out; an event counts once every \
             plugin has acked it."
        ));
        Ok(table)
    }

    async fn neighbour(&self) -> BenchResult<Table> {
        let mut table = Table::new(
            "A healthy plugin beside one that times out on every event",
            &["setup", "healthy events/s", "vs alone", "healthy p99"],
        );
        let healthy = PluginSpec::healthy("healthy", SHAPE_WINDOW);
        let hanging = PluginSpec {
            id: "hanging".to_owned(),
            behaviour: Behaviour::Hanging,
            counted: false,
            ..healthy.clone()
        };
        let never_open = BreakerConfig {
            failure_threshold: std::num::NonZeroU32::MAX,
            ..BreakerConfig::default()
        };
        let setups = [
            ("alone", vec![healthy.clone()], BreakerConfig::default()),
            (
                "beside hanging, breaker on (default)",
                vec![healthy.clone(), hanging.clone()],
                BreakerConfig::default(),
            ),
            (
                "beside hanging, breaker never opens",
                vec![healthy, hanging],
                never_open,
            ),
        ];
        let events = self.events(4_000);
        let scenarios: Vec<Scenario> = setups
            .iter()
            .map(|(_, plugins, breaker)| {
                self.scenario(
                    Target::Switchyard {
                        plugins: plugins.clone(),
                        breaker: *breaker,
                    },
                    SHAPE_PAYLOAD,
                    Load::FlatOut,
                    events,
                )
            })
            .collect();
        let measured = self.measure(&scenarios).await?;
        for ((name, _, _), m) in setups.iter().zip(&measured) {
            table.row(vec![
                (*name).to_owned(),
                report::rate(m.events_per_sec),
                report::ratio(m.events_per_sec / measured[0].events_per_sec),
                report::duration(m.latency.p99),
            ]);
        }
        table.note(format!(
            "Window {SHAPE_WINDOW} each; the hanging plugin's timeout is 100 ms, its handler \
             takes 200 ms."
        ));
        Ok(table)
    }

    async fn failures(&self) -> BenchResult<Table> {
        let mut table = Table::new(
            "Retries and dead letters: 10 % of first attempts fail",
            &["failure rate", "events/s", "vs 0 %", "p99"],
        );
        let healthy = PluginSpec::healthy("plugin", SHAPE_WINDOW);
        let flaky = PluginSpec {
            behaviour: Behaviour::Flaky,
            ..healthy.clone()
        };
        let events = self.events(4_000);
        let target = |plugin: PluginSpec| Target::Switchyard {
            plugins: vec![plugin],
            breaker: BreakerConfig::default(),
        };
        let [ok, failing] = self
            .pair(
                self.scenario(target(healthy), SHAPE_PAYLOAD, Load::FlatOut, events),
                self.scenario(target(flaky), SHAPE_PAYLOAD, Load::FlatOut, events),
            )
            .await?;
        for (name, m) in [("0 %", ok), ("10 %", failing)] {
            table.row(vec![
                name.to_owned(),
                report::rate(m.events_per_sec),
                report::ratio(m.events_per_sec / ok.events_per_sec),
                report::duration(m.latency.p99),
            ]);
        }
        table.note(
            "Of the failing 10 %, half are retried once (fixed 10 ms backoff) and succeed, \
             half fail for good and are dead-lettered; an event counts once acked or \
             dead-lettered.",
        );
        Ok(table)
    }

    async fn idle(&self) -> BenchResult<Table> {
        let plugins = self.options.idle_plugins;
        let idle_for = self.options.idle_for;
        let none = idle::measure_in_child(0, idle_for).await?;
        let many = idle::measure_in_child(plugins, idle_for).await?;
        let mut table = Table::new(
            format!("{plugins} registered idle plugins"),
            &[
                "measure",
                "0 plugins",
                &format!("{plugins} plugins"),
                "per plugin",
            ],
        );
        let per_plugin = |a: f64, b: f64| (b - a) / plugins.max(1) as f64;
        let IdleReport {
            registry_writes,
            startup,
            ..
        } = many;
        table.row(vec![
            "registry writes".to_owned(),
            "-".to_owned(),
            report::duration(registry_writes),
            report::duration(registry_writes / plugins.max(1) as u32),
        ]);
        table.row(vec![
            "dispatcher start until all consumers exist".to_owned(),
            report::duration(none.startup),
            report::duration(startup),
            report::duration((startup.saturating_sub(none.startup)) / plugins.max(1) as u32),
        ]);
        table.row(vec![
            "dispatcher RSS growth".to_owned(),
            report::bytes(none.rss_growth as f64),
            report::bytes(many.rss_growth as f64),
            report::bytes(per_plugin(none.rss_growth as f64, many.rss_growth as f64)),
        ]);
        table.row(vec![
            "dispatcher CPU while idle (share of a core)".to_owned(),
            report::cpu_share(none.process_cpu),
            report::cpu_share(many.process_cpu),
            report::cpu_share(per_plugin(none.process_cpu, many.process_cpu)),
        ]);
        table.row(vec![
            "nats-server CPU while idle (share of a core)".to_owned(),
            report::cpu_share(none.server_cpu),
            report::cpu_share(many.server_cpu),
            report::cpu_share(per_plugin(none.server_cpu, many.server_cpu)),
        ]);
        table.note(format!(
            "Each count measured in a fresh process; idle CPU over {} s.",
            idle_for.as_secs()
        ));
        Ok(table)
    }

    async fn attribution(&self) -> BenchResult<Table> {
        let mut table = Table::new(
            "Attribution: the raw baseline with other ways of pulling, acknowledging and encoding swapped in, one at a time",
            &[
                "window",
                "variant",
                "events/s",
                "vs plain raw",
                "cpu/event",
                "msgs/event",
                "bytes/event",
            ],
        );
        let plain = RawVariant::PLAIN;
        let variants = [
            ("plain raw: stream pull, plain ack", plain),
            (
                "+ one-shot batch pulls",
                RawVariant {
                    pull: Pull::Batch,
                    ..plain
                },
            ),
            (
                "+ double_ack",
                RawVariant {
                    ack: Ack::Double,
                    ..plain
                },
            ),
            (
                "+ confirmed ack as a request",
                RawVariant {
                    ack: Ack::Requested,
                    ..plain
                },
            ),
            (
                "+ Switchyard's headers",
                RawVariant {
                    headers: true,
                    ..plain
                },
            ),
            (
                "+ batch pulls, double_ack, headers",
                RawVariant {
                    pull: Pull::Batch,
                    ack: Ack::Double,
                    headers: true,
                },
            ),
        ];
        for window in WINDOWS {
            let events = self.flat_out_events(window);
            let mut scenarios: Vec<Scenario> = variants
                .iter()
                .map(|(_, variant)| {
                    self.scenario(
                        Target::Raw {
                            window,
                            variant: *variant,
                        },
                        SHAPE_PAYLOAD,
                        Load::FlatOut,
                        events,
                    )
                })
                .collect();
            scenarios.push(self.scenario(
                Target::switchyard(window),
                SHAPE_PAYLOAD,
                Load::FlatOut,
                events,
            ));
            let measured = self.measure(&scenarios).await?;
            let names = variants.iter().map(|(name, _)| *name).chain(["Switchyard"]);
            for (name, m) in names.zip(&measured) {
                table.row(vec![
                    window.to_string(),
                    name.to_owned(),
                    report::rate(m.events_per_sec),
                    report::ratio(m.events_per_sec / measured[0].events_per_sec),
                    cpu(m),
                    format!("{:.1}", m.wire_messages_per_event),
                    format!("{:.0}", m.wire_bytes_per_event),
                ]);
            }
        }
        table.note(format!(
            "{SHAPE_PAYLOAD} B, flat out. msgs/event and bytes/event: messages and payload + \
             header bytes sent and received over all connections of the system (SUB/UNSUB \
             operations are not counted)."
        ));
        Ok(table)
    }

    async fn telemetry(&self) -> BenchResult<Table> {
        let mut table = Table::new(
            "Telemetry: Switchyard with no OpenTelemetry providers (off) and with SDK providers (on)",
            &[
                "telemetry",
                "events/s",
                "vs off",
                "p50",
                "p99",
                "cpu/event",
                "spans/event",
            ],
        );
        let events = self.flat_out_events(SHAPE_WINDOW);
        let scenario = self.scenario(
            Target::switchyard(SHAPE_WINDOW),
            SHAPE_PAYLOAD,
            Load::FlatOut,
            events,
        );
        // Off first: the providers are process-wide, and the dispatcher takes its instruments
        // when it starts. Repeats of each run back to back rather than alternating, so that
        // the providers are installed once.
        let off = self.measure(std::slice::from_ref(&scenario)).await?[0];
        let sinks = Sinks::install();
        let on = self.measure(std::slice::from_ref(&scenario)).await;
        let exported = sinks.uninstall().await?;
        let on = on?[0];
        let runs = self.options.repeat.max(1) as f64;
        for (name, m, spans) in [("off", off, None), ("on", on, Some(exported.spans))] {
            table.row(vec![
                name.to_owned(),
                report::rate(m.events_per_sec),
                report::ratio(m.events_per_sec / off.events_per_sec),
                report::duration(m.latency.p50),
                report::duration(m.latency.p99),
                cpu(&m),
                spans.map_or("-".to_owned(), |spans| {
                    format!("{:.1}", spans as f64 / (events as f64 * runs))
                }),
            ]);
        }
        table.note(format!(
            "Window {SHAPE_WINDOW}, {SHAPE_PAYLOAD} B, flat out. On: a tracer provider with a \
             batch processor (default queue of 2048; spans beyond it are dropped) and a meter \
             provider with a periodic reader every 1 s, both exporting to memory, always \
             sampled; {} metric exports.",
            exported.metric_exports
        ));
        Ok(table)
    }

    async fn durability(&self) -> BenchResult<Table> {
        let mut table = Table::new(
            "Durability: acknowledged publishes, nats-server's default sync against \
             `sync_interval: always`",
            &[
                "publisher",
                "window",
                "default p50",
                "default p99",
                "default /s",
                "always p50",
                "always p99",
                "always /s",
                "p50 always/default",
                "p99 always/default",
                "/s always/default",
            ],
        );
        let duration = DURABILITY_DURATION.mul_f64(self.options.scale.max(0.1));
        for window in DURABILITY_WINDOWS {
            for (name, with) in [("raw", PublishWith::Raw), ("sy", PublishWith::Switchyard)] {
                let run = |sync| PublishRun {
                    sync,
                    with,
                    window,
                    payload: SHAPE_PAYLOAD,
                    duration,
                };
                let [default, always] = self
                    .publish_pair(run(Sync::Default), run(Sync::Always))
                    .await?;
                let times = |a: Duration, b: Duration| {
                    report::ratio(a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE))
                };
                table.row(vec![
                    name.to_owned(),
                    window.to_string(),
                    report::duration(default.latency.p50),
                    report::duration(default.latency.p99),
                    report::rate(default.per_second),
                    report::duration(always.latency.p50),
                    report::duration(always.latency.p99),
                    report::rate(always.per_second),
                    times(always.latency.p50, default.latency.p50),
                    times(always.latency.p99, default.latency.p99),
                    report::ratio(always.per_second / default.per_second),
                ]);
            }
        }
        table.note(format!(
            "{SHAPE_PAYLOAD} B bodies, each run {:.1} s of publishing on a fresh server (store in \
             the system's temporary directory), latency from the publish call to its \
             acknowledgement. default: no configuration (the file store is forced to disk \
             every 2 minutes); always: `jetstream {{ sync_interval: always }}`, as `switchyard \
             auth init` and `switchyard dev` write it; each server's /jsz is checked. raw: \
             async-nats publishing a bare payload; sy: switchyard_bus::Publisher::publish.",
            duration.as_secs_f64()
        ));
        Ok(table)
    }

    /// A run on a server with the default sync and the same run with `sync_interval:
    /// always`, alternated when repeated; the median of each (by publishes per second).
    async fn publish_pair(
        &self,
        default: PublishRun,
        always: PublishRun,
    ) -> BenchResult<[PublishMeasurement; 2]> {
        let repeat = self.options.repeat.max(1);
        let mut runs: [Vec<PublishMeasurement>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..repeat {
            for (run, runs) in [&default, &always].into_iter().zip(&mut runs) {
                runs.push(Box::pin(durability::run(run)).await?);
            }
        }
        Ok(runs.map(|mut runs| {
            runs.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
            runs[runs.len() / 2]
        }))
    }

    async fn profile(&self) -> BenchResult<Table> {
        let mut table = Table::new(
            "Switchyard alone, for a profiler",
            &["events", "events/s", "p50", "p99", "cpu/event"],
        );
        let events = self.events(40_000);
        let scenario = self.scenario(
            Target::switchyard(SHAPE_WINDOW),
            SHAPE_PAYLOAD,
            Load::FlatOut,
            events,
        );
        let m = Box::pin(scenario::run(&scenario)).await?;
        table.row(vec![
            events.to_string(),
            report::rate(m.events_per_sec),
            report::duration(m.latency.p50),
            report::duration(m.latency.p99),
            cpu(&m),
        ]);
        Ok(table)
    }

    /// A baseline and a candidate, measured alternately.
    async fn pair(&self, baseline: Scenario, candidate: Scenario) -> BenchResult<[Measurement; 2]> {
        let measured = self.measure(&[baseline, candidate]).await?;
        Ok([measured[0], measured[1]])
    }
}

/// CPU per event: this process + nats-server.
fn cpu(m: &Measurement) -> String {
    format!(
        "{} + {}",
        report::duration(m.process_cpu_per_event),
        report::duration(m.server_cpu_per_event)
    )
}
