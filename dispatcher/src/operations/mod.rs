//! Plugin operations: each running plugin's `[[operations]]` served as a NATS micro service
//! (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS` answered for it), named after the plugin, one
//! endpoint per operation on `{prefix}.op.*.{plugin}.{operation}.*.*`, all dispatchers in one
//! queue group. A call is checked and forwarded to one of the plugin's workers by
//! [`call::serve`]; see `docs/operations.md`.

pub mod call;
mod metrics;

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::service::{Service, ServiceExt};
use futures::StreamExt;
use switchyard_control::registry::Registration;
use switchyard_schemas::{Namespace, PluginId};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use self::call::OperationPath;
use self::metrics::CallMetrics;
use crate::pipeline::rate::RateLimit;
use crate::pipeline::replies::Replies;

/// The queue group of the dispatchers' endpoints, so that each call is served once.
fn queue_group(namespace: &Namespace) -> String {
    format!("{}.dispatchers", namespace.prefix())
}

/// One plugin's running micro service.
struct Served {
    /// What it was started from; a change of any of it restarts it.
    registration: Registration,
    service: Service,
    stop: CancellationToken,
}

/// The micro services of the running plugins that declare operations.
pub struct Operations {
    /// The plugins that may run now, as the registry says: the only ones whose calls are
    /// served.
    active: Arc<dashmap::DashSet<PluginId>>,
    replies: Arc<Replies>,
    namespace: Namespace,
    served: HashMap<PluginId, Served>,
    stop: CancellationToken,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations")
            .field("served", &self.served.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Operations {
    /// Serves nothing yet; calls go out and come back through `replies`.
    pub fn new(replies: Arc<Replies>, namespace: Namespace, stop: CancellationToken) -> Self {
        Self {
            active: Arc::default(),
            replies,
            namespace,
            served: HashMap::new(),
            stop,
        }
    }

    /// Records whether `plugin` may run now (and so call operations).
    pub fn set_active(&self, plugin: &PluginId, active: bool) {
        if active {
            self.active.insert(plugin.clone());
        } else {
            self.active.remove(plugin);
        }
    }

    /// Serves a running plugin's operations as its registration says, restarting its service
    /// when anything that shapes it changed.
    pub async fn reconcile(&mut self, registration: &Registration) {
        let plugin = registration.plugin_id().clone();
        if let Some(served) = self.served.get(&plugin) {
            let same = served.registration.manifest.operations == registration.manifest.operations
                && served.registration.tenants == registration.tenants
                && served.registration.manifest.plugin == registration.manifest.plugin;
            if same {
                return;
            }
        }
        self.stop(&plugin).await;
        if registration.manifest.operations.is_empty() {
            return;
        }
        match self.start(registration).await {
            Ok(served) => {
                tracing::info!(%plugin, operations = registration.manifest.operations.len(), "serving operations");
                self.served.insert(plugin, served);
            }
            Err(error) => {
                tracing::error!(%plugin, %error, "cannot serve its operations");
            }
        }
    }

    /// Stops serving a plugin's operations (removed, disabled, failed): its calls then find
    /// no dispatcher and their callers see `call.unavailable`.
    pub async fn stop(&mut self, plugin: &PluginId) {
        if let Some(served) = self.served.remove(plugin) {
            served.stop.cancel();
            let _ = served.service.stop().await;
            tracing::info!(%plugin, "no longer serving operations");
        }
    }

    /// Stops every service.
    pub async fn stop_all(&mut self) {
        let plugins: Vec<PluginId> = self.served.keys().cloned().collect();
        for plugin in plugins {
            self.stop(&plugin).await;
        }
    }

    async fn start(&self, registration: &Registration) -> Result<Served, async_nats::Error> {
        let manifest = &registration.manifest;
        let plugin = &manifest.plugin.id;
        let metadata = HashMap::from([
            (
                "switchyard.prefix".to_owned(),
                self.namespace.prefix().to_owned(),
            ),
            ("switchyard.plugin".to_owned(), plugin.to_string()),
        ]);
        let mut builder = self
            .replies
            .client()
            .service_builder()
            .metadata(metadata)
            .queue_group(queue_group(&self.namespace));
        if let Some(description) = &manifest.plugin.description {
            builder = builder.description(description);
        }
        let service = builder
            .start(plugin.as_str(), manifest.plugin.version.to_string())
            .await?;
        let stop = self.stop.child_token();
        if let Err(error) = self.serve_endpoints(&service, registration, &stop).await {
            // Nothing half-served stays: the endpoints added end with the token, the
            // service's own subscriptions with its stop.
            stop.cancel();
            let _ = service.stop().await;
            return Err(error);
        }
        Ok(Served {
            registration: registration.clone(),
            service,
            stop,
        })
    }

    /// Adds one endpoint per operation to `service`, each served until `stop`.
    async fn serve_endpoints(
        &self,
        service: &Service,
        registration: &Registration,
        stop: &CancellationToken,
    ) -> Result<(), async_nats::Error> {
        let manifest = &registration.manifest;
        let plugin = &manifest.plugin.id;
        for operation in &manifest.operations {
            let mut metadata = HashMap::from([
                (
                    "request.type".to_owned(),
                    operation.request.name.to_string(),
                ),
                (
                    "request.version".to_owned(),
                    operation.request.version.to_string(),
                ),
                (
                    "response.type".to_owned(),
                    operation.response.name.to_string(),
                ),
                (
                    "response.version".to_owned(),
                    operation.response.version.to_string(),
                ),
                (
                    "timeout".to_owned(),
                    humantime::format_duration(operation.timeout).to_string(),
                ),
                ("idempotent".to_owned(), operation.idempotent.to_string()),
            ]);
            if let Some(description) = &operation.description {
                metadata.insert("description".to_owned(), description.clone());
            }
            let endpoint = service
                .endpoint_builder()
                .name(operation.name.as_str())
                .metadata(metadata)
                .add(self.namespace.operation_endpoint(plugin, &operation.name))
                .await?;
            let path = Arc::new(OperationPath {
                replies: Arc::clone(&self.replies),
                call_subject: self.namespace.call_delivery(plugin).into(),
                plugin: plugin.clone(),
                tenants: registration.tenants.clone(),
                operation: operation.clone(),
                rate: operation
                    .rate
                    .map(|rate| RateLimit::new(rate.count, rate.per.duration(), operation.burst)),
                in_flight: Arc::new(Semaphore::new(operation.max_in_flight.get() as usize)),
                namespace: self.namespace.clone(),
                metrics: CallMetrics::new(plugin.as_str(), operation.name.as_str()),
                refused_replies: Default::default(),
                active: Arc::clone(&self.active),
            });
            tokio::spawn(serve_endpoint(endpoint, path, stop.clone()));
        }
        Ok(())
    }
}

/// Calls of one operation being served at once beyond its `max_in_flight`: those being
/// refused (busy, rate-limited, not allowed), which take a moment each.
const REFUSALS_AT_ONCE: usize = 256;

/// Serves each call of one endpoint on a task of its own, until stopped. At most
/// `max_in_flight` + [`REFUSALS_AT_ONCE`] tasks at once: beyond that the endpoint waits, and
/// calls queue in its subscription (where nats-server drops what a slow consumer cannot take,
/// and their callers time out), so that a flood cannot grow the dispatcher without bound.
async fn serve_endpoint(
    mut endpoint: async_nats::service::endpoint::Endpoint,
    path: Arc<OperationPath>,
    stop: CancellationToken,
) {
    let tasks = Arc::new(Semaphore::new(
        path.operation.max_in_flight.get() as usize + REFUSALS_AT_ONCE,
    ));
    loop {
        let task = tokio::select! {
            () = stop.cancelled() => break,
            task = Arc::clone(&tasks).acquire_owned() => task.expect("never closed"),
        };
        tokio::select! {
            () = stop.cancelled() => break,
            request = endpoint.next() => match request {
                Some(request) => {
                    let path = Arc::clone(&path);
                    tokio::spawn(async move {
                        call::serve(&path, request).await;
                        drop(task);
                    });
                }
                None => break,
            },
        }
    }
    let _ = endpoint.stop().await;
}
