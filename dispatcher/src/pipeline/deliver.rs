//! One delivery, start to settlement: the pieces of this module composed in order.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, AckKind};
use async_nats::{HeaderMap, RequestErrorKind};
use opentelemetry::trace::SpanKind;
use opentelemetry::KeyValue;
use switchyard_bus::header;
use switchyard_schemas::delivery::{header as dh, DeliveryInfo, ErrorCode, Outcome};
use switchyard_schemas::manifest::Subscription;
use switchyard_schemas::telemetry::{self, attr};
use switchyard_schemas::{header as ce, Namespace, PluginId};
use time::OffsetDateTime;

use super::breaker::CircuitBreaker;
use super::decision::{codes, decide, Action, AttemptResult};
use super::keepalive::keep_alive;
use super::presence::Presence;
use super::rate::RateLimit;
use super::replies::Replies;
use super::screen::{screen, Refused};
use crate::dead_letter::{DeadLetterWriter, Failure, Original};
use crate::raw::RawReader;

/// The delivery header's name, built once: a name given as text is copied into a new
/// allocation on every insert.
const DELIVERY_HEADER: async_nats::HeaderName = async_nats::HeaderName::from_static(dh::DELIVERY);
/// How long an event whose dead letter could not be stored waits before it comes back.
const DEAD_LETTER_RETRY: Duration = Duration::from_secs(5);
/// How long an event waits after the request itself failed (not the worker's fault).
const REQUEST_FAILURE_RETRY: Duration = Duration::from_secs(1);

/// Everything the deliveries of one (plugin, subscription) share.
#[derive(Debug)]
pub struct DeliveryPath {
    /// Where requests to the plugin's workers go out and their answers come back.
    pub replies: Arc<Replies>,
    /// The subject the plugin's workers listen on, built once: cloning it per attempt only
    /// bumps a reference count.
    pub delivery_subject: async_nats::Subject,
    /// The plugin.
    pub plugin: PluginId,
    /// The subscription, with its resolved policy.
    pub subscription: Subscription,
    /// Opens after consecutive failures.
    pub breaker: Arc<CircuitBreaker>,
    /// The subscription's rate limit, if it has one.
    pub rate: Option<RateLimit>,
    /// Whether the plugin's workers are connected; shared by its subscriptions.
    pub presence: Arc<Presence>,
    /// Where exhausted and permanent failures go.
    pub dead_letters: DeadLetterWriter,
    /// The subject names events are checked against.
    pub namespace: Namespace,
    /// Reads stored events whose header block the client could not read.
    pub raw: RawReader,
    /// How often a held event's ack wait is extended.
    pub keepalive_interval: Duration,
    /// The events held here (under way or waiting for a retry), by stream sequence.
    pub in_hand: super::in_hand::InHand,
    /// Counters of the settled deliveries.
    pub stats: super::stats::DeliveryStats,
    /// The subscription's OpenTelemetry instruments.
    pub metrics: super::metrics::PathMetrics,
}

/// How a delivery was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Acknowledged: the plugin handled it.
    Acked,
    /// Negative-acknowledged; JetStream redelivers it after the delay.
    Retried {
        /// The delay.
        delay: Duration,
    },
    /// Stored as a dead letter, then acknowledged.
    DeadLettered {
        /// The error code.
        code: ErrorCode,
    },
    /// Left un-acknowledged (the acknowledgement itself failed); JetStream redelivers it.
    Unsettled,
}

impl Settled {
    /// The outcome's name in telemetry.
    pub fn name(&self) -> &'static str {
        match self {
            Settled::Acked => "acked",
            Settled::Retried { .. } => "retried",
            Settled::DeadLettered { .. } => "dead_lettered",
            Settled::Unsettled => "unsettled",
        }
    }
}

/// What happened to the request of one attempt.
enum Sent {
    Result(AttemptResult),
    /// The request failed for a reason that is not the plugin's (e.g. a disconnect).
    Unsent(String),
    /// The event with the delivery's headers exceeds the server's `max_payload`: no attempt
    /// can ever be sent.
    TooLarge(String),
}

