//! Operations: request/reply calls a plugin answers ([`Plugin::operation`]) and calls it makes
//! to other plugins' operations ([`Context::call`](crate::Context::call),
//! [`ChannelContext::call`](crate::ChannelContext::call), [`CallContext::call`]).
//!
//! A call reaches a worker through a dispatcher, which checked who called, for which tenant,
//! the operation's rate and calls in flight (`docs/operations.md`). The worker decodes the
//! request, runs the handler, and answers with the response encoded as the request was (JSON
//! for a JSON caller, MessagePack for the SDK's); a handler's [`HandlerError`] reaches the
//! caller with its code.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use futures::StreamExt;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use serde::de::DeserializeOwned;
use switchyard_bus::Calls;
use switchyard_schemas::call::{CallError, CallErrorKind, CallInfo, CallOptions, Caller};
use switchyard_schemas::delivery::{header as dh, ErrorCode};
use switchyard_schemas::manifest::toml;
use switchyard_schemas::telemetry::{self, attr};
use switchyard_schemas::{ContentType, OperationName, PluginId, Tenant, TypedEvent};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::channels::{Channels, Link};
use crate::context::{Deadline, SettingsError};
use crate::handler::{catch_panic, HandlerError};
use crate::headers::lookup;
use crate::plugin::Plugin;

/// The code of a call whose request does not decode into the handler's type.
use switchyard_schemas::call::UNDECODABLE_REQUEST;
/// The code of a call of an operation this worker has no handler for.
const NO_OPERATION: &str = "plugin.no-operation";
/// The code of a call whose headers break the protocol.
const BAD_CALL: &str = "protocol.bad-call";
/// The content type of a call that names none.
const DEFAULT_CONTENT_TYPE: ContentType = ContentType::Json;

/// What an operation's handler knows about the call it answers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CallContext {
    inner: Arc<CallInner>,
}

#[derive(Debug)]
struct CallInner {
    info: CallInfo,
    settings: Arc<toml::Table>,
    deadline: Deadline,
    span: tracing::Span,
    link: Option<Arc<Link>>,
}

impl CallContext {
    pub(crate) fn new(info: CallInfo, settings: Arc<toml::Table>, link: Option<Arc<Link>>) -> Self {
        let span = tracing::info_span!(
            "call",
            operation = %info.operation,
            tenant = %info.tenant,
            caller = %info.caller,
            attempt = info.attempt,
            trace_id = tracing::field::Empty,
        );
        Self {
            inner: Arc::new(CallInner {
                deadline: Deadline::at(info.deadline),
                info,
                settings,
                span,
                link,
            }),
        }
    }

    /// A context for calling [`Plugin::handle_call`] in a unit test: tenant `test`, caller
    /// `operator:test`, attempt 1, a 10 s deadline, no settings. Adjust with the builder.
    ///
    /// # Panics
    /// When `operation` is not a valid operation name.
    pub fn for_test(operation: &str) -> CallContextBuilder {
        CallContextBuilder {
            operation: OperationName::new(operation).expect("a valid operation name"),
            tenant: Tenant::new("test").expect("a valid tenant"),
            caller: Caller::Operator("test".to_owned()),
            attempt: 1,
            timeout: Duration::from_secs(10),
            settings: toml::Table::new(),
        }
    }

    /// The operation called.
    pub fn operation(&self) -> &OperationName {
        &self.inner.info.operation
    }

    /// The tenant the call is for (checked by the dispatcher against the plugin's tenants).
    pub fn tenant(&self) -> &Tenant {
        &self.inner.info.tenant
    }

    /// Who called: a plugin or a service (proven by the broker where rights are enforced), or
    /// an operator.
    pub fn caller(&self) -> &Caller {
        &self.inner.info.caller
    }

    /// The attempt: 1, or more when the caller asked for retries of an idempotent operation.
    pub fn attempt(&self) -> u32 {
        self.inner.info.attempt
    }

    /// When the dispatcher stops waiting for the answer.
    pub fn deadline(&self) -> SystemTime {
        self.inner.info.deadline
    }

    /// How long until the deadline (zero once it has passed).
    pub fn time_left(&self) -> Duration {
        self.inner.deadline.time_left()
    }

