//! The dispatcher process: provisions the streams, follows the registry, and keeps one pull
//! loop running per registered (plugin, subscription).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use dashmap::DashMap;
use futures::StreamExt;
use switchyard_bus::{Bus, Ensured, ProvisionError, Streams};
use switchyard_schemas::manifest::Subscription;
use switchyard_schemas::{Namespace, PluginId};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::consumer::{consumer_config, consumer_name, pull_loop};
use crate::dead_letter::DeadLetterWriter;
use crate::failing::fail_after_opens;
use crate::operations::Operations;
use crate::pipeline::breaker::{BreakerConfig, CircuitBreaker, CircuitState};
use crate::pipeline::metrics::PathMetrics;
use crate::pipeline::presence::Presence;
use crate::pipeline::rate::RateLimit;
use crate::pipeline::replies::Replies;
use crate::pipeline::stats::{DeliveryStats, StatsSnapshot};
use crate::pipeline::DeliveryPath;
use crate::raw::RawReader;
use crate::settings::SettingsSent;
use crate::status::{CircuitReport, StatusBoard, StatusError, HEARTBEAT, REFRESH};
use opentelemetry::global;
use opentelemetry::metrics::ObservableGauge;
use switchyard_bus::Publisher;
use switchyard_control::lifecycle::events;
use switchyard_control::lifecycle::failure::FailureReporter;
use switchyard_control::registry::{
    Registration, Registry, RegistryChange, RegistryError, TenantScope,
};
use switchyard_control::settings::{OperatorSettings, SettingsError, SettingsStore};
use switchyard_schemas::delivery::{Hello, HelloAnswer};
use switchyard_schemas::telemetry::{metric, SCOPE};
use time::OffsetDateTime;

/// After the grace period, how long each remaining step of a shutdown may take (the loops'
/// return after the abort, the last flush).
const SHUTDOWN_TAIL: Duration = Duration::from_secs(2);
/// How a dispatcher runs. Every field has a default.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// The deployment's namespace.
    pub namespace: Namespace,
    /// The streams it provisions at start.
    pub streams: Streams,
    /// When a plugin's circuit opens, and for how long.
    pub breaker: BreakerConfig,
    /// How long shutdown waits for deliveries under way before dropping them un-acked.
    pub shutdown_grace: Duration,
    /// This instance's name in status reports; unique per process by default.
    pub instance: String,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        let namespace = Namespace::default();
        Self {
            streams: Streams::defaults(&namespace),
            namespace,
            breaker: BreakerConfig::default(),
            shutdown_grace: Duration::from_secs(30),
            instance: format!("d{}-{:04x}", std::process::id(), rand::random::<u16>()),
        }
    }
}

/// Why the dispatcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum DispatcherError {
    /// The streams could not be provisioned.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The registry could not be opened or followed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The status bucket could not be opened.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The settings buckets could not be opened.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A NATS request failed.
    #[error("{action}: {reason}")]
    Nats {
        /// What was being done.
        action: &'static str,
        /// What happened.
        reason: String,
    },
}

/// A running dispatcher. Stop it with [`Dispatcher::shutdown`]; dropping it stops pulling
/// too, but does not wait for deliveries under way.
#[derive(Debug)]
pub struct Dispatcher {
    stop: CancellationToken,
    abort: CancellationToken,
    /// Deliveries the abort at the end of the shutdown grace dropped, counted by the loops.
    dropped: Arc<AtomicUsize>,
    supervisor: Option<JoinHandle<()>>,
    shutdown_grace: Duration,
    paths: Paths,
    /// The pull loops, each with its deliveries under way.
    loops: TaskTracker,
    /// The status reporters: awaited at shutdown, since each deletes its report on the way
    /// out, so that a stopped dispatcher is not listed until its reports expire.
    reports: TaskTracker,
    /// Flushed at shutdown, so that the last acknowledgements reach the server.
    client: async_nats::Client,
    /// Kept so that their callbacks stay registered while the dispatcher runs.
    _gauges: [ObservableGauge<u64>; 3],
}

