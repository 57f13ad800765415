//! Reading a delivery policy table (`[defaults]` or `[subscriptions.policy]`) and merging the
//! two levels into a [`DeliveryPolicy`].

use std::num::NonZeroU32;
use std::time::Duration;

use super::error::{ProblemKind, Problems, Reported};
use super::policy::{
    Backoff, DeliveryPolicy, ParseRateError, Rate, DEFAULT_INITIAL, DEFAULT_JITTER, DEFAULT_MAX,
    DEFAULT_MULTIPLIER, JITTER_RANGE, MAX_ATTEMPTS_LIMIT, MAX_IN_FLIGHT_LIMIT, MAX_OPENS_LIMIT,
    TIMEOUT_RANGE,
};
use super::read::{Field, ReadList};

/// The keys of a policy table.
const POLICY_KEYS: &[&str] = &[
    "rate",
    "burst",
    "max_in_flight",
    "timeout",
    "max_attempts",
    "backoff",
    "fail_after_opens",
];
const BACKOFF_KINDS: &[&str] = &["exponential", "fixed"];
const EXPONENTIAL_KEYS: &[&str] = &["initial", "max", "multiplier", "jitter"];

/// The keys that one policy table sets. A key that is absent, or whose value was refused
/// (and reported), is `None`, so that one bad value does not cause follow-up problems.
#[derive(Debug, Clone, Default)]
pub(super) struct PolicyOverrides {
    rate: Option<Rate>,
    burst: Option<NonZeroU32>,
    max_in_flight: Option<NonZeroU32>,
    timeout: Option<Duration>,
    max_attempts: Option<NonZeroU32>,
    backoff: Option<Backoff>,
    fail_after_opens: Option<NonZeroU32>,
}

impl PolicyOverrides {
    /// Reads a policy table, reporting every problem in it.
    pub(super) fn read(field: &Field<'_>, problems: &mut Problems) -> Self {
        let Ok(section) = field.section(problems, POLICY_KEYS) else {
            return Self::default();
        };
        Self {
            rate: section
                .optional("rate")
                .and_then(|f| read_rate(&f, problems).ok()),
            burst: section
                .optional("burst")
                .and_then(|f| f.count_up_to(problems, u32::MAX).ok()),
            max_in_flight: section
                .optional("max_in_flight")
                .and_then(|f| f.count_up_to(problems, MAX_IN_FLIGHT_LIMIT).ok()),
            timeout: section
                .optional("timeout")
                .and_then(|f| f.duration_in(problems, TIMEOUT_RANGE).ok()),
            max_attempts: section
                .optional("max_attempts")
                .and_then(|f| f.count_up_to(problems, MAX_ATTEMPTS_LIMIT).ok()),
            backoff: section
                .optional("backoff")
                .and_then(|f| read_backoff(&f, problems).ok()),
            fail_after_opens: section
                .optional("fail_after_opens")
                .and_then(|f| f.count_up_to(problems, MAX_OPENS_LIMIT).ok()),
        }
    }

    /// The keys set here, and for the others those set in `fallback`.
    /// `backoff` is taken whole from one level, never mixed.
    pub(super) fn or(self, fallback: &Self) -> Self {
        Self {
            rate: self.rate.or(fallback.rate),
            burst: self.burst.or(fallback.burst),
            max_in_flight: self.max_in_flight.or(fallback.max_in_flight),
            timeout: self.timeout.or(fallback.timeout),
            max_attempts: self.max_attempts.or(fallback.max_attempts),
            backoff: self.backoff.or_else(|| fallback.backoff.clone()),
            fail_after_opens: self.fail_after_opens.or(fallback.fail_after_opens),
        }
    }

