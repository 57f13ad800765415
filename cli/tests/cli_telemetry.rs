//! What `switchyard run` exports, as a real OTLP/HTTP receiver decodes it: resources that tell
//! instances apart, error spans, span names without tenants, no phantom `send` for a try that
//! found no worker, duration buckets in seconds, the protocol asked for, and a collector that
//! refuses or hangs.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use switchyard_control::registry::{Registration, TenantScope};
use switchyard_schemas::delivery::{ErrorCode, Outcome};
use switchyard_schemas::telemetry::{attr, metric, DURATION_BOUNDARIES};
use switchyard_tests::otlp::find;
use switchyard_tests::{
    manifest, wait_until, Answer, Behaviour, OtlpReceiver, ReceivedMetric, ReceivedSpan,
    RunningDispatcher, Switchyard, TestWorker,
};

const SWITCHYARD: &str = env!("CARGO_BIN_EXE_switchyard");
const DEADLINE: Duration = Duration::from_secs(30);
/// OTLP status code ERROR.
const STATUS_ERROR: i32 = 2;

/// Export often, so that the test does not wait for the SDK's default intervals.
fn otel_env(receiver: &OtlpReceiver) -> Vec<(&'static str, String)> {
    vec![
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            receiver.endpoint().to_owned(),
        ),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300".to_owned()),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

async fn register(sy: &Switchyard, plugin: &str, policy: &str) {
    sy.registry
        .put(&Registration::new(
            manifest(plugin, policy),
            TenantScope::All,
        ))
        .await
        .expect("registration stored");
}

fn spans_named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.span.name == name).collect()
}

/// The plugin's spans of one name.
fn plugin_spans<'a>(spans: &'a [ReceivedSpan], name: &str, plugin: &str) -> Vec<&'a ReceivedSpan> {
    spans_named(spans, name)
        .into_iter()
        .filter(|s| s.attribute(attr::PLUGIN).as_deref() == Some(plugin))
        .collect()
}

/// The latest exported data points of `name` for `plugin`, as (value or count, bounds).
fn latest_points(metrics: &[ReceivedMetric], name: &str, plugin: &str) -> Option<(f64, Vec<f64>)> {
    metrics
        .iter()
        .rev()
        .filter(|m| m.metric.name == name)
        .find_map(|m| match m.metric.data.as_ref()? {
            Data::Gauge(gauge) => gauge
                .data_points
                .iter()
                .find(|p| find(&p.attributes, attr::PLUGIN).as_deref() == Some(plugin))
                .and_then(|p| match p.value? {
                    opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v) => {
                        Some((v as f64, Vec::new()))
                    }
                    opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(
                        v,
                    ) => Some((v, Vec::new())),
                }),
            Data::Histogram(histogram) => histogram
                .data_points
                .iter()
                .find(|p| find(&p.attributes, attr::PLUGIN).as_deref() == Some(plugin))
                .map(|p| (p.count as f64, p.explicit_bounds.clone())),
            _ => None,
        })
}