/// The delivery path of every running (plugin, subscription): its counters and its breaker.
type Paths = Arc<DashMap<(PluginId, String), Arc<DeliveryPath>>>;

/// The counters of one running (plugin, subscription) in this dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionStats {
    /// The plugin.
    pub plugin: PluginId,
    /// The subscription.
    pub subscription: String,
    /// Its counters since this dispatcher started delivering to it.
    pub counts: StatsSnapshot,
}

impl Dispatcher {
    /// Provisions the streams, opens the registry and starts delivering to every registered
    /// plugin; later registry changes take effect while it runs.
    ///
    /// # Errors
    /// A [`DispatcherError`] when the streams or the registry cannot be set up.
    pub async fn start(
        client: async_nats::Client,
        config: DispatcherConfig,
    ) -> Result<Self, DispatcherError> {
        let bus = Bus::from_client(client.clone())
            .with_namespace(config.namespace.clone())
            .with_streams(config.streams.clone());
        // Never provision over what exists: an operator may have chosen three replicas or a
        // smaller size, and a start must not undo it.
        // Boxed: the checks' future would otherwise make every caller's future large.
        let streams = Box::pin(bus.ensure_streams()).await?;
        for (name, ensured) in [
            (&config.streams.events.name, &streams.events),
            (&config.streams.dead_letters.name, &streams.dead_letters),
            (&config.streams.audit.name, &streams.audit),
        ] {
            match ensured {
                Ensured::Created => tracing::info!(stream = %name, "stream created"),
                Ensured::Kept { differences } if !differences.is_empty() => {
                    tracing::info!(stream = %name, settings = %differences.join(", "), "stream kept as provisioned");
                }
                Ensured::Kept { .. } => {}
            }
        }
        let registry = Box::pin(Registry::open(bus.jetstream(), &config.namespace)).await?;
        let changes = Box::pin(registry.watch()).await?;
        let status = Box::pin(StatusBoard::open(bus.jetstream(), &config.namespace)).await?;
        // Boxed: opening two buckets would otherwise make every caller's future large.
        let settings_store =
            Box::pin(SettingsStore::open(bus.jetstream(), &config.namespace, 1)).await?;
        let hellos = client
            .subscribe(config.namespace.all_worker_hellos())
            .await
            .map_err(|e| DispatcherError::Nats {
                action: "subscribe to worker hellos",
                reason: e.to_string(),
            })?;
        // The reply space's instance token is random, not `config.instance` (which an
        // operator names, and which need not be a subject token).
        let replies = Replies::start(
            client.clone(),
            config.namespace.clone(),
            format!("{:016x}", rand::random::<u64>()),
        )
        .await
        .map_err(|e| DispatcherError::Nats {
            action: "subscribe to delivery answers",
            reason: e.to_string(),
        })?;
        let events = bus
            .jetstream()
            .get_stream(&config.streams.events.name)
            .await
            .map_err(|e| DispatcherError::Nats {
                action: "open the events stream",
                reason: e.to_string(),
            })?;

        let stop = CancellationToken::new();
        let abort = CancellationToken::new();
        let dropped = Arc::new(AtomicUsize::new(0));
        let loops = TaskTracker::new();
        let reports = TaskTracker::new();
        let paths: Paths = Arc::default();
        let settings_sent = SettingsSent::default();
        let replies = Arc::new(replies);
        let supervisor = Supervisor {
            operations: Operations::new(
                Arc::clone(&replies),
                config.namespace.clone(),
                stop.clone(),
            ),
            replies,
            jetstream: bus.jetstream().clone(),
            events,
            dead_letters: DeadLetterWriter::new(
                client.clone(),
                config.namespace.clone(),
                Duration::from_secs(5),
            ),
            raw: RawReader::new(client.clone(), config.streams.events.name.clone()),
            namespace: config.namespace.clone(),
            breaker: config.breaker,
            failures: FailureReporter {
                registry: registry.clone(),
                client: client.clone(),
                namespace: config.namespace.clone(),
                component: format!("dispatcher {}", config.instance),
            },
            plugins: HashMap::new(),
            dropped: Arc::clone(&dropped),
            stop: stop.clone(),
            abort: abort.clone(),
            status: status.clone(),
            instance: config.instance.clone(),
            paths: Arc::clone(&paths),
            loops: loops.clone(),
            reports: reports.clone(),
            settings_sent: Arc::clone(&settings_sent),
        };
        reports.spawn(crate::settings::follow(
            settings_store,
            client.clone(),
            config.namespace.clone(),
            settings_sent,
            stop.clone(),
        ));
        reports.spawn(heartbeat(
            status.clone(),
            config.instance.clone(),
            stop.clone(),
        ));
        reports.spawn(crate::explain::held::answer(
            client.clone(),
            config.namespace.clone(),
            config.instance.clone(),
            Arc::clone(&paths),
            stop.clone(),
        ));
        let gauges = register_gauges(&paths);
        let handle = tokio::spawn(supervisor.run(changes, hellos));
        Ok(Self {
            stop,
            abort,
            dropped,
            supervisor: Some(handle),
            shutdown_grace: config.shutdown_grace,
            paths,
            loops,
            reports,
            client,
            _gauges: gauges,
        })
    }

