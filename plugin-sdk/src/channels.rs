//! Plugin-to-plugin channels: typed messages between plugins, fire-and-forget or
//! request/reply, always within one tenant.
//!
//! A channel message is a CloudEvents message like an event (attributes in headers, data in
//! the body, MessagePack by default) on `{prefix}.channel.{tenant}.{channel}.{sender}`, with
//! the trace context of the handler that sent it. The sender's id in the subject is checked by
//! the broker (a plugin may publish only under its own id), so a receiver knows who sent a
//! message ([`ChannelContext::sender`]); a request's answer goes to
//! `_SY_CHREPLY.{prefix}.{tenant}.{channel}.{sender}.{token}`, where only the sender listens. Which channels a plugin may send on and receive from
//! is its manifest's `[channels]`, as approved by an operator, and the *broker* enforces it
//! (`docs/security.md`): this module only makes a refusal visible. NATS accepts a publish
//! without saying whether the server let it through; here every send waits until the server
//! has processed it, and a refused one comes back as [`ChannelError::PermissionDenied`].
//!
//! - Send from a handler: `ctx.channels().send("alerts", &Alert { .. }).await?` (the
//!   delivery's tenant), or `.request::<Quote, Price>("quotes", &quote, timeout)`.
//! - Receive: [`Plugin::on_channel`](crate::Plugin::on_channel); a handler answers a request
//!   with [`ChannelContext::reply`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use futures::StreamExt;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use serde::Deserialize;
use switchyard_schemas::delivery::Outcome;
use switchyard_schemas::telemetry::{self, attr};
use switchyard_schemas::{
    header, Attributes, ChannelName, ChannelSubject, Event, Namespace, PluginId, Tenant, TypedEvent,
};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handler::{run_caught, HandlerResult};
use crate::headers::lookup;

/// The header of a reply saying that the receiver could not handle the request (its value
/// says why). The reply has no body.
pub const ERROR_HEADER: &str = "switchyard-channel-error";

/// How long a send waits for the server to confirm it processed the message.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a worker waits for the control plane's answer about its rights.
const RIGHTS_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest pause between two attempts to learn the rights.
const MAX_RIGHTS_RETRY: Duration = Duration::from_secs(30);
/// The longest error reason sent back to a requester.
const MAX_REASON: usize = 512;

/// Why a channel operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The channel name is not a valid token.
    #[error("`{name}` is not a valid channel name: {reason}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server refused the publish: the plugin is not granted this channel (for this
    /// tenant), or no longer may answer this request.
    #[error("the server refused to let this plugin publish to `{subject}`: it is not granted (see `switchyard plugins list` and docs/security.md)")]
    PermissionDenied {
        /// The subject refused.
        subject: String,
    },
    /// No plugin receives on the channel (for this tenant) right now.
    #[error("no plugin receives requests on `{subject}`")]
    NoResponders {
        /// The channel's subject.
        subject: String,
    },
    /// No answer came within the timeout.
    #[error("no answer on `{subject}` within {timeout:?}")]
    Timeout {
        /// The channel's subject.
        subject: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// The receiver could not handle the request.
    #[error("the receiver on `{subject}` failed: {reason}")]
    Remote {
        /// The channel's subject.
        subject: String,
        /// What it said.
        reason: String,
    },
    /// The message could not be encoded, or the answer decoded.
    #[error("{0}")]
    Codec(String),
    /// A reply was asked for where none is possible (not a request, replied already, or a
    /// reply subject outside the inboxes).
    #[error("cannot reply: {0}")]
    Reply(&'static str),
    /// The context is not connected to NATS (a unit-test context).
    #[error("channels need a running worker (this context has no NATS connection)")]
    NotConnected,
    /// NATS failed (disconnected, closed).
    #[error("{action}: {reason}")]
    Nats {
        /// What was being done.
        action: &'static str,
        /// What happened.
        reason: String,
    },
}

impl ChannelError {
    /// A short name of the kind of error, for telemetry's `error.type`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Self::BadName { .. } => "bad_name",
            Self::PermissionDenied { .. } => "permission_denied",
            Self::NoResponders { .. } => "no_responders",
            Self::Timeout { .. } => "timeout",
            Self::Remote { .. } => "remote",
            Self::Codec(_) => "codec",
            Self::Reply(_) => "reply",
            Self::NotConnected => "not_connected",
            Self::Nats { .. } => "nats",
        }
    }

    fn nats(action: &'static str) -> impl FnOnce(&dyn std::fmt::Display) -> Self {
        move |error| Self::Nats {
            action,
            reason: error.to_string(),
        }
    }
}

