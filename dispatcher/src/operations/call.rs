//! One call, from its arrival to its answer: the pieces of this module composed in order.
//!
//! 1. [`admit`]: who called, for which tenant, with what options and body; refused calls are
//!    answered at once.
//! 2. [`limit`]: the operation's rate and calls in flight.
//! 3. [`attempts`]: forward to one worker, retry only what may be retried, within the time
//!    the caller gave.
//! 4. [`respond`]: the answer goes to the caller's reply subject, which was checked before
//!    anything else was done.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_nats::client::PublishErrorKind;
use async_nats::service::Request;
use async_nats::{HeaderMap, Message, RequestErrorKind, Subject};
use bytes::Bytes;
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use switchyard_bus::header;
use switchyard_control::registry::TenantScope;
use switchyard_schemas::call::{
    header as call_header, CallError, CallErrorKind, CallInfo, CallOptions, CallSubject, Caller,
};
use switchyard_schemas::delivery::{ErrorCode, Outcome};
use switchyard_schemas::manifest::Operation;
use switchyard_schemas::telemetry::{self, attr};
use switchyard_schemas::{ContentType, Namespace, PluginId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::metrics::CallMetrics;
use crate::pipeline::decision::MAX_REQUESTED_DELAY;
use crate::pipeline::rate::RateLimit;
use crate::pipeline::replies::Replies;

/// The content type of a call that names none.
const DEFAULT_CONTENT_TYPE: ContentType = ContentType::Json;
/// The longest pause between two attempts.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// The first pause between two attempts, doubled for each one after.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Everything the calls of one (plugin, operation) share.
#[derive(Debug)]
pub struct OperationPath {
    /// Where requests to the plugin's workers go out and their answers come back.
    pub replies: Arc<Replies>,
    /// The subject the plugin's workers receive calls on.
    pub call_subject: Subject,
    /// The plugin.
    pub plugin: PluginId,
    /// The tenants it is registered for.
    pub tenants: TenantScope,
    /// The operation, as approved.
    pub operation: Operation,
    /// Its rate, if it has one.
    pub rate: Option<RateLimit>,
    /// Its calls in flight.
    pub in_flight: Arc<Semaphore>,
    /// The subject names calls are read with.
    pub namespace: Namespace,
    /// Its OpenTelemetry instruments.
    pub metrics: CallMetrics,
    /// The plugins that may run now (registered, approved, enabled, not failed): a plugin
    /// calls only while it may.
    pub active: Arc<dashmap::DashSet<PluginId>>,
    /// Holds back the warnings about calls whose reply subject is not their caller's: any
    /// caller may send many, and the log must not be theirs to fill.
    pub refused_replies: Throttle,
}

/// How often a warning about unanswered calls is logged at most, per operation.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Lets a warning through at most once per interval, counting the ones it held back.
#[derive(Debug, Default)]
pub struct Throttle {
    last: std::sync::Mutex<Option<Instant>>,
    held: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// `Some(held back since the last one)` when a warning may be logged now.
    fn allow(&self, every: Duration) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let mut last = self.last.lock().expect("not poisoned");
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < every) {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.held.swap(0, Ordering::Relaxed))
    }
}

/// An answer on its way to the caller.
struct Answer {
    result: Result<(Bytes, HeaderMap), CallError>,
    attempts: u32,
    waited: Duration,
}

