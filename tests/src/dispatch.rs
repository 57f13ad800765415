//! A running Switchyard for one test: a nats-server (or a cluster of them), provisioned
//! streams, the registry and an in-process dispatcher, plus helpers to register plugins,
//! publish events and read dead letters.

use std::future::Future;
use std::num::NonZeroUsize;
use std::time::Duration;

use async_nats::jetstream;
use switchyard_bus::{
    decode_event, set_replicas, stream_name, Bus, Publisher, StreamSettings, Streams,
};
use switchyard_control::audit::{Actor, AuditLog, Auditor};
use switchyard_control::auth::CredentialStore;
use switchyard_control::registry::{Registration, Registry, RegistryOptions, TenantScope};
use switchyard_dispatcher::dead_letter::Failure;
use switchyard_dispatcher::pipeline::breaker::BreakerConfig;
use switchyard_dispatcher::status::StatusBoard;
use switchyard_dispatcher::{Dispatcher, DispatcherConfig};
use switchyard_schemas::manifest::Manifest;
use switchyard_schemas::semver::Version;
use switchyard_schemas::{Event, EventId, Namespace, Tenant, TypedEvent};

use crate::{TestCluster, TestServer};

/// The events stream's size in tests that provision their own streams: enough for tens of
/// thousands of test events, and far below the 4 GiB default, which a cluster of test nodes
/// sharing one disk would have to reserve three times over.
pub const SMALL_EVENTS_BYTES: i64 = 64 * 1024 * 1024;
/// The dead-letter stream's size in tests that provision their own streams.
pub const SMALL_DEAD_LETTERS_BYTES: i64 = 16 * 1024 * 1024;
/// The audit stream's size in tests that provision their own streams.
pub const SMALL_AUDIT_BYTES: i64 = 16 * 1024 * 1024;

/// What a [`Switchyard`] runs on: one [`TestServer`], or every node of a [`TestCluster`].
pub trait Broker {
    /// The URL for workers and commands: the server's, or a comma-separated list of every
    /// node's.
    fn url(&self) -> String;

    /// A new client connection; to a cluster, one that knows every node, so that it fails
    /// over when one stops.
    fn client(&self) -> impl Future<Output = async_nats::Client> + Send;
}

impl Broker for TestServer {
    fn url(&self) -> String {
        TestServer::url(self)
    }

    fn client(&self) -> impl Future<Output = async_nats::Client> + Send {
        TestServer::client(self)
    }
}

impl Broker for TestCluster {
    fn url(&self) -> String {
        self.urls().join(",")
    }

    fn client(&self) -> impl Future<Output = async_nats::Client> + Send {
        TestCluster::client(self)
    }
}

/// The default streams of `namespace` with `replicas` replicas and small sizes
/// ([`SMALL_EVENTS_BYTES`], [`SMALL_DEAD_LETTERS_BYTES`], [`SMALL_AUDIT_BYTES`]).
pub fn small_streams(namespace: &Namespace, replicas: usize) -> Streams {
    let defaults = Streams::defaults(namespace);
    Streams {
        events: StreamSettings {
            replicas,
            max_bytes: SMALL_EVENTS_BYTES,
            ..defaults.events
        },
        dead_letters: StreamSettings {
            replicas,
            max_bytes: SMALL_DEAD_LETTERS_BYTES,
            ..defaults.dead_letters
        },
        audit: StreamSettings {
            replicas,
            max_bytes: SMALL_AUDIT_BYTES,
            ..defaults.audit
        },
    }
}