    /// Completes at the deadline: past it, the caller has its `call.timed-out`, so a handler
    /// can stop work that no longer matters.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn cancelled(&self) {
        self.inner.deadline.reached().await;
    }

    /// Whether the deadline has passed.
    pub fn is_cancelled(&self) -> bool {
        self.inner.deadline.has_passed()
    }

    /// The plugin's settings, read into a type of its own (as [`Context::settings`](crate::Context::settings)).
    ///
    /// # Errors
    /// A [`SettingsError`] naming what does not fit.
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, SettingsError> {
        crate::context::settings_as(&self.inner.settings)
    }

    /// Channels in the call's tenant, continuing its trace.
    pub fn channels(&self) -> Channels {
        Channels::new(
            self.inner.link.clone(),
            self.tenant().clone(),
            opentelemetry::Context::current(),
        )
    }

    /// Calls another plugin's operation in the call's tenant, as this plugin, continuing the
    /// trace. The request goes as MessagePack with its type's schema version; the caller must
    /// be among the operation's `callers`.
    ///
    /// # Errors
    /// A [`CallError`]: the operation's (its handler's code, `call.refused`, `call.no-worker`,
    /// `call.timed-out`, `call.rate-limited`, `call.busy`), `call.unavailable` when no
    /// dispatcher serves it or in a unit-test context, `call.bad-request` for a bad plugin or
    /// operation name, `protocol.bad-reply` for an answer that does not decode.
    pub async fn call<Req: TypedEvent, Res: TypedEvent>(
        &self,
        plugin: &str,
        operation: &str,
        request: &Req,
    ) -> Result<Res, CallError> {
        call(
            self.inner.link.as_ref(),
            self.tenant(),
            plugin,
            operation,
            request,
            CallOptions::default(),
        )
        .await
    }

    /// The tracing span of this call; the handler runs inside it.
    pub fn span(&self) -> &tracing::Span {
        &self.inner.span
    }
}

/// Builds a [`CallContext`] for unit tests; see [`CallContext::for_test`].
#[derive(Debug, Clone)]
#[must_use]
pub struct CallContextBuilder {
    operation: OperationName,
    tenant: Tenant,
    caller: Caller,
    attempt: u32,
    timeout: Duration,
    settings: toml::Table,
}

impl CallContextBuilder {
    /// The tenant.
    pub fn tenant(mut self, tenant: Tenant) -> Self {
        self.tenant = tenant;
        self
    }

    /// The caller.
    pub fn caller(mut self, caller: Caller) -> Self {
        self.caller = caller;
        self
    }

    /// The attempt number.
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The time from now to the deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The plugin's settings.
    pub fn settings(mut self, settings: toml::Table) -> Self {
        self.settings = settings;
        self
    }

    /// Finishes the context.
    pub fn build(self) -> CallContext {
        CallContext::new(
            CallInfo {
                operation: self.operation,
                tenant: self.tenant,
                caller: self.caller,
                attempt: self.attempt,
                deadline: SystemTime::now() + self.timeout,
                timeout: self.timeout,
            },
            Arc::new(self.settings),
            None,
        )
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// An operation's handler with its request and response types erased: bytes in, bytes out,
/// in one content type.
pub(crate) type ErasedOperation = Arc<
    dyn Fn(Bytes, ContentType, CallContext) -> BoxFuture<Result<Bytes, HandlerError>> + Send + Sync,
>;

/// Wraps a typed operation handler: checks and decodes the request, runs the handler with
/// panics caught, encodes the response as the request was.
pub(crate) fn erase<Req, Res, F, Fut>(handler: F) -> ErasedOperation
where
    Req: TypedEvent + Send + 'static,
    Res: TypedEvent + Send + 'static,
    F: Fn(Req, CallContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Res, HandlerError>> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(
        move |body: Bytes, content_type: ContentType, context: CallContext| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                // Checked before decoding, so that a hostile caller cannot overflow the stack.
                let request = content_type
                    .check(&body)
                    .map_err(|e| e.to_string())
                    .and_then(|()| content_type.decode::<Req>(&body))
                    .map_err(|reason| {
                        HandlerError::permanent(
                            UNDECODABLE_REQUEST,
                            format!(
                                "the request is not a {} {}: {reason}",
                                Req::TYPE,
                                Req::SCHEMA_VERSION
                            ),
                        )
                    })?;
                let response = catch_panic(async move { handler(request, context).await }).await?;
                content_type
                    .encode(&response)
                    .map(Bytes::from)
                    .map_err(|reason| {
                        HandlerError::permanent("plugin.unencodable-response", reason)
                    })
            })
        },
    )
}

/// Checks a typed operation handler against the manifest's declaration; the problems found.
pub(crate) fn check_types<Req: TypedEvent, Res: TypedEvent>(
    plugin: &Plugin,
    name: &str,
) -> Vec<String> {
    let Some(declared) = plugin.manifest.operation(name) else {
        return vec![format!(
            "a handler answers operation `{name}`, but the manifest's [[operations]] does not declare it"
        )];
    };
    let mut problems = Vec::new();
    for (what, declared, ty, version) in [
        ("request", &declared.request, Req::TYPE, Req::SCHEMA_VERSION),
        (
            "response",
            &declared.response,
            Res::TYPE,
            Res::SCHEMA_VERSION,
        ),
    ] {
        if declared.name.as_str() != ty || declared.version != version {
            problems.push(format!(
                "operation `{name}`: the handler's {what} is {ty} {version}, the manifest declares {} {}",
                declared.name, declared.version
            ));
        }
    }
    problems
}

