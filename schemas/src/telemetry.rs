//! Telemetry names, defined once, and W3C trace-context propagation through NATS headers.
//!
//! Spans follow the OpenTelemetry messaging semantic conventions; `docs/telemetry.md` lists
//! every name below, and a test checks that the list and this module agree.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Span, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;

use crate::Namespace;

/// The instrumentation scope (tracer and meter name) of every Switchyard component.
pub const SCOPE: &str = "switchyard";

/// Span names. Per the messaging conventions a span is named `{operation} {destination}`;
/// these are the operation parts, and [`span_name`] joins them.
pub mod span {
    /// A service publishes an event (bus). Kind: producer. (`send`: the messaging
    /// conventions retired `publish` as an operation type.)
    pub const PUBLISH: &str = "send";
    /// The dispatcher processes one attempt of one event for one plugin. Kind: consumer.
    pub const DISPATCH: &str = "process";
    /// The dispatcher sent an attempt to the plugin's workers and it reached one. Kind:
    /// producer. Recorded once the attempt is answered or times out, so that a try that finds
    /// no worker leaves no span.
    pub const SEND: &str = "send";
    /// A worker handles a delivery. Kind: consumer.
    pub const HANDLE: &str = "process";
    /// The dispatcher stores a dead letter. Kind: producer.
    pub const DEAD_LETTER: &str = "send";
    /// A plugin sends on a channel. Kind: producer.
    pub const CHANNEL_SEND: &str = "send";
    /// A plugin handles a channel message. Kind: consumer.
    pub const CHANNEL_RECEIVE: &str = "process";
    /// A caller calls an operation (bus, SDK). Kind: client.
    pub const CALL: &str = "send";
    /// The dispatcher serves one call, all its attempts. Kind: server.
    pub const SERVE_CALL: &str = "process";
    /// A worker handles one attempt of a call. Kind: server.
    pub const HANDLE_CALL: &str = "process";
}

/// `{operation} {destination}`, the span name the messaging conventions ask for; the
/// destination is its template where it has one, so that names stay few.
pub fn span_name(operation: &str, destination: &str) -> String {
    format!("{operation} {destination}")
}

/// Attribute keys.
pub mod attr {
    /// Always `nats`.
    pub const MESSAGING_SYSTEM: &str = "messaging.system";
    /// The subject.
    pub const DESTINATION: &str = "messaging.destination.name";
    /// The subject with its tenant replaced by `{tenant}` (low cardinality), on subjects that
    /// carry a tenant.
    pub const DESTINATION_TEMPLATE: &str = "messaging.destination.template";
    /// The consumer group: the dispatcher's durable consumer (`{plugin}~{subscription}`), or
    /// the workers' queue group (the plugin id).
    pub const CONSUMER_GROUP: &str = "messaging.consumer.group.name";
    /// The NATS server's host, as the server announces itself.
    pub const SERVER_ADDRESS: &str = "server.address";
    /// The NATS server's port.
    pub const SERVER_PORT: &str = "server.port";
    /// The kind of a failure, on failed spans: an error code (`delivery.timeout`, the
    /// worker's code) or a short name.
    pub const ERROR_TYPE: &str = "error.type";
    /// `send`, `receive`, `process`.
    pub const OPERATION_TYPE: &str = "messaging.operation.type";
    /// The operation's name (same words as the type here).
    pub const OPERATION_NAME: &str = "messaging.operation.name";
    /// The event id.
    pub const MESSAGE_ID: &str = "messaging.message.id";
    /// The body size in bytes.
    pub const BODY_SIZE: &str = "messaging.message.body.size";
    /// The plugin id.
    pub const PLUGIN: &str = "switchyard.plugin.id";
    /// The subscription name.
    pub const SUBSCRIPTION: &str = "switchyard.subscription";
    /// The attempt number.
    pub const ATTEMPT: &str = "switchyard.attempt";
    /// The outcome: `done`, `retry`, `failed`, `timeout`, `dead_lettered`, ...
    pub const OUTCOME: &str = "switchyard.outcome";
    /// The error code of a failure.
    pub const ERROR_CODE: &str = "switchyard.error.code";
    /// The tenant.
    pub const TENANT: &str = "switchyard.tenant";
    /// The event type.
    pub const EVENT_TYPE: &str = "switchyard.event.type";
    /// The circuit state (`closed`, `open`, `half-open`).
    pub const CIRCUIT_STATE: &str = "switchyard.circuit.state";
    /// The operation called.
    pub const OPERATION: &str = "switchyard.operation";
    /// Who called an operation: `plugin:{id}`, `service:{name}` or `operator:{name}`.
    pub const CALLER: &str = "switchyard.caller";
}

/// Values of [`attr::MESSAGING_SYSTEM`] and [`attr::OPERATION_TYPE`].
pub mod value {
    /// The messaging system.
    pub const NATS: &str = "nats";
    /// Operation type: process.
    pub const PROCESS: &str = "process";
    /// Operation type: send.
    pub const SEND: &str = "send";
    /// Operation type: receive.
    pub const RECEIVE: &str = "receive";
}

