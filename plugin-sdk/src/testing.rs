//! Integration testing for plugin authors: one call starts a real nats-server, an in-process
//! dispatcher and the plugin's worker, with the plugin registered for every tenant.
//!
//! ```no_run
//! # use switchyard_plugin_sdk::{Plugin, TypedEvent, Version, Outcome};
//! # #[derive(serde::Serialize, serde::Deserialize)]
//! # struct Ping { n: u32 }
//! # impl TypedEvent for Ping {
//! #     const TYPE: &'static str = "ping";
//! #     const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
//! # }
//! use std::time::Duration;
//! use switchyard_plugin_sdk::testing::{Settlement, TestBed};
//!
//! # async fn t(plugin: Plugin) {
//! let mut bed = TestBed::start(plugin).await.expect("test bed starts");
//! let id = bed.publish("acme", &Ping { n: 1 }).await;
//! let settled = bed.settled(&id, Duration::from_secs(10)).await;
//! assert!(matches!(settled, Settlement::Done { attempts: 1 }));
//! # }
//! ```
//!
//! Needs the `testing` feature: `switchyard-plugin-sdk = { ..., features = ["testing"] }` in
//! `[dev-dependencies]`. The nats-server binary is found or installed as
//! `switchyard_dispatcher::local_nats` describes.

use std::time::Duration;

use switchyard_bus::{decode_event, Bus};
use switchyard_control::registry::{Registration, Registry, TenantScope};
use switchyard_dispatcher::consumer::consumer_name;
use switchyard_dispatcher::dead_letter::Failure;
use switchyard_dispatcher::local_nats::{LocalNatsServer, ServerError, ServerOptions};
use switchyard_dispatcher::{Dispatcher, DispatcherConfig};
use switchyard_schemas::{Event, EventId, Namespace, Tenant, TypedEvent};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::worker::Handled;
use crate::{Plugin, PluginError};

/// Why a test bed could not start.
#[derive(Debug, thiserror::Error)]
pub enum TestBedError {
    /// The nats-server could not be started.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Something else failed while setting up.
    #[error("{action}: {reason}")]
    Setup {
        /// What was being done.
        action: &'static str,
        /// What happened.
        reason: String,
    },
}

fn setup(action: &'static str) -> impl FnOnce(String) -> TestBedError {
    move |reason| TestBedError::Setup { action, reason }
}

/// How an event ended for the plugin.
#[derive(Debug, Clone)]
pub enum Settlement {
    /// A handler returned `Ok` on this attempt.
    Done {
        /// The attempt that succeeded.
        attempts: u32,
    },
    /// It was dead-lettered.
    DeadLettered {
        /// The failure recorded with it.
        failure: Failure,
    },
}

/// A nats-server, a dispatcher and the plugin's worker, for one test. Dropping it stops all
/// three and removes the server's data.
pub struct TestBed {
    bus: Bus,
    /// The plugin under test.
    registered_plugin: switchyard_schemas::PluginId,
    dispatcher: Option<Dispatcher>,
    outcomes: mpsc::UnboundedReceiver<Handled>,
    seen: Vec<Handled>,
    stop_worker: CancellationToken,
    worker: Option<JoinHandle<Result<(), PluginError>>>,
    // Last, so the server outlives the clients above when dropped.
    server: LocalNatsServer,
    _store: TempDir,
}

impl std::fmt::Debug for TestBed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestBed")
            .field("url", &self.server.url())
            .finish_non_exhaustive()
    }
}

