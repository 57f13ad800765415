//! When to start a worker again after it ended: exponential backoff, reset once it has run
//! long enough, and a crash loop called when it ended too often in a window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a supervised worker is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The pause before the first restart.
    pub initial: Duration,
    /// The longest pause.
    pub max: Duration,
    /// A worker that ran this long before it ended starts again after `initial`.
    pub stable_after: Duration,
    /// This many ends within `window` is a crash loop: no more restarts.
    pub crash_loop_ends: u32,
    /// The window the ends are counted in.
    pub window: Duration,
}

impl Default for RestartPolicy {
    /// 500 ms doubling to 30 s, reset after 60 s up; 5 ends in 5 minutes is a crash loop.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            stable_after: Duration::from_secs(60),
            crash_loop_ends: 5,
            window: Duration::from_secs(300),
        }
    }
}

/// What to do after a worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this pause.
    Restart(Duration),
    /// It ended `ends` times within the policy's window: stop restarting it.
    CrashLoop {
        /// How many times it ended in the window.
        ends: u32,
    },
}

/// The restart history of one worker instance.
#[derive(Debug, Clone)]
pub struct Restarts {
    policy: RestartPolicy,
    ends: VecDeque<Instant>,
    next_pause: Duration,
}

impl Restarts {
    /// A worker that has not ended yet.
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            ends: VecDeque::new(),
            next_pause: policy.initial,
        }
    }

    /// The worker ended at `at` after running for `uptime`: restart it after a pause, or
    /// call it a crash loop.
    pub fn ended(&mut self, at: Instant, uptime: Duration) -> Decision {
        if uptime >= self.policy.stable_after {
            self.next_pause = self.policy.initial;
        }
        self.ends.push_back(at);
        while self
            .ends
            .front()
            .is_some_and(|first| at.duration_since(*first) > self.policy.window)
        {
            self.ends.pop_front();
        }
        let ends = u32::try_from(self.ends.len()).unwrap_or(u32::MAX);
        if ends >= self.policy.crash_loop_ends {
            return Decision::CrashLoop { ends };
        }
        let pause = self.next_pause;
        self.next_pause = (self.next_pause * 2).min(self.policy.max);
        Decision::Restart(pause)
    }

    /// How many times it was restarted so far (ends that led to a restart).
    pub fn count(&self) -> usize {
        self.ends.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RestartPolicy {
        RestartPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
            stable_after: Duration::from_secs(10),
            crash_loop_ends: 5,
            window: Duration::from_secs(60),
        }
    }

    #[test]
    fn pauses_double_up_to_the_max_and_a_loop_stops_restarts() {
        let mut restarts = Restarts::new(policy());
        let start = Instant::now();
        let quick = Duration::from_millis(10);
        let pauses: Vec<Decision> = (0..5)
            .map(|n| restarts.ended(start + Duration::from_secs(n), quick))
            .collect();
        let ms = |n| Decision::Restart(Duration::from_millis(n));
        assert_eq!(
            pauses,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(400),
                Decision::CrashLoop { ends: 5 }
            ]
        );
    }

    #[test]
    fn a_stable_run_resets_the_pause_and_old_ends_leave_the_window() {
        let mut restarts = Restarts::new(policy());
        let start = Instant::now();
        let quick = Duration::from_millis(10);
        restarts.ended(start, quick);
        restarts.ended(start + Duration::from_secs(1), quick);
        // Ran 20 s: back to the first pause.
        let decision = restarts.ended(start + Duration::from_secs(30), Duration::from_secs(20));
        assert_eq!(decision, Decision::Restart(Duration::from_millis(100)));
        // Two minutes later the first three are out of the window: no loop.
        for n in 0..3 {
            let at = start + Duration::from_secs(150 + n);
            assert!(matches!(restarts.ended(at, quick), Decision::Restart(_)));
        }
    }
}