fn channel_name(name: &str) -> Result<ChannelName, ChannelError> {
    ChannelName::new(name).map_err(|e| ChannelError::BadName {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// What the server refused this connection, as it said in a `-ERR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    Publish(String),
    Subscribe(String),
}

/// Reads nats-server's `Permissions Violation for Publish to "subject"` (and `… for
/// Subscription to "subject"[ using queue "q"]`).
pub(crate) fn parse_refusal(text: &str) -> Option<Refused> {
    let rest = text.strip_prefix("Permissions Violation for ")?;
    let quoted = |s: &str| {
        let s = s.strip_prefix('"')?;
        Some(s[..s.find('"')?].to_owned())
    };
    if let Some(rest) = rest.strip_prefix("Publish to ") {
        quoted(rest).map(Refused::Publish)
    } else if let Some(rest) = rest.strip_prefix("Subscription to ") {
        quoted(rest).map(Refused::Subscribe)
    } else {
        None
    }
}

/// The permission violations the server reported on one connection, most recent last. Fed by
/// the connection's event callback; every one is also logged.
#[derive(Debug, Default)]
pub(crate) struct Violations {
    count: AtomicU64,
    recent: Mutex<VecDeque<(u64, Refused)>>,
}

/// How many violations are kept to compare sends against.
const KEEP: usize = 256;

impl Violations {
    /// Records `event` if it is a permission violation.
    pub(crate) fn observe(&self, plugin: &PluginId, event: &async_nats::Event) {
        let async_nats::Event::ServerError(async_nats::ServerError::Other(text)) = event else {
            return;
        };
        let Some(refused) = parse_refusal(text) else {
            return;
        };
        match &refused {
            Refused::Publish(subject) => tracing::warn!(%plugin, %subject,
                "the server refused a publish: this plugin is not granted that subject"),
            Refused::Subscribe(subject) => tracing::warn!(%plugin, %subject,
                "the server refused a subscription: this plugin is not granted that subject"),
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let seq = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        recent.push_back((seq, refused));
        while recent.len() > KEEP {
            recent.pop_front();
        }
    }

    /// A mark to compare later violations against.
    fn mark(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Whether a publish to `subject` was refused after `mark`.
    fn publish_refused_since(&self, mark: u64, subject: &str) -> bool {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(seq, refused)| {
                *seq > mark && matches!(refused, Refused::Publish(s) if s == subject)
            })
    }
}

/// A worker's connection, as channels use it.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) client: async_nats::Client,
    pub(crate) namespace: Namespace,
    pub(crate) plugin: PluginId,
    /// `None` when the connection was made without the SDK's event callback: refusals cannot
    /// be seen then.
    pub(crate) violations: Option<Arc<Violations>>,
}

impl Link {
    fn mark(&self) -> u64 {
        self.violations.as_ref().map_or(0, |v| v.mark())
    }

    /// Waits until the server has processed everything this connection sent before, then
    /// tells whether it refused a publish to `subject` since `mark`.
    ///
    /// The server answers in order on a connection, so once a message this connection sends
    /// to itself (in its own inbox) comes back, any `-ERR` about earlier publishes has arrived
    /// too. (async-nats's `flush` only waits until the bytes are written.)
    async fn confirm(&self, subject: &str, mark: u64) -> Result<(), ChannelError> {
        let Some(violations) = &self.violations else {
            return self
                .client
                .flush()
                .await
                .map_err(|e| ChannelError::nats("flush")(&e));
        };
        let inbox = self.client.new_inbox();
        let mut echo = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| ChannelError::nats("subscribe to the own inbox")(&e))?;
        self.client
            .publish(inbox, Bytes::new())
            .await
            .map_err(|e| ChannelError::nats("publish to the own inbox")(&e))?;
        match tokio::time::timeout(CONFIRM_TIMEOUT, echo.next()).await {
            Ok(Some(_)) => {}
            _ => {
                return Err(ChannelError::Nats {
                    action: "confirm a publish",
                    reason: format!("the server did not answer within {CONFIRM_TIMEOUT:?}"),
                })
            }
        }
        // The connection's event callback runs on a task of its own, woken before this one:
        // give it its turn (a few yields) before concluding that nothing was refused.
        for _ in 0..4 {
            if violations.publish_refused_since(mark, subject) {
                return Err(ChannelError::PermissionDenied {
                    subject: subject.to_owned(),
                });
            }
            tokio::task::yield_now().await;
        }
        if violations.publish_refused_since(mark, subject) {
            return Err(ChannelError::PermissionDenied {
                subject: subject.to_owned(),
            });
        }
        Ok(())
    }

    /// The source of messages this plugin sends.
    fn source(&self) -> String {
        format!("urn:switchyard:plugin:{}", self.plugin)
    }
}

/// Sends and requests on channels, within one tenant. Get one from a handler's context
/// ([`Context::channels`](crate::Context::channels) or [`ChannelContext::channels`]): it is
/// scoped to the tenant of the event or message being handled and continues its trace.
/// Cheap to clone.
#[derive(Clone)]
pub struct Channels {
    link: Option<Arc<Link>>,
    tenant: Tenant,
    parent: opentelemetry::Context,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("tenant", &self.tenant)
            .field("connected", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

impl Channels {
    pub(crate) fn new(
        link: Option<Arc<Link>>,
        tenant: Tenant,
        parent: opentelemetry::Context,
    ) -> Self {
        Self {
            link,
            tenant,
            parent,
        }
    }

    /// The same channels, as children of `parent` in the trace.
    pub(crate) fn with_parent(&self, parent: opentelemetry::Context) -> Self {
        Self {
            parent,
            ..self.clone()
        }
    }

    /// The tenant messages are sent in.
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The worker's connection, when there is one.
    pub(crate) fn link_handle(&self) -> Option<&Arc<Link>> {
        self.link.as_ref()
    }

    /// The same channels for another tenant. The broker decides whether the plugin may:
    /// only tenants it is registered for are granted.
    #[must_use]
    pub fn for_tenant(&self, tenant: Tenant) -> Self {
        Self {
            tenant,
            ..self.clone()
        }
    }

    fn link(&self) -> Result<&Arc<Link>, ChannelError> {
        self.link.as_ref().ok_or(ChannelError::NotConnected)
    }

    /// The headers and body of a message carrying `data`, with the trace of `span`.
    fn encode<T: TypedEvent>(
        &self,
        link: &Link,
        data: &T,
        span: &opentelemetry::Context,
    ) -> Result<(HeaderMap, Bytes), ChannelError> {
        let event = Event::builder(self.tenant.clone(), link.source())
            .build(data)
            .map_err(|e| ChannelError::Codec(e.to_string()))?;
        let mut headers = HeaderMap::new();
        for (name, value) in event.headers() {
            // Channel messages are not stored: no JetStream de-duplication id.
            if name != header::NATS_MSG_ID {
                headers.insert(name, value.as_str());
            }
        }
        telemetry::inject(span, |name, value| headers.insert(name, value.as_str()));
        Ok((headers, event.data))
    }

    fn start_span(
        &self,
        link: &Link,
        subject: &str,
        message_type: &'static str,
    ) -> opentelemetry::Context {
        let tenant = self.tenant.to_string();
        telemetry::start(
            &self.parent,
            SpanKind::Producer,
            telemetry::span::CHANNEL_SEND,
            telemetry::Destination::templated(subject, &link.namespace),
            || {
                let mut attributes = vec![
                    KeyValue::new(attr::PLUGIN, link.plugin.to_string()),
                    KeyValue::new(attr::TENANT, tenant),
                    KeyValue::new(attr::EVENT_TYPE, message_type),
                ];
                attributes.extend(switchyard_bus::server_attributes(&link.client));
                attributes
            },
        )
    }

    /// Sends `message` on `channel` (fire-and-forget: every plugin receiving on it gets it).
    /// Returns once the server has accepted it.
    ///
    /// # Errors
    /// [`ChannelError::PermissionDenied`] when the server refused it (the plugin is not
    /// granted `send` on this channel for this tenant); [`ChannelError::BadName`],
    /// [`ChannelError::Codec`], [`ChannelError::NotConnected`] or [`ChannelError::Nats`].
    ///
    /// # Cancel safety
    /// Not cancel-safe: once cancelled, the message may or may not have been sent.
    pub async fn send<T: TypedEvent>(
        &self,
        channel: &str,
        message: &T,
    ) -> Result<(), ChannelError> {
        let link = self.link()?;
        let subject = link
            .namespace
            .channel(&self.tenant, &channel_name(channel)?, &link.plugin);
        let span = self.start_span(link, &subject, T::TYPE);
        let result = async {
            let (headers, body) = self.encode(link, message, &span)?;
            let mark = link.mark();
            link.client
                .publish_with_headers(subject.clone(), headers, body)
                .await
                .map_err(|e| ChannelError::nats("publish")(&e))?;
            link.confirm(&subject, mark).await
        }
        .await;
        finish_span(&span, &result);
        result
    }

    /// Sends `message` on `channel` as a request and waits up to `timeout` for one plugin's
    /// answer, decoded into `Resp`.
    ///
    /// # Errors
    /// [`ChannelError::PermissionDenied`] when the server refused the request;
    /// [`ChannelError::NoResponders`] when no plugin receives on the channel for this tenant;
    /// [`ChannelError::Timeout`]; [`ChannelError::Remote`] when the receiver failed;
    /// [`ChannelError::Codec`] when the answer is not a `Resp`; and as [`send`](Self::send).
    ///
    /// # Cancel safety
    /// Cancel-safe in that nothing is left behind; the request may have been sent.
    pub async fn request<Req: TypedEvent, Resp: TypedEvent>(
        &self,
        channel: &str,
        message: &Req,
        timeout: Duration,
    ) -> Result<Resp, ChannelError> {
        let link = self.link()?;
        let on = ChannelSubject {
            tenant: self.tenant.clone(),
            channel: channel_name(channel)?,
            sender: link.plugin.clone(),
        };
        let subject = link.namespace.channel(&on.tenant, &on.channel, &on.sender);
        let span = self.start_span(link, &subject, Req::TYPE);
        let result = async {
            let (headers, body) = self.encode(link, message, &span)?;
            // Answers come back where only this plugin may listen, and only the plugins
            // receiving the channel in this tenant may publish.
            let inbox = link
                .namespace
                .channel_reply(&on, &unique_token(&link.client));
            let mut replies = link
                .client
                .subscribe(inbox.clone())
                .await
                .map_err(|e| ChannelError::nats("subscribe for the reply")(&e))?;
            let mark = link.mark();
            link.client
                .publish_with_reply_and_headers(subject.clone(), inbox, headers, body)
                .await
                .map_err(|e| ChannelError::nats("publish")(&e))?;
            link.confirm(&subject, mark).await?;
            let reply = tokio::time::timeout(timeout, replies.next())
                .await
                .map_err(|_| ChannelError::Timeout {
                    subject: subject.clone(),
                    timeout,
                })?
                .ok_or_else(|| ChannelError::Nats {
                    action: "wait for the reply",
                    reason: "the connection closed".to_owned(),
                })?;
            decode_reply(&subject, &reply)
        }
        .await;
        finish_span(&span, &result);
        result
    }
}

fn finish_span<T>(span: &opentelemetry::Context, result: &Result<T, ChannelError>) {
    if let Err(error) = result {
        telemetry::fail(span, error.kind_name(), || error.to_string());
    }
    telemetry::end(span);
}

fn decode_reply<Resp: TypedEvent>(subject: &str, reply: &Message) -> Result<Resp, ChannelError> {
    if reply.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
        return Err(ChannelError::NoResponders {
            subject: subject.to_owned(),
        });
    }
    let lookup = lookup(reply.headers.as_ref());
    if let Some(reason) = lookup(ERROR_HEADER) {
        return Err(ChannelError::Remote {
            subject: subject.to_owned(),
            reason: reason.to_owned(),
        });
    }
    Event::decode(lookup, reply.payload.clone())
        .and_then(|event| event.data_as::<Resp>())
        .map_err(|e| ChannelError::Codec(format!("the reply on `{subject}`: {e}")))
}

/// What a channel handler knows about the message it handles. Cheap to clone.
#[derive(Clone)]
pub struct ChannelContext {
    inner: Arc<ChannelInner>,
}

struct ChannelInner {
    on: ChannelSubject,
    attributes: Attributes,
    reply: Option<String>,
    replied: AtomicBool,
    channels: Channels,
}

impl std::fmt::Debug for ChannelContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelContext")
            .field("channel", &self.inner.on.channel)
            .field("sender", &self.inner.on.sender)
            .field("tenant", &self.inner.channels.tenant)
            .field("id", &self.inner.attributes.id)
            .field("request", &self.is_request())
            .finish_non_exhaustive()
    }
}

