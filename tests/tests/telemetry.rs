//! One trace per event across the bus, the dispatcher and SDK workers, and the metrics they
//! emit, checked with in-memory exporters.
//!
//! The OpenTelemetry providers are process-wide, so everything runs in one test, in order.

use std::collections::BTreeSet;
use std::time::Duration;

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry::{global, Value};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use switchyard_bus::Calls;
use switchyard_plugin_sdk::{CallContext, Caller, HandlerError, Plugin};
use switchyard_schemas::telemetry::{attr, metric, ALL_NAMES};
use switchyard_schemas::{Event, EventId, Tenant};
use switchyard_tests::{manifest, wait_until, OrderCreated, Quote, QuoteRequest, Switchyard};

const DEADLINE: Duration = Duration::from_secs(20);

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn text(span: &SpanData, key: &str) -> String {
    attribute(span, key)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// Finished spans of one trace.
struct Trace {
    spans: Vec<SpanData>,
}

impl Trace {
    fn named(&self, name: &str) -> Vec<&SpanData> {
        self.spans.iter().filter(|s| s.name == name).collect()
    }

    fn one(&self, name: &str, plugin: Option<&str>) -> &SpanData {
        let found: Vec<_> = self
            .named(name)
            .into_iter()
            .filter(|s| plugin.is_none_or(|p| text(s, attr::PLUGIN) == p))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one `{name}` for {plugin:?}, got {}",
            found.len()
        );
        found[0]
    }
}

fn span_id(span: &SpanData) -> SpanId {
    span.span_context.span_id()
}

/// The spans of the trace that the publish of `id` started.
fn trace_of(spans: &InMemorySpanExporter, id: &EventId) -> Trace {
    let all = spans.get_finished_spans().unwrap();
    let trace: TraceId = all
        .iter()
        .find(|s| s.span_kind == SpanKind::Producer && text(s, attr::MESSAGE_ID) == id.as_str())
        .map(|s| s.span_context.trace_id())
        .unwrap_or_else(|| panic!("no publish span for {id}"));
    Trace {
        spans: all
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect(),
    }
}

fn start_worker(sy: &Switchyard, plugin: Plugin) {
    let namespace = sy.namespace().clone();
    let url = sy.url();
    tokio::spawn(async move {
        // The plugin's own inbox, as `Plugin::run` connects: its calls are answered there.
        let client = async_nats::ConnectOptions::new()
            .custom_inbox_prefix(namespace.plugin_inbox_prefix(&plugin.manifest().plugin.id))
            .connect(url)
            .await
            .unwrap();
        plugin
            .serve(client, namespace, std::future::pending(), None, None)
            .await
            .unwrap();
    });
}

async fn publish(sy: &Switchyard, n: u32) -> EventId {
    let event = Event::builder(Tenant::new("acme").unwrap(), "urn:test")
        .build(&OrderCreated { n })
        .unwrap();
    sy.publisher().publish_event(&event).await.unwrap();
    event.attributes.id
}

