//! The worker: serves a plugin's deliveries from NATS until told to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::{HeaderMap, Message};
use futures::stream::{FusedStream, FuturesUnordered, StreamExt};
use switchyard_schemas::delivery::{header as dh, DeliveryInfo, ErrorCode, Outcome};
use switchyard_schemas::{Event, EventId, Namespace};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::task::TaskTracker;

use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use switchyard_schemas::telemetry::{self, attr};

use crate::context::Context;
use crate::headers::lookup;
use crate::plugin::{Plugin, PluginError};

/// The code of a delivery whose headers break the protocol.
const BAD_DELIVERY: &str = "protocol.bad-delivery";
/// The `error.type` of a handler's retry that gave no code (the dispatcher's code for it).
const RETRY_WITHOUT_CODE: &str = "handler.retry";

/// What a worker did with one delivery; seen by [`crate::testing`] observers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The event's id.
    pub event_id: Option<EventId>,
    /// The attempt number.
    pub attempt: u32,
    /// The reply sent.
    pub outcome: Outcome,
    /// How late a delivery was that arrived after its deadline: its handler was not run and
    /// no reply was sent (the dispatcher had already counted the attempt as timed out).
    pub expired: Option<Duration>,
}

/// How far past its deadline a delivery may arrive and still be handled: room for clocks a
/// little apart. Keep the dispatcher's and the workers' clocks synchronized (NTP).
pub(crate) const DEADLINE_ALLOWANCE: Duration = Duration::from_secs(1);

/// How late a delivery is at `now`, when it is past its deadline by more than
/// [`DEADLINE_ALLOWANCE`].
fn expired_by(deadline: SystemTime, now: SystemTime) -> Option<Duration> {
    now.duration_since(deadline)
        .ok()
        .filter(|late| *late > DEADLINE_ALLOWANCE)
}