#[tokio::test]
async fn run_exports_its_instance_errors_and_no_send_for_a_try_without_worker() {
    let sy = Switchyard::without_dispatcher().await;
    let receiver = OtlpReceiver::start().await;
    let url = sy.url();
    let ns = sy.namespace().clone();
    register(&sy, "good", "").await;
    register(&sy, "broken", "").await;
    register(&sy, "later", "rate = \"100/s\"").await;
    let _good = TestWorker::start(&url, &ns, "good", |_| Behaviour::Reply(Outcome::Done)).await;
    let _broken = TestWorker::start(&url, &ns, "broken", |_| {
        Behaviour::Reply(Outcome::Failed {
            code: ErrorCode::new("order.invalid").unwrap(),
            reason: "no such customer".to_owned(),
        })
    })
    .await;
    let env = otel_env(&receiver);
    let _run = RunningDispatcher::start_with_env(
        SWITCHYARD,
        &url,
        &["--instance", "d-7"],
        &env_refs(&env),
    )
    .await;
    sy.publish_orders("acme", 0..1).await;

    let process = "process switchyard.events.{tenant}.order.created";
    receiver
        .wait_for_spans(DEADLINE, |spans| {
            plugin_spans(spans, process, "good").len() == 1
                && plugin_spans(spans, process, "broken").len() == 1
        })
        .await
        .expect("the dispatcher exports the attempts of `good` and `broken`");
    // `later` has no worker: its try found nobody, which is no attempt.
    receiver
        .wait_for_metrics(DEADLINE, |metrics| {
            latest_points(metrics, metric::WORKERS_PRESENT, "later").map(|(v, _)| v) == Some(0.0)
        })
        .await
        .expect("`later` is reported without a worker");
    let spans = receiver.spans();
    assert!(
        spans_named(&spans, "send switchyard.deliver.later").is_empty(),
        "a try that found no worker left a send span"
    );

    let _later = TestWorker::start(&url, &ns, "later", |_| Behaviour::Reply(Outcome::Done)).await;
    receiver
        .wait_for_spans(DEADLINE, |spans| {
            plugin_spans(spans, process, "later").len() == 1
        })
        .await
        .expect("`later` is delivered once its worker is there");
    receiver
        .wait_for_metrics(DEADLINE, |metrics| {
            latest_points(metrics, metric::WORKERS_PRESENT, "later").map(|(v, _)| v) == Some(1.0)
                && latest_points(metrics, metric::RATE_LIMIT_WAIT, "later").is_some()
        })
        .await
        .expect("`later`'s worker and rate-limit wait are reported");
    let spans = receiver.spans();
    assert_eq!(
        spans_named(&spans, "send switchyard.deliver.later").len(),
        1
    );
    let metrics = receiver.metrics();
    let (waits, bounds) = latest_points(&metrics, metric::RATE_LIMIT_WAIT, "later").unwrap();
    assert_eq!(waits, 1.0, "one attempt, one rate-limit sample");
    assert_eq!(bounds, DURATION_BOUNDARIES);
    let (_, bounds) = latest_points(&metrics, metric::HANDLER_DURATION, "good").unwrap();
    assert_eq!(
        bounds, DURATION_BOUNDARIES,
        "durations are bucketed in seconds"
    );

    // Every span says which process made it.
    for span in &spans {
        assert_eq!(span.resource.get("service.name").unwrap(), "switchyard");
        assert_eq!(span.resource.get("service.instance.id").unwrap(), "d-7");
        assert_eq!(
            span.resource.get("service.version").unwrap(),
            env!("CARGO_PKG_VERSION")
        );
        assert!(!span.span.name.contains("acme"), "{}", span.span.name);
    }
    for m in &metrics {
        assert_eq!(m.resource.get("service.instance.id").unwrap(), "d-7");
    }

    let good = plugin_spans(&spans, process, "good")[0];
    assert_ne!(
        good.span.status.as_ref().map_or(0, |s| s.code),
        STATUS_ERROR
    );
    assert_eq!(
        good.attribute(attr::CONSUMER_GROUP).as_deref(),
        Some("good~orders")
    );
    assert_eq!(
        good.attribute(attr::DESTINATION_TEMPLATE).as_deref(),
        Some("switchyard.events.{tenant}.order.created")
    );
    assert_eq!(
        good.attribute(attr::SERVER_ADDRESS).as_deref(),
        Some("127.0.0.1")
    );
    let broken = plugin_spans(&spans, process, "broken")[0];
    assert_eq!(broken.span.status.as_ref().unwrap().code, STATUS_ERROR);
    assert_eq!(
        broken.attribute(attr::ERROR_TYPE).as_deref(),
        Some("order.invalid")
    );
    let broken_send = spans_named(&spans, "send switchyard.deliver.broken");
    assert_eq!(broken_send.len(), 1);
    assert_eq!(
        broken_send[0].span.status.as_ref().unwrap().code,
        STATUS_ERROR
    );
    assert_eq!(
        broken_send[0].attribute(attr::PLUGIN).as_deref(),
        Some("broken")
    );
    let dead_letter = spans_named(&spans, "send switchyard.dlq.broken.{tenant}.order.created");
    assert_eq!(dead_letter.len(), 1);
    assert_eq!(
        dead_letter[0].attribute(attr::SUBSCRIPTION).as_deref(),
        Some("orders")
    );
    assert_eq!(
        dead_letter[0].attribute(attr::OPERATION_TYPE).as_deref(),
        Some("send")
    );

    assert!(
        receiver.undecodable().is_empty(),
        "{:?}",
        receiver.undecodable()
    );
    assert!(receiver
        .content_types()
        .iter()
        .all(|t| t == "application/x-protobuf"));
}