/// Metric names (instruments), all per plugin and subscription.
pub mod metric {
    /// Counter: deliveries settled, by `switchyard.outcome` (`acked`, `retried`,
    /// `dead_lettered`, `unsettled`).
    pub const DELIVERIES: &str = "switchyard.deliveries";
    /// Counter: attempts sent to workers.
    pub const ATTEMPTS: &str = "switchyard.delivery.attempts";
    /// Histogram (seconds): from sending an attempt to its reply, by outcome.
    pub const HANDLER_DURATION: &str = "switchyard.handler.duration";
    /// Histogram (seconds): time an attempt waited for the rate limiter.
    pub const RATE_LIMIT_WAIT: &str = "switchyard.rate_limit.wait";
    /// Up-down counter: deliveries under way.
    pub const IN_FLIGHT: &str = "switchyard.deliveries.in_flight";
    /// Counter: dead letters written, by `switchyard.error.code`.
    pub const DEAD_LETTERS: &str = "switchyard.dead_letters";
    /// Gauge: 1 while the plugin has a worker answering, 0 while the dispatcher holds its
    /// events for lack of one.
    pub const WORKERS_PRESENT: &str = "switchyard.workers.present";
    /// Gauge: events in the plugin's consumer not yet delivered (its lag).
    pub const CONSUMER_PENDING: &str = "switchyard.consumer.pending";
    /// Gauge: circuit state, 0 closed, 1 half-open, 2 open.
    pub const CIRCUIT_STATE: &str = "switchyard.circuit.state";
    /// Histogram (seconds), worker side: how long handlers ran, by outcome.
    pub const HANDLE_DURATION: &str = "switchyard.worker.handle.duration";
    /// Calls a dispatcher answered, by plugin, operation and outcome (`ok` or the error code).
    pub const CALLS: &str = "switchyard.calls";
    /// From a call's arrival at a dispatcher to its answer, by plugin, operation and outcome.
    pub const CALL_DURATION: &str = "switchyard.call.duration";
    /// Calls under way in a dispatcher, by plugin and operation.
    pub const CALLS_IN_FLIGHT: &str = "switchyard.calls.in_flight";
}

/// Every span operation, attribute and metric name, for checking `docs/telemetry.md`.
pub const ALL_NAMES: &[&str] = &[
    attr::MESSAGING_SYSTEM,
    attr::DESTINATION,
    attr::DESTINATION_TEMPLATE,
    attr::CONSUMER_GROUP,
    attr::SERVER_ADDRESS,
    attr::SERVER_PORT,
    attr::ERROR_TYPE,
    attr::OPERATION_TYPE,
    attr::OPERATION_NAME,
    attr::MESSAGE_ID,
    attr::BODY_SIZE,
    attr::PLUGIN,
    attr::SUBSCRIPTION,
    attr::ATTEMPT,
    attr::OUTCOME,
    attr::ERROR_CODE,
    attr::TENANT,
    attr::EVENT_TYPE,
    attr::CIRCUIT_STATE,
    metric::DELIVERIES,
    metric::ATTEMPTS,
    metric::HANDLER_DURATION,
    metric::RATE_LIMIT_WAIT,
    metric::IN_FLIGHT,
    metric::DEAD_LETTERS,
    metric::CONSUMER_PENDING,
    metric::WORKERS_PRESENT,
    metric::CIRCUIT_STATE,
    metric::HANDLE_DURATION,
    attr::OPERATION,
    attr::CALLER,
    metric::CALLS,
    metric::CALL_DURATION,
    metric::CALLS_IN_FLIGHT,
];

/// Where a span's message goes (or came from): the subject, and the namespace that gives its
/// low-cardinality template (see [`Namespace::destination_template`]) when it may have one.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// The subject.
    pub name: &'a str,
    /// The namespace the subject is in, when it may carry a tenant.
    pub namespace: Option<&'a Namespace>,
}

impl<'a> Destination<'a> {
    /// A subject with no tenant in it (its template would be itself).
    pub fn new(name: &'a str) -> Self {
        Self {
            name,
            namespace: None,
        }
    }

    /// A subject of `namespace` that may carry a tenant.
    pub fn templated(name: &'a str, namespace: &'a Namespace) -> Self {
        Self {
            name,
            namespace: Some(namespace),
        }
    }

    /// The template, when the subject has one. Computed only for recorded spans.
    pub fn template(&self) -> Option<String> {
        self.namespace?.destination_template(self.name)
    }
}

/// Histogram boundaries (seconds) for durations, as the messaging semantic conventions give
/// them for `messaging.process.duration`: the SDK's defaults are meant for milliseconds and
/// would put every sample in the first bucket.
pub const DURATION_BOUNDARIES: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Starts a messaging span now; see [`start_at`].
pub fn start(
    parent: &Context,
    kind: SpanKind,
    operation: &'static str,
    destination: Destination<'_>,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Context {
    start_at(parent, kind, operation, destination, None, attributes)
}