/// Serves one call end to end. Never fails: every problem is an answer to the caller, except
/// a call whose reply subject is not the caller's own, which is not answered at all (a
/// trusted component never publishes where an untrusted one chose).
pub async fn serve(path: &OperationPath, request: Request) {
    let arrived = Instant::now();
    let message = &request.message;
    let Some(call) = path.namespace.parse_operation_call(&message.subject) else {
        tracing::debug!(subject = %message.subject, "not a call subject; not answered");
        return;
    };
    let Some(reply) = message.reply.as_ref() else {
        return;
    };
    if !path.namespace.is_caller_reply(&call.caller, reply) {
        if let Some(held_back) = path.refused_replies.allow(WARN_EVERY) {
            tracing::warn!(
                caller = %call.caller, %reply, plugin = %path.plugin,
                operation = %path.operation.name, held_back,
                "a call's reply subject is not in its caller's own inbox; not answered \
                 (at most one such line per operation every 10 s; held_back counts the others)"
            );
        }
        path.metrics
            .answered(arrived.elapsed(), "call.bad-reply-subject");
        return;
    }
    let headers = message.headers.as_ref();
    let parent = telemetry::extract(|name| headers.and_then(|h| header(h, name)));
    let cx = telemetry::start(
        &parent,
        SpanKind::Server,
        telemetry::span::SERVE_CALL,
        telemetry::Destination::templated(message.subject.as_str(), &path.namespace),
        || {
            let mut attributes = path.metrics.labels().to_vec();
            attributes.push(KeyValue::new(attr::TENANT, call.tenant.to_string()));
            attributes.push(KeyValue::new(attr::CALLER, call.caller.to_string()));
            attributes.extend(switchyard_bus::server_attributes(path.replies.client()));
            attributes
        },
    );
    let answer = answer(path, &call, message, &cx).await;
    let outcome = match &answer.result {
        Ok(_) => "ok".to_owned(),
        Err(error) => error.code.to_string(),
    };
    telemetry::record(&cx, || {
        vec![
            KeyValue::new(attr::OUTCOME, outcome.clone()),
            KeyValue::new(attr::ATTEMPT, i64::from(answer.attempts)),
        ]
    });
    if let Err(error) = &answer.result {
        telemetry::fail(&cx, error.code.as_str(), || error.reason.clone());
    }
    respond(&request, answer, path.replies.client()).await;
    telemetry::end(&cx);
    path.metrics.answered(arrived.elapsed(), &outcome);
}

/// Admits, limits and attempts the call.
async fn answer(
    path: &OperationPath,
    call: &CallSubject,
    message: &Message,
    cx: &opentelemetry::Context,
) -> Answer {
    let refused = |error| Answer {
        result: Err(error),
        attempts: 0,
        waited: Duration::ZERO,
    };
    let admitted = match admit(path, call, message) {
        Ok(admitted) => admitted,
        Err(error) => return refused(error),
    };
    let _permit = match limit(path) {
        Ok(permit) => permit,
        Err(error) => return refused(error),
    };
    let _in_flight = path.metrics.start();
    attempts(path, call, message, &admitted, cx).await
}

/// What an admitted call asks.
struct Admitted {
    options: CallOptions,
    content_type: ContentType,
}