/// Provisions the bus's streams as configured, and gives the registry, status and credentials
/// buckets `replicas` replicas (creating them when missing): what `switchyard streams provision
/// --replicas <replicas>` does (`cli/src/commands/streams.rs`). Then waits until every one of
/// them has all its replicas current, as an operator would before counting on them. Returns
/// the registry.
///
/// # Panics
/// When the server refuses, or the replicas are not current within 30 s.
pub async fn provision_with_buckets(bus: &Bus, replicas: usize) -> Registry {
    bus.provision().await.expect("streams provision");
    let js = bus.jetstream();
    let ns = bus.namespace();
    let registry = Registry::open_with(js, ns, &RegistryOptions { replicas })
        .await
        .expect("registry opens");
    StatusBoard::open(js, ns)
        .await
        .expect("status bucket opens");
    let credentials = CredentialStore::open(js, ns)
        .await
        .expect("credentials bucket opens");
    let mut streams = vec![
        bus.streams().events.name.clone(),
        bus.streams().dead_letters.name.clone(),
        bus.streams().audit.name.clone(),
    ];
    for bucket in [
        registry.bucket().to_owned(),
        stream_name(ns, "STATUS"),
        credentials.bucket().to_owned(),
    ] {
        let stream = format!("KV_{bucket}");
        set_replicas(js, &stream, replicas)
            .await
            .unwrap_or_else(|e| panic!("{bucket} gets {replicas} replicas: {e}"));
        streams.push(stream);
    }
    for stream in streams {
        wait_until_replicated(js, &stream, replicas).await;
    }
    registry
}

/// Waits until `stream` has a leader and `replicas - 1` other replicas, all current.
///
/// # Panics
/// When that takes more than 30 s.
pub async fn wait_until_replicated(js: &jetstream::Context, stream: &str, replicas: usize) {
    let replicated = crate::wait_until(Duration::from_secs(30), || async {
        let Ok(mut handle) = js.get_stream(stream).await else {
            return false;
        };
        let Ok(info) = handle.info().await else {
            return false;
        };
        match &info.cluster {
            // A single server: nothing to wait for.
            None => replicas == 1,
            Some(cluster) => {
                cluster.leader.is_some()
                    && cluster.replicas.len() + 1 == replicas
                    && cluster
                        .replicas
                        .iter()
                        .all(|peer| peer.current && !peer.offline)
            }
        }
    })
    .await;
    if let Err(e) = replicated {
        panic!("{stream} does not get {replicas} current replicas: {e}");
    }
}

/// The event the dispatcher tests publish.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderCreated {
    /// A number that tells events apart.
    pub n: u32,
}

impl TypedEvent for OrderCreated {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// A plugin manifest with one subscription `orders` to `order.*`, and `policy` (TOML lines of
/// the `[subscriptions.policy]` table, may be empty).
pub fn manifest(plugin: &str, policy: &str) -> Manifest {
    Manifest::from_toml_str(&format!(
        r#"
        [plugin]
        id = "{plugin}"
        version = "1.0.0"
        core = "*"

        [[subscriptions]]
        name = "orders"
        events = ["order.*"]
        [subscriptions.policy]
        {policy}
        "#
    ))
    .unwrap_or_else(|e| panic!("test manifest is invalid:\n{e}"))
}

/// A dead letter read back from the dead-letter stream.
#[derive(Debug, Clone)]
pub struct StoredDeadLetter {
    /// Its sequence in the dead-letter stream.
    pub sequence: u64,
    /// The failure metadata.
    pub failure: Failure,
    /// The headers as stored.
    pub headers: async_nats::HeaderMap,
    /// The body as stored.
    pub payload: bytes::Bytes,
    /// The event, when it decodes.
    pub event: Option<Event>,
}

/// A nats-server (by default; or a [`TestCluster`]) with Switchyard's streams, registry and
/// one dispatcher.
pub struct Switchyard<B: Broker = TestServer> {
    /// The server, or the cluster.
    pub server: B,
    /// The bus (default namespace).
    pub bus: Bus,
    /// The registry.
    pub registry: Registry,
    /// The dispatcher; `None` after [`Switchyard::stop_dispatcher`].
    pub dispatcher: Option<Dispatcher>,
    /// The connection the dispatcher uses; its statistics show what it sends.
    pub dispatcher_client: async_nats::Client,
}

impl Switchyard<TestServer> {
    /// Starts everything with a breaker that opens after 5 failures for 30 s.
    pub async fn start() -> Self {
        Self::start_with(BreakerConfig::default()).await
    }

