//! Telemetry on, for measuring what it costs: OpenTelemetry SDK providers that record every
//! span and metric into memory, installed as the process-wide globals.
//!
//! The globals are process-wide and Switchyard takes its instruments when the dispatcher
//! starts a subscription, so [`Sinks::install`] must come before the scenario's system starts,
//! and [`Sinks::uninstall`] puts the no-op providers back so that later scenarios run with
//! telemetry off again.

use std::time::Duration;

use opentelemetry::global;
use opentelemetry::metrics::noop::NoopMeterProvider;
use opentelemetry::trace::noop::NoopTracerProvider;
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

use crate::{BenchResult, Step};

/// How often the periodic reader collects and exports metrics.
const METRIC_INTERVAL: Duration = Duration::from_secs(1);

/// The installed providers and the in-memory exporters behind them.
#[derive(Debug)]
pub struct Sinks {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricExporter,
}

/// What was exported while the sinks were installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// Spans that reached the exporter (the batch processor drops spans when its queue is
    /// full, so this may be fewer than were started).
    pub spans: usize,
    /// Metric exports (one per collection).
    pub metric_exports: usize,
}

impl Sinks {
    /// Installs a tracer provider with a batch processor and a meter provider with a periodic
    /// reader, both exporting to memory, as the global providers.
    pub fn install() -> Self {
        let spans = InMemorySpanExporter::default();
        let tracer = SdkTracerProvider::builder()
            .with_batch_exporter(spans.clone())
            .build();
        let metrics = InMemoryMetricExporter::default();
        let meter = SdkMeterProvider::builder()
            .with_reader(
                PeriodicReader::builder(metrics.clone())
                    .with_interval(METRIC_INTERVAL)
                    .build(),
            )
            .build();
        global::set_tracer_provider(tracer.clone());
        global::set_meter_provider(meter.clone());
        Self {
            tracer,
            meter,
            spans,
            metrics,
        }
    }

    /// Puts the no-op providers back, flushes and shuts the SDK providers down, and counts
    /// what they exported.
    ///
    /// # Errors
    /// When shutting a provider down fails.
    pub async fn uninstall(self) -> BenchResult<Exported> {
        global::set_tracer_provider(NoopTracerProvider::new());
        global::set_meter_provider(NoopMeterProvider::new());
        // Shutting down joins the processors' threads: off the async runtime.
        tokio::task::spawn_blocking(move || {
            // Flushed and counted before shutting down: the span exporter forgets its spans
            // on shutdown.
            self.tracer
                .force_flush()
                .step("flushing the tracer provider")?;
            self.meter
                .force_flush()
                .step("flushing the meter provider")?;
            let exported = Exported {
                spans: self.spans.get_finished_spans().map_or(0, |s| s.len()),
                metric_exports: self.metrics.get_finished_metrics().map_or(0, |m| m.len()),
            };
            self.tracer
                .shutdown()
                .step("shutting down the tracer provider")?;
            self.meter
                .shutdown()
                .step("shutting down the meter provider")?;
            self.spans.reset();
            self.metrics.reset();
            Ok(exported)
        })
        .await
        .step("waiting for the telemetry shutdown")?
    }
}