#[tokio::test]
async fn one_trace_per_event_across_processes_and_documented_metrics() {
    let spans = InMemorySpanExporter::default();
    global::set_tracer_provider(
        SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build(),
    );
    let metrics = InMemoryMetricExporter::default();
    let meters = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    global::set_meter_provider(meters.clone());

    let sy = Switchyard::start().await;
    // Workers announce themselves once subscribed; the event is published after all three
    // did, so that every attempt finds its worker at once.
    let watcher = sy.server.client().await;
    let mut hellos = watcher
        .subscribe(sy.namespace().all_worker_hellos())
        .await
        .unwrap();
    watcher.flush().await.unwrap();
    for id in ["alpha", "beta"] {
        let m = manifest(id, "");
        sy.register(m.clone()).await;
        start_worker(
            &sy,
            Plugin::new(m).on(|_: OrderCreated, _| async { Ok(()) }),
        );
    }
    let failing = manifest(
        "gamma",
        "max_attempts = 3\nbackoff = { fixed = [\"50ms\"] }",
    );
    sy.register(failing.clone()).await;
    start_worker(
        &sy,
        Plugin::new(failing)
            .on(|_: OrderCreated, _| async { Err(HandlerError::retry("not today")) }),
    );

    for _ in 0..3 {
        tokio::time::timeout(DEADLINE, futures::StreamExt::next(&mut hellos))
            .await
            .expect("every worker says hello");
    }

    // 1. One event, three plugins: one trace, publisher → dispatcher → each worker.
    let id = publish(&sy, 1).await;
    wait_until(DEADLINE, || async {
        let t = trace_of(&spans, &id);
        t.named("send switchyard.dlq.gamma.{tenant}.order.created")
            .len()
            == 1
            && t.named("process switchyard.deliver.alpha").len() == 1
            && t.named("process switchyard.deliver.beta").len() == 1
    })
    .await
    .expect("every span of the event's trace is exported");
    let t = trace_of(&spans, &id);
    let publish_span = t.one("send switchyard.events.{tenant}.order.created", None);
    assert_eq!(
        publish_span.parent_span_id,
        SpanId::INVALID,
        "the trace starts at the publish"
    );
    assert_eq!(text(publish_span, attr::MESSAGING_SYSTEM), "nats");
    assert_eq!(text(publish_span, attr::OPERATION_TYPE), "send");
    assert_eq!(
        text(publish_span, attr::DESTINATION),
        "switchyard.events.acme.order.created"
    );
    assert_eq!(
        text(publish_span, attr::DESTINATION_TEMPLATE),
        "switchyard.events.{tenant}.order.created"
    );
    assert_eq!(text(publish_span, attr::SERVER_ADDRESS), "127.0.0.1");
    for plugin in ["alpha", "beta"] {
        let dispatch = t.one(
            "process switchyard.events.{tenant}.order.created",
            Some(plugin),
        );
        assert_eq!(dispatch.span_kind, SpanKind::Consumer);
        assert_eq!(dispatch.parent_span_id, span_id(publish_span));
        assert_eq!(text(dispatch, attr::ATTEMPT), "1");
        assert_eq!(text(dispatch, attr::OUTCOME), "acked");
        assert_eq!(text(dispatch, attr::MESSAGE_ID), id.as_str());
        assert_eq!(
            text(dispatch, attr::CONSUMER_GROUP),
            format!("{plugin}~orders")
        );
        assert_eq!(dispatch.status, opentelemetry::trace::Status::Unset);
        let send = t.one(&format!("send switchyard.deliver.{plugin}"), None);
        assert_eq!(send.span_kind, SpanKind::Producer);
        assert_eq!(send.parent_span_id, span_id(dispatch));
        assert_eq!(text(send, attr::PLUGIN), plugin);
        assert_eq!(text(send, attr::SUBSCRIPTION), "orders");
        let handle = t.one(&format!("process switchyard.deliver.{plugin}"), None);
        assert_eq!(
            handle.parent_span_id,
            span_id(dispatch),
            "the worker continues the trace under the attempt"
        );
        assert!(send.start_time <= handle.start_time && handle.end_time <= send.end_time);
        assert_eq!(text(handle, attr::CONSUMER_GROUP), plugin);
        assert_eq!(text(handle, attr::PLUGIN), plugin);
        assert_eq!(text(handle, attr::OUTCOME), "done");
        assert_eq!(text(handle, attr::MESSAGING_SYSTEM), "nats");
    }

    // 2. The retried, then dead-lettered, plugin: every attempt is in the same trace.
    let mut attempts: Vec<_> = t
        .named("process switchyard.events.{tenant}.order.created")
        .into_iter()
        .filter(|s| text(s, attr::PLUGIN) == "gamma")
        .collect();
    attempts.sort_by_key(|s| text(s, attr::ATTEMPT));
    let seen: Vec<(String, String)> = attempts
        .iter()
        .map(|s| (text(s, attr::ATTEMPT), text(s, attr::OUTCOME)))
        .collect();
    assert_eq!(
        seen,
        [
            ("1".to_owned(), "retried".to_owned()),
            ("2".to_owned(), "retried".to_owned()),
            ("3".to_owned(), "dead_lettered".to_owned()),
        ]
    );
    for attempt in &attempts {
        assert_eq!(attempt.parent_span_id, span_id(publish_span));
        // Every failed attempt is an error in the trace, with its kind.
        assert!(
            matches!(attempt.status, opentelemetry::trace::Status::Error { .. }),
            "{:?}",
            attempt.status
        );
        assert_eq!(text(attempt, attr::ERROR_TYPE), "handler.retry");
    }
    let dead_letter = t.one("send switchyard.dlq.gamma.{tenant}.order.created", None);
    assert_eq!(dead_letter.parent_span_id, span_id(attempts[2]));
    assert_eq!(text(dead_letter, attr::ERROR_CODE), "handler.retry");
    assert_eq!(text(dead_letter, attr::PLUGIN), "gamma");
    assert_eq!(text(dead_letter, attr::SUBSCRIPTION), "orders");
    let handles = t.named("process switchyard.deliver.gamma");
    assert_eq!(handles.len(), 3);
    for handle in handles {
        assert!(matches!(
            handle.status,
            opentelemetry::trace::Status::Error { .. }
        ));
        assert_eq!(text(handle, attr::ERROR_TYPE), "handler.retry");
    }
    for send in t.named("send switchyard.deliver.gamma") {
        assert_eq!(text(send, attr::ERROR_TYPE), "handler.retry");
    }

    // 3. An operator calls epsilon's `checkout`, which calls delta's `quote` from its handler:
    //    one trace from the caller's span through both dispatchers' and both workers' spans.
    let delta = switchyard_tests::operations_manifest(
        "delta",
        &[("quote", "callers = { plugins = [\"epsilon\"] }")],
    );
    let epsilon = switchyard_tests::operations_manifest("epsilon", &[("checkout", "")]);
    sy.register(delta.clone()).await;
    sy.register(epsilon.clone()).await;
    start_worker(
        &sy,
        Plugin::new(delta).operation("quote", |q: QuoteRequest, _ctx| async move {
            Ok(Quote {
                cents: u64::from(q.quantity),
                note: String::new(),
            })
        }),
    );
    start_worker(
        &sy,
        Plugin::new(epsilon).operation(
            "checkout",
            |q: QuoteRequest, ctx: CallContext| async move {
                ctx.call::<_, Quote>("delta", "quote", &q)
                    .await
                    .map_err(|e| HandlerError::permanent("checkout.failed", e.to_string()))
            },
        ),
    );
    switchyard_tests::wait_for_operation(&watcher, "delta", "quote").await;
    switchyard_tests::wait_for_operation(&watcher, "epsilon", "checkout").await;
    let calls = Calls::new(
        watcher.clone(),
        sy.namespace().clone(),
        Caller::Operator("test".into()),
    );
    let root = {
        use opentelemetry::trace::{TraceContextExt, Tracer};
        let span = global::tracer("test").start("caller");
        opentelemetry::Context::new().with_span(span)
    };
    let request = QuoteRequest {
        sku: "a".into(),
        quantity: 7,
    };
    let quote = loop {
        let mut headers = async_nats::HeaderMap::new();
        switchyard_schemas::telemetry::inject(&root, |name, value| headers.insert(name, value));
        match calls
            .call_with::<_, Quote>(
                &Tenant::new("acme").unwrap(),
                &switchyard_schemas::PluginId::new("epsilon").unwrap(),
                "checkout",
                &request,
                Default::default(),
                headers,
            )
            .await
        {
            Ok(quote) => break quote,
            // The workers may still be connecting.
            Err(error) => {
                assert!(
                    error.to_string().contains("no-worker")
                        || error.to_string().contains("no worker"),
                    "{error}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(quote.cents, 7);
    {
        use opentelemetry::trace::TraceContextExt;
        root.span().end();
    }
    let trace_id = {
        use opentelemetry::trace::TraceContextExt;
        root.span().span_context().trace_id()
    };
    let call_spans = || {
        spans
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace_id)
            .collect::<Vec<_>>()
    };
    wait_until(DEADLINE, || async {
        call_spans()
            .iter()
            .any(|s| s.name == "process switchyard.call.delta" && text(s, attr::OUTCOME) == "done")
    })
    .await
    .expect("the call's spans are exported");
    let t = Trace {
        spans: call_spans(),
    };
    let caller = t.one("caller", None);
    // A call made before the workers were up was answered `no-worker` in this trace too: the
    // one that reached them is the one with its outcome.
    let served: Vec<_> = t
        .named("process switchyard.op.{tenant}.epsilon.checkout.operator.test")
        .into_iter()
        .filter(|s| text(s, attr::OUTCOME) == "ok")
        .collect();
    assert_eq!(served.len(), 1, "one call reached the workers: {served:#?}");
    let served = served[0];
    assert_eq!(served.span_kind, SpanKind::Server);
    assert_eq!(served.parent_span_id, span_id(caller));
    assert_eq!(text(served, attr::OPERATION), "checkout");
    assert_eq!(text(served, attr::CALLER), "operator:test");
    assert_eq!(text(served, attr::OUTCOME), "ok");
    let checkout = t.one("process switchyard.call.epsilon", None);
    assert_eq!(checkout.parent_span_id, span_id(served));
    assert_eq!(text(checkout, attr::OUTCOME), "done");
    let inner = t.one(
        "send switchyard.op.{tenant}.delta.quote.plugin.epsilon",
        None,
    );
    assert_eq!(inner.span_kind, SpanKind::Client);
    assert_eq!(inner.parent_span_id, span_id(checkout));
    let served_quote = t.one(
        "process switchyard.op.{tenant}.delta.quote.plugin.epsilon",
        None,
    );
    assert_eq!(served_quote.parent_span_id, span_id(inner));
    assert_eq!(text(served_quote, attr::CALLER), "plugin:epsilon");
    let quoted = t.one("process switchyard.call.delta", None);
    assert_eq!(quoted.parent_span_id, span_id(served_quote));

    // 4. What is emitted is what docs/telemetry.md lists.
    meters.force_flush().unwrap();
    let emitted: BTreeSet<String> = metrics
        .get_finished_metrics()
        .unwrap()
        .iter()
        .flat_map(|r| r.scope_metrics())
        .filter(|s| s.scope().name() == "switchyard")
        .flat_map(|s| s.metrics().map(|m| m.name().to_owned()))
        .collect();
    for name in &emitted {
        assert!(
            ALL_NAMES.contains(&name.as_str()),
            "{name} is not documented"
        );
    }
    for expected in [
        metric::DELIVERIES,
        metric::ATTEMPTS,
        metric::HANDLER_DURATION,
        metric::IN_FLIGHT,
        metric::DEAD_LETTERS,
        metric::CONSUMER_PENDING,
        metric::WORKERS_PRESENT,
        metric::CIRCUIT_STATE,
        metric::HANDLE_DURATION,
        metric::CALLS,
        metric::CALL_DURATION,
        metric::CALLS_IN_FLIGHT,
    ] {
        assert!(
            emitted.contains(expected),
            "{expected} was not emitted: {emitted:?}"
        );
    }
}
