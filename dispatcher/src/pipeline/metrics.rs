//! The metrics of one (plugin, subscription)'s deliveries, through the global OpenTelemetry
//! meter (a no-op until a binary installs a provider). Instruments are created once per
//! subscription and label sets are built once, so recording allocates nothing.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
use opentelemetry::{global, KeyValue};
use switchyard_schemas::telemetry::{attr, metric, DURATION_BOUNDARIES, SCOPE};

use super::deliver::Settled;

/// The instruments and label sets of one subscription.
#[derive(Debug)]
pub struct PathMetrics {
    deliveries: Counter<u64>,
    attempts: Counter<u64>,
    handler_duration: Histogram<f64>,
    rate_limit_wait: Histogram<f64>,
    in_flight: UpDownCounter<i64>,
    dead_letters: Counter<u64>,
    labels: [KeyValue; 2],
}

impl PathMetrics {
    /// Instruments labelled with the plugin and subscription.
    pub fn new(plugin: &str, subscription: &str) -> Self {
        let meter = global::meter(SCOPE);
        Self {
            deliveries: meter
                .u64_counter(metric::DELIVERIES)
                .with_description("Deliveries settled, by outcome")
                .build(),
            attempts: meter
                .u64_counter(metric::ATTEMPTS)
                .with_description("Attempts sent to workers")
                .build(),
            handler_duration: meter
                .f64_histogram(metric::HANDLER_DURATION)
                .with_unit("s")
                .with_description("From sending an attempt to its reply")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
            rate_limit_wait: meter
                .f64_histogram(metric::RATE_LIMIT_WAIT)
                .with_unit("s")
                .with_description("Time an attempt waited for the rate limiter")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
            in_flight: meter
                .i64_up_down_counter(metric::IN_FLIGHT)
                .with_description("Deliveries under way")
                .build(),
            dead_letters: meter
                .u64_counter(metric::DEAD_LETTERS)
                .with_description("Dead letters written, by error code")
                .build(),
            // Reference-counted values: the labels are cloned into every recording.
            labels: [
                KeyValue::new(attr::PLUGIN, Arc::<str>::from(plugin)),
                KeyValue::new(attr::SUBSCRIPTION, Arc::<str>::from(subscription)),
            ],
        }
    }

    /// The plugin and subscription labels.
    pub fn labels(&self) -> &[KeyValue] {
        &self.labels
    }

    fn with(&self, key: &'static str, value: impl Into<opentelemetry::Value>) -> [KeyValue; 3] {
        let [plugin, subscription] = self.labels.clone();
        [plugin, subscription, KeyValue::new(key, value)]
    }

    /// A delivery started; the guard counts it as finished when dropped.
    pub fn start(&self) -> InFlightMetric<'_> {
        self.in_flight.add(1, &self.labels);
        InFlightMetric { metrics: self }
    }

    /// A delivery settled.
    pub fn settled(&self, settled: &Settled) {
        self.deliveries
            .add(1, &self.with(attr::OUTCOME, settled.name()));
    }

    /// An attempt was sent; it got `outcome` after `took`.
    pub fn attempt(&self, took: Duration, outcome: &'static str) {
        self.attempts.add(1, &self.labels);
        self.handler_duration
            .record(took.as_secs_f64(), &self.with(attr::OUTCOME, outcome));
    }

    /// An attempt waited for the rate limiter.
    pub fn rate_limit_wait(&self, waited: Duration) {
        self.rate_limit_wait
            .record(waited.as_secs_f64(), &self.labels);
    }

    /// A dead letter was written.
    pub fn dead_letter(&self, code: &str) {
        self.dead_letters
            .add(1, &self.with(attr::ERROR_CODE, code.to_owned()));
    }
}

/// A delivery under way; see [`PathMetrics::start`].
#[derive(Debug)]
pub struct InFlightMetric<'a> {
    metrics: &'a PathMetrics,
}

impl Drop for InFlightMetric<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.add(-1, &self.metrics.labels);
    }
}