impl ChannelContext {
    /// The channel the message came on.
    pub fn channel(&self) -> &ChannelName {
        &self.inner.on.channel
    }

    /// The plugin that sent it, from its subject: the broker lets a plugin publish on a
    /// channel only under its own id, so this is proven, unlike the headers.
    pub fn sender(&self) -> &PluginId {
        &self.inner.on.sender
    }

    /// The tenant it belongs to (from its subject, which the broker checked).
    pub fn tenant(&self) -> &Tenant {
        &self.inner.channels.tenant
    }

    /// Its attributes: id, type, schema version, time, and `source`, which the sending SDK
    /// sets to `urn:switchyard:plugin:{id}`. The attributes are what the sender says; who sent
    /// it is [`sender`](Self::sender).
    pub fn attributes(&self) -> &Attributes {
        &self.inner.attributes
    }

    /// Whether the sender waits for an answer ([`reply`](Self::reply)).
    pub fn is_request(&self) -> bool {
        self.inner.reply.is_some()
    }

    /// Channels in the same tenant, continuing this message's trace.
    pub fn channels(&self) -> Channels {
        self.inner
            .channels
            .with_parent(opentelemetry::Context::current())
    }

    /// Calls a plugin's operation in the message's tenant, continuing its trace (see
    /// [`crate::operations`]).
    ///
    /// # Errors
    /// As [`CallContext::call`](crate::CallContext::call).
    pub async fn call<Req: TypedEvent, Res: TypedEvent>(
        &self,
        plugin: &str,
        operation: &str,
        request: &Req,
    ) -> Result<Res, switchyard_schemas::call::CallError> {
        crate::operations::call(
            self.inner.channels.link_handle(),
            self.tenant(),
            plugin,
            operation,
            request,
            Default::default(),
        )
        .await
    }