    /// Starts everything with this breaker configuration.
    ///
    /// # Panics
    /// When anything fails to start.
    pub async fn start_with(breaker: BreakerConfig) -> Self {
        let mut switchyard = Self::without_dispatcher().await;
        let dispatcher = Dispatcher::start(
            switchyard.dispatcher_client.clone(),
            DispatcherConfig {
                breaker,
                shutdown_grace: Duration::from_secs(10),
                ..DispatcherConfig::default()
            },
        )
        .await
        .expect("dispatcher starts");
        switchyard.dispatcher = Some(dispatcher);
        switchyard
    }

    /// Starts the server, the streams and the registry, but no dispatcher: for tests that run
    /// their own ([`another_dispatcher_with`](Self::another_dispatcher_with), or `switchyard
    /// run` as a process). [`register`](Self::register) waits for a running dispatcher to
    /// create the consumers.
    ///
    /// # Panics
    /// When anything fails to start.
    pub async fn without_dispatcher() -> Self {
        let server = TestServer::start().await;
        let bus = Bus::from_client(server.client().await);
        bus.provision().await.expect("streams provision");
        let registry = Registry::open(bus.jetstream(), bus.namespace())
            .await
            .expect("registry opens");
        let dispatcher_client = server.client().await;
        Self {
            server,
            bus,
            registry,
            dispatcher: None,
            dispatcher_client,
        }
    }
}

impl Switchyard<TestCluster> {
    /// Starts a cluster of `size` nodes with small streams ([`small_streams`]) and the
    /// registry, status and credentials buckets, all with `replicas` replicas
    /// ([`provision_with_buckets`]), but no dispatcher: start one with
    /// [`another_dispatcher`](Self::another_dispatcher).
    ///
    /// # Panics
    /// When anything fails to start.
    pub async fn on_cluster(size: usize, replicas: usize) -> Self {
        let cluster = TestCluster::start(size).await;
        let namespace = Namespace::default();
        let bus = Bus::from_client(cluster.client().await)
            .with_streams(small_streams(&namespace, replicas));
        let registry = provision_with_buckets(&bus, replicas).await;
        let dispatcher_client = cluster.client().await;
        Self {
            server: cluster,
            bus,
            registry,
            dispatcher: None,
            dispatcher_client,
        }
    }
}

impl<B: Broker> Switchyard<B> {
    /// The audit log of this Switchyard with the actor `test`: what the audited operations
    /// (dead letters' replay and purge, the registry's `register`, ...) need.
    ///
    /// # Panics
    /// When the audit log cannot be opened.
    pub async fn auditor(&self) -> Auditor {
        let log = AuditLog::open(self.bus.jetstream(), self.bus.namespace())
            .await
            .expect("the audit log opens");
        Auditor::new(log, Actor::declared("test"))
    }

    /// Starts another dispatcher against the same server.
    pub async fn another_dispatcher(&self) -> Dispatcher {
        self.another_dispatcher_with(DispatcherConfig::default())
            .await
    }

    /// Starts another dispatcher against the same server, on its own connection, with this
    /// configuration (e.g. a short `shutdown_grace`).
    ///
    /// # Panics
    /// When it does not start.
    pub async fn another_dispatcher_with(&self, config: DispatcherConfig) -> Dispatcher {
        Dispatcher::start(Broker::client(&self.server).await, config)
            .await
            .expect("another dispatcher starts")
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        self.bus.namespace()
    }

    /// The server's URL (a comma-separated list on a cluster), for workers.
    pub fn url(&self) -> String {
        Broker::url(&self.server)
    }

    /// Registers a plugin for all tenants and waits until its consumer exists.
    pub async fn register(&self, manifest: Manifest) {
        self.register_for(manifest, TenantScope::All).await;
    }