    /// The circuit state of each running (plugin, subscription).
    pub fn circuit_states(&self) -> Vec<(PluginId, String, CircuitState)> {
        let mut states: Vec<_> = self
            .paths
            .iter()
            .map(|entry| {
                let (plugin, subscription) = entry.key().clone();
                (plugin, subscription, entry.value().breaker.state())
            })
            .collect();
        states.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        states
    }

    /// The delivery counters of each running (plugin, subscription), sorted.
    pub fn stats(&self) -> Vec<SubscriptionStats> {
        let mut stats: Vec<_> = self
            .paths
            .iter()
            .map(|entry| SubscriptionStats {
                plugin: entry.key().0.clone(),
                subscription: entry.key().1.clone(),
                counts: entry.value().stats.snapshot(),
            })
            .collect();
        stats.sort_by(|a, b| (&a.plugin, &a.subscription).cmp(&(&b.plugin, &b.subscription)));
        stats
    }

    /// Stops pulling, waits up to the shutdown grace for deliveries under way, and drops
    /// the rest un-acked (JetStream redelivers them). Returns how many were dropped.
    ///
    /// Takes at most the grace plus 4 s, whether or not nats-server can be reached.
    pub async fn shutdown(mut self) -> usize {
        // Every step is bounded: with nats-server unreachable, a request of the supervisor
        // or the final flush would otherwise wait for a reconnect that may never come.
        let deadline = tokio::time::Instant::now() + self.shutdown_grace;
        self.stop.cancel();
        if let Some(mut supervisor) = self.supervisor.take() {
            if tokio::time::timeout_at(deadline, &mut supervisor)
                .await
                .is_err()
            {
                tracing::warn!("the supervisor did not stop within the grace period; aborted");
                supervisor.abort();
            }
        }
        // The supervisor starts no loop any more; each loop delivers what it already
        // pulled, finishes its deliveries under way and ends, or drops them at the abort.
        self.loops.close();
        if tokio::time::timeout_at(deadline, self.loops.wait())
            .await
            .is_err()
        {
            self.abort.cancel();
            // An aborted loop returns at its next turn; a bound all the same.
            if tokio::time::timeout(SHUTDOWN_TAIL, self.loops.wait())
                .await
                .is_err()
            {
                tracing::warn!("delivery loops did not stop after the abort");
            }
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        // The reporters began deleting their reports at the stop; their deletes and the last
        // acknowledgements share one bound.
        self.reports.close();
        let reports = self.reports.clone();
        let client = self.client.clone();
        let tail = async move {
            reports.wait().await;
            client.flush().await
        };
        match tokio::time::timeout(SHUTDOWN_TAIL, tail).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "last acknowledgements not flushed; JetStream will redeliver them");
            }
            Err(_) => {
                tracing::warn!("nats-server unreachable: last acknowledgements not flushed; JetStream will redeliver them");
            }
        }
        dropped
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The gauges read from every running subscription at each metrics collection: the
/// consumer's backlog, the circuit state, and whether workers are present.
fn register_gauges(paths: &Paths) -> [ObservableGauge<u64>; 3] {
    let meter = global::meter(SCOPE);
    let pending = {
        let paths = Arc::clone(paths);
        meter
            .u64_observable_gauge(metric::CONSUMER_PENDING)
            .with_description("Events in the plugin's consumer not yet delivered")
            .with_callback(move |observer| {
                for path in paths.iter() {
                    observer.observe(path.stats.pending(), path.metrics.labels());
                }
            })
            .build()
    };
    let circuit = {
        let paths = Arc::clone(paths);
        meter
            .u64_observable_gauge(metric::CIRCUIT_STATE)
            .with_description("Circuit state: 0 closed, 1 half-open, 2 open")
            .with_callback(move |observer| {
                for path in paths.iter() {
                    let value = match path.breaker.state() {
                        CircuitState::Closed => 0,
                        CircuitState::HalfOpen => 1,
                        CircuitState::Open => 2,
                    };
                    observer.observe(value, path.metrics.labels());
                }
            })
            .build()
    };
    let present = {
        let paths = Arc::clone(paths);
        meter
            .u64_observable_gauge(metric::WORKERS_PRESENT)
            .with_description(
                "1 while the plugin has a worker answering, 0 while its events are held for lack of one",
            )
            .with_callback(move |observer| {
                for path in paths.iter() {
                    observer.observe(u64::from(path.presence.is_present()), path.metrics.labels());
                }
            })
            .build()
    };
    [pending, circuit, present]
}