/// Checks who called, for which tenant, and what the call carries.
fn admit(
    path: &OperationPath,
    call: &CallSubject,
    message: &Message,
) -> Result<Admitted, CallError> {
    let callers = &path.operation.callers;
    let allowed = match &call.caller {
        Caller::Operator(_) => callers.operators,
        Caller::Service(_) => callers.services,
        Caller::Plugin(plugin) => callers.plugins.contains(plugin),
    };
    if !allowed {
        return Err(CallError::new(
            CallErrorKind::Refused,
            format!(
                "{} may not call operation `{}` of plugin `{}`",
                call.caller, path.operation.name, path.plugin
            ),
        ));
    }
    // The broker holds a removed or disabled plugin's live connection to its rights until the
    // auth service replaces it (or its JWT expires); the dispatcher refuses it meanwhile.
    if let Caller::Plugin(caller) = &call.caller {
        if !path.active.contains(caller) {
            return Err(CallError::new(
                CallErrorKind::Refused,
                format!(
                    "plugin `{caller}` may not call now: it is not registered, approved and \
                     enabled"
                ),
            ));
        }
    }
    if !path.tenants.includes(&call.tenant) || !callers.allows_tenant(&call.tenant) {
        return Err(CallError::new(
            CallErrorKind::Refused,
            format!(
                "operation `{}` of plugin `{}` is not offered to tenant `{}`",
                path.operation.name, path.plugin, call.tenant
            ),
        ));
    }
    let headers = message.headers.as_ref();
    let options = CallOptions::decode(headers.and_then(|h| header(h, call_header::CALL)))
        .map_err(|error| CallError::new(CallErrorKind::BadRequest, error.to_string()))?;
    if let Some(version) = &options.version {
        let declared = &path.operation.request;
        if !declared.accepts(version) {
            return Err(CallError::new(
                CallErrorKind::BadRequest,
                format!(
                    "operation `{}` reads {} {}; a request written against {version} is not \
                     readable (same major version, not newer)",
                    path.operation.name, declared.name, declared.version
                ),
            ));
        }
    }
    let content_type = match headers.and_then(|h| header(h, "content-type")) {
        None => DEFAULT_CONTENT_TYPE,
        Some(raw) => ContentType::parse(raw).ok_or_else(|| {
            CallError::new(
                CallErrorKind::BadRequest,
                format!("content-type `{raw}` is neither application/json nor application/msgpack"),
            )
        })?,
    };
    content_type.check(&message.payload).map_err(|error| {
        CallError::new(
            CallErrorKind::BadRequest,
            format!(
                "the request is not well-formed {}: {error}",
                content_type.media_type()
            ),
        )
    })?;
    Ok(Admitted {
        options,
        content_type,
    })
}

/// Takes a turn of the rate and a place among the calls in flight, or says why not.
fn limit(path: &OperationPath) -> Result<OwnedSemaphorePermit, CallError> {
    if let Some(rate) = &path.rate {
        rate.try_acquire().map_err(|wait| {
            let wait = wait.max(Duration::from_millis(1));
            CallError::new(
                CallErrorKind::RateLimited,
                format!(
                    "operation `{}` of plugin `{}` is over its rate of {}",
                    path.operation.name,
                    path.plugin,
                    path.operation
                        .rate
                        .map(|r| r.to_string())
                        .unwrap_or_default()
                ),
            )
            .retry_after(wait)
        })?;
    }
    Arc::clone(&path.in_flight)
        .try_acquire_owned()
        .map_err(|_| {
            CallError::new(
                CallErrorKind::Busy,
                format!(
                    "operation `{}` of plugin `{}` has {} calls under way, its max_in_flight",
                    path.operation.name, path.plugin, path.operation.max_in_flight
                ),
            )
        })
}

/// What one attempt came to.
enum Attempted {
    Answered(Bytes, HeaderMap),
    /// Failed; `retry` says whether another attempt may succeed.
    Failed {
        error: CallError,
        retry: bool,
    },
}

