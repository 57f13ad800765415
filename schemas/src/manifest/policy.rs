//! A subscription's delivery policy: rate limit, concurrency, timeout, retries and backoff.

use std::fmt;
use std::num::NonZeroU32;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

/// The most deliveries a subscription may keep open at once.
pub(super) const MAX_IN_FLIGHT_LIMIT: u32 = 10_000;
/// The most attempts a subscription may make per event.
pub(super) const MAX_ATTEMPTS_LIMIT: u32 = 1_000;
/// The most consecutive circuit openings `fail_after_opens` may name.
pub(super) const MAX_OPENS_LIMIT: u32 = 1_000;
/// The per-attempt timeouts allowed.
pub(super) const TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(15 * 60);
/// The jitters allowed: a fraction of the delay.
pub(super) const JITTER_RANGE: RangeInclusive<f64> = 0.0..=1.0;

/// The default exponential backoff: 1 s, doubling, at most 5 minutes, jitter 0.2.
pub(super) const DEFAULT_INITIAL: Duration = Duration::from_secs(1);
pub(super) const DEFAULT_MAX: Duration = Duration::from_secs(5 * 60);
pub(super) const DEFAULT_MULTIPLIER: f64 = 2.0;
pub(super) const DEFAULT_JITTER: f64 = 0.2;

const DEFAULT_MAX_IN_FLIGHT: NonZeroU32 = NonZeroU32::new(16).expect("16 is not zero");
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_ATTEMPTS: NonZeroU32 = NonZeroU32::new(5).expect("5 is not zero");

/// How the dispatcher delivers one subscription's events to the plugin.
///
/// It is the fully resolved policy: the subscription's own `[subscriptions.policy]`, then the
/// manifest's `[defaults]`, then the built-in defaults of [`DeliveryPolicy::default`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPolicy {
    /// At most this many deliveries start per period; `None` is unlimited.
    pub rate: Option<Rate>,
    /// How many deliveries may start at once after an idle spell (the token bucket's size).
    /// Has no effect without a `rate`.
    pub burst: NonZeroU32,
    /// At most this many deliveries are awaiting the plugin's answer at once (1 to 10 000).
    pub max_in_flight: NonZeroU32,
    /// How long one attempt may take before it counts as failed (1 ms to 15 minutes).
    pub timeout: Duration,
    /// How many attempts an event gets before it is dead-lettered (1 to 1000), the first
    /// delivery included.
    pub max_attempts: NonZeroU32,
    /// How long to wait before each retry.
    pub backoff: Backoff,
    /// After this many consecutive openings of the subscription's circuit breaker with no
    /// success in between (1 to 1000), the dispatcher marks the plugin `failed`: its events
    /// are held until an operator enables it again. `None` (the default): never.
    pub fail_after_opens: Option<NonZeroU32>,
}

impl Default for DeliveryPolicy {
    /// Unlimited rate, burst 1, 16 in flight, 30 s timeout, 5 attempts, the default backoff.
    fn default() -> Self {
        Self {
            rate: None,
            burst: NonZeroU32::MIN,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            timeout: DEFAULT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::default(),
            fail_after_opens: None,
        }
    }
}

/// The period of a [`Rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RatePeriod {
    /// Per second: `N/s`.
    Second,
    /// Per minute: `N/m`.
    Minute,
    /// Per hour: `N/h`.
    Hour,
}

impl RatePeriod {
    /// The period as a duration.
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.seconds().into())
    }

    fn seconds(self) -> u32 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3600,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Self::Second => "s",
            Self::Minute => "m",
            Self::Hour => "h",
        }
    }

    fn from_suffix(suffix: &str) -> Option<Self> {
        [Self::Second, Self::Minute, Self::Hour]
            .into_iter()
            .find(|period| period.suffix() == suffix)
    }
}

/// A rate limit: `count` deliveries per `per`. Kept as a count and a period, not as a float,
/// so that `30/m` stays exactly that. Written `100/s`, `30/m` or `500/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// How many deliveries per period.
    pub count: NonZeroU32,
    /// The period.
    pub per: RatePeriod,
}

impl Rate {
    /// `count` deliveries per `per`.
    pub fn new(count: NonZeroU32, per: RatePeriod) -> Self {
        Self { count, per }
    }

    /// The rate in deliveries per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count.get()) / f64::from(self.per.seconds())
    }

    /// The burst used when none is configured: the per-second rate rounded up, at least 1.
    pub fn default_burst(&self) -> NonZeroU32 {
        let per_second = self.count.get().div_ceil(self.per.seconds());
        NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.per.suffix())
    }
}