/// Delivers one pulled message to the plugin and settles it. Never fails: every problem
/// becomes a retry, a dead letter, or (when even that cannot be stored) a redelivery.
pub async fn deliver(path: &DeliveryPath, message: jetstream::Message) -> Settled {
    let (sequence, attempt) = match message.info() {
        Ok(info) => (
            info.stream_sequence,
            u32::try_from(info.delivered).unwrap_or(u32::MAX),
        ),
        Err(error) => {
            tracing::warn!(%error, "message without JetStream metadata; leaving it");
            return Settled::Unsettled;
        }
    };

    // Each attempt is a span in the event's trace: its parent is the publisher's span, carried
    // in the event's headers, so every retry and the dead letter land in the same trace.
    let headers = message.headers.as_ref();
    let parent = telemetry::extract(|name| headers.and_then(|h| header(h, name)));
    let cx = telemetry::start(
        &parent,
        SpanKind::Consumer,
        telemetry::span::DISPATCH,
        telemetry::Destination::templated(message.subject.as_str(), &path.namespace),
        || {
            let mut attributes = path.metrics.labels().to_vec();
            attributes.extend(switchyard_bus::server_attributes(path.replies.client()));
            attributes.push(KeyValue::new(
                attr::CONSUMER_GROUP,
                crate::consumer::consumer_name(&path.plugin, path.subscription.name.as_str()),
            ));
            attributes.push(KeyValue::new(attr::ATTEMPT, i64::from(attempt)));
            if let Some(id) = headers.and_then(|h| header(h, ce::ID)) {
                attributes.push(KeyValue::new(attr::MESSAGE_ID, id.to_owned()));
            }
            attributes
        },
    );
    path.in_hand.attempting(sequence, attempt);
    let settled = process(path, &message, sequence, attempt, &cx).await;
    match &settled {
        Settled::Acked | Settled::DeadLettered { .. } => {
            path.in_hand.settled(sequence);
        }
        // Marked as waiting where the retry was decided, with its reason.
        Settled::Retried { .. } => {}
        Settled::Unsettled => path.in_hand.unsettled(
            sequence,
            path.subscription.policy.timeout + crate::consumer::ACK_WAIT_MARGIN,
        ),
    }
    telemetry::record(&cx, || {
        let mut attributes = vec![KeyValue::new(attr::OUTCOME, settled.name())];
        if let Settled::DeadLettered { code } = &settled {
            attributes.push(KeyValue::new(attr::ERROR_CODE, code.to_string()));
        }
        attributes
    });
    // A failed attempt is an error in the trace, whatever follows it.
    match &settled {
        Settled::Acked => {}
        Settled::DeadLettered { code } => {
            telemetry::fail(&cx, code.as_str(), || format!("dead-lettered: {code}"));
        }
        Settled::Retried { delay } => {
            let last = path
                .in_hand
                .get(sequence)
                .and_then(|held| held.last_failure);
            let code = last.as_ref().map_or(codes::RETRY, |f| f.code.as_str());
            telemetry::fail(&cx, code, || format!("retried in {delay:?}"));
        }
        Settled::Unsettled => {
            telemetry::fail(&cx, "unsettled", || {
                "not settled; JetStream redelivers it after its ack wait".to_owned()
            });
        }
    }
    telemetry::end(&cx);
    path.metrics.settled(&settled);
    settled
}

