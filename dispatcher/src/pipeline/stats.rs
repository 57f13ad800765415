//! Counters of one (plugin, subscription)'s deliveries, for operators and the live view.

use std::sync::atomic::{AtomicU64, Ordering};

use super::deliver::Settled;

/// Running totals, updated as deliveries settle.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    delivered: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    unsettled: AtomicU64,
    started: AtomicU64,
    finished: AtomicU64,
    pending: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Events the plugin handled (acknowledged).
    pub delivered: u64,
    /// Attempts that failed and were scheduled again.
    pub retried: u64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
    /// Deliveries left for JetStream to redeliver (an acknowledgement or dead letter failed).
    pub unsettled: u64,
    /// Deliveries under way now (including those waiting for a worker, the breaker or the
    /// rate limit).
    pub in_flight: u64,
}

impl DeliveryStats {
    /// Marks a delivery as started; the returned guard marks it finished when dropped, so a
    /// delivery dropped at shutdown is not counted as under way forever.
    pub fn start(&self) -> InFlight<'_> {
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlight { stats: self }
    }

    /// Records the consumer's backlog as last read from the server.
    pub fn set_pending(&self, pending: u64) {
        self.pending.store(pending, Ordering::Relaxed);
    }

    /// The consumer's backlog as last read from the server.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Counts how a delivery was settled.
    pub fn record(&self, settled: &Settled) {
        let counter = match settled {
            Settled::Acked => &self.delivered,
            Settled::Retried { .. } => &self.retried,
            Settled::DeadLettered { .. } => &self.dead_lettered,
            Settled::Unsettled => &self.unsettled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let started = self.started.load(Ordering::Relaxed);
        let finished = self.finished.load(Ordering::Relaxed);
        StatsSnapshot {
            delivered: self.delivered.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            unsettled: self.unsettled.load(Ordering::Relaxed),
            in_flight: started.saturating_sub(finished),
        }
    }
}

/// A delivery under way; see [`DeliveryStats::start`].
#[derive(Debug)]
pub struct InFlight<'a> {
    stats: &'a DeliveryStats,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.stats.finished.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_settlements_and_deliveries_under_way() {
        let stats = DeliveryStats::default();
        let first = stats.start();
        let second = stats.start();
        assert_eq!(stats.snapshot().in_flight, 2);
        stats.record(&Settled::Acked);
        drop(first);
        stats.record(&Settled::Retried {
            delay: std::time::Duration::from_secs(1),
        });
        drop(second);
        let snapshot = stats.snapshot();
        assert_eq!(
            snapshot,
            StatsSnapshot {
                delivered: 1,
                retried: 1,
                in_flight: 0,
                ..StatsSnapshot::default()
            }
        );
    }
}