/// Why a string is not a [`Rate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseRateError {
    /// Not of the form `N/s`, `N/m` or `N/h`.
    #[error("`{value}` is not a rate; write \"N/s\", \"N/m\" or \"N/h\", e.g. \"100/s\"")]
    Malformed {
        /// The refused text.
        value: String,
    },
    /// The count is 0 or does not fit in 32 bits.
    #[error("rate `{value}`: the count must be from 1 to {}", u32::MAX)]
    CountOutOfRange {
        /// The refused text.
        value: String,
    },
}

impl FromStr for Rate {
    type Err = ParseRateError;

    /// Reads `N/s`, `N/m` or `N/h`, with `N` a whole number from 1.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let malformed = || ParseRateError::Malformed {
            value: value.to_owned(),
        };
        let (count, suffix) = value.split_once('/').ok_or_else(malformed)?;
        let per = RatePeriod::from_suffix(suffix).ok_or_else(malformed)?;
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        let count = count
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| ParseRateError::CountOutOfRange {
                value: value.to_owned(),
            })?;
        Ok(Self { count, per })
    }
}

/// How long to wait before each retry.
#[derive(Debug, Clone, PartialEq)]
pub enum Backoff {
    /// `initial * multiplier^(n-1)` before retry `n`, capped at `max`, spread by `jitter`.
    Exponential {
        /// The delay before the first retry.
        initial: Duration,
        /// No delay is longer than this.
        max: Duration,
        /// How much each delay grows over the previous one (at least 1.0).
        multiplier: f64,
        /// How much a delay may be moved at random, as a fraction of it (0.0 to 1.0): with
        /// 0.2, a delay of 10 s becomes anything from 8 s to 12 s. Spreads retries of events
        /// that failed together.
        jitter: f64,
    },
    /// Retry `n` waits the `n`-th delay; once they run out, the last one repeats.
    Fixed(Vec<Duration>),
}

impl Default for Backoff {
    /// Exponential: 1 s, doubling, at most 5 minutes, jitter 0.2.
    fn default() -> Self {
        Self::Exponential {
            initial: DEFAULT_INITIAL,
            max: DEFAULT_MAX,
            multiplier: DEFAULT_MULTIPLIER,
            jitter: DEFAULT_JITTER,
        }
    }
}

impl Backoff {
    /// The delay before retry `attempt` (1 is the first retry; 0 is read as 1).
    ///
    /// `random_unit` is a random number in `[0, 1)` from the caller, so that this stays pure
    /// and testable; 0.5 means no jitter. Values outside `[0, 1]` are clamped, and a NaN is
    /// read as 0.5. A `Fixed` backoff ignores it, and an empty `Fixed` list waits zero.
    ///
    /// Exponential: `initial * multiplier^(attempt-1)`, capped at `max`, then multiplied by a
    /// factor from `1 - jitter` to `1 + jitter` chosen by `random_unit`, and capped at `max`
    /// again.
    pub fn delay(&self, attempt: u32, random_unit: f64) -> Duration {
        let retry = attempt.max(1);
        match self {
            Self::Fixed(delays) => {
                let index = usize::try_from(retry - 1).unwrap_or(usize::MAX);
                delays
                    .get(index)
                    .or(delays.last())
                    .copied()
                    .unwrap_or(Duration::ZERO)
            }
            Self::Exponential {
                initial,
                max,
                multiplier,
                jitter,
            } => {
                let exponent = i32::try_from(retry - 1).unwrap_or(i32::MAX);
                // In nanoseconds, rounded at the end, so that 10 s * 0.8 is 8 s and not a hair
                // under it. f64 is exact to the nanosecond up to about 100 days.
                let max_nanos = max.as_nanos() as f64;
                let grown = initial.as_nanos() as f64 * multiplier.powi(exponent);
                // An overflowing growth (inf) or a hand-built NaN multiplier lands on the cap.
                let capped = if grown.is_finite() {
                    grown.clamp(0.0, max_nanos)
                } else {
                    max_nanos
                };
                let unit = if random_unit.is_nan() {
                    0.5
                } else {
                    random_unit.clamp(0.0, 1.0)
                };
                let spread = if jitter.is_nan() {
                    0.0
                } else {
                    jitter.clamp(0.0, 1.0)
                };
                let factor = 1.0 + spread * (2.0 * unit - 1.0);
                // `as` saturates: a delay past u64 nanoseconds (584 years) stops there.
                Duration::from_nanos((capped * factor).min(max_nanos).round() as u64)
            }
        }
    }
}
