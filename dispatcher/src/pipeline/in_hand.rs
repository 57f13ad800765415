//! The events a dispatcher holds for one (plugin, subscription), by stream sequence: under
//! way (an attempt is being made), or waiting for a retry (negatively acknowledged with a
//! delay). What `switchyard explain` asks the running dispatchers about.
//!
//! An entry is made when an attempt starts and removed when the event is acknowledged or
//! dead-lettered. One left behind (the retry went to another dispatcher, or the event is
//! gone) is pruned once its retry is long overdue.

use std::time::Duration;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// How long after its retry was due an entry waiting for it is kept: by then this dispatcher
/// would have seen the retry, unless another dispatcher took it.
pub const OVERDUE_AFTER: Duration = Duration::from_secs(300);
/// The longest failure reason kept per entry; the dead letter keeps the whole reason.
const MAX_REASON: usize = 512;

/// Where a held event is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HeldState {
    /// An attempt is being made (or waits for a worker, the circuit or the rate limit).
    UnderWay {
        /// When the attempt started.
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
    },
    /// Negatively acknowledged: JetStream sends it again once the delay has passed.
    WaitingRetry {
        /// When the retry is due.
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
}

/// The last failure of a held event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFailure {
    /// The error code.
    pub code: String,
    /// Why, cut to a bounded length.
    pub reason: String,
}

/// One held event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// The attempt under way, or the last one made.
    pub attempt: u32,
    /// Where it is.
    #[serde(flatten)]
    pub state: HeldState,
    /// When it first failed here, if it has.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub first_failed_at: Option<OffsetDateTime>,
    /// Its last failure, if it has failed.
    #[serde(default)]
    pub last_failure: Option<LastFailure>,
}

/// The held events of one (plugin, subscription).
#[derive(Debug, Default)]
pub struct InHand {
    held: DashMap<u64, Held>,
}

impl InHand {
    /// An attempt at the event starts.
    pub fn attempting(&self, sequence: u64, attempt: u32) {
        let since = OffsetDateTime::now_utc();
        self.held
            .entry(sequence)
            .and_modify(|held| {
                held.attempt = attempt;
                held.state = HeldState::UnderWay { since };
            })
            .or_insert(Held {
                attempt,
                state: HeldState::UnderWay { since },
                first_failed_at: None,
                last_failure: None,
            });
    }

    /// The attempt failed and the event comes back after `delay`.
    pub fn retrying(&self, sequence: u64, delay: Duration, code: &str, reason: &str) {
        let now = OffsetDateTime::now_utc();
        let until = now + delay;
        let last_failure = Some(LastFailure {
            code: code.to_owned(),
            reason: reason.chars().take(MAX_REASON).collect(),
        });
        self.held
            .entry(sequence)
            .and_modify(|held| {
                held.state = HeldState::WaitingRetry { until };
                held.first_failed_at.get_or_insert(now);
                held.last_failure.clone_from(&last_failure);
            })
            .or_insert(Held {
                attempt: 0,
                state: HeldState::WaitingRetry { until },
                first_failed_at: Some(now),
                last_failure,
            });
    }

    /// The acknowledgement could not be sent: JetStream sends the event again once its ack
    /// wait (`after`) has passed.
    pub fn unsettled(&self, sequence: u64, after: Duration) {
        let until = OffsetDateTime::now_utc() + after;
        if let Some(mut held) = self.held.get_mut(&sequence) {
            if matches!(held.state, HeldState::UnderWay { .. }) {
                held.state = HeldState::WaitingRetry { until };
            }
        }
    }

    /// The event is settled for good (acknowledged or dead-lettered); returns when it first
    /// failed here, if it did.
    pub fn settled(&self, sequence: u64) -> Option<OffsetDateTime> {
        self.held
            .remove(&sequence)
            .and_then(|(_, held)| held.first_failed_at)
    }

    /// When the event first failed here, if it has.
    pub fn first_failed_at(&self, sequence: u64) -> Option<OffsetDateTime> {
        self.held
            .get(&sequence)
            .and_then(|held| held.first_failed_at)
    }

    /// The event, if held here.
    pub fn get(&self, sequence: u64) -> Option<Held> {
        self.held.get(&sequence).map(|held| held.clone())
    }

    /// How many events are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Forgets the events whose retry was due more than [`OVERDUE_AFTER`] before `now`.
    pub fn prune(&self, now: OffsetDateTime) {
        self.held.retain(|_, held| match held.state {
            HeldState::UnderWay { .. } => true,
            HeldState::WaitingRetry { until } => until + OVERDUE_AFTER > now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_held_from_its_attempt_until_it_is_settled() {
        let in_hand = InHand::default();
        in_hand.attempting(7, 1);
        assert!(matches!(
            in_hand.get(7).unwrap().state,
            HeldState::UnderWay { .. }
        ));
        in_hand.retrying(7, Duration::from_secs(2), "handler.retry", "busy");
        let held = in_hand.get(7).unwrap();
        assert!(matches!(held.state, HeldState::WaitingRetry { .. }));
        assert_eq!(held.attempt, 1);
        assert_eq!(held.last_failure.unwrap().code, "handler.retry");
        let first = held.first_failed_at.unwrap();
        in_hand.attempting(7, 2);
        in_hand.retrying(7, Duration::from_secs(2), "handler.retry", "busy again");
        assert_eq!(in_hand.get(7).unwrap().attempt, 2);
        assert_eq!(in_hand.settled(7), Some(first));
        assert!(in_hand.get(7).is_none());
        assert!(in_hand.is_empty());
    }

    #[test]
    fn long_overdue_retries_are_pruned_and_attempts_kept() {
        let in_hand = InHand::default();
        in_hand.attempting(1, 1);
        in_hand.retrying(2, Duration::ZERO, "handler.retry", &"x".repeat(10_000));
        assert_eq!(
            in_hand.get(2).unwrap().last_failure.unwrap().reason.len(),
            MAX_REASON
        );
        in_hand.prune(OffsetDateTime::now_utc());
        assert_eq!(in_hand.len(), 2);
        in_hand.prune(OffsetDateTime::now_utc() + OVERDUE_AFTER + Duration::from_secs(1));
        assert!(in_hand.get(1).is_some());
        assert!(in_hand.get(2).is_none());
    }
}