/// Calls `operation` of `plugin` for `tenant` over the worker's connection, as the worker's
/// plugin, continuing the current trace. The request goes as MessagePack with its type's
/// schema version.
pub(crate) async fn call<Req: TypedEvent, Res: TypedEvent>(
    link: Option<&Arc<Link>>,
    tenant: &Tenant,
    plugin: &str,
    operation: &str,
    request: &Req,
    options: CallOptions,
) -> Result<Res, CallError> {
    let Some(link) = link else {
        return Err(CallError::new(
            CallErrorKind::Unavailable,
            "not connected: a unit-test context makes no calls",
        ));
    };
    let target = PluginId::new(plugin)
        .map_err(|error| CallError::new(CallErrorKind::BadRequest, error.to_string()))?;
    let caller = Caller::Plugin(link.plugin.clone());
    let subject = link.namespace.operation_call(
        tenant,
        &target,
        &OperationName::new(operation)
            .map_err(|error| CallError::new(CallErrorKind::BadRequest, error.to_string()))?,
        &caller,
    );
    let span = telemetry::start(
        &opentelemetry::Context::current(),
        SpanKind::Client,
        telemetry::span::CALL,
        telemetry::Destination::templated(&subject, &link.namespace),
        || {
            vec![
                KeyValue::new(attr::PLUGIN, target.to_string()),
                KeyValue::new(attr::OPERATION, operation.to_owned()),
                KeyValue::new(attr::TENANT, tenant.to_string()),
                KeyValue::new(attr::CALLER, caller.to_string()),
            ]
        },
    );
    let mut headers = HeaderMap::new();
    telemetry::inject(&span, |name, value| headers.insert(name, value));
    let calls = Calls::new(link.client.clone(), link.namespace.clone(), caller);
    let result = calls
        .call_with(tenant, &target, operation, request, options, headers)
        .await;
    if let Err(error) = &result {
        telemetry::fail(&span, error.code.as_str(), || error.reason.clone());
    }
    telemetry::end(&span);
    result
}

/// Takes calls of the plugin's operations on `{prefix}.call.{plugin}` (one queue group with
/// its other workers), each in one of the worker's concurrency slots, until stopped.
pub(crate) struct CallServer {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl CallServer {
    /// Subscribes; `None` when the plugin answers no operation.
    ///
    /// # Errors
    /// The subscription's error.
    pub(crate) async fn start(
        plugin: Arc<Plugin>,
        link: Arc<Link>,
        slots: Arc<Semaphore>,
        tasks: TaskTracker,
    ) -> Result<Option<Self>, async_nats::SubscribeError> {
        if plugin.operation_handlers.is_empty() {
            return Ok(None);
        }
        let id = link.plugin.clone();
        let mut calls = link
            .client
            .queue_subscribe(link.namespace.call_delivery(&id), id.to_string())
            .await?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    () = stopped.cancelled() => break,
                    message = calls.next() => match message {
                        Some(message) => message,
                        None => break,
                    },
                };
                let slot = tokio::select! {
                    () = stopped.cancelled() => break,
                    slot = Arc::clone(&slots).acquire_owned() => slot.expect("never closed"),
                };
                let (plugin, link) = (Arc::clone(&plugin), Arc::clone(&link));
                tasks.spawn(async move {
                    answer(&plugin, &link, message).await;
                    drop(slot);
                });
            }
            // Dropping the subscriber unsubscribes.
        });
        Ok(Some(Self { stop, task }))
    }

    /// Stops taking calls. Handlers under way go on, on the worker's task tracker.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Handles one call and answers it.
async fn answer(plugin: &Plugin, link: &Arc<Link>, message: Message) {
    let Some(reply) = message.reply.clone() else {
        return;
    };
    let lookup = lookup(message.headers.as_ref());
    let outcome = match CallInfo::decode(lookup(switchyard_schemas::call::header::CALL)) {
        Err(error) => Err(HandlerError::permanent(BAD_CALL, error.to_string())),
        Ok(info) => {
            if let Ok(late) = SystemTime::now().duration_since(info.deadline) {
                if late > crate::worker::DEADLINE_ALLOWANCE {
                    tracing::warn!(operation = %info.operation, ?late, "skipping a call past its deadline");
                    return;
                }
            }
            let content_type = match lookup("content-type") {
                None => Ok(DEFAULT_CONTENT_TYPE),
                Some(raw) => ContentType::parse(raw).ok_or_else(|| {
                    HandlerError::permanent(
                        BAD_CALL,
                        format!("content-type `{raw}` is not one Switchyard reads"),
                    )
                }),
            };
            match content_type {
                Err(error) => Err(error),
                Ok(content_type) => {
                    let result =
                        handle_traced(plugin, link, &message, lookup, info, content_type).await;
                    result.map(|body| (body, content_type))
                }
            }
        }
    };
    let mut headers = HeaderMap::new();
    let body = match outcome {
        Ok((body, content_type)) => {
            headers.insert(dh::OUTCOME, "done");
            headers.insert("content-type", content_type.media_type());
            body
        }
        Err(error) => {
            let (pairs, body) = error.into_outcome().to_reply();
            for (name, value) in pairs {
                headers.insert(name, value);
            }
            body
        }
    };
    if let Err(error) = link.client.publish_with_headers(reply, headers, body).await {
        tracing::warn!(%error, "a call's answer was not sent");
    }
}

