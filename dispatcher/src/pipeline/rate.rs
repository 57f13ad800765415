//! Rate limiting: at most `count` deliveries per `period`, with bursts, per (plugin,
//! subscription). A thin layer over `governor`, driven by tokio's clock so that tests can
//! pause time.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;

/// governor's clock, reading tokio's (pausable) time as the duration since creation.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        tokio::time::Instant::now() - self.origin
    }
}

type Limiter = governor::RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// A rate limit: waits until the next delivery is allowed.
#[derive(Debug)]
pub struct RateLimit {
    limiter: Limiter,
}

impl RateLimit {
    /// `count` deliveries per `period`, and up to `burst` at once after a quiet spell.
    ///
    /// # Panics
    /// When `period` divided by `count` is zero (a rate above one per nanosecond).
    pub fn new(count: NonZeroU32, period: Duration, burst: NonZeroU32) -> Self {
        let interval = period / count.get();
        let quota = Quota::with_period(interval)
            .expect("a rate of at most one per nanosecond")
            .allow_burst(burst);
        let clock = TokioClock {
            origin: tokio::time::Instant::now(),
        };
        Self {
            limiter: governor::RateLimiter::direct_with_clock(quota, clock),
        }
    }

    /// Takes a turn if one is free now; otherwise says how long until the next one is.
    ///
    /// # Errors
    /// The wait until the next turn, when none is free now.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Waits until a delivery is allowed, and takes it. Returns how long it waited.
    ///
    /// # Cancel safety
    /// Cancel-safe: a cancelled wait takes nothing.
    pub async fn acquire(&self) -> Duration {
        let started = tokio::time::Instant::now();
        loop {
            match self.limiter.check() {
                Ok(()) => return started.elapsed(),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.limiter.clock().now());
                    tokio::time::sleep(wait.max(Duration::from_micros(1))).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_second(count: u32, burst: u32) -> RateLimit {
        RateLimit::new(
            NonZeroU32::new(count).unwrap(),
            Duration::from_secs(1),
            NonZeroU32::new(burst).unwrap(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_at_once_then_the_rate_holds() {
        let limit = per_second(10, 5);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            assert_eq!(limit.acquire().await, Duration::ZERO);
        }
        // The next 10 take one interval (100 ms) each.
        for _ in 0..10 {
            limit.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_millis(1010),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_try_says_how_long_until_the_next_turn() {
        let limit = per_second(4, 1);
        assert_eq!(limit.try_acquire(), Ok(()));
        assert_eq!(limit.try_acquire(), Err(Duration::from_millis(250)));
        tokio::time::advance(Duration::from_millis(250)).await;
        assert_eq!(limit.try_acquire(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_spell_refills_the_burst() {
        let limit = per_second(2, 2);
        limit.acquire().await;
        limit.acquire().await;
        assert!(limit.acquire().await >= Duration::from_millis(499));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(limit.acquire().await, Duration::ZERO);
        assert_eq!(limit.acquire().await, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn periods_other_than_a_second_work() {
        let limit = RateLimit::new(
            NonZeroU32::new(60).unwrap(),
            Duration::from_secs(60),
            NonZeroU32::new(1).unwrap(),
        );
        limit.acquire().await;
        let waited = limit.acquire().await;
        assert!(
            waited >= Duration::from_millis(999) && waited <= Duration::from_millis(1001),
            "{waited:?}"
        );
    }
}
