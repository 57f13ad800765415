//! Exporting traces and metrics over OTLP, configured by the standard `OTEL_*` environment
//! variables. Nothing is exported unless an OTLP endpoint is configured.
//!
//! [`Plugin::run`](crate::Plugin::run) calls [`init_from_env`] itself; the `switchyard`
//! command does too. Call it from a binary of your own that serves plugins with
//! [`Plugin::serve`](crate::Plugin::serve).
//!
//! What an operator can rely on (docs/telemetry.md):
//! - every process is told apart by its resource: `service.name`, `service.version` and a
//!   `service.instance.id` of its own (the dispatcher's `--instance`; a fresh id per worker
//!   process), unless `OTEL_RESOURCE_ATTRIBUTES` sets them;
//! - `OTEL_EXPORTER_OTLP_PROTOCOL` (and the per-signal variables) is honoured for
//!   `http/protobuf` (the default) and `http/json`; `grpc` is refused with an error;
//! - a failing export is logged at `warn` (once, then at most every minute while it keeps
//!   failing) and its recovery at `info`;
//! - dropping the guard flushes for at most [`SHUTDOWN_BUDGET`], so a hung collector cannot
//!   hold a process's exit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::{global, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

/// The variables that turn export on; any one of them will do.
const ENDPOINT_VARIABLES: [&str; 3] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
];
/// The longest a process's exit waits for its last telemetry to be exported.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(3);
/// While an export keeps failing, how often that is logged again.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Why telemetry export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up OTLP export: {0}")]
pub struct TelemetryError(String);

/// Who exports: the resource attributes that tell processes apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// `service.name` (`OTEL_SERVICE_NAME` wins over it).
    pub name: String,
    /// `service.version`.
    pub version: String,
    /// `service.instance.id`: unique per process.
    pub instance_id: String,
}

impl ServiceIdentity {
    /// A service of this name and version, with a fresh instance id (a UUID).
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            instance_id: uuid::Uuid::now_v7().to_string(),
        }
    }

    /// The same service under this instance id (e.g. the dispatcher's `--instance`).
    #[must_use]
    pub fn with_instance_id(mut self, instance_id: impl Into<String>) -> Self {
        self.instance_id = instance_id.into();
        self
    }
}

/// Keeps the exporters running; dropping it flushes (for at most [`SHUTDOWN_BUDGET`]) and
/// shuts them down.
#[derive(Debug)]
#[must_use = "dropping the guard stops the export"]
pub struct TelemetryGuard {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let (tracer, meter) = (self.tracer.clone(), self.meter.clone());
        let (done, finished) = std::sync::mpsc::channel();
        // On a thread of its own: the SDK's shutdowns block on exports, and a hung collector
        // would hold them for the exporters' whole timeout, each.
        let flushing = std::thread::Builder::new()
            .name("otel-shutdown".to_owned())
            .spawn(move || {
                let _ = tracer.shutdown_with_timeout(SHUTDOWN_BUDGET);
                let _ = meter.shutdown_with_timeout(SHUTDOWN_BUDGET);
                let _ = done.send(());
            });
        if flushing.is_ok() && finished.recv_timeout(SHUTDOWN_BUDGET).is_err() {
            tracing::warn!(
                budget = ?SHUTDOWN_BUDGET,
                "telemetry not flushed in time (is the collector reachable?); the rest is dropped"
            );
        }
    }
}

/// Whether the environment asks for export: an OTLP endpoint is set and
/// `OTEL_SDK_DISABLED` is not `true`.
pub fn export_requested(env: impl Fn(&str) -> Option<String>) -> bool {
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled
        && ENDPOINT_VARIABLES
            .iter()
            .any(|name| env(name).is_some_and(|v| !v.trim().is_empty()))
}

/// The protocol a signal is exported with: its own variable, else
/// `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf`.
///
/// # Errors
/// A [`TelemetryError`] for `grpc` (not built in) and for any other unknown value.
pub fn protocol(
    env: impl Fn(&str) -> Option<String>,
    signal_variable: &str,
) -> Result<Protocol, TelemetryError> {
    let chosen = [signal_variable, "OTEL_EXPORTER_OTLP_PROTOCOL"]
        .into_iter()
        .find_map(|name| {
            env(name)
                .map(|value| (name, value.trim().to_owned()))
                .filter(|(_, value)| !value.is_empty())
        });
    match chosen {
        None => Ok(Protocol::HttpBinary),
        Some((_, value)) if value.eq_ignore_ascii_case("http/protobuf") => Ok(Protocol::HttpBinary),
        Some((_, value)) if value.eq_ignore_ascii_case("http/json") => Ok(Protocol::HttpJson),
        Some((name, value)) if value.eq_ignore_ascii_case("grpc") => Err(TelemetryError(format!(
            "{name}=grpc is not supported: export over OTLP/HTTP instead (`http/protobuf` or \
             `http/json`, usually port 4318)"
        ))),
        Some((name, value)) => Err(TelemetryError(format!(
            "{name}=`{value}` is not an OTLP protocol (`http/protobuf`, `http/json`)"
        ))),
    }
}