#[tokio::test]
async fn two_dispatchers_export_two_instances() {
    let sy = Switchyard::without_dispatcher().await;
    let receiver = OtlpReceiver::start().await;
    let url = sy.url();
    register(&sy, "good", "").await;
    let env = otel_env(&receiver);
    let _first = RunningDispatcher::start_with_env(SWITCHYARD, &url, &[], &env_refs(&env)).await;
    let _second = RunningDispatcher::start_with_env(SWITCHYARD, &url, &[], &env_refs(&env)).await;
    receiver
        .wait_for_metrics(DEADLINE, |metrics| {
            let instances: std::collections::BTreeSet<_> = metrics
                .iter()
                .filter(|m| m.metric.name == metric::CONSUMER_PENDING)
                .filter_map(|m| m.resource.get("service.instance.id").cloned())
                .collect();
            instances.len() == 2
        })
        .await
        .expect("each dispatcher exports under its own instance id");
}

#[tokio::test]
async fn a_refusing_collector_is_logged_once_then_its_recovery_and_a_hung_one_does_not_hold_the_exit(
) {
    let sy = Switchyard::without_dispatcher().await;
    let receiver = OtlpReceiver::start().await;
    receiver.answer(Answer::Refuse);
    let url = sy.url();
    let ns = sy.namespace().clone();
    register(&sy, "good", "").await;
    let _good = TestWorker::start(&url, &ns, "good", |_| Behaviour::Reply(Outcome::Done)).await;
    let env = otel_env(&receiver);
    let mut run = RunningDispatcher::start_with_env(
        SWITCHYARD,
        &url,
        &["--shutdown-grace", "1s"],
        &env_refs(&env),
    )
    .await;
    sy.publish_orders("acme", 0..1).await;

    // Many refused exports (metrics every 300 ms, and the event's spans)...
    wait_until(DEADLINE, || async { receiver.refused() >= 8 })
        .await
        .expect("the dispatcher keeps exporting");
    // ... are each signal's first failure, logged once within the minute.
    wait_until(DEADLINE, || async {
        run.stderr().contains("signal=\"traces\"")
    })
    .await
    .unwrap_or_else(|_| panic!("a refused trace export is logged:\n{}", run.output()));
    let failures = run.stderr().matches("telemetry export failed").count();
    assert!(
        (1..=2).contains(&failures),
        "one warning per signal, not one per export: {failures}\n{}",
        run.output()
    );
    assert!(run.stderr().contains("WARN"), "{}", run.output());
    assert!(
        !run.stderr().contains('\u{1b}'),
        "no colour codes in a pipe"
    );

    receiver.answer(Answer::Accept);
    wait_until(DEADLINE, || async {
        run.stderr().contains("telemetry export recovered")
    })
    .await
    .unwrap_or_else(|_| panic!("the recovery is logged:\n{}", run.output()));

    // A collector that takes requests and never answers: the exit must not wait for it.
    receiver.answer(Answer::Hang);
    sy.publish_orders("acme", 1..2).await;
    run.terminate().await;
    let stopping = Instant::now();
    let status = run.wait(Duration::from_secs(30)).await;
    let took = stopping.elapsed();
    assert!(status.success(), "{}", run.output());
    // Grace 1 s, the dispatcher's bounded tail, and at most 3 s for telemetry; the exporters'
    // own 10 s timeouts (one per signal) must not add up behind them.
    assert!(
        took < Duration::from_secs(9),
        "exit took {took:?}:\n{}",
        run.output()
    );
}

#[tokio::test]
async fn the_protocol_asked_for_is_used_or_refused_by_name() {
    let sy = Switchyard::without_dispatcher().await;
    let receiver = OtlpReceiver::start().await;
    let url = sy.url();
    register(&sy, "good", "").await;
    let mut env = otel_env(&receiver);
    env.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()));
    let _run = RunningDispatcher::start_with_env(SWITCHYARD, &url, &[], &env_refs(&env)).await;
    receiver
        .wait_for_metrics(DEADLINE, |metrics| {
            metrics
                .iter()
                .any(|m| m.metric.name == metric::CONSUMER_PENDING)
        })
        .await
        .expect("metrics arrive as JSON and decode");
    let types = receiver.content_types();
    assert!(
        types.iter().all(|t| t.starts_with("application/json")),
        "{types:?}"
    );
    assert!(
        receiver.undecodable().is_empty(),
        "{:?}",
        receiver.undecodable()
    );

    let mut grpc = otel_env(&receiver);
    grpc.push(("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()));
    let mut refused = RunningDispatcher::spawn(SWITCHYARD, &url, &[], &env_refs(&grpc));
    let status = refused.wait(DEADLINE).await;
    assert!(!status.success());
    assert!(
        refused
            .stderr()
            .contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported"),
        "{}",
        refused.output()
    );
}
