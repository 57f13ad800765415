//! Exporting traces and metrics over OTLP, configured by the standard `OTEL_*` environment
//! variables. Nothing is exported unless an OTLP endpoint is configured.
//!
//! [`Plugin::run`](crate::Plugin::run) calls [`init_from_env`] itself; the `switchyard`
//! command does too. Call it from a binary of your own that serves plugins with
//! [`Plugin::serve`](crate::Plugin::serve).

use opentelemetry::global;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// The variables that turn export on; any one of them will do.
const ENDPOINT_VARIABLES: [&str; 3] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
];

/// Why telemetry export could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up OTLP export: {0}")]
pub struct TelemetryError(String);

/// Keeps the exporters running; dropping it flushes and shuts them down.
#[derive(Debug)]
#[must_use = "dropping the guard stops the export"]
pub struct TelemetryGuard {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        // Errors here mean the collector is gone; there is nobody left to tell.
        let _ = self.tracer.shutdown();
        let _ = self.meter.shutdown();
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

/// Installs OTLP/HTTP exporters for traces and metrics as the global providers when the
/// environment asks for export, naming the service `OTEL_SERVICE_NAME` or
/// `default_service`. Returns `None` (and installs nothing) otherwise.
///
/// # Errors
/// A [`TelemetryError`] when an exporter cannot be built from the configuration.
pub fn init_from_env(default_service: &str) -> Result<Option<TelemetryGuard>, TelemetryError> {
    if !export_requested(|name| std::env::var(name).ok()) {
        return Ok(None);
    }
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| default_service.to_owned());
    let resource = Resource::builder().with_service_name(service).build();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let tracer = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.clone())
        .build();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let meter = SdkMeterProvider::builder()
        .with_periodic_exporter(metrics)
        .with_resource(resource)
        .build();
    global::set_tracer_provider(tracer.clone());
    global::set_meter_provider(meter.clone());
    Ok(Some(TelemetryGuard { tracer, meter }))
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
}