/// Decodes, checks, attempts and settles one pulled message.
async fn process(
    path: &DeliveryPath,
    message: &jetstream::Message,
    sequence: u64,
    attempt: u32,
    cx: &opentelemetry::Context,
) -> Settled {
    let admitted = match screen(&path.namespace, message) {
        Ok(admitted) => admitted,
        Err(refused) => return refuse(path, message, sequence, attempt, refused, cx).await,
    };
    let event = &admitted.event;
    let attrs = &event.attributes;
    if !path.subscription.versions.matches(&attrs.schema_version) {
        let reason = format!(
            "schema version {} of `{}` is outside the subscription's range `{}`",
            attrs.schema_version, attrs.event_type, path.subscription.versions
        );
        let code = ErrorCode::internal(codes::VERSION_MISMATCH);
        return dead_letter(path, message, sequence, attempt, code, reason, cx).await;
    }

    let attempt_result = keep_alive(
        path.keepalive_interval,
        || async {
            if let Err(error) = message.ack_with(AckKind::Progress).await {
                tracing::debug!(%error, "in-progress ack failed");
            }
        },
        attempt_delivery(
            path,
            message,
            admitted.headers.as_ref().or(message.headers.as_ref()),
            sequence,
            attempt,
            cx,
        ),
    )
    .await;

    let result = match attempt_result {
        Sent::Result(result) => result,
        Sent::TooLarge(reason) => {
            let code = ErrorCode::internal(codes::TOO_LARGE);
            return dead_letter(path, message, sequence, attempt, code, reason, cx).await;
        }
        Sent::Unsent(reason) if attempt >= path.subscription.policy.max_attempts.get() => {
            // Bounded like any failure: an event that can never be sent (whatever the
            // reason) must not come back forever.
            let code = ErrorCode::internal(codes::NOT_SENT);
            let reason = format!("gave up after {attempt} attempts; last: {reason}");
            return dead_letter(path, message, sequence, attempt, code, reason, cx).await;
        }
        Sent::Unsent(reason) => {
            path.in_hand
                .retrying(sequence, REQUEST_FAILURE_RETRY, codes::NOT_SENT, &reason);
            let (event_id, trace_id) = ids(message, cx);
            tracing::warn!(plugin = %path.plugin, %reason, event_id, %trace_id, sequence, "request failed; redelivering");
            return settle(message, AckKind::Nak(Some(REQUEST_FAILURE_RETRY)), || {
                Settled::Retried {
                    delay: REQUEST_FAILURE_RETRY,
                }
            })
            .await;
        }
    };

    match decide(
        result,
        attempt,
        &path.subscription.policy,
        rand::random::<f64>(),
    ) {
        Action::Ack => settle(message, AckKind::Ack, || Settled::Acked).await,
        Action::Retry {
            delay,
            code,
            reason,
        } => {
            path.in_hand
                .retrying(sequence, delay, code.as_str(), &reason);
            let (event_id, trace_id) = ids(message, cx);
            tracing::debug!(plugin = %path.plugin, %code, %reason, ?delay, attempt, event_id, %trace_id, "retrying later");
            settle(message, AckKind::Nak(Some(delay)), || Settled::Retried {
                delay,
            })
            .await
        }
        Action::DeadLetter { code, reason } => {
            dead_letter(path, message, sequence, attempt, code, reason, cx).await
        }
    }
}

/// Waits for a worker, the breaker and the rate limit, then sends the attempt. A worker that
/// is absent does not cost an attempt: the event waits here until one is present.
async fn attempt_delivery(
    path: &DeliveryPath,
    message: &jetstream::Message,
    headers: Option<&HeaderMap>,
    sequence: u64,
    attempt: u32,
    cx: &opentelemetry::Context,
) -> Sent {
    loop {
        path.presence.wait_present().await;
        let admission = path.breaker.admit().await;
        let waited = match &path.rate {
            Some(rate) => Some(rate.acquire().await),
            None => None,
        };
        match request(path, message, headers, sequence, attempt, cx).await {
            Ok(result) => {
                // Only a try that reached a worker is an attempt, with its wait.
                if let Some(waited) = waited {
                    path.metrics.rate_limit_wait(waited);
                }
                admission.record(result.is_success());
                path.presence.mark_present();
                return Sent::Result(result);
            }
            Err(error) if error.kind() == RequestErrorKind::NoResponders => {
                // Unreported: an absent worker is neither a success nor a failure.
                drop(admission);
                if path.presence.mark_absent() {
                    tracing::info!(plugin = %path.plugin, "no worker connected; holding its events");
                    spawn_prober(path);
                }
            }
            Err(error) if error.kind() == RequestErrorKind::MaxPayloadExceeded => {
                drop(admission);
                return Sent::TooLarge(error.to_string());
            }
            Err(error) => return Sent::Unsent(error.to_string()),
        }
    }
}

/// Sends one attempt and reads the reply.
async fn request(
    path: &DeliveryPath,
    message: &jetstream::Message,
    headers: Option<&HeaderMap>,
    sequence: u64,
    attempt: u32,
    cx: &opentelemetry::Context,
) -> Result<AttemptResult, async_nats::RequestError> {
    let policy = &path.subscription.policy;
    let info = DeliveryInfo {
        attempt,
        max_attempts: policy.max_attempts.get(),
        deadline: SystemTime::now() + policy.timeout,
        timeout: policy.timeout,
        plugin: path.plugin.clone(),
        subscription: path.subscription.name.to_string(),
        stream_sequence: sequence,
    };
    let subject = &path.delivery_subject;
    let mut headers = headers.cloned().unwrap_or_default();
    headers.insert(DELIVERY_HEADER, info.header_value());
    // The worker's span becomes a child of this attempt (replacing the publisher's context).
    // Not of the `send` span: that one is recorded only once the attempt reached a worker.
    telemetry::inject(cx, |name, value| {
        headers.insert(name, value);
    });
    let sent_at = SystemTime::now();
    let started = std::time::Instant::now();
    let sent = path.replies.request(
        &path.plugin,
        subject.clone(),
        headers,
        message.payload.clone(),
        policy.timeout,
    );
    let result = match sent.await {
        Ok(reply) => Ok(read_reply(reply.headers.as_ref(), &reply.payload)),
        Err(error) if error.kind() == RequestErrorKind::TimedOut => Ok(AttemptResult::TimedOut),
        Err(error) => Err(error),
    };
    if let Ok(result) = &result {
        path.metrics.attempt(started.elapsed(), result.name());
        record_send(path, cx, sent_at, attempt, result);
    }
    result
}