/// Environment variables [`Plugin::run`] reads.
pub use switchyard_schemas::worker_env as env;

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
        #[cfg(feature = "otlp")]
        let _telemetry = crate::telemetry::init_from_env(&crate::telemetry::ServiceIdentity::new(
            self.manifest.plugin.id.as_str(),
            self.manifest.plugin.version.to_string(),
        ))
        .map_err(|e| PluginError::Nats {
            action: "set up telemetry export",
            reason: e.to_string(),
        })?;
        let settings = crate::connect::WorkerSettings::from_env()?;
        self.run_with(settings, stop_signal()).await
    }

    /// Serves deliveries on `client` until `shutdown` completes, then drains. [`run`] is this
    /// with a connection from the environment and SIGTERM/Ctrl-C as the shutdown.
    ///
    /// `reconnects` receives a message each time the connection is (re-)established, so the
    /// worker announces itself again (and asks for its channel rights again); `observer` sees
    /// every outcome (for tests). Channel handlers ([`Plugin::on_channel`]) are served too. A
    /// client connected elsewhere than in [`Plugin::run_with`] does not report what the server
    /// refuses, so channel sends on it cannot return
    /// [`ChannelError::PermissionDenied`](crate::ChannelError::PermissionDenied). Operations
    /// its handlers call (`ctx.call`) are answered only in the plugin's own inbox: connect the
    /// client with `custom_inbox_prefix(namespace.plugin_inbox_prefix(&id))`, as
    /// [`Plugin::run_with`] does.
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
        let mut this = self;
        this.handle_duration = crate::plugin::handle_duration();
        let link = Arc::new(crate::channels::Link {
            client: client.clone(),
            namespace: namespace.clone(),
            plugin: this.manifest.plugin.id.clone(),
            violations: this.violations.take(),
        });
        this.link = Some(Arc::clone(&link));
        let plugin = Arc::new(this);
        let id = plugin.manifest.plugin.id.clone();
        // One queue group per plugin: each delivery reaches one of its worker processes.
        let mut deliveries = client
            .queue_subscribe(namespace.delivery(&id), id.to_string())
            .await
            .map_err(|e| PluginError::Nats {
                action: "subscribe to the delivery subject",
                reason: e.to_string(),
            })?;
        // Before the hello, so that no change sent after its answer is missed.
        let settings_updates = client
            .subscribe(namespace.plugin_settings(&id))
            .await
            .map_err(|e| PluginError::Nats {
                action: "subscribe to the plugin's settings",
                reason: e.to_string(),
            })?;
        let settings_listener = tokio::spawn(crate::settings::listen(
            settings_updates,
            Arc::clone(&plugin.settings),
        ));
        let hello = Greeting {
            subject: namespace.worker_hello(&id),
            body: hello_body(&plugin.manifest.plugin.version.to_string(), &client),
            settings: Arc::clone(&plugin.settings),
        };
        // The first answer is awaited (briefly): it carries what the operator set, which the
        // first deliveries must already see (an API key, say).
        hello_and_answer(client.clone(), hello.clone()).await;
        tracing::info!(plugin = %id, "serving deliveries");
        let _heartbeats = AbortOnDrop(tokio::spawn(heartbeats(
            client.clone(),
            hello.subject.clone(),
        )));

        let slots = Arc::new(Semaphore::new(plugin.max_concurrency));
        let handlers = TaskTracker::new();
        let receivers = crate::channels::Receivers::start(
            plugin.channel_handlers.clone(),
            Arc::clone(&link),
            Arc::clone(&slots),
            handlers.clone(),
        );
        let calls = crate::operations::CallServer::start(
            Arc::clone(&plugin),
            link,
            Arc::clone(&slots),
            handlers.clone(),
        )
        .await
        .map_err(|e| PluginError::Nats {
            action: "subscribe to the calls of its operations",
            reason: e.to_string(),
        })?;
        let observer = observer.as_ref();
        // The deliveries under way run on this task, not one task each: the ones that finish
        // together send their replies together, and the replies leave in one write instead
        // of one each (docs/performance.md).
        let mut under_way = FuturesUnordered::new();
        // A delivery received when the shutdown came, before a slot was free: served first
        // while draining.
        let mut in_hand = None;
        tokio::pin!(shutdown);
        loop {
            let message = tokio::select! {
                () = &mut shutdown => break,
                Some(()) = recv(&mut reconnects) => {
                    say_hello(&client, &hello);
                    if let Some(receivers) = &receivers {
                        receivers.reconnected();
                    }
                    continue;
                }
                message = serving(&mut under_way, deliveries.next()) => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            // Taken once a delivery is in hand, not while waiting for one: a slot held by an
            // idle delivery subscription would be one fewer for calls and channel messages
            // (with `max_concurrency(1)`, none). Meanwhile further deliveries wait in the
            // subscription.
            let slot = tokio::select! {
                () = &mut shutdown => {
                    in_hand = Some(message);
                    break;
                }
                slot = serving(&mut under_way, Arc::clone(&slots).acquire_owned()) => {
                    slot.expect("never closed")
                }
            };
            under_way.push(serve_in_slot(&plugin, &client, message, observer, slot));
        }

        // Drain: stop taking deliveries (the dispatcher holds or re-routes them), answer the
        // ones already received, and give handlers under way time to finish.
        tracing::info!(plugin = %id, "draining");
        if let Some(receivers) = receivers {
            receivers.stop().await;
        }
        if let Some(calls) = calls {
            calls.stop().await;
        }
        let _ = deliveries.drain().await;
        if let Some(message) = in_hand.take() {
            let slot = serving(&mut under_way, Arc::clone(&slots).acquire_owned())
                .await
                .expect("never closed");
            under_way.push(serve_in_slot(&plugin, &client, message, observer, slot));
        }
        while let Ok(Some(message)) = serving(
            &mut under_way,
            tokio::time::timeout(Duration::from_secs(1), deliveries.next()),
        )
        .await
        {
            // Still at most `max_concurrency` handlers at once while draining.
            let slot = serving(&mut under_way, Arc::clone(&slots).acquire_owned())
                .await
                .expect("never closed");
            under_way.push(serve_in_slot(&plugin, &client, message, observer, slot));
        }
        handlers.close();
        let finished = async {
            while under_way.next().await.is_some() {}
            handlers.wait().await;
        };
        if tokio::time::timeout(plugin.drain_timeout, finished)
            .await
            .is_err()
        {
            tracing::warn!(plugin = %id, "handlers still running at the drain timeout; the dispatcher will retry their events");
        }
        settings_listener.abort();
        let _ = client.flush().await;
        Ok(())
    }
}

/// Awaits `future` while driving the deliveries under way.
async fn serving<F: Future>(
    under_way: &mut (impl FusedStream<Item = ()> + Unpin),
    future: F,
) -> F::Output {
    tokio::pin!(future);
    loop {
        tokio::select! {
            biased;
            output = &mut future => return output,
            Some(()) = under_way.next(), if !under_way.is_terminated() => {}
        }
    }
}