    /// Answers the request with `response`. One answer per request.
    ///
    /// # Errors
    /// [`ChannelError::Reply`] when the message is not a request, was answered already, or
    /// asks for the answer anywhere but the sender's reply subject for this channel (a sender
    /// could otherwise make this plugin publish wherever it likes); [`ChannelError::PermissionDenied`] when the server refused
    /// the answer (too late); and as [`Channels::send`].
    pub async fn reply<R: TypedEvent>(&self, response: &R) -> Result<(), ChannelError> {
        let reply = self.claim_reply()?;
        let channels = &self.inner.channels;
        let link = channels.link()?;
        let (headers, body) =
            channels.encode(link, response, &opentelemetry::Context::current())?;
        let mark = link.mark();
        link.client
            .publish_with_headers(reply.to_owned(), headers, body)
            .await
            .map_err(|e| ChannelError::nats("reply")(&e))?;
        link.confirm(reply, mark).await
    }

    fn claim_reply(&self) -> Result<&str, ChannelError> {
        let reply = self
            .inner
            .reply
            .as_deref()
            .ok_or(ChannelError::Reply("the message is not a request"))?;
        let link = self.inner.channels.link()?;
        if !link.namespace.is_channel_reply_for(reply, &self.inner.on) {
            return Err(ChannelError::Reply(
                "the reply subject is not the sender's reply subject for this channel",
            ));
        }
        if self.inner.replied.swap(true, Ordering::SeqCst) {
            return Err(ChannelError::Reply("the request was answered already"));
        }
        Ok(reply)
    }
}