/// Forwards the call to the plugin's workers until it is answered, a failure may not be
/// retried, the attempts the caller allows are spent, or its time is up.
async fn attempts(
    path: &OperationPath,
    call: &CallSubject,
    message: &Message,
    admitted: &Admitted,
    cx: &opentelemetry::Context,
) -> Answer {
    let operation = &path.operation;
    // The caller's whole wait; each attempt is bounded by the operation's timeout too.
    let budget = admitted.options.timeout.unwrap_or(operation.timeout);
    let deadline = Instant::now() + budget;
    // Retries only where calling twice does no harm, and only when the caller asks.
    let max_attempts = if operation.idempotent {
        admitted.options.attempts.unwrap_or(1)
    } else {
        1
    };
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let timeout = remaining.min(operation.timeout);
        let attempted = forward(path, call, message, admitted, attempt, timeout, cx).await;
        let error = match attempted {
            Attempted::Answered(body, headers) => {
                return Answer {
                    result: Ok((body, headers)),
                    attempts: attempt,
                    waited: started.elapsed(),
                }
            }
            Attempted::Failed { error, retry } => {
                let pause = error
                    .retry_after
                    .unwrap_or(FIRST_RETRY_PAUSE * 2u32.saturating_pow(attempt - 1))
                    .min(MAX_RETRY_PAUSE);
                let time_left = deadline.saturating_duration_since(Instant::now());
                if !retry || attempt >= max_attempts || pause >= time_left {
                    error
                } else {
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
        };
        return Answer {
            result: Err(error),
            attempts: attempt,
            waited: started.elapsed(),
        };
    }
}

/// Sends one attempt to one worker and reads its answer.
async fn forward(
    path: &OperationPath,
    call: &CallSubject,
    message: &Message,
    admitted: &Admitted,
    attempt: u32,
    timeout: Duration,
    cx: &opentelemetry::Context,
) -> Attempted {
    let info = CallInfo {
        operation: path.operation.name.clone(),
        tenant: call.tenant.clone(),
        caller: call.caller.clone(),
        attempt,
        deadline: SystemTime::now() + timeout,
        timeout,
    };
    let mut headers = HeaderMap::new();
    headers.insert(call_header::CALL, info.header_value());
    headers.insert("content-type", admitted.content_type.media_type());
    telemetry::inject(cx, |name, value| headers.insert(name, value));
    let sent = path
        .replies
        .request(
            &path.plugin,
            path.call_subject.clone(),
            headers,
            message.payload.clone(),
            timeout,
        )
        .await;
    let name = &path.operation.name;
    let plugin = &path.plugin;
    let reply = match sent {
        Ok(reply) => reply,
        Err(error) => {
            let (kind, reason, retry) = match error.kind() {
                RequestErrorKind::NoResponders => (
                    CallErrorKind::NoWorker,
                    format!("no worker of plugin `{plugin}` is connected"),
                    false,
                ),
                RequestErrorKind::MaxPayloadExceeded => (
                    CallErrorKind::BadRequest,
                    format!(
                        "the request, with the headers that forward it, exceeds the server's \
                         max_payload of {} bytes",
                        path.replies.client().server_info().max_payload
                    ),
                    false,
                ),
                RequestErrorKind::TimedOut => (
                    CallErrorKind::TimedOut,
                    format!(
                        "operation `{name}` of plugin `{plugin}` did not answer within {timeout:?}"
                    ),
                    true,
                ),
                _ => (
                    CallErrorKind::NoWorker,
                    format!("the call could not be sent to plugin `{plugin}`: {error}"),
                    false,
                ),
            };
            return Attempted::Failed {
                error: CallError::new(kind, reason),
                retry,
            };
        }
    };
    let reply_headers = reply.headers.as_ref();
    let outcome = Outcome::from_reply(
        |name| reply_headers.and_then(|h| header(h, name)),
        // The reason of a failure is its body; the response of a success is not read here.
        &reply.payload,
    );
    let bad_reply = |reason: String| Attempted::Failed {
        error: CallError::new(
            CallErrorKind::BadReply,
            format!("plugin `{plugin}` answered against the protocol: {reason}"),
        ),
        retry: true,
    };
    match outcome {
        Ok(Outcome::Done) => {
            // The caller is never handed an answer its decoder cannot read: in the request's
            // content type, well-formed, at most 100 levels deep.
            let expected = admitted.content_type;
            let answered = reply_headers.and_then(|h| header(h, "content-type"));
            if let Some(raw) = answered {
                if ContentType::parse(raw) != Some(expected) {
                    return bad_reply(format!(
                        "its answer is `{raw}`, the call was {}",
                        expected.media_type()
                    ));
                }
            }
            if let Err(error) = expected.check(&reply.payload) {
                return bad_reply(format!(
                    "its answer is not well-formed {}: {error}",
                    expected.media_type()
                ));
            }
            let mut headers = HeaderMap::new();
            headers.insert("content-type", expected.media_type());
            Attempted::Answered(reply.payload, headers)
        }
        // The worker could not read the request: the caller's mistake, typed as such.
        Ok(Outcome::Failed { code, reason })
            if code.as_str() == switchyard_schemas::call::UNDECODABLE_REQUEST =>
        {
            Attempted::Failed {
                error: CallError::new(CallErrorKind::BadRequest, reason),
                retry: false,
            }
        }
        Ok(
            Outcome::Failed { code, .. }
            | Outcome::Retry {
                code: Some(code), ..
            },
        ) if is_reserved(&code) => bad_reply(format!(
            "it answered with `{code}`, a code only dispatchers give"
        )),
        Ok(Outcome::Failed { code, reason }) => Attempted::Failed {
            error: CallError::handler(code, reason),
            retry: false,
        },
        Ok(Outcome::Retry {
            after,
            code,
            reason,
        }) => {
            let code = code.unwrap_or_else(|| ErrorCode::internal("handler.retry"));
            let mut error = CallError::handler(code, reason);
            error.retry_after = after.map(|after| after.min(MAX_REQUESTED_DELAY));
            Attempted::Failed { error, retry: true }
        }
        Err(error) => Attempted::Failed {
            error: CallError::new(
                CallErrorKind::BadReply,
                format!("plugin `{plugin}` answered against the protocol: {error}"),
            ),
            retry: true,
        },
    }
}

/// Whether `code` is one only dispatchers give (`call.…`, `protocol.…`): a handler answering
/// with one could pass its failure off as the dispatcher's refusal.
fn is_reserved(code: &ErrorCode) -> bool {
    ["call.", "protocol."]
        .iter()
        .any(|prefix| code.as_str().starts_with(prefix))
}

/// Sends the answer to the caller. An answer that, with its headers, exceeds the server's
/// `max_payload` is replaced by `protocol.bad-reply` saying so: the caller gets an answer
/// either way.
async fn respond(request: &Request, answer: Answer, client: &async_nats::Client) {
    let (attempts, waited) = (answer.attempts, answer.waited);
    let sent = match answer.result {
        Ok((body, headers)) => {
            let size = body.len();
            match send(request, Ok((body, headers)), attempts, waited).await {
                Err(error) if error.kind() == PublishErrorKind::MaxPayloadExceeded => {
                    // Read only here: the server's information is copied on every read.
                    let max = client.server_info().max_payload;
                    tracing::warn!(
                        size,
                        max,
                        "an answer too large for the server was replaced by an error"
                    );
                    let error = CallError::new(
                        CallErrorKind::BadReply,
                        format!(
                            "the plugin's answer of {size} bytes, with its headers, exceeds the \
                             server's max_payload of {max} bytes"
                        ),
                    );
                    send(request, Err(error), attempts, waited).await
                }
                other => other,
            }
        }
        Err(error) => send(request, Err(error), attempts, waited).await,
    };
    if let Err(error) = sent {
        tracing::debug!(%error, "a call's answer was not sent");
    }
}

/// Publishes one answer: the response with its headers, or an error.
async fn send(
    request: &Request,
    result: Result<(Bytes, HeaderMap), CallError>,
    attempts: u32,
    waited: Duration,
) -> Result<(), async_nats::PublishError> {
    let mut headers = match &result {
        Ok((_, headers)) => headers.clone(),
        Err(_) => HeaderMap::new(),
    };
    headers.insert(call_header::ATTEMPTS, attempts.to_string());
    headers.insert(call_header::DURATION_US, waited.as_micros().to_string());
    match result {
        Ok((body, _)) => request.respond_with_headers(Ok(body), headers).await,
        Err(error) => {
            for (name, value) in error.headers() {
                headers.insert(name, value);
            }
            let micro = async_nats::service::error::Error {
                status: error.reason.clone(),
                code: usize::from(error.kind.status()),
            };
            request.respond_with_headers(Err(micro), headers).await
        }
    }
}