/// How often a subscription's backlog is read from the server.
const LAG_POLL: Duration = Duration::from_secs(5);

/// Reads the consumer's backlog every [`LAG_POLL`] into the path's counters, and prunes the
/// path's long-overdue held events, until stopped.
async fn poll_lag(
    events: jetstream::stream::Stream,
    consumer: String,
    path: Arc<DeliveryPath>,
    stop: CancellationToken,
) {
    loop {
        if let Ok(info) = events.consumer_info(&consumer).await {
            path.stats.set_pending(info.num_pending);
        }
        path.in_hand.prune(OffsetDateTime::now_utc());
        tokio::select! {
            () = tokio::time::sleep(LAG_POLL) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Writes a breaker's state to the status board on every change and every [`REFRESH`], and
/// forgets it when stopped.
async fn report_circuit(
    board: StatusBoard,
    mut report: CircuitReport,
    breaker: Arc<CircuitBreaker>,
    stop: CancellationToken,
) {
    let mut changes = breaker.subscribe();
    loop {
        report.state = breaker.state();
        report.updated_at = OffsetDateTime::now_utc();
        if let Err(error) = board.publish(&report).await {
            tracing::debug!(%error, "circuit state not reported");
        }
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep(REFRESH) => {}
            () = stop.cancelled() => break,
        }
    }
    let _ = board
        .forget(&report.plugin, &report.subscription, &report.instance)
        .await;
}

/// Announces a plugin's workers going and coming back (lifecycle events `switchyard.worker.
/// down` and `up`, from this dispatcher's view) until stopped.
async fn announce_presence(
    publisher: Publisher,
    plugin: PluginId,
    instance: String,
    mut changes: tokio::sync::watch::Receiver<bool>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
        let present = *changes.borrow_and_update();
        let what = if present {
            events::LifecycleKind::WorkerUp
        } else {
            events::LifecycleKind::WorkerDown
        };
        let data = events::LifecycleEvent {
            plugin: plugin.to_string(),
            actor: Some(instance.clone()),
            ..events::LifecycleEvent::default()
        };
        if let Err(error) = events::announce(&publisher, what, &data).await {
            tracing::debug!(%plugin, %error, "worker presence not announced");
        }
    }
}

/// Writes the instance's heartbeat every [`HEARTBEAT`] until stopped, then deletes it, so that
/// readers tell a running dispatcher from one that is gone.
async fn heartbeat(board: StatusBoard, instance: String, stop: CancellationToken) {
    loop {
        if let Err(error) = board.heartbeat(&instance).await {
            tracing::debug!(%error, "heartbeat not written");
        }
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT) => {}
            () = stop.cancelled() => break,
        }
    }
    let _ = board.forget_instance(&instance).await;
}