/// A fresh token, unique per request, for a reply subject: the last token of a new inbox
/// (async-nats makes those unique).
fn unique_token(client: &async_nats::Client) -> String {
    let inbox = client.new_inbox();
    inbox.rsplit('.').next().unwrap_or(&inbox).to_owned()
}

/// A channel handler with its message type erased.
pub(crate) type ErasedChannelHandler = Arc<
    dyn Fn(Event, ChannelContext) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// Wraps a typed channel handler: decodes the message, runs the handler with panics caught.
pub(crate) fn erase<T, F, Fut>(handler: F) -> ErasedChannelHandler
where
    T: TypedEvent + Send + 'static,
    F: Fn(T, ChannelContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |event: Event, context: ChannelContext| {
        let handler = Arc::clone(&handler);
        Box::pin(async move {
            let message = event.data_as::<T>().map_err(|e| e.to_string())?;
            match run_caught(async move { handler(message, context).await }).await {
                Outcome::Done => Ok(()),
                Outcome::Retry { reason, .. } | Outcome::Failed { reason, .. } => Err(reason),
            }
        })
    })
}

/// What the control plane says a worker may do (`{prefix}.control.rights.{plugin}`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RightsAnswer {
    Rights {
        tenants: Tenants,
        #[serde(default)]
        receive: Vec<ChannelName>,
    },
    Refused {
        error: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Tenants {
    /// `"all"`.
    All(String),
    Only(Vec<Tenant>),
}

/// Reads a rights answer exactly as a worker does, for the fuzz targets of `fuzz/`; exists
/// only in builds with `--cfg fuzzing`, so it is no part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_rights_answer(payload: &[u8]) -> Result<(), String> {
    match serde_json::from_slice::<RightsAnswer>(payload) {
        Ok(RightsAnswer::Rights { .. }) => Ok(()),
        Ok(RightsAnswer::Refused { error }) => Err(error),
        Err(error) => Err(format!("unreadable rights: {error}")),
    }
}