impl TestBed {
    /// Starts a server on a free port with its own store, the streams, a dispatcher and the
    /// plugin's worker, and registers the plugin for every tenant.
    ///
    /// # Errors
    /// A [`TestBedError`] saying what did not start.
    pub async fn start(plugin: Plugin) -> Result<Self, TestBedError> {
        plugin
            .check()
            .map_err(|e| setup("check the plugin")(e.to_string()))?;
        let store = TempDir::new().map_err(|e| setup("create a store directory")(e.to_string()))?;
        let server = LocalNatsServer::start(ServerOptions {
            store_dir: store.path().to_path_buf(),
            ..ServerOptions::default()
        })
        .await?;
        let connect = || async {
            async_nats::connect(server.url())
                .await
                .map_err(|e| setup("connect")(e.to_string()))
        };
        let bus = Bus::from_client(connect().await?);
        bus.provision()
            .await
            .map_err(|e| setup("provision the streams")(e.to_string()))?;
        let dispatcher = Dispatcher::start(connect().await?, DispatcherConfig::default())
            .await
            .map_err(|e| setup("start the dispatcher")(e.to_string()))?;

        let manifest = plugin.manifest().clone();
        let registry = Registry::open(bus.jetstream(), bus.namespace())
            .await
            .map_err(|e| setup("open the registry")(e.to_string()))?;
        registry
            .put(&Registration::new(manifest.clone(), TenantScope::All))
            .await
            .map_err(|e| setup("register the plugin")(e.to_string()))?;
        let events = bus
            .jetstream()
            .get_stream(&bus.streams().events.name)
            .await
            .map_err(|e| setup("open the events stream")(e.to_string()))?;
        for subscription in &manifest.subscriptions {
            let name = consumer_name(&manifest.plugin.id, subscription.name.as_str());
            wait_for(Duration::from_secs(10), || {
                let events = events.clone();
                let name = name.clone();
                async move { events.consumer_info(&name).await.is_ok() }
            })
            .await
            .map_err(|()| setup("wait for the plugin's consumers")(name.clone()))?;
        }

        let (observer, outcomes) = mpsc::unbounded_channel();
        let stop_worker = CancellationToken::new();
        // The plugin's own inbox, as `Plugin::run` connects: the answers to its calls of other
        // plugins' operations come back there only.
        let worker_client = async_nats::ConnectOptions::new()
            .custom_inbox_prefix(bus.namespace().plugin_inbox_prefix(&manifest.plugin.id))
            .connect(server.url())
            .await
            .map_err(|e| setup("connect the worker")(e.to_string()))?;
        let namespace = bus.namespace().clone();
        let stop = stop_worker.clone();
        let worker = tokio::spawn(async move {
            let shutdown = async move { stop.cancelled().await };
            let served = plugin
                .serve(worker_client, namespace, shutdown, None, Some(observer))
                .await;
            if let Err(error) = &served {
                tracing::error!(%error, "the test worker stopped");
            }
            served
        });
        Ok(Self {
            bus,
            registered_plugin: manifest.plugin.id.clone(),
            dispatcher: Some(dispatcher),
            outcomes,
            seen: Vec::new(),
            stop_worker,
            worker: Some(worker),
            server,
            _store: store,
        })
    }

    /// The server's URL, for clients of the test's own.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The deployment's namespace (subject prefix) the dispatcher and the worker use, for a
    /// worker of the test's own (see [`Plugin::serve`]).
    pub fn namespace(&self) -> &Namespace {
        self.bus.namespace()
    }

    /// Stops the bed's worker as SIGTERM stops [`Plugin::run`]: it takes no new deliveries,
    /// lets handlers under way finish (up to the plugin's drain timeout), and replies to them.
    /// Returns once the worker has stopped, with what [`Plugin::serve`] returned; the
    /// outcomes it replied with stay readable through [`outcomes`](Self::outcomes). The
    /// dispatcher and the server keep running: events published afterwards wait for a
    /// worker, e.g. one the test starts with [`Plugin::serve`] on [`url`](Self::url).
    ///
    /// # Errors
    /// What [`Plugin::serve`] returned. `Ok` when the worker was already stopped.
    ///
    /// # Panics
    /// When the worker's task panicked.
    pub async fn stop_worker(&mut self) -> Result<(), PluginError> {
        self.stop_worker.cancel();
        match self.worker.take() {
            Some(worker) => match worker.await {
                Ok(served) => served,
                Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
                Err(_) => Ok(()), // Aborted: it is not running either.
            },
            None => Ok(()),
        }
    }

    /// Restarts the nats-server as an operator would (a clean stop, then a start on the same
    /// port with the same store), and waits until the bed's own connection is back, so that
    /// [`publish`](Self::publish) and [`dead_letters`](Self::dead_letters) work at once. The
    /// dispatcher and the worker are left to reconnect by themselves, as in production.
    ///
    /// # Errors
    /// [`TestBedError::Server`] when the server does not come back;
    /// [`TestBedError::Setup`] when the bed does not reconnect within 10 s.
    pub async fn restart_server(&mut self) -> Result<(), TestBedError> {
        self.server.restart().await?;
        let client = self.bus.client().clone();
        wait_for(Duration::from_secs(10), || {
            let connected = client.connection_state() == async_nats::connection::State::Connected;
            async move { connected }
        })
        .await
        .map_err(|()| setup("reconnect after the restart")(self.server.url()))
    }

