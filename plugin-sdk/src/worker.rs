//! The worker: serves a plugin's deliveries from NATS until told to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{HeaderMap, Message};
use futures::StreamExt;
use switchyard_schemas::delivery::{header as dh, DeliveryInfo, ErrorCode, Outcome};
use switchyard_schemas::{Event, EventId, Namespace};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::task::TaskTracker;

use crate::context::Context;
use crate::plugin::{Plugin, PluginError};

/// The code of a delivery whose headers break the protocol.
const BAD_DELIVERY: &str = "protocol.bad-delivery";

/// What a worker did with one delivery; seen by [`crate::testing`] observers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The event's id.
    pub event_id: Option<EventId>,
    /// The attempt number.
    pub attempt: u32,
    /// The reply sent.
    pub outcome: Outcome,
}

/// Environment variables [`Plugin::run`] reads.
pub mod env {
    /// The NATS server URL(s); default `nats://127.0.0.1:4222`.
    pub const URL: &str = "SWITCHYARD_NATS_URL";
    /// A NATS credentials file, if the server needs one.
    pub const CREDS: &str = "SWITCHYARD_NATS_CREDS";
    /// The deployment's subject prefix; default `switchyard`.
    pub const PREFIX: &str = "SWITCHYARD_PREFIX";
}

impl Plugin {
    /// Connects to NATS as configured by the environment ([`env`]) and serves deliveries
    /// until SIGTERM or Ctrl-C, then drains: no new deliveries are taken, and handlers under
    /// way get up to the drain timeout to finish. Waits for the server if it is not up yet,
    /// and reconnects by itself if it restarts.
    ///
    /// # Errors
    /// [`PluginError::Setup`] when the handlers do not fit the manifest (checked before
    /// connecting), [`PluginError::Nats`] when NATS refuses the worker.
    pub async fn run(self) -> Result<(), PluginError> {
        self.check()?;
        let url = std::env::var(env::URL).unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
        let namespace = match std::env::var(env::PREFIX) {
            Ok(prefix) => Namespace::new(prefix).map_err(|e| PluginError::Nats {
                action: "read SWITCHYARD_PREFIX",
                reason: e.to_string(),
            })?,
            Err(_) => Namespace::default(),
        };
        let (reconnected, reconnects) = mpsc::unbounded_channel();
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("switchyard-plugin-{}", self.manifest.plugin.id))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let reconnected = reconnected.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        let _ = reconnected.send(());
                    }
                }
            });
        if let Ok(creds) = std::env::var(env::CREDS) {
            options = options
                .credentials_file(&creds)
                .await
                .map_err(|e| PluginError::Nats {
                    action: "read the credentials file",
                    reason: format!("{creds}: {e}"),
                })?;
        }
        tracing::info!(plugin = %self.manifest.plugin.id, %url, "connecting");
        let client = options
            .connect(url.as_str())
            .await
            .map_err(|e| PluginError::Nats {
                action: "connect",
                reason: e.to_string(),
            })?;
        self.serve(client, namespace, stop_signal(), Some(reconnects), None)
            .await
    }

    /// Serves deliveries on `client` until `shutdown` completes, then drains. [`run`] is this
    /// with a connection from the environment and SIGTERM/Ctrl-C as the shutdown.
    ///
    /// `reconnects` receives a message each time the connection is (re-)established, so the
    /// worker announces itself again; `observer` sees every outcome (for tests).
    ///
    /// [`run`]: Plugin::run
    ///
    /// # Errors
    /// [`PluginError::Setup`] or [`PluginError::Nats`] when the subscription fails.
    pub async fn serve(
        self,
        client: async_nats::Client,
        namespace: Namespace,
        shutdown: impl Future<Output = ()>,
        mut reconnects: Option<mpsc::UnboundedReceiver<()>>,
        observer: Option<mpsc::UnboundedSender<Handled>>,
    ) -> Result<(), PluginError> {
        self.check()?;
        let plugin = Arc::new(self);
        let id = plugin.manifest.plugin.id.clone();
        // One queue group per plugin: each delivery reaches one of its worker processes.
        let mut deliveries = client
            .queue_subscribe(namespace.delivery(&id), id.to_string())
            .await
            .map_err(|e| PluginError::Nats {
                action: "subscribe to the delivery subject",
                reason: e.to_string(),
            })?;
        let hello = namespace.worker_hello(&id);
        say_hello(&client, &hello).await;
        tracing::info!(plugin = %id, "serving deliveries");

        let slots = Arc::new(Semaphore::new(plugin.max_concurrency));
        let handlers = TaskTracker::new();
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                () = &mut shutdown => break,
                slot = Arc::clone(&slots).acquire_owned() => slot.expect("never closed"),
            };
            let message = tokio::select! {
                () = &mut shutdown => break,
                Some(()) = recv(&mut reconnects) => {
                    say_hello(&client, &hello).await;
                    continue;
                }
                message = deliveries.next() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            let (plugin, client, observer) =
                (Arc::clone(&plugin), client.clone(), observer.clone());
            handlers.spawn(async move {
                serve_one(&plugin, &client, message, observer.as_ref()).await;
                drop(slot);
            });
        }

        // Drain: stop taking deliveries (the dispatcher holds or re-routes them), answer the
        // ones already received, and give handlers under way time to finish.
        tracing::info!(plugin = %id, "draining");
        let _ = deliveries.drain().await;
        while let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_secs(1), deliveries.next()).await
        {
            // Still at most `max_concurrency` handlers at once while draining.
            let slot = Arc::clone(&slots)
                .acquire_owned()
                .await
                .expect("never closed");
            let (plugin, client, observer) =
                (Arc::clone(&plugin), client.clone(), observer.clone());
            handlers.spawn(async move {
                serve_one(&plugin, &client, message, observer.as_ref()).await;
                drop(slot);
            });
        }
        handlers.close();
        if tokio::time::timeout(plugin.drain_timeout, handlers.wait())
            .await
            .is_err()
        {
            tracing::warn!(plugin = %id, "handlers still running at the drain timeout; the dispatcher will retry their events");
        }
        let _ = client.flush().await;
        Ok(())
    }
}

