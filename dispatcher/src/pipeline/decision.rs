//! What to do with an event after one attempt: acknowledge it, retry it later, or dead-letter
//! it. Pure: the same inputs give the same action, so every rule has a plain unit test.

use std::time::Duration;

use switchyard_schemas::delivery::{ErrorCode, Outcome, ProtocolError};
use switchyard_schemas::manifest::DeliveryPolicy;

/// The longest retry delay a worker may ask for; longer requests are cut to this.
pub const MAX_REQUESTED_DELAY: Duration = Duration::from_secs(3600);

/// Codes Switchyard itself gives failures.
pub mod codes {
    /// The worker did not answer within the policy's timeout.
    pub const TIMEOUT: &str = "delivery.timeout";
    /// The worker's reply did not follow the protocol.
    pub const BAD_REPLY: &str = "protocol.bad-reply";
    /// The worker asked for a retry without giving a code.
    pub const RETRY: &str = "handler.retry";
    /// The event's schema version is outside the subscription's range.
    pub const VERSION_MISMATCH: &str = "subscription.version-mismatch";
    /// The event's header block cannot be read (or carries a status line).
    pub const MALFORMED_HEADERS: &str = "event.malformed-headers";
    /// The event's tenant or type differs from the subject it was published to.
    pub const SUBJECT_MISMATCH: &str = "event.subject-mismatch";
    /// The event with the delivery's own headers exceeds the server's `max_payload`.
    pub const TOO_LARGE: &str = "event.too-large";
    /// Every attempt failed before reaching a worker (the request could not be sent).
    pub const NOT_SENT: &str = "delivery.not-sent";
}

/// How one attempt ended, as the dispatcher saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The worker replied with an outcome.
    Replied(Outcome),
    /// No reply within the timeout.
    TimedOut,
    /// A reply that could not be read.
    BadReply(ProtocolError),
}

/// What the dispatcher does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Acknowledge: the event is done for this plugin.
    Ack,
    /// Negative-acknowledge with this delay: JetStream redelivers it later.
    Retry {
        /// How long JetStream holds it back.
        delay: Duration,
        /// Why it failed.
        code: ErrorCode,
        /// Why, for people.
        reason: String,
    },
    /// Dead-letter it, then acknowledge.
    DeadLetter {
        /// Why it failed.
        code: ErrorCode,
        /// Why, for people.
        reason: String,
    },
}

impl AttemptResult {
    /// The result's name in telemetry: `done`, `retry`, `failed`, `timeout`, `bad_reply`.
    pub fn name(&self) -> &'static str {
        match self {
            AttemptResult::Replied(Outcome::Done) => "done",
            AttemptResult::Replied(Outcome::Retry { .. }) => "retry",
            AttemptResult::Replied(Outcome::Failed { .. }) => "failed",
            AttemptResult::TimedOut => "timeout",
            AttemptResult::BadReply(_) => "bad_reply",
        }
    }

    /// The kind of failure for telemetry's `error.type` (an error code), `None` on success.
    pub fn error_type(&self) -> Option<&str> {
        match self {
            AttemptResult::Replied(Outcome::Done) => None,
            AttemptResult::Replied(Outcome::Failed { code, .. }) => Some(code.as_str()),
            AttemptResult::Replied(Outcome::Retry { code, .. }) => {
                Some(code.as_ref().map_or(codes::RETRY, |code| code.as_str()))
            }
            AttemptResult::TimedOut => Some(codes::TIMEOUT),
            AttemptResult::BadReply(_) => Some(codes::BAD_REPLY),
        }
    }

    /// Whether the worker handled the event (for the circuit breaker).
    pub fn is_success(&self) -> bool {
        matches!(self, AttemptResult::Replied(Outcome::Done))
    }
}

