//! Publish-to-handled latencies: recorded by the workers, summarised as percentiles.

use std::sync::Mutex;
use std::time::Duration;

use crate::clock;

/// Collects one latency per handled delivery. Shared by the workers of one run.
#[derive(Debug, Default)]
pub struct Recorder {
    // A plain mutex: it is held for one push, never across an await.
    samples: Mutex<Vec<u64>>,
}

impl Recorder {
    /// Records the latency of a delivery published at `sent_ns` and handled now.
    pub fn record(&self, sent_ns: u64) {
        let latency = clock::elapsed_ns(sent_ns);
        self.samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(latency);
    }

    /// The percentiles of everything recorded so far.
    pub fn summary(&self) -> Latencies {
        let samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        Latencies::from_samples(samples)
    }
}

/// Percentiles of a set of latencies.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latencies {
    /// How many samples.
    pub count: usize,
    /// The median.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The largest.
    pub max: Duration,
}

impl Latencies {
    /// Percentiles (nearest rank) of latencies in nanoseconds.
    pub fn from_samples(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let at = |quantile: f64| {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let rank = (quantile * samples.len() as f64).ceil() as usize;
            Duration::from_nanos(samples[rank.clamp(1, samples.len()) - 1])
        };
        Self {
            count: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let l = Latencies::from_samples((1..=100).rev().collect());
        assert_eq!(l.count, 100);
        assert_eq!(l.p50, Duration::from_nanos(50));
        assert_eq!(l.p99, Duration::from_nanos(99));
        assert_eq!(l.max, Duration::from_nanos(100));
        assert_eq!(Latencies::from_samples(Vec::new()).p99, Duration::ZERO);
    }
}