/// One running (plugin, subscription).
struct RunningSubscription {
    subscription: Subscription,
    tenants: TenantScope,
    stop: CancellationToken,
}

/// One registered plugin's running parts.
struct RunningPlugin {
    presence: Arc<Presence>,
    subscriptions: HashMap<String, RunningSubscription>,
    /// The registered version, which workers' hellos are compared with.
    version: String,
    /// Stops its presence announcer when the plugin stops running here.
    _announcer: tokio_util::sync::DropGuard,
}

/// Follows the registry and keeps the pull loops in line with it.
struct Supervisor {
    /// The running plugins' operations, served as NATS micro services.
    operations: Operations,
    /// Requests to workers and their answers, on the dispatcher's connection.
    replies: Arc<Replies>,
    /// The bus's JetStream context on the same connection, shared by the pull loops.
    jetstream: jetstream::Context,
    events: jetstream::stream::Stream,
    dead_letters: DeadLetterWriter,
    raw: RawReader,
    namespace: Namespace,
    breaker: BreakerConfig,
    /// Marks a plugin failed when a circuit with `fail_after_opens` keeps opening.
    failures: FailureReporter,
    plugins: HashMap<PluginId, RunningPlugin>,
    dropped: Arc<AtomicUsize>,
    stop: CancellationToken,
    abort: CancellationToken,
    status: StatusBoard,
    instance: String,
    paths: Paths,
    loops: TaskTracker,
    reports: TaskTracker,
    /// What operators set for each plugin, for the answers to hellos.
    settings_sent: SettingsSent,
}