/// Runs the operation's handler inside the call's span, a child of the dispatcher's.
async fn handle_traced<'h>(
    plugin: &Plugin,
    link: &Arc<Link>,
    message: &Message,
    lookup: impl Fn(&str) -> Option<&'h str>,
    info: CallInfo,
    content_type: ContentType,
) -> Result<Bytes, HandlerError> {
    let parent = telemetry::extract(lookup);
    let operation = info.operation.clone();
    let cx = telemetry::start(
        &parent,
        SpanKind::Server,
        telemetry::span::HANDLE_CALL,
        telemetry::Destination::new(message.subject.as_str()),
        || {
            let [address, port] = switchyard_bus::server_attributes(&link.client);
            vec![
                address,
                port,
                KeyValue::new(attr::CONSUMER_GROUP, link.plugin.to_string()),
                KeyValue::new(attr::PLUGIN, link.plugin.to_string()),
                KeyValue::new(attr::OPERATION, info.operation.to_string()),
                KeyValue::new(attr::TENANT, info.tenant.to_string()),
                KeyValue::new(attr::CALLER, info.caller.to_string()),
                KeyValue::new(attr::ATTEMPT, i64::from(info.attempt)),
            ]
        },
    );
    let context = CallContext::new(info, plugin.settings.current(), Some(Arc::clone(link)));
    {
        use opentelemetry::trace::TraceContextExt;
        let trace = cx.span().span_context().clone();
        if trace.is_valid() {
            context
                .span()
                .record("trace_id", trace.trace_id().to_string());
        }
    }
    let result = plugin
        .run_operation(
            operation.as_str(),
            message.payload.clone(),
            content_type,
            context,
        )
        .with_context(cx.clone())
        .await;
    let outcome = match &result {
        Ok(_) => "done",
        Err(HandlerError::Retry { .. }) => "retry",
        Err(HandlerError::Permanent { .. }) => "failed",
    };
    telemetry::record(&cx, || vec![KeyValue::new(attr::OUTCOME, outcome)]);
    if let Err(error) = &result {
        let code = match error {
            HandlerError::Retry { code, .. } => {
                code.as_ref().map_or("handler.retry", ErrorCode::as_str)
            }
            HandlerError::Permanent { code, .. } => code.as_str(),
        };
        let reason = match error {
            HandlerError::Retry { reason, .. } | HandlerError::Permanent { reason, .. } => reason,
        };
        telemetry::fail(&cx, code, || reason.clone());
    }
    telemetry::end(&cx);
    result
}

impl Plugin {
    /// Runs the handler of `operation` on an encoded request.
    pub(crate) async fn run_operation(
        &self,
        operation: &str,
        body: Bytes,
        content_type: ContentType,
        context: CallContext,
    ) -> Result<Bytes, HandlerError> {
        let Some(handler) = self.operation_handlers.get(operation) else {
            return Err(HandlerError::permanent(
                NO_OPERATION,
                format!(
                    "plugin `{}` has no handler for operation `{operation}`",
                    self.manifest.plugin.id
                ),
            ));
        };
        let span = context.span().clone();
        tracing::Instrument::instrument(handler(body, content_type, context), span).await
    }

    /// Runs the handler of `operation` on `request` as a worker would (encoded, decoded, panics
    /// caught) and returns its response: for unit tests.
    ///
    /// # Errors
    /// The handler's [`HandlerError`], or the worker's own (`plugin.no-operation`, a request
    /// or response that does not encode).
    pub async fn handle_call<Req: TypedEvent, Res: TypedEvent>(
        &self,
        operation: &str,
        request: &Req,
        context: CallContext,
    ) -> Result<Res, HandlerError> {
        let content_type = ContentType::MessagePack;
        let body = content_type
            .encode(request)
            .map_err(|reason| HandlerError::permanent("plugin.unencodable-request", reason))?;
        let answer = self
            .run_operation(operation, body.into(), content_type, context)
            .await?;
        content_type
            .decode(&answer)
            .map_err(|reason| HandlerError::permanent("plugin.undecodable-response", reason))
    }
}