    /// Publishes `data` as an event for `tenant` and returns its id.
    ///
    /// # Panics
    /// When the tenant is invalid or the publish fails.
    pub async fn publish<T: TypedEvent>(&self, tenant: &str, data: &T) -> EventId {
        let tenant = Tenant::new(tenant).expect("a valid tenant name");
        let event = Event::builder(tenant, "urn:switchyard:test")
            .build(data)
            .expect("the event encodes");
        self.publish_event(&event).await;
        event.attributes.id
    }

    /// Calls the plugin's `operation` for `tenant` as an operator, through the dispatcher, as a
    /// service would; waits (up to 10 s) for the dispatcher and the worker to serve it first.
    ///
    /// # Errors
    /// The call's [`CallError`](switchyard_schemas::call::CallError), with its code.
    pub async fn call<Req: TypedEvent, Res: TypedEvent>(
        &self,
        tenant: &str,
        operation: &str,
        request: &Req,
    ) -> Result<Res, switchyard_schemas::call::CallError> {
        use switchyard_schemas::call::{CallErrorKind, Caller};
        let tenant = Tenant::new(tenant).expect("a valid tenant name");
        let plugin = self.registered_plugin.clone();
        let calls = switchyard_bus::Calls::new(
            self.bus.client().clone(),
            self.bus.namespace().clone(),
            Caller::Operator("test".to_owned()),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let result = calls.call(&tenant, &plugin, operation, request).await;
            let starting = matches!(&result, Err(e)
                if matches!(e.kind, CallErrorKind::Unavailable | CallErrorKind::NoWorker));
            if !starting || tokio::time::Instant::now() >= deadline {
                return result;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes a ready event.
    ///
    /// # Panics
    /// When the publish fails.
    pub async fn publish_event(&self, event: &Event) {
        self.bus
            .publisher("urn:switchyard:test")
            .publish_event(event)
            .await
            .expect("the event is stored");
    }

    /// Every outcome the worker replied with so far, in order.
    pub fn outcomes(&mut self) -> &[Handled] {
        while let Ok(handled) = self.outcomes.try_recv() {
            self.seen.push(handled);
        }
        &self.seen
    }

    /// Waits until the event is done or dead-lettered.
    ///
    /// # Panics
    /// When neither happens within `timeout`.
    pub async fn settled(&mut self, id: &EventId, timeout: Duration) -> Settlement {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(done) = self
                .outcomes()
                .iter()
                .find(|h| h.event_id.as_ref() == Some(id) && h.outcome == crate::Outcome::Done)
            {
                return Settlement::Done {
                    attempts: done.attempt,
                };
            }
            if let Some((failure, _)) = self
                .dead_letters()
                .await
                .into_iter()
                .find(|(_, event)| event.as_ref().map(|e| &e.attributes.id) == Some(id))
            {
                return Settlement::DeadLettered { failure };
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "event {id} neither done nor dead-lettered within {timeout:?}; outcomes so far: {:?}",
                self.seen
            );
            tokio::select! {
                Some(handled) = self.outcomes.recv() => self.seen.push(handled),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Every dead letter stored so far, with the event when it decodes.
    ///
    /// # Panics
    /// When the dead-letter stream cannot be read.
    pub async fn dead_letters(&self) -> Vec<(Failure, Option<Event>)> {
        let mut stream = self
            .bus
            .jetstream()
            .get_stream(&self.bus.streams().dead_letters.name)
            .await
            .expect("the dead-letter stream exists");
        let state = stream.info().await.expect("stream info").state.clone();
        let mut letters = Vec::new();
        if state.messages == 0 {
            return letters;
        }
        for sequence in state.first_sequence..=state.last_sequence {
            if let Ok(message) = stream.direct_get(sequence).await {
                if let Ok(failure) = Failure::from_headers(&message.headers) {
                    let event = decode_event(Some(&message.headers), message.payload.clone()).ok();
                    letters.push((failure, event));
                }
            }
        }
        letters
    }

    /// Stops the worker (draining) and the dispatcher.
    pub async fn shutdown(mut self) {
        self.stop_worker.cancel();
        if let Some(dispatcher) = self.dispatcher.take() {
            dispatcher.shutdown().await;
        }
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        self.stop_worker.cancel();
    }
}

async fn wait_for<F, Fut>(timeout: Duration, mut condition: F) -> Result<(), ()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(())
}
