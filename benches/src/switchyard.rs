//! Switchyard under test: publishing with `switchyard_bus`, an in-process
//! [`Dispatcher`], and one SDK worker ([`Plugin::serve`]) per plugin, each on its own
//! connection, as separate processes would have.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use switchyard_bus::{Bus, Publisher};
use switchyard_control::registry::{Registration, Registry, TenantScope};
use switchyard_dispatcher::consumer::consumer_name;
use switchyard_dispatcher::pipeline::breaker::BreakerConfig;
use switchyard_dispatcher::{Dispatcher, DispatcherConfig};
use switchyard_plugin_sdk::{Context, HandlerError, HandlerResult, Plugin, PluginError};
use switchyard_schemas::delivery::header as dh;
use switchyard_schemas::{Manifest, Namespace, PluginId, Tenant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::drive::System;
use crate::latency::Recorder;
use crate::probe::{pad_for, Probe};
use crate::server::BenchServer;
use crate::wire::Wire;
use crate::{BenchError, BenchResult, Step};

/// How long setup waits for consumers and workers to appear.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The subscription every benchmark plugin has.
const SUBSCRIPTION: &str = "probes";
/// The per-attempt timeout of a [`Behaviour::Hanging`] plugin.
const HANGING_TIMEOUT: Duration = Duration::from_millis(100);

/// What a benchmark plugin's handler does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Records the latency and returns `Ok` at once.
    Healthy,
    /// Like `Healthy`, but 10 % of events fail their first attempt: half of those ask for a
    /// retry (and succeed on the second attempt), half fail for good (dead-lettered).
    Flaky,
    /// Never answers in time: every attempt times out (the handler outlives the deadline).
    Hanging,
}

impl Behaviour {
    /// The policy lines this behaviour's subscription needs besides `max_in_flight`.
    fn policy(self) -> String {
        match self {
            Behaviour::Healthy => String::new(),
            // A short fixed backoff, so the retried events come back within the run.
            Behaviour::Flaky => "max_attempts = 2\nbackoff = { fixed = [\"10ms\"] }".to_owned(),
            Behaviour::Hanging => format!("timeout = \"{}ms\"", HANGING_TIMEOUT.as_millis()),
        }
    }

    async fn handle(self, probe: Probe, ctx: Context, recorder: &Recorder) -> HandlerResult {
        match self {
            Behaviour::Healthy => {
                recorder.record(probe.sent_ns);
                Ok(())
            }
            Behaviour::Flaky => {
                if ctx.attempt() == 1 {
                    recorder.record(probe.sent_ns);
                }
                match probe.seq % 20 {
                    0 => Err(HandlerError::permanent("bench.flaky", "fails for good")),
                    10 if ctx.attempt() == 1 => Err(HandlerError::retry("fails once")),
                    _ => Ok(()),
                }
            }
            Behaviour::Hanging => {
                tokio::time::sleep(HANGING_TIMEOUT * 2).await;
                Ok(())
            }
        }
    }
}

/// One benchmark plugin: subscribed to [`Probe`] events, with `window` as both its
/// subscription's `max_in_flight` and its worker's `max_concurrency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSpec {
    /// Its id.
    pub id: String,
    /// Deliveries in flight (dispatcher) and handlers at once (worker).
    pub window: u32,
    /// What its handler does.
    pub behaviour: Behaviour,
    /// Whether its settled deliveries count towards the run's completion (and its latencies
    /// are recorded).
    pub counted: bool,
}

impl PluginSpec {
    /// A healthy, counted plugin.
    pub fn healthy(id: impl Into<String>, window: u32) -> Self {
        Self {
            id: id.into(),
            window,
            behaviour: Behaviour::Healthy,
            counted: true,
        }
    }

    /// Its manifest.
    ///
    /// # Errors
    /// When the id or window make an invalid manifest.
    pub fn manifest(&self) -> BenchResult<Manifest> {
        benchmark_manifest(
            &self.id,
            &["bench.probe"],
            self.window,
            &self.behaviour.policy(),
        )
    }
}

/// A manifest with one subscription, [`SUBSCRIPTION`], to `events`.
///
/// # Errors
/// When the arguments make an invalid manifest.
pub fn benchmark_manifest(
    id: &str,
    events: &[&str],
    max_in_flight: u32,
    policy: &str,
) -> BenchResult<Manifest> {
    let events = events
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Manifest::from_toml_str(&format!(
        "[plugin]\nid = \"{id}\"\nversion = \"1.0.0\"\ncore = \"*\"\n\n\
         [[subscriptions]]\nname = \"{SUBSCRIPTION}\"\nevents = [{events}]\n\
         [subscriptions.policy]\nmax_in_flight = {max_in_flight}\n{policy}\n"
    ))
    .step(format!("build the manifest of `{id}`"))
}

/// The running system: a publisher, the dispatcher and the workers.
pub struct SwitchyardSystem {
    publisher: Publisher,
    tenant: Tenant,
    pad: String,
    dispatcher: Dispatcher,
    counted: Vec<PluginId>,
    clients: Vec<async_nats::Client>,
    stop_workers: CancellationToken,
    workers: Vec<JoinHandle<Result<(), PluginError>>>,
}

impl std::fmt::Debug for SwitchyardSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchyardSystem")
            .field("counted", &self.counted)
            .finish_non_exhaustive()
    }
}