/// Records the `send` span of an attempt that reached a worker, from when it was sent until
/// now.
fn record_send(
    path: &DeliveryPath,
    cx: &opentelemetry::Context,
    sent_at: SystemTime,
    attempt: u32,
    result: &AttemptResult,
) {
    let send = telemetry::start_at(
        cx,
        SpanKind::Producer,
        telemetry::span::SEND,
        telemetry::Destination::new(path.delivery_subject.as_str()),
        Some(sent_at),
        || {
            let mut attributes = path.metrics.labels().to_vec();
            attributes.extend(switchyard_bus::server_attributes(path.replies.client()));
            attributes.push(KeyValue::new(attr::ATTEMPT, i64::from(attempt)));
            attributes.push(KeyValue::new(attr::OUTCOME, result.name()));
            attributes
        },
    );
    if let Some(error_type) = result.error_type() {
        telemetry::fail(&send, error_type, || {
            format!("attempt {attempt}: {}", result.name())
        });
    }
    telemetry::end(&send);
}

fn read_reply(headers: Option<&HeaderMap>, body: &[u8]) -> AttemptResult {
    let lookup = |name: &str| headers.and_then(|h| header(h, name));
    match Outcome::from_reply(lookup, body) {
        Ok(outcome) => AttemptResult::Replied(outcome),
        Err(error) => AttemptResult::BadReply(error),
    }
}

/// Starts the one prober of an absent plugin: it asks the delivery subject with a probe
/// message (header `switchyard-probe`) until someone is subscribed again.
fn spawn_prober(path: &DeliveryPath) {
    let presence = Arc::clone(&path.presence);
    let replies = Arc::clone(&path.replies);
    let plugin = path.plugin.clone();
    let subject = path.delivery_subject.clone();
    tokio::spawn(async move {
        presence
            .probe_until_present(|| {
                let replies = Arc::clone(&replies);
                let (plugin, subject) = (plugin.clone(), subject.clone());
                async move { probe(&replies, &plugin, subject).await }
            })
            .await;
    });
}

/// True when some worker is subscribed: any answer, or even a timeout, means someone is there.
async fn probe(replies: &Replies, plugin: &PluginId, subject: async_nats::Subject) -> bool {
    let mut headers = HeaderMap::new();
    headers.insert(dh::PROBE, "1");
    let sent = replies.request(
        plugin,
        subject,
        headers,
        bytes::Bytes::new(),
        Duration::from_secs(1),
    );
    match sent.await {
        Ok(_) => true,
        Err(error) => error.kind() != RequestErrorKind::NoResponders,
    }
}

/// Dead-letters a message the screen refused; one whose header block the client could not
/// read is kept as the stream stored it.
async fn refuse(
    path: &DeliveryPath,
    message: &jetstream::Message,
    sequence: u64,
    attempt: u32,
    refused: Refused,
    cx: &opentelemetry::Context,
) -> Settled {
    let Refused {
        code,
        mut reason,
        headers_unreadable,
    } = refused;
    let original = if headers_unreadable {
        match path.raw.read(sequence).await {
            Ok(raw) => Original::Raw(raw),
            Err(error) => {
                // Still bounded: the dead letter keeps the body and says what is missing.
                let (event_id, trace_id) = ids(message, cx);
                tracing::warn!(%error, event_id, %trace_id, "cannot read the stored header block");
                reason = format!("{reason} (header block not kept: {error})");
                Original::Message {
                    headers: None,
                    body: message.payload.clone(),
                }
            }
        }
    } else {
        original_of(message)
    };
    write_dead_letter(
        path, message, &original, sequence, attempt, code, reason, cx,
    )
    .await
}

fn original_of(message: &jetstream::Message) -> Original {
    Original::Message {
        headers: message.headers.clone(),
        body: message.payload.clone(),
    }
}