/// Handles one delivery in one of the worker's concurrency slots.
async fn serve_in_slot(
    plugin: &Plugin,
    client: &async_nats::Client,
    message: Message,
    observer: Option<&mpsc::UnboundedSender<Handled>>,
    _slot: OwnedSemaphorePermit,
) {
    serve_one(plugin, client, message, observer).await;
}

async fn recv(receiver: &mut Option<mpsc::UnboundedReceiver<()>>) -> Option<()> {
    match receiver {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}

/// A worker's hello: where it goes and what it says, and the settings its answer updates.
#[derive(Clone)]
struct Greeting {
    subject: String,
    body: bytes::Bytes,
    settings: Arc<crate::settings::LiveSettings>,
}

/// How often a worker says it is alive: a hello without a version, which a host reads as a
/// heartbeat (its `[run] heartbeat_timeout` is a few of these) and a dispatcher as presence.
pub(crate) const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// Sends a heartbeat on `subject` every [`HEARTBEAT_INTERVAL`] while the worker runs: sent from
/// the worker's runtime, it stops when the runtime is stuck or the process frozen.
async fn heartbeats(client: async_nats::Client, subject: String) {
    let body: bytes::Bytes = serde_json::to_vec(&switchyard_schemas::delivery::Hello {
        version: None,
        instance: Some(instance_name(&client)),
    })
    .unwrap_or_default()
    .into();
    let mut ticks = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(error) = client.publish(subject.clone(), body.clone()).await {
            tracing::debug!(%error, "a heartbeat was not sent");
        }
    }
}

/// Aborts its task when dropped: the heartbeats end with the worker's serving.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a worker waits for a dispatcher's answer to its hello.
const HELLO_ANSWER_WAIT: Duration = Duration::from_secs(2);

/// The hello's body: the plugin's version and which process this is.
fn hello_body(version: &str, client: &async_nats::Client) -> bytes::Bytes {
    let hello = switchyard_schemas::delivery::Hello {
        version: Some(version.to_owned()),
        instance: Some(instance_name(client)),
    };
    serde_json::to_vec(&hello).unwrap_or_default().into()
}

/// Which worker this is: the instance a host named (first, then a space), and the process and
/// connection.
fn instance_name(client: &async_nats::Client) -> String {
    let process = format!(
        "pid {} client {}",
        std::process::id(),
        client.server_info().client_id
    );
    match std::env::var(env::INSTANCE) {
        Ok(name) if !name.is_empty() => format!("{name} {process}"),
        _ => process,
    }
}

/// Says hello (held events then flow at once) and, in the background, hears whether the
/// registered version is this one (a worker of another version is told so, and logs it) and
/// what the operator set.
fn say_hello(client: &async_nats::Client, hello: &Greeting) {
    tokio::spawn(hello_and_answer(client.clone(), hello.clone()));
}

/// Says hello and hears the answer (at most [`HELLO_ANSWER_WAIT`]).
async fn hello_and_answer(client: async_nats::Client, hello: Greeting) {
    let Greeting {
        subject,
        body,
        settings,
    } = hello;
    let asked = client.request(subject, body);
    // No dispatcher, no answer, or an answer this worker cannot read: nothing to say.
    let Ok(Ok(reply)) = tokio::time::timeout(HELLO_ANSWER_WAIT, asked).await else {
        return;
    };
    let Ok(answer) =
        serde_json::from_slice::<switchyard_schemas::delivery::HelloAnswer>(&reply.payload)
    else {
        return;
    };
    if let Some(update) = answer.settings {
        settings.apply(update);
    }
    if !answer.matches {
        tracing::error!(
            registered_version = %answer.registered_version,
            dispatcher = %answer.dispatcher,
            "this worker's plugin version is not the registered one: deploy the registered version, or upgrade the registration (`switchyard plugins add`)"
        );
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
    // Borrowed, not cloned: copying the map was a tenth of the worker's time per message.
    let lookup = lookup(message.headers.as_ref());
    if lookup(dh::PROBE).is_some() {
        let _ = client.publish(reply, bytes::Bytes::new()).await;
        return;
    }
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
                if let Some(late) = expired_by(info.deadline, SystemTime::now()) {
                    // A worker that was paused (or whose queue was long) gets deliveries the
                    // dispatcher has already timed out; running them would repeat work the
                    // retry will do again.
                    tracing::warn!(
                        plugin = %info.plugin,
                        event_id = %id,
                        attempt,
                        ?late,
                        "skipping a delivery past its deadline; the dispatcher retries or dead-letters it"
                    );
                    if let Some(observer) = observer {
                        let _ = observer.send(Handled {
                            event_id: Some(id),
                            attempt,
                            outcome: Outcome::Retry {
                                after: None,
                                code: None,
                                reason: "past its deadline".to_owned(),
                            },
                            expired: Some(late),
                        });
                    }
                    return;
                }
                let outcome = handle_traced(plugin, client, &message, lookup, info, event).await;
                (Some(id), attempt, outcome)
            }
        },
    };
    let (pairs, body) = outcome.to_reply();
    let mut reply_headers = HeaderMap::new();
    for (name, value) in pairs {
        // A static name is used as it is; one given as `&str` would be copied per insert.
        reply_headers.insert(async_nats::HeaderName::from_static(name), value);
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
            expired: None,
        });
    }
}