/// Starts a messaging span (`{operation} {destination template or name}`, with
/// `messaging.system`, `messaging.destination.name`, `messaging.destination.template` when
/// there is one, `messaging.operation.type` and `messaging.operation.name`) as a child of
/// `parent`, starting at `started` (now when `None`), and returns the context holding it.
/// `attributes` is called only when the span is recorded, so with telemetry off or a span
/// sampled out no attribute is built.
pub fn start_at(
    parent: &Context,
    kind: SpanKind,
    operation: &'static str,
    destination: Destination<'_>,
    started: Option<std::time::SystemTime>,
    attributes: impl FnOnce() -> Vec<KeyValue>,
) -> Context {
    let tracer = global::tracer(SCOPE);
    let mut builder = tracer.span_builder(operation).with_kind(kind);
    if let Some(started) = started {
        builder = builder.with_start_time(started);
    }
    let mut span = builder.start_with_context(&tracer, parent);
    if span.is_recording() {
        let template = destination.template();
        span.update_name(span_name(
            operation,
            template.as_deref().unwrap_or(destination.name),
        ));
        span.set_attribute(KeyValue::new(attr::MESSAGING_SYSTEM, value::NATS));
        span.set_attribute(KeyValue::new(
            attr::DESTINATION,
            destination.name.to_owned(),
        ));
        if let Some(template) = template {
            span.set_attribute(KeyValue::new(attr::DESTINATION_TEMPLATE, template));
        }
        span.set_attribute(KeyValue::new(attr::OPERATION_TYPE, operation));
        span.set_attribute(KeyValue::new(attr::OPERATION_NAME, operation));
        span.set_attributes(attributes());
    }
    parent.with_span(span)
}

/// Adds attributes to the span in `context`, when it is recorded.
pub fn record(context: &Context, attributes: impl FnOnce() -> Vec<KeyValue>) {
    let span = context.span();
    if span.is_recording() {
        span.set_attributes(attributes());
    }
}

/// Marks the span in `context` as failed: status ERROR with `reason`, and `error.type`.
pub fn fail(context: &Context, error_type: &str, reason: impl FnOnce() -> String) {
    let span = context.span();
    if span.is_recording() {
        span.set_attribute(KeyValue::new(attr::ERROR_TYPE, error_type.to_owned()));
        span.set_status(Status::error(reason()));
    }
}

/// Ends the span in `context`.
pub fn end(context: &Context) {
    context.span().end();
}

struct SetHeader<F>(F);

impl<F: FnMut(&str, String)> Injector for SetHeader<F> {
    fn set(&mut self, key: &str, value: String) {
        (self.0)(key, value);
    }
}

struct GetHeader<'h, F> {
    get: F,
    _lifetime: std::marker::PhantomData<&'h ()>,
}

impl<'h, F: Fn(&str) -> Option<&'h str>> Extractor for GetHeader<'h, F> {
    fn get(&self, key: &str) -> Option<&str> {
        (self.get)(key)
    }

    fn keys(&self) -> Vec<&str> {
        // The W3C propagator asks for its two headers by name and never lists keys.
        vec![
            crate::delivery::header::TRACEPARENT,
            crate::delivery::header::TRACESTATE,
        ]
    }
}

/// Writes `context`'s trace into `traceparent`/`tracestate` headers through `set`. Writes
/// nothing when the context holds no valid span (telemetry off), so that costs nothing.
pub fn inject(context: &Context, set: impl FnMut(&str, String)) {
    TraceContextPropagator::new().inject_context(context, &mut SetHeader(set));
}

/// Reads the trace context carried in `traceparent`/`tracestate` headers; an empty context
/// when there is none or it is malformed.
pub fn extract<'h>(get: impl Fn(&str) -> Option<&'h str>) -> Context {
    TraceContextPropagator::new().extract(&GetHeader {
        get,
        _lifetime: std::marker::PhantomData,
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };

    use super::*;

    #[test]
    fn a_trace_round_trips_through_headers() {
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let context = Context::new().with_remote_span_context(span.clone());
        let mut headers = Vec::new();
        inject(&context, |k, v| headers.push((k.to_owned(), v)));
        assert_eq!(
            headers[0],
            (
                "traceparent".to_owned(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()
            )
        );
        let back = extract(|k| {
            headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        });
        assert_eq!(back.span().span_context().trace_id(), span.trace_id());
        assert_eq!(back.span().span_context().span_id(), span.span_id());
    }

    #[test]
    fn no_span_writes_no_header_and_garbage_reads_as_none() {
        let mut headers = Vec::<(String, String)>::new();
        inject(&Context::new(), |k, v| headers.push((k.to_owned(), v)));
        assert!(headers.is_empty());
        let back = extract(|k| (k == "traceparent").then_some("nonsense"));
        assert!(!back.span().span_context().is_valid());
    }
}