/// Installs OTLP/HTTP exporters for traces and metrics as the global providers when the
/// environment asks for export, with `service` as the resource (see the module's notes).
/// Returns `None` (and installs nothing) otherwise.
///
/// # Errors
/// A [`TelemetryError`] when an exporter cannot be built from the configuration, or the
/// configuration asks for a protocol other than OTLP/HTTP.
pub fn init_from_env(service: &ServiceIdentity) -> Result<Option<TelemetryGuard>, TelemetryError> {
    let env = |name: &str| std::env::var(name).ok();
    if !export_requested(env) {
        return Ok(None);
    }
    let resource = resource(service);
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")?)
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let tracer = SdkTracerProvider::builder()
        .with_batch_exporter(Reported::new(spans, "traces"))
        .with_resource(resource.clone())
        .build();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(protocol(env, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")?)
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let meter = SdkMeterProvider::builder()
        .with_periodic_exporter(Reported::new(metrics, "metrics"))
        .with_resource(resource)
        .build();
    global::set_tracer_provider(tracer.clone());
    global::set_meter_provider(meter.clone());
    Ok(Some(TelemetryGuard { tracer, meter }))
}

/// The resource: what `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` say, and `service`'s
/// attributes for whatever they leave unset.
fn resource(service: &ServiceIdentity) -> Resource {
    let from_env = Resource::builder().build();
    let mut defaults = Vec::new();
    // The SDK's own detector always names a service (`unknown_service` without the variable).
    if std::env::var("OTEL_SERVICE_NAME").is_err() && !env_attribute_set("service.name") {
        defaults.push(KeyValue::new("service.name", service.name.clone()));
    }
    for (key, value) in [
        ("service.version", &service.version),
        ("service.instance.id", &service.instance_id),
    ] {
        if from_env
            .get(&opentelemetry::Key::from_static_str(key))
            .is_none()
        {
            defaults.push(KeyValue::new(key, value.clone()));
        }
    }
    Resource::builder().with_attributes(defaults).build()
}

/// Whether `OTEL_RESOURCE_ATTRIBUTES` sets `key`.
fn env_attribute_set(key: &str) -> bool {
    std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|pairs| {
        pairs
            .split(',')
            .any(|pair| pair.split_once('=').is_some_and(|(k, _)| k.trim() == key))
    })
}

/// An exporter whose failures are logged: the first at once, then at most every
/// [`FAILURE_LOG_INTERVAL`] while they go on, and the recovery after them.
#[derive(Debug)]
struct Reported<E> {
    inner: E,
    signal: &'static str,
    failures: Mutex<Failures>,
}

/// The failures since the last successful export.
#[derive(Debug, Default)]
struct Failures {
    count: u64,
    since: Option<Instant>,
    logged: Option<Instant>,
}

impl Failures {
    /// Records a failure; returns whether to log it.
    fn failed(&mut self, now: Instant) -> bool {
        self.count += 1;
        self.since.get_or_insert(now);
        let due = self
            .logged
            .is_none_or(|logged| now.duration_since(logged) >= FAILURE_LOG_INTERVAL);
        if due {
            self.logged = Some(now);
        }
        due
    }

    /// Records a success; returns how many failures it ends.
    fn succeeded(&mut self) -> u64 {
        std::mem::take(self).count
    }
}

impl<E> Reported<E> {
    fn new(inner: E, signal: &'static str) -> Self {
        Self {
            inner,
            signal,
            failures: Mutex::new(Failures::default()),
        }
    }

    fn record(&self, result: &OTelSdkResult) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        match result {
            Ok(()) => {
                let ended = failures.succeeded();
                if ended > 0 {
                    tracing::info!(
                        signal = self.signal,
                        failed_exports = ended,
                        "telemetry export recovered"
                    );
                }
            }
            Err(error) => {
                let now = Instant::now();
                if !failures.failed(now) {
                    return;
                }
                if failures.count == 1 {
                    tracing::warn!(
                        signal = self.signal,
                        %error,
                        "telemetry export failed; what it held is lost (logged again at most every minute while it fails)"
                    );
                } else {
                    let failing_for = failures
                        .since
                        .map_or(0, |since| now.duration_since(since).as_secs());
                    tracing::warn!(
                        signal = self.signal,
                        %error,
                        failed_exports = failures.count,
                        failing_for_secs = failing_for,
                        "telemetry export still failing; what those exports held is lost"
                    );
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reported<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.record(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Reported<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.record(&result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn export_needs_an_endpoint_and_can_be_disabled() {
        assert!(!export_requested(env(&[])));
        assert!(export_requested(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://localhost:4318"
        )])));
        assert!(export_requested(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces"
        )])));
        assert!(!export_requested(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ])));
        assert!(!export_requested(env(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            " "
        )])));
    }

    #[test]
    fn the_protocol_is_honoured_or_refused_by_name() {
        let traces = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
        assert_eq!(protocol(env(&[]), traces).unwrap(), Protocol::HttpBinary);
        assert_eq!(
            protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "HTTP/JSON")]), traces).unwrap(),
            Protocol::HttpJson
        );
        assert_eq!(
            protocol(
                env(&[
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                    (traces, "http/protobuf")
                ]),
                traces
            )
            .unwrap(),
            Protocol::HttpBinary
        );
        let grpc = protocol(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]), traces)
            .unwrap_err()
            .to_string();
        assert!(
            grpc.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported"),
            "{grpc}"
        );
        let odd = protocol(env(&[(traces, "carrier-pigeon")]), traces)
            .unwrap_err()
            .to_string();
        assert!(
            odd.contains(traces) && odd.contains("carrier-pigeon"),
            "{odd}"
        );
    }

    #[test]
    fn failures_are_logged_first_then_at_most_every_interval() {
        let mut failures = Failures::default();
        let start = Instant::now();
        assert!(failures.failed(start));
        assert!(!failures.failed(start + Duration::from_secs(5)));
        assert!(failures.failed(start + FAILURE_LOG_INTERVAL));
        assert_eq!(failures.succeeded(), 3);
        assert_eq!(failures.succeeded(), 0);
        assert!(failures.failed(start + FAILURE_LOG_INTERVAL * 2));
    }
}