/// The channel subscriptions of a worker: one per (tenant, channel) it may receive, kept in
/// line with its rights, which it asks the control plane for at start and after every
/// reconnect (a connection is replaced when its rights change).
pub(crate) struct Receivers {
    refresh: Arc<Notify>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Receivers {
    /// Starts receiving for `handlers`; `None` when there are none.
    pub(crate) fn start(
        handlers: BTreeMap<ChannelName, ErasedChannelHandler>,
        link: Arc<Link>,
        slots: Arc<Semaphore>,
        tasks: TaskTracker,
    ) -> Option<Self> {
        if handlers.is_empty() {
            return None;
        }
        let refresh = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let task = tokio::spawn(follow_rights(
            handlers,
            link,
            slots,
            tasks,
            Arc::clone(&refresh),
            stop.clone(),
        ));
        Some(Self {
            refresh,
            stop,
            task,
        })
    }

    /// The connection was re-established: ask for the rights again.
    pub(crate) fn reconnected(&self) {
        self.refresh.notify_one();
    }

    /// Stops taking channel messages (unsubscribes). Handlers under way go on; they run on
    /// the worker's task tracker.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The subjects (subscription filters) to receive on, per channel.
async fn wanted_subjects(
    handlers: &BTreeMap<ChannelName, ErasedChannelHandler>,
    link: &Link,
) -> Result<Vec<(String, ChannelName)>, String> {
    let request = async_nats::Request::new()
        .payload(Bytes::new())
        .timeout(Some(RIGHTS_TIMEOUT));
    let answer = link
        .client
        .send_request(link.namespace.plugin_rights(&link.plugin), request)
        .await;
    let ns = &link.namespace;
    let (tenants, receive) = match answer {
        Ok(answer) => match serde_json::from_slice::<RightsAnswer>(&answer.payload) {
            Ok(RightsAnswer::Rights { tenants, receive }) => (tenants, receive),
            Ok(RightsAnswer::Refused { error }) => return Err(error),
            Err(error) => return Err(format!("unreadable rights: {error}")),
        },
        Err(error) if error.kind() == async_nats::RequestErrorKind::NoResponders => {
            // No control plane answers: the broker does not enforce rights in this
            // deployment (e.g. `switchyard dev`), so every tenant's messages are received.
            tracing::info!(plugin = %link.plugin,
                "no control plane answers rights requests: receiving channels for every tenant (rights are not enforced)");
            return Ok(handlers
                .keys()
                .map(|channel| (ns.channel_filter(None, channel, None), channel.clone()))
                .collect());
        }
        Err(error) => return Err(error.to_string()),
    };
    let mut wanted = Vec::new();
    for channel in handlers.keys() {
        if !receive.contains(channel) {
            tracing::warn!(plugin = %link.plugin, %channel,
                "a handler receives this channel, but the operator has not granted it to the plugin: not subscribed");
            continue;
        }
        match &tenants {
            Tenants::All(all) if all == "all" => {
                wanted.push((ns.channel_filter(None, channel, None), channel.clone()));
            }
            Tenants::All(other) => return Err(format!("unreadable rights: tenants `{other}`")),
            Tenants::Only(tenants) => wanted.extend(tenants.iter().map(|tenant| {
                (
                    ns.channel_filter(Some(tenant), channel, None),
                    channel.clone(),
                )
            })),
        }
    }
    Ok(wanted)
}

async fn follow_rights(
    handlers: BTreeMap<ChannelName, ErasedChannelHandler>,
    link: Arc<Link>,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    refresh: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut running: HashMap<String, (CancellationToken, JoinHandle<()>)> = HashMap::new();
    let mut retry = Duration::from_millis(250);
    loop {
        let pause = match wanted_subjects(&handlers, &link).await {
            Ok(wanted) => {
                retry = Duration::from_millis(250);
                let keep: HashMap<String, ChannelName> = wanted.into_iter().collect();
                running.retain(|subject, (token, _)| {
                    let kept = keep.contains_key(subject);
                    if !kept {
                        token.cancel();
                    }
                    kept
                });
                for (subject, channel) in keep {
                    if running.contains_key(&subject) {
                        continue;
                    }
                    let Some(handler) = handlers.get(&channel).cloned() else {
                        continue;
                    };
                    match link.client.subscribe(subject.clone()).await {
                        Ok(subscriber) => {
                            let token = stop.child_token();
                            let task = tokio::spawn(receive(
                                subscriber,
                                channel,
                                handler,
                                Arc::clone(&link),
                                Arc::clone(&slots),
                                tasks.clone(),
                                token.clone(),
                            ));
                            tracing::info!(plugin = %link.plugin, %subject, "receiving on a channel");
                            running.insert(subject, (token, task));
                        }
                        Err(error) => {
                            tracing::warn!(plugin = %link.plugin, %subject, %error, "cannot subscribe to a channel");
                        }
                    }
                }
                None
            }
            Err(reason) => {
                tracing::warn!(plugin = %link.plugin, %reason, "cannot learn this plugin's rights; retrying");
                let pause = retry;
                retry = (retry * 2).min(MAX_RIGHTS_RETRY);
                Some(pause)
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = refresh.notified() => {}
            () = sleep_or_forever(pause) => {}
        }
    }
    for (_, (token, task)) in running {
        token.cancel();
        let _ = task.await;
    }
}

async fn sleep_or_forever(pause: Option<Duration>) {
    match pause {
        Some(pause) => tokio::time::sleep(pause).await,
        None => std::future::pending().await,
    }
}

/// Takes messages from one subscription and runs the handler on each, at most as many at
/// once as the worker's concurrency allows.
async fn receive(
    mut subscriber: async_nats::Subscriber,
    channel: ChannelName,
    handler: ErasedChannelHandler,
    link: Arc<Link>,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => break,
            message = subscriber.next() => match message {
                Some(message) => message,
                None => break,
            },
        };
        let slot = tokio::select! {
            () = stop.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot.expect("never closed"),
        };
        let (link, handler, channel) = (Arc::clone(&link), Arc::clone(&handler), channel.clone());
        tasks.spawn(async move {
            handle_message(&link, &channel, &handler, message).await;
            drop(slot);
        });
    }
    // Dropping the subscriber unsubscribes.
}

async fn handle_message(
    link: &Arc<Link>,
    channel: &ChannelName,
    handler: &ErasedChannelHandler,
    message: Message,
) {
    let lookup = lookup(message.headers.as_ref());
    let Some(on) = link.namespace.parse_channel(message.subject.as_str()) else {
        return;
    };
    let tenant = on.tenant.clone();
    let event = match Event::decode(lookup, message.payload.clone()) {
        // The subject's tenant is the one the broker checked: a header saying otherwise is
        // not believed.
        Ok(event) if event.attributes.tenant == tenant => event,
        Ok(event) => {
            let reason = format!(
                "the message says tenant `{}` but came on `{}`",
                event.attributes.tenant, message.subject
            );
            tracing::warn!(plugin = %link.plugin, %channel, %reason, "channel message refused");
            answer_error(link, &on, message.reply.as_deref(), &reason).await;
            return;
        }
        Err(error) => {
            tracing::warn!(plugin = %link.plugin, %channel, %error, "undecodable channel message");
            answer_error(link, &on, message.reply.as_deref(), &error.to_string()).await;
            return;
        }
    };
    let parent = telemetry::extract(lookup);
    let span = telemetry::start(
        &parent,
        SpanKind::Consumer,
        telemetry::span::CHANNEL_RECEIVE,
        telemetry::Destination::templated(message.subject.as_str(), &link.namespace),
        || {
            vec![
                KeyValue::new(attr::PLUGIN, link.plugin.to_string()),
                KeyValue::new(attr::TENANT, tenant.to_string()),
                KeyValue::new(attr::MESSAGE_ID, event.attributes.id.to_string()),
                KeyValue::new(attr::EVENT_TYPE, event.attributes.event_type.to_string()),
            ]
        },
    );
    let context = ChannelContext {
        inner: Arc::new(ChannelInner {
            on: on.clone(),
            attributes: event.attributes.clone(),
            reply: message.reply.as_ref().map(|r| r.to_string()),
            replied: AtomicBool::new(false),
            channels: Channels::new(Some(Arc::clone(link)), tenant, span.clone()),
        }),
    };
    let result = handler(event, context.clone())
        .with_context(span.clone())
        .await;
    if let Err(reason) = result {
        telemetry::fail(&span, "handler_failed", || reason.clone());
        tracing::warn!(plugin = %link.plugin, %channel, %reason, "channel handler failed");
        if context.claim_reply().is_ok() {
            answer_error(link, &on, context.inner.reply.as_deref(), &reason).await;
        }
    }
    telemetry::end(&span);
}

/// Tells a requester that its request could not be handled.
async fn answer_error(link: &Link, on: &ChannelSubject, reply: Option<&str>, reason: &str) {
    let Some(reply) = reply.filter(|r| link.namespace.is_channel_reply_for(r, on)) else {
        return;
    };
    let mut reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if reason.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    let mut headers = HeaderMap::new();
    headers.insert(ERROR_HEADER, reason.as_str());
    if let Err(error) = link
        .client
        .publish_with_headers(reply.to_owned(), headers, Bytes::new())
        .await
    {
        tracing::debug!(%error, "error answer not sent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_servers_refusals() {
        assert_eq!(
            parse_refusal(r#"Permissions Violation for Publish to "switchyard.channel.acme.x""#),
            Some(Refused::Publish("switchyard.channel.acme.x".to_owned()))
        );
        assert_eq!(
            parse_refusal(r#"Permissions Violation for Subscription to "a.>" using queue "q""#),
            Some(Refused::Subscribe("a.>".to_owned()))
        );
        assert_eq!(parse_refusal("Authorization Violation"), None);
        assert_eq!(
            parse_refusal(r#"Permissions Violation for Publish with Reply of "_R_.x""#),
            None
        );
    }

    #[test]
    fn violations_are_matched_to_later_sends_only() {
        let violations = Violations::default();
        let plugin = PluginId::new("p").unwrap();
        let refused = |subject: &str| {
            async_nats::Event::ServerError(async_nats::ServerError::Other(format!(
                "Permissions Violation for Publish to \"{subject}\""
            )))
        };
        violations.observe(&plugin, &refused("a"));
        let mark = violations.mark();
        assert!(!violations.publish_refused_since(mark, "a"));
        violations.observe(&plugin, &refused("b"));
        assert!(violations.publish_refused_since(mark, "b"));
        assert!(!violations.publish_refused_since(mark, "a"));
        for n in 0..(KEEP + 10) {
            violations.observe(&plugin, &refused(&n.to_string()));
        }
        assert_eq!(violations.recent.lock().unwrap().len(), KEEP);
    }
}