    /// The policy, with the built-in default for every key not set.
    pub(super) fn resolve(self) -> DeliveryPolicy {
        let builtin = DeliveryPolicy::default();
        DeliveryPolicy {
            rate: self.rate,
            burst: self
                .burst
                .or(self.rate.map(|rate| rate.default_burst()))
                .unwrap_or(builtin.burst),
            max_in_flight: self.max_in_flight.unwrap_or(builtin.max_in_flight),
            timeout: self.timeout.unwrap_or(builtin.timeout),
            max_attempts: self.max_attempts.unwrap_or(builtin.max_attempts),
            backoff: self.backoff.unwrap_or(builtin.backoff),
            fail_after_opens: self.fail_after_opens,
        }
    }
}

pub(super) fn read_rate(field: &Field<'_>, problems: &mut Problems) -> Result<Rate, Reported> {
    let text = field.string(problems)?;
    text.parse().map_err(|err: ParseRateError| {
        let kind = match err {
            ParseRateError::Malformed { .. } => ProblemKind::BadRate,
            ParseRateError::CountOutOfRange { .. } => ProblemKind::OutOfRange,
        };
        field.report(problems, kind, err.to_string())
    })
}

/// `{ exponential = { ... } }` or `{ fixed = [...] }`.
fn read_backoff(field: &Field<'_>, problems: &mut Problems) -> Result<Backoff, Reported> {
    let section = field.section(problems, BACKOFF_KINDS)?;
    match (section.optional("exponential"), section.optional("fixed")) {
        (Some(exponential), None) => read_exponential(&exponential, problems),
        (None, Some(fixed)) => read_fixed(&fixed, problems),
        (Some(_), Some(_)) => Err(field.report(
            problems,
            ProblemKind::Inconsistent,
            "set either `exponential` or `fixed`, not both",
        )),
        (None, None) => Err(field.report(
            problems,
            ProblemKind::Missing,
            "must set `exponential = { ... }` or `fixed = [...]`",
        )),
    }
}

fn read_exponential(field: &Field<'_>, problems: &mut Problems) -> Result<Backoff, Reported> {
    let section = field.section(problems, EXPONENTIAL_KEYS)?;
    let initial = section
        .optional("initial")
        .map_or(Ok(DEFAULT_INITIAL), |f| {
            let initial = f.duration(problems)?;
            if initial.is_zero() {
                return Err(f.report(problems, ProblemKind::OutOfRange, "must be more than 0s"));
            }
            Ok(initial)
        });
    let max = section
        .optional("max")
        .map_or(Ok(DEFAULT_MAX), |f| f.duration(problems));
    let multiplier = section
        .optional("multiplier")
        .map_or(Ok(DEFAULT_MULTIPLIER), |f| {
            let multiplier = f.float(problems)?;
            if !(multiplier.is_finite() && multiplier >= 1.0) {
                return Err(f.report(
                    problems,
                    ProblemKind::OutOfRange,
                    format!(
                        "{multiplier} is out of range: must be a finite number of at least 1.0"
                    ),
                ));
            }
            Ok(multiplier)
        });
    let jitter = section.optional("jitter").map_or(Ok(DEFAULT_JITTER), |f| {
        let jitter = f.float(problems)?;
        if !JITTER_RANGE.contains(&jitter) {
            return Err(f.report(
                problems,
                ProblemKind::OutOfRange,
                format!("{jitter} is out of range: must be from 0.0 to 1.0"),
            ));
        }
        Ok(jitter)
    });
    let (initial, max) = (initial?, max?);
    if initial > max {
        let max_source = if section.optional("max").is_some() {
            ""
        } else {
            " (the default)"
        };
        return Err(problems.report(
            &section.key("initial"),
            ProblemKind::Inconsistent,
            format!(
                "initial {} is longer than max {}{max_source}",
                humantime::format_duration(initial),
                humantime::format_duration(max),
            ),
        ));
    }
    Ok(Backoff::Exponential {
        initial,
        max,
        multiplier: multiplier?,
        jitter: jitter?,
    })
}

fn read_fixed(field: &Field<'_>, problems: &mut Problems) -> Result<Backoff, Reported> {
    let items = field.non_empty_array(problems, "delay")?;
    ReadList::new(&items, problems, |f, p| f.duration(p))
        .into_values()
        .map(Backoff::Fixed)
}