async fn recv(receiver: &mut Option<mpsc::UnboundedReceiver<()>>) -> Option<()> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

async fn say_hello(client: &async_nats::Client, subject: &str) {
    if let Err(error) = client
        .publish(subject.to_owned(), bytes::Bytes::new())
        .await
    {
        tracing::debug!(%error, "hello not sent");
    }
}

/// Handles one delivery (or probe) and replies.
async fn serve_one(
    plugin: &Plugin,
    client: &async_nats::Client,
    message: Message,
    observer: Option<&mpsc::UnboundedSender<Handled>>,
) {
    let Some(reply) = message.reply.clone() else {
        return; // Not a request: nobody waits for an answer.
    };
    let headers = message.headers.clone().unwrap_or_default();
    if headers.get(dh::PROBE).is_some() {
        let _ = client.publish(reply, bytes::Bytes::new()).await;
        return;
    }
    let lookup = |name: &str| headers.get(name).map(|v| v.as_str());
    let (event_id, attempt, outcome) = match DeliveryInfo::decode(lookup) {
        Err(error) => (
            None,
            0,
            Outcome::Failed {
                code: ErrorCode::internal(BAD_DELIVERY),
                reason: error.to_string(),
            },
        ),
        Ok(info) => match Event::decode(lookup, message.payload.clone()) {
            Err(error) => (
                None,
                info.attempt,
                Outcome::Failed {
                    code: ErrorCode::internal(error.kind().code()),
                    reason: error.to_string(),
                },
            ),
            Ok(event) => {
                let id = event.attributes.id.clone();
                let attempt = info.attempt;
                let context =
                    Context::new(info, event.attributes.clone(), Arc::clone(&plugin.settings));
                (Some(id), attempt, plugin.handle(event, context).await)
            }
        },
    };
    let (pairs, body) = outcome.to_reply();
    let mut reply_headers = HeaderMap::new();
    for (name, value) in pairs {
        reply_headers.insert(name, value);
    }
    if let Err(error) = client
        .publish_with_headers(reply, reply_headers, body)
        .await
    {
        tracing::warn!(%error, "reply not sent; the dispatcher will retry");
    }
    if let Some(observer) = observer {
        let _ = observer.send(Handled {
            event_id,
            attempt,
            outcome,
        });
    }
}

/// Waits for SIGTERM (how service managers stop a process) or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