    /// Registers a plugin for these tenants and waits until its consumers exist.
    pub async fn register_for(&self, manifest: Manifest, tenants: TenantScope) {
        let names: Vec<String> = manifest
            .subscriptions
            .iter()
            .map(|s| {
                switchyard_dispatcher::consumer::consumer_name(&manifest.plugin.id, s.name.as_str())
            })
            .collect();
        self.registry
            .put(&Registration::new(manifest, tenants))
            .await
            .expect("registration stored");
        let stream = self.events_stream().await;
        crate::wait_until(Duration::from_secs(10), || {
            let stream = stream.clone();
            let names = names.clone();
            async move {
                for name in names {
                    if stream.consumer_info(&name).await.is_err() {
                        return false;
                    }
                }
                true
            }
        })
        .await
        .expect("the dispatcher creates the plugin's consumers");
    }

    /// A publisher.
    pub fn publisher(&self) -> Publisher {
        self.bus.publisher("urn:test")
    }

    /// Publishes `OrderCreated { n }` for `n` in `range`, for `tenant`; returns their ids.
    pub async fn publish_orders(&self, tenant: &str, range: std::ops::Range<u32>) -> Vec<EventId> {
        let tenant = Tenant::new(tenant).expect("valid tenant");
        let events: Vec<Event> = range
            .map(|n| {
                Event::builder(tenant.clone(), "urn:test")
                    .build(&OrderCreated { n })
                    .expect("event builds")
            })
            .collect();
        let ids = events.iter().map(|e| e.attributes.id.clone()).collect();
        self.publisher()
            .publish_many(events, NonZeroUsize::new(64).expect("not zero"))
            .await
            .expect("events published");
        ids
    }

    /// The events stream.
    pub async fn events_stream(&self) -> jetstream::stream::Stream {
        self.bus
            .jetstream()
            .get_stream(&self.bus.streams().events.name)
            .await
            .expect("events stream")
    }

    /// The consumer of a plugin's `orders` subscription: (pending, ack pending).
    pub async fn consumer_backlog(&self, plugin: &str) -> (u64, usize) {
        let name = format!("{plugin}~orders");
        let info = self
            .events_stream()
            .await
            .consumer_info(&name)
            .await
            .expect("consumer exists");
        (info.num_pending, info.num_ack_pending)
    }

    /// Every dead letter currently stored, in order.
    pub async fn dead_letters(&self) -> Vec<StoredDeadLetter> {
        let mut stream = self
            .bus
            .jetstream()
            .get_stream(&self.bus.streams().dead_letters.name)
            .await
            .expect("dead-letter stream");
        let state = stream
            .info()
            .await
            .expect("dead-letter stream info")
            .state
            .clone();
        let mut letters = Vec::new();
        if state.messages == 0 {
            return letters;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            let Ok(message) = stream.direct_get(sequence).await else {
                continue; // deleted
            };
            let failure = Failure::from_headers(&message.headers)
                .unwrap_or_else(|h| panic!("dead letter {sequence} lacks header {h}"));
            let event = decode_event(Some(&message.headers), message.payload.clone()).ok();
            letters.push(StoredDeadLetter {
                sequence,
                failure,
                headers: message.headers.clone(),
                payload: message.payload.clone(),
                event,
            });
        }
        letters
    }

    /// Waits until `n` dead letters are stored.
    ///
    /// # Panics
    /// When they are not within `timeout`.
    pub async fn wait_for_dead_letters(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Vec<StoredDeadLetter> {
        crate::wait_until(timeout, || async { self.dead_letters().await.len() >= n })
            .await
            .unwrap_or_else(|e| panic!("{n} dead letters expected: {e}"));
        self.dead_letters().await
    }

    /// Shuts the dispatcher down gracefully; returns how many deliveries it dropped.
    pub async fn stop_dispatcher(&mut self) -> usize {
        match self.dispatcher.take() {
            Some(dispatcher) => dispatcher.shutdown().await,
            None => 0,
        }
    }
}