async fn dead_letter(
    path: &DeliveryPath,
    message: &jetstream::Message,
    sequence: u64,
    attempt: u32,
    code: ErrorCode,
    reason: String,
    cx: &opentelemetry::Context,
) -> Settled {
    let original = original_of(message);
    write_dead_letter(
        path, message, &original, sequence, attempt, code, reason, cx,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn write_dead_letter(
    path: &DeliveryPath,
    message: &jetstream::Message,
    original: &Original,
    sequence: u64,
    attempt: u32,
    code: ErrorCode,
    reason: String,
    cx: &opentelemetry::Context,
) -> Settled {
    let now = OffsetDateTime::now_utc();
    let first_failure = path.in_hand.first_failed_at(sequence).unwrap_or(now);
    let failure = Failure {
        plugin: path.plugin.clone(),
        subscription: path.subscription.name.to_string(),
        code: code.clone(),
        reason,
        attempts: attempt,
        first_failure,
        last_failure: now,
        original_subject: message.subject.to_string(),
        stream_sequence: sequence,
    };
    let subject = path.dead_letters.subject_for(&failure);
    let span = telemetry::start(
        cx,
        SpanKind::Producer,
        telemetry::span::DEAD_LETTER,
        telemetry::Destination::templated(&subject, &path.namespace),
        || {
            let mut attributes = path.metrics.labels().to_vec();
            attributes.extend(switchyard_bus::server_attributes(path.replies.client()));
            attributes.push(KeyValue::new(attr::ERROR_CODE, failure.code.to_string()));
            attributes.push(KeyValue::new(attr::ATTEMPT, i64::from(attempt)));
            attributes
        },
    );
    let written = path.dead_letters.write(original, &failure).await;
    if let Err(error) = &written {
        telemetry::fail(&span, "dead_letter_not_stored", || error.to_string());
    }
    telemetry::end(&span);
    match written {
        Ok(_) => {
            path.metrics.dead_letter(code.as_str());
            let (event_id, trace_id) = ids(message, cx);
            tracing::info!(plugin = %path.plugin, %code, sequence, event_id, %trace_id, "dead-lettered");
            settle(message, AckKind::Ack, || Settled::DeadLettered { code }).await
        }
        Err(error) => {
            // The original stays un-acked and comes back: nothing is lost.
            let (event_id, trace_id) = ids(message, cx);
            tracing::error!(%error, event_id, %trace_id, "dead letter not stored; the event will come back");
            path.in_hand.retrying(
                sequence,
                DEAD_LETTER_RETRY,
                code.as_str(),
                &format!("its dead letter was not stored: {error}"),
            );
            settle(message, AckKind::Nak(Some(DEAD_LETTER_RETRY)), || {
                Settled::Unsettled
            })
            .await
        }
    }
}

/// The event's id (its `ce-id`, `-` when it has none) and the trace id of its delivery (empty
/// without a trace), so that a log line can be matched to the event and its trace.
fn ids<'m>(message: &'m jetstream::Message, cx: &opentelemetry::Context) -> (&'m str, String) {
    use opentelemetry::trace::TraceContextExt;
    let event_id = message
        .headers
        .as_ref()
        .and_then(|h| header(h, ce::ID))
        .unwrap_or("-");
    let span = cx.span();
    let context = span.span_context();
    let trace_id = if context.is_valid() {
        context.trace_id().to_string()
    } else {
        String::new()
    };
    (event_id, trace_id)
}

/// Sends the acknowledgement of `kind`. Acks are not confirmed: a lost one (the
/// connection dropped) means JetStream redelivers the event after its ack wait, which is
/// at-least-once delivery either way; confirming each one cost a message per event and held
/// the delivery's slot for the round trip (docs/performance.md).
async fn settle(
    message: &jetstream::Message,
    kind: AckKind,
    settled: impl FnOnce() -> Settled,
) -> Settled {
    match message.ack_with(kind).await {
        Ok(()) => settled(),
        Err(error) => {
            tracing::warn!(%error, "acknowledgement failed; JetStream will redeliver");
            Settled::Unsettled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_without_an_outcome_is_a_bad_reply() {
        assert!(matches!(read_reply(None, b""), AttemptResult::BadReply(_)));
        let mut headers = HeaderMap::new();
        headers.insert(dh::OUTCOME, "done");
        assert_eq!(
            read_reply(Some(&headers), b""),
            AttemptResult::Replied(Outcome::Done)
        );
    }
}