impl Supervisor {
    async fn run(
        mut self,
        changes: impl futures::Stream<Item = RegistryChange> + Unpin,
        mut hellos: async_nats::Subscriber,
    ) {
        let mut changes = changes;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => break,
                change = changes.next() => match change {
                    Some(change) => self.apply(change).await,
                    None => {
                        tracing::error!("the registry watch ended; no further changes are seen");
                        self.stop.cancelled().await;
                        break;
                    }
                },
                Some(hello) = hellos.next() => self.on_hello(hello).await,
            }
        }
        for plugin in self.plugins.values() {
            for running in plugin.subscriptions.values() {
                running.stop.cancel();
            }
        }
        self.operations.stop_all().await;
    }

    /// A worker says it is there: its plugin's held events flow at once. A hello that names
    /// its version and asks for an answer (a reply subject in the plugin's own inbox, where
    /// only that plugin listens) is told the registered version; a mismatch is logged.
    async fn on_hello(&self, hello: async_nats::Message) {
        let Some(plugin) = hello
            .subject
            .rsplit('.')
            .next()
            .and_then(|p| PluginId::new(p).ok())
        else {
            return;
        };
        let Some(running) = self.plugins.get(&plugin) else {
            return;
        };
        running.presence.mark_present();
        let said = Hello::read(&hello.payload);
        let Some(version) = said.version else {
            return;
        };
        let matches = version == running.version;
        if !matches {
            tracing::warn!(
                %plugin,
                worker_version = %version,
                registered_version = %running.version,
                worker = said.instance.as_deref().unwrap_or("-"),
                "a worker of another version than the registered one connected"
            );
        }
        let Some(reply) = hello
            .reply
            .filter(|reply| self.namespace.is_plugin_inbox(&plugin, reply))
        else {
            return;
        };
        let answer = HelloAnswer {
            registered_version: running.version.clone(),
            matches,
            dispatcher: self.instance.clone(),
            settings: Some(
                self.settings_sent
                    .get(&plugin)
                    .map(|sent| sent.value().clone())
                    .unwrap_or_else(|| OperatorSettings::default().update()),
            ),
        };
        if let Ok(body) = serde_json::to_vec(&answer) {
            let _ = self.replies.client().publish(reply, body.into()).await;
        }
    }

    async fn apply(&mut self, change: RegistryChange) {
        match &change {
            RegistryChange::Put { registration, .. } => self
                .operations
                .set_active(registration.plugin_id(), registration.is_active()),
            RegistryChange::Removed { plugin, .. } => self.operations.set_active(plugin, false),
            RegistryChange::Invalid { .. } => {}
        }
        match change {
            RegistryChange::Put { registration, .. } if !registration.is_active() => {
                self.operations.stop(registration.plugin_id()).await;
                self.pause(registration.plugin_id());
            }
            RegistryChange::Put { registration, .. } => self.reconcile(registration).await,
            RegistryChange::Removed { plugin, .. } => self.remove(&plugin).await,
            RegistryChange::Invalid { key, reason } => {
                tracing::warn!(%key, %reason, "ignoring an unreadable registry entry");
            }
        }
    }

    /// Starts what is new or changed, stops what is gone.
    async fn reconcile(&mut self, registration: Registration) {
        self.operations.reconcile(&registration).await;
        let plugin = registration.manifest.plugin.id.clone();
        let running = self.plugins.entry(plugin.clone()).or_insert_with(|| {
            let presence = Presence::new();
            let stop = self.stop.child_token();
            tokio::spawn(announce_presence(
                Publisher::new(
                    self.replies.client().clone(),
                    self.namespace.clone(),
                    events::SOURCE,
                ),
                plugin.clone(),
                self.instance.clone(),
                presence.changes(),
                stop.clone(),
            ));
            RunningPlugin {
                presence,
                subscriptions: HashMap::new(),
                version: String::new(),
                _announcer: stop.drop_guard(),
            }
        });
        running.version = registration.manifest.plugin.version.to_string();
        let presence = Arc::clone(&running.presence);

        let wanted: HashMap<String, &Subscription> = registration
            .manifest
            .subscriptions
            .iter()
            .map(|s| (s.name.to_string(), s))
            .collect();
        let gone: Vec<String> = running
            .subscriptions
            .keys()
            .filter(|name| !wanted.contains_key(*name))
            .cloned()
            .collect();
        for name in &gone {
            if let Some(old) = running.subscriptions.remove(name) {
                old.stop.cancel();
            }
        }
        for name in gone {
            self.paths.remove(&(plugin.clone(), name.clone()));
            self.delete_consumer(&plugin, &name).await;
        }

        for (name, subscription) in wanted {
            let running = self.plugins.get_mut(&plugin).expect("inserted above");
            if let Some(current) = running.subscriptions.get(&name) {
                if current.subscription == *subscription && current.tenants == registration.tenants
                {
                    continue;
                }
                current.stop.cancel();
            }
            let mut config = consumer_config(
                &self.namespace,
                &plugin,
                &registration.tenants,
                subscription,
                registration.start_sequence,
            );
            // An existing consumer keeps where it started: JetStream cannot change that, and
            // its position is past it anyway.
            let durable = consumer_name(&plugin, &name);
            if let Ok(existing) = self.events.consumer_info(&durable).await {
                config.deliver_policy = existing.config.deliver_policy;
            }
            let consumer = match self.events.create_consumer(config.clone()).await {
                Ok(consumer) => consumer,
                Err(error) => {
                    tracing::error!(%plugin, subscription = %name, %error, "cannot create its consumer");
                    continue;
                }
            };
            let breaker = CircuitBreaker::new(self.breaker);
            let stop = self.stop.child_token();
            if let Some(threshold) = subscription.policy.fail_after_opens {
                tokio::spawn(fail_after_opens(
                    Arc::clone(&breaker),
                    threshold.get(),
                    plugin.clone(),
                    name.clone(),
                    self.failures.clone(),
                    stop.clone(),
                ));
            }
            self.reports.spawn(report_circuit(
                self.status.clone(),
                CircuitReport {
                    plugin: plugin.clone(),
                    subscription: name.clone(),
                    instance: self.instance.clone(),
                    state: CircuitState::Closed,
                    updated_at: OffsetDateTime::now_utc(),
                },
                Arc::clone(&breaker),
                stop.clone(),
            ));
            let rate = subscription.policy.rate.map(|rate| {
                RateLimit::new(rate.count, rate.per.duration(), subscription.policy.burst)
            });
            let path = Arc::new(DeliveryPath {
                replies: Arc::clone(&self.replies),
                delivery_subject: self.namespace.delivery(&plugin).into(),
                plugin: plugin.clone(),
                subscription: subscription.clone(),
                breaker,
                rate,
                presence: Arc::clone(&presence),
                dead_letters: self.dead_letters.clone(),
                namespace: self.namespace.clone(),
                raw: self.raw.clone(),
                keepalive_interval: config.ack_wait / 3,
                in_hand: Default::default(),
                stats: DeliveryStats::default(),
                metrics: PathMetrics::new(plugin.as_str(), &name),
            });
            self.paths
                .insert((plugin.clone(), name.clone()), Arc::clone(&path));
            tokio::spawn(poll_lag(
                self.events.clone(),
                consumer_name(&plugin, &name),
                Arc::clone(&path),
                stop.clone(),
            ));
            let pulling = pull_loop(
                self.jetstream.clone(),
                consumer,
                path,
                subscription.policy.max_in_flight.get() as usize,
                stop.clone(),
                self.abort.clone(),
            );
            let dropped = Arc::clone(&self.dropped);
            self.loops.spawn(async move {
                dropped.fetch_add(pulling.await, Ordering::Relaxed);
            });
            tracing::info!(%plugin, subscription = %name, "delivering");
            let running = self.plugins.get_mut(&plugin).expect("inserted above");
            running.subscriptions.insert(
                name,
                RunningSubscription {
                    subscription: subscription.clone(),
                    tenants: registration.tenants.clone(),
                    stop,
                },
            );
        }
    }

    /// Stops a removed plugin's loops and deletes its consumers.
    async fn remove(&mut self, plugin: &PluginId) {
        self.operations.stop(plugin).await;
        let Some(running) = self.plugins.remove(plugin) else {
            return;
        };
        for (name, subscription) in running.subscriptions {
            subscription.stop.cancel();
            self.paths.remove(&(plugin.clone(), name.clone()));
            self.delete_consumer(plugin, &name).await;
        }
        tracing::info!(%plugin, "removed");
    }

    /// Stops delivering to a plugin that may not run (disabled, failed, or waiting for
    /// approval). Its consumers stay, so its events wait there until it runs again.
    fn pause(&mut self, plugin: &PluginId) {
        let Some(running) = self.plugins.remove(plugin) else {
            return;
        };
        for (name, subscription) in running.subscriptions {
            subscription.stop.cancel();
            self.paths.remove(&(plugin.clone(), name));
        }
        tracing::info!(%plugin, "not running (disabled, failed or waiting for approval): deliveries paused");
    }

    async fn delete_consumer(&self, plugin: &PluginId, subscription: &str) {
        // Another dispatcher may have deleted it already; either way it is gone.
        if let Err(error) = self
            .events
            .delete_consumer(&consumer_name(plugin, subscription))
            .await
        {
            tracing::debug!(%plugin, subscription, %error, "consumer not deleted");
        }
    }
}