/// Decides what follows attempt number `attempt` (1-based) under `policy`.
///
/// `random_unit` in `[0, 1)` spreads the backoff (jitter).
pub fn decide(
    result: AttemptResult,
    attempt: u32,
    policy: &DeliveryPolicy,
    random_unit: f64,
) -> Action {
    let (code, reason, requested) = match result {
        AttemptResult::Replied(Outcome::Done) => return Action::Ack,
        AttemptResult::Replied(Outcome::Failed { code, reason }) => {
            return Action::DeadLetter { code, reason };
        }
        AttemptResult::Replied(Outcome::Retry {
            after,
            code,
            reason,
        }) => (
            code.unwrap_or_else(|| ErrorCode::internal(codes::RETRY)),
            reason,
            after,
        ),
        AttemptResult::TimedOut => (
            ErrorCode::internal(codes::TIMEOUT),
            format!("no reply within {:?}", policy.timeout),
            None,
        ),
        AttemptResult::BadReply(error) => (
            ErrorCode::internal(codes::BAD_REPLY),
            error.to_string(),
            None,
        ),
    };
    if attempt >= policy.max_attempts.get() {
        return Action::DeadLetter {
            code,
            reason: format!("gave up after {attempt} attempts; last: {reason}"),
        };
    }
    let delay = requested
        .map(|d| d.min(MAX_REQUESTED_DELAY))
        .unwrap_or_else(|| policy.backoff.delay(attempt, random_unit));
    Action::Retry {
        delay,
        code,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use switchyard_schemas::manifest::Backoff;

    use super::*;

    fn policy(max_attempts: u32) -> DeliveryPolicy {
        DeliveryPolicy {
            max_attempts: NonZeroU32::new(max_attempts).unwrap(),
            backoff: Backoff::Fixed(vec![Duration::from_secs(1), Duration::from_secs(7)]),
            timeout: Duration::from_secs(2),
            ..DeliveryPolicy::default()
        }
    }

    fn retry(after: Option<u64>, code: Option<&str>) -> AttemptResult {
        AttemptResult::Replied(Outcome::Retry {
            after: after.map(Duration::from_millis),
            code: code.map(|c| ErrorCode::new(c).unwrap()),
            reason: "busy".into(),
        })
    }

    #[test]
    fn done_acks() {
        assert_eq!(
            decide(AttemptResult::Replied(Outcome::Done), 1, &policy(3), 0.5),
            Action::Ack
        );
    }

    #[test]
    fn a_permanent_failure_dead_letters_at_once_keeping_the_workers_code() {
        let code = ErrorCode::new("order.invalid").unwrap();
        let action = decide(
            AttemptResult::Replied(Outcome::Failed {
                code: code.clone(),
                reason: "no lines".into(),
            }),
            1,
            &policy(5),
            0.5,
        );
        assert_eq!(
            action,
            Action::DeadLetter {
                code,
                reason: "no lines".into()
            }
        );
    }

    #[test]
    fn a_retry_waits_the_backoff_for_its_attempt() {
        let Action::Retry { delay, code, .. } = decide(retry(None, None), 1, &policy(5), 0.5)
        else {
            panic!("expected a retry");
        };
        assert_eq!(delay, Duration::from_secs(1));
        assert_eq!(code.as_str(), codes::RETRY);
        let Action::Retry { delay, .. } = decide(retry(None, None), 2, &policy(5), 0.5) else {
            panic!("expected a retry");
        };
        assert_eq!(delay, Duration::from_secs(7));
    }

    #[test]
    fn a_workers_requested_delay_wins_but_is_capped() {
        let Action::Retry { delay, code, .. } =
            decide(retry(Some(250), Some("upstream.busy")), 1, &policy(5), 0.5)
        else {
            panic!("expected a retry");
        };
        assert_eq!(delay, Duration::from_millis(250));
        assert_eq!(code.as_str(), "upstream.busy");
        let Action::Retry { delay, .. } =
            decide(retry(Some(10 * 3_600_000), None), 1, &policy(5), 0.5)
        else {
            panic!("expected a retry");
        };
        assert_eq!(delay, MAX_REQUESTED_DELAY);
    }

    #[test]
    fn the_last_allowed_attempt_dead_letters_with_the_last_failure() {
        let action = decide(AttemptResult::TimedOut, 3, &policy(3), 0.5);
        let Action::DeadLetter { code, reason } = action else {
            panic!("expected a dead letter, got {action:?}");
        };
        assert_eq!(code.as_str(), codes::TIMEOUT);
        assert!(reason.contains("after 3 attempts"), "{reason}");
        assert!(matches!(
            decide(AttemptResult::TimedOut, 2, &policy(3), 0.5),
            Action::Retry { .. }
        ));
    }

    #[test]
    fn a_bad_reply_is_retried_as_a_protocol_error() {
        let action = decide(
            AttemptResult::BadReply(ProtocolError::Missing("switchyard-outcome")),
            1,
            &policy(3),
            0.5,
        );
        let Action::Retry { code, reason, .. } = action else {
            panic!("expected a retry");
        };
        assert_eq!(code.as_str(), codes::BAD_REPLY);
        assert!(reason.contains("switchyard-outcome"));
    }
}