impl SwitchyardSystem {
    /// Starts a dispatcher on `server`, registers `plugins`, waits for their consumers,
    /// and starts their workers; returns once every worker answers.
    ///
    /// # Errors
    /// When any of it cannot be set up in time.
    pub async fn start(
        server: &BenchServer,
        plugins: &[PluginSpec],
        breaker: BreakerConfig,
        payload: usize,
        recorder: Arc<Recorder>,
    ) -> BenchResult<Self> {
        let bus = Bus::from_client(server.connect().await?);
        let dispatcher_client = server.connect().await?;
        let mut clients = vec![bus.client().clone(), dispatcher_client.clone()];
        let dispatcher = Dispatcher::start(
            dispatcher_client,
            DispatcherConfig {
                breaker,
                shutdown_grace: Duration::from_secs(1),
                ..DispatcherConfig::default()
            },
        )
        .await
        .step("start the dispatcher")?;
        let registry = Registry::open(bus.jetstream(), bus.namespace())
            .await
            .step("open the registry")?;
        let mut manifests = Vec::with_capacity(plugins.len());
        for spec in plugins {
            let manifest = spec.manifest()?;
            registry
                .put(&Registration::new(manifest.clone(), TenantScope::All))
                .await
                .step(format!("register `{}`", spec.id))?;
            manifests.push(manifest);
        }
        wait_for_consumers(&bus, &manifests).await?;

        let stop_workers = CancellationToken::new();
        let mut workers = Vec::with_capacity(plugins.len());
        for (spec, manifest) in plugins.iter().zip(manifests) {
            let plugin = worker_plugin(spec, manifest, Arc::clone(&recorder));
            let client = server.connect().await?;
            clients.push(client.clone());
            let namespace = bus.namespace().clone();
            let stop = stop_workers.clone();
            workers.push(tokio::spawn(async move {
                plugin
                    .serve(client, namespace, stop.cancelled_owned(), None, None)
                    .await
            }));
        }
        for spec in plugins {
            wait_for_worker(bus.client(), bus.namespace(), &spec.id).await?;
        }

        let counted = plugins
            .iter()
            .filter(|spec| spec.counted)
            .map(|spec| PluginId::new(spec.id.as_str()).step("a plugin id"))
            .collect::<BenchResult<_>>()?;
        Ok(Self {
            publisher: bus.publisher("urn:bench:publisher"),
            tenant: Tenant::new("bench").step("a tenant")?,
            pad: "x".repeat(pad_for(payload)),
            dispatcher,
            counted,
            clients,
            stop_workers,
            workers,
        })
    }

    /// Stops the dispatcher (briefly waiting for deliveries under way) and the workers.
    pub async fn shutdown(self) {
        self.dispatcher.shutdown().await;
        self.stop_workers.cancel();
        for worker in self.workers {
            let _ = worker.await;
        }
    }
}

impl System for SwitchyardSystem {
    async fn publish(&self, seq: u64) -> BenchResult<()> {
        let probe = Probe {
            seq,
            sent_ns: clock::now_ns(),
            pad: self.pad.clone(),
        };
        self.publisher
            .publish(&self.tenant, &probe)
            .await
            .step("publish")?;
        Ok(())
    }

    fn settled(&self) -> u64 {
        self.dispatcher
            .stats()
            .iter()
            .filter(|s| self.counted.contains(&s.plugin))
            .map(|s| s.counts.delivered + s.counts.dead_lettered)
            .sum()
    }

    fn wire(&self) -> Wire {
        Wire::of(&self.clients)
    }
}

fn worker_plugin(spec: &PluginSpec, manifest: Manifest, recorder: Arc<Recorder>) -> Plugin {
    let behaviour = spec.behaviour;
    // Latencies of plugins that do not count (a hanging neighbour) would blur the others'.
    let recorder = if spec.counted {
        recorder
    } else {
        Arc::new(Recorder::default())
    };
    Plugin::new(manifest)
        .max_concurrency(spec.window as usize)
        .drain_timeout(Duration::from_secs(1))
        .on(move |probe: Probe, ctx: Context| {
            let recorder = Arc::clone(&recorder);
            async move { behaviour.handle(probe, ctx, &recorder).await }
        })
}

async fn wait_for_consumers(bus: &Bus, manifests: &[Manifest]) -> BenchResult<()> {
    let events = bus
        .jetstream()
        .get_stream(&bus.streams().events.name)
        .await
        .step("open the events stream")?;
    for manifest in manifests {
        let name = consumer_name(&manifest.plugin.id, SUBSCRIPTION);
        poll_until(&format!("consumer `{name}`"), || {
            let events = events.clone();
            let name = name.clone();
            async move { events.consumer_info(&name).await.is_ok() }
        })
        .await?;
    }
    Ok(())
}

/// Waits until a worker of `plugin` answers a probe, as the dispatcher's own presence check
/// does: before that, a delivery would find no responders.
async fn wait_for_worker(
    client: &async_nats::Client,
    namespace: &Namespace,
    plugin: &str,
) -> BenchResult<()> {
    let id = PluginId::new(plugin).step("a plugin id")?;
    let subject = namespace.delivery(&id);
    poll_until(&format!("the worker of `{plugin}`"), || {
        let mut headers = HeaderMap::new();
        headers.insert(dh::PROBE, "1");
        let request = async_nats::Request::new()
            .headers(headers)
            .timeout(Some(Duration::from_secs(1)));
        let (client, subject) = (client.clone(), subject.clone());
        async move { client.send_request(subject, request).await.is_ok() }
    })
    .await
}

/// Polls `check` every 10 ms until it holds, for at most [`SETUP_TIMEOUT`].
pub(crate) async fn poll_until<F, Fut>(what: &str, mut check: F) -> BenchResult<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + SETUP_TIMEOUT;
    while !check().await {
        if tokio::time::Instant::now() > deadline {
            return Err(BenchError::new(
                "set up",
                format!("{what} not ready within {SETUP_TIMEOUT:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
