//! The metrics of one operation's calls, through the global OpenTelemetry meter. Labels are
//! built once per operation, as for deliveries.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
use opentelemetry::{global, KeyValue};
use switchyard_schemas::telemetry::{attr, metric, DURATION_BOUNDARIES, SCOPE};

/// The instruments and labels of one (plugin, operation).
#[derive(Debug)]
pub struct CallMetrics {
    calls: Counter<u64>,
    duration: Histogram<f64>,
    in_flight: UpDownCounter<i64>,
    labels: [KeyValue; 2],
}

impl CallMetrics {
    /// Instruments labelled with the plugin and operation.
    pub fn new(plugin: &str, operation: &str) -> Self {
        let meter = global::meter(SCOPE);
        Self {
            calls: meter
                .u64_counter(metric::CALLS)
                .with_description("Calls answered, by outcome (`ok` or the error code)")
                .build(),
            duration: meter
                .f64_histogram(metric::CALL_DURATION)
                .with_unit("s")
                .with_description("From a call's arrival to its answer")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
            in_flight: meter
                .i64_up_down_counter(metric::CALLS_IN_FLIGHT)
                .with_description("Calls under way")
                .build(),
            labels: [
                KeyValue::new(attr::PLUGIN, Arc::<str>::from(plugin)),
                KeyValue::new(attr::OPERATION, Arc::<str>::from(operation)),
            ],
        }
    }

    /// The plugin and operation labels.
    pub fn labels(&self) -> &[KeyValue] {
        &self.labels
    }

    /// A call was answered with `outcome` after `took`.
    pub fn answered(&self, took: Duration, outcome: &str) {
        let [plugin, operation] = self.labels.clone();
        let labels = [
            plugin,
            operation,
            KeyValue::new(attr::OUTCOME, outcome.to_owned()),
        ];
        self.calls.add(1, &labels);
        self.duration.record(took.as_secs_f64(), &labels);
    }

    /// A call went to the plugin; the guard counts it as finished when dropped.
    pub fn start(&self) -> InFlightCall<'_> {
        self.in_flight.add(1, &self.labels);
        InFlightCall { metrics: self }
    }
}

/// A call under way; see [`CallMetrics::start`].
#[derive(Debug)]
pub struct InFlightCall<'a> {
    metrics: &'a CallMetrics,
}

impl Drop for InFlightCall<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.add(-1, &self.metrics.labels);
    }
}