/// Runs the handler inside the delivery's span: a child of the dispatcher's `send` span, whose
/// context the delivery's headers carry, and current while the handler runs, so that channel
/// messages it sends continue the trace.
async fn handle_traced<'h>(
    plugin: &Plugin,
    client: &async_nats::Client,
    message: &Message,
    lookup: impl Fn(&str) -> Option<&'h str>,
    info: DeliveryInfo,
    event: Event,
) -> Outcome {
    let parent = telemetry::extract(lookup);
    let cx = telemetry::start(
        &parent,
        SpanKind::Consumer,
        telemetry::span::HANDLE,
        telemetry::Destination::new(message.subject.as_str()),
        || {
            let [address, port] = switchyard_bus::server_attributes(client);
            vec![
                address,
                port,
                // The workers of a plugin share its deliveries as one queue group.
                KeyValue::new(attr::CONSUMER_GROUP, info.plugin.to_string()),
                KeyValue::new(attr::PLUGIN, info.plugin.to_string()),
                KeyValue::new(attr::SUBSCRIPTION, info.subscription.clone()),
                KeyValue::new(attr::ATTEMPT, i64::from(info.attempt)),
                KeyValue::new(attr::MESSAGE_ID, event.attributes.id.to_string()),
            ]
        },
    );
    let [plugin_label, subscription_label] = plugin
        .metric_labels
        .get(&info.subscription)
        .cloned()
        .unwrap_or_else(|| {
            // A subscription this worker's manifest does not know (the registered manifest
            // differs): label it all the same.
            [
                KeyValue::new(attr::PLUGIN, info.plugin.to_string()),
                KeyValue::new(attr::SUBSCRIPTION, info.subscription.clone()),
            ]
        });
    let context = Context::new(info, event.attributes.clone(), plugin.settings.current())
        .with_channels(plugin.channels_for(&event.attributes.tenant));
    {
        use opentelemetry::trace::TraceContextExt;
        let span = cx.span();
        let trace = span.span_context();
        // Log lines inside the handler then lead to the trace.
        if trace.is_valid() {
            context
                .span()
                .record("trace_id", trace.trace_id().to_string());
        }
    }
    let started = std::time::Instant::now();
    let outcome = plugin.handle(event, context).with_context(cx.clone()).await;
    let name = outcome_name(&outcome);
    plugin.handle_duration.record(
        started.elapsed().as_secs_f64(),
        &[
            plugin_label,
            subscription_label,
            KeyValue::new(attr::OUTCOME, name),
        ],
    );
    telemetry::record(&cx, || vec![KeyValue::new(attr::OUTCOME, name)]);
    match &outcome {
        Outcome::Done => {}
        Outcome::Failed { code, reason } => telemetry::fail(&cx, code.as_str(), || reason.clone()),
        Outcome::Retry { code, reason, .. } => telemetry::fail(
            &cx,
            code.as_ref().map_or(RETRY_WITHOUT_CODE, ErrorCode::as_str),
            || reason.clone(),
        ),
    }
    telemetry::end(&cx);
    outcome
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Done => "done",
        Outcome::Retry { .. } => "retry",
        Outcome::Failed { .. } => "failed",
    }
}

/// Waits for SIGTERM (how service managers stop a process) or Ctrl-C: the shutdown that
/// [`Plugin::run`] uses, for binaries that call [`Plugin::serve`] or run other long-lived
/// parts themselves.
///
/// # Cancel safety
/// Cancel-safe.
pub async fn stop_signal() {
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
