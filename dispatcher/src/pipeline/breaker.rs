//! The circuit breaker: after `failure_threshold` consecutive failed attempts a plugin's
//! deliveries pause for `cooldown`; then one probe goes through, and its result closes the
//! circuit again or re-opens it for another cooldown.
//!
//! An attempt that never reached a worker (no worker connected) is neither a success nor a
//! failure: the breaker judges the plugin's handling, not its presence.
//!
//! It also counts how many times in a row it opened with no success in between
//! ([`CircuitBreaker::opens_in_a_row`]): what `fail_after_opens` compares with.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed attempts that open the circuit.
    pub failure_threshold: NonZeroU32,
    /// How long an open circuit stays open before a probe.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: NonZeroU32::new(5).expect("5 is not zero"),
            cooldown: Duration::from_secs(30),
        }
    }
}

/// The state operators see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CircuitState {
    /// Deliveries flow.
    Closed,
    /// Deliveries are paused until the cooldown ends.
    Open,
    /// One probe delivery is allowed; its result decides.
    HalfOpen,
}

impl CircuitState {
    /// The state's name, as operators read it and as it is serialized: `closed`, `open`,
    /// `half-open`.
    pub fn name(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

impl State {
    fn public(self) -> CircuitState {
        match self {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

/// A circuit breaker shared by the deliveries of one (plugin, subscription).
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<State>,
    changes: watch::Sender<CircuitState>,
    /// Openings since the last success; written under `state`'s lock.
    opens: AtomicU32,
}

/// Permission to make one attempt. Report its result with [`Admission::record`]; dropping it
/// unreported (the worker was absent, or shutdown) counts as neither success nor failure.
#[derive(Debug)]
#[must_use]
pub struct Admission {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    recorded: bool,
}

enum Wait {
    Until(Instant),
    Change,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
            changes: watch::channel(CircuitState::Closed).0,
            opens: AtomicU32::new(0),
        })
    }

    /// How many times the circuit opened since the last success (a probe that failed opens
    /// it again); 0 after any success.
    pub fn opens_in_a_row(&self) -> u32 {
        self.opens.load(Ordering::Relaxed)
    }

    /// The current state.
    pub fn state(&self) -> CircuitState {
        self.lock().public()
    }

    /// A receiver that sees every state change.
    pub fn subscribe(&self) -> watch::Receiver<CircuitState> {
        self.changes.subscribe()
    }

    /// Waits until an attempt may be made: at once while closed; after the cooldown while
    /// open; in half-open, when no other probe is under way.
    ///
    /// # Cancel safety
    /// Cancel-safe: a cancelled wait takes no permission.
    pub async fn admit(self: &Arc<Self>) -> Admission {
        loop {
            // Subscribe before looking, so a change between the look and the wait is seen.
            let mut changes = self.changes.subscribe();
            let wait = {
                let mut state = self.lock();
                match *state {
                    State::Closed { .. } => return self.admission(false),
                    State::Open { until } if Instant::now() >= until => {
                        self.set(&mut state, State::HalfOpen { probing: true });
                        return self.admission(true);
                    }
                    State::Open { until } => Wait::Until(until),
                    State::HalfOpen { probing: false } => {
                        *state = State::HalfOpen { probing: true };
                        return self.admission(true);
                    }
                    State::HalfOpen { probing: true } => Wait::Change,
                }
            };
            match wait {
                Wait::Until(until) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        _ = changes.changed() => {}
                    }
                }
                Wait::Change => {
                    let _ = changes.changed().await;
                }
            }
        }
    }

    /// Waits until an attempt could be admitted: the circuit is closed or half-open, or open
    /// with its cooldown over (the next attempt is the probe). Takes no permission: a pull
    /// loop waits here before fetching more, so that an open circuit fetches nothing, yet the
    /// event that becomes the probe is fetched when the cooldown ends.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn until_admitting(&self) {
        loop {
            // Subscribe before looking, so a change between the look and the wait is seen.
            let mut changes = self.changes.subscribe();
            let until = match *self.lock() {
                State::Open { until } if Instant::now() < until => until,
                _ => return,
            };
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                _ = changes.changed() => {}
            }
        }
    }

    fn admission(self: &Arc<Self>, probe: bool) -> Admission {
        Admission {
            breaker: Arc::clone(self),
            probe,
            recorded: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every write is one assignment.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set(&self, state: &mut State, next: State) {
        let changed = state.public() != next.public();
        *state = next;
        if changed {
            self.changes.send_replace(next.public());
        }
    }

    fn open(&self, state: &mut State) {
        let until = Instant::now() + self.config.cooldown;
        // Counted before the change is published, so that a watcher sees the count with it.
        self.opens.fetch_add(1, Ordering::Relaxed);
        self.set(state, State::Open { until });
    }

    /// A success: the openings in a row start again from 0.
    fn succeeded(&self) {
        if self.opens.load(Ordering::Relaxed) != 0 {
            self.opens.store(0, Ordering::Relaxed);
        }
    }

    fn on_result(&self, probe: bool, success: bool) {
        let mut state = self.lock();
        match (*state, probe, success) {
            (State::Closed { .. }, _, true) => {
                *state = State::Closed { failures: 0 };
                self.succeeded();
            }
            (State::Closed { failures }, _, false) => {
                let failures = failures + 1;
                if failures >= self.config.failure_threshold.get() {
                    self.open(&mut state);
                } else {
                    *state = State::Closed { failures };
                }
            }
            (State::HalfOpen { .. }, true, true) => {
                self.succeeded();
                self.set(&mut state, State::Closed { failures: 0 });
            }
            (State::HalfOpen { .. }, true, false) => self.open(&mut state),
            // Results of attempts admitted before the circuit opened do not move it.
            (State::HalfOpen { .. } | State::Open { .. }, _, _) => {}
        }
    }

    fn on_unrecorded_probe(&self) {
        let mut state = self.lock();
        if let State::HalfOpen { probing: true } = *state {
            *state = State::HalfOpen { probing: false };
            // Wake a waiter so that another attempt can probe.
            self.changes.send_replace(CircuitState::HalfOpen);
        }
    }
}

impl Admission {
    /// Whether this attempt is the half-open probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports the attempt's result: `true` when the worker handled the event.
    pub fn record(mut self, success: bool) {
        self.recorded = true;
        self.breaker.on_result(self.probe, success);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.recorded && self.probe {
            self.breaker.on_unrecorded_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32, cooldown_secs: u64) -> Arc<CircuitBreaker> {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold: NonZeroU32::new(threshold).unwrap(),
            cooldown: Duration::from_secs(cooldown_secs),
        })
    }

    async fn fail(b: &Arc<CircuitBreaker>, times: u32) {
        for _ in 0..times {
            b.admit().await.record(false);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_n_consecutive_failures_only() {
        let b = breaker(3, 10);
        fail(&b, 2).await;
        b.admit().await.record(true); // a success resets the count
        fail(&b, 2).await;
        assert_eq!(b.state(), CircuitState::Closed);
        fail(&b, 1).await;
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_circuit_holds_attempts_for_the_cooldown_then_probes() {
        let b = breaker(1, 10);
        fail(&b, 1).await;
        let start = Instant::now();
        let probe = b.admit().await;
        assert!(probe.is_probe());
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(b.state(), CircuitState::HalfOpen);
        probe.record(true);
        assert_eq!(b.state(), CircuitState::Closed);
        assert!(!b.admit().await.is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_circuit_admits_again_when_its_cooldown_ends() {
        let b = breaker(1, 10);
        let start = Instant::now();
        b.until_admitting().await;
        assert_eq!(start.elapsed(), Duration::ZERO, "closed: at once");
        fail(&b, 1).await;
        b.until_admitting().await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(b.state(), CircuitState::Open, "waiting takes no probe");
        assert!(b.admit().await.is_probe());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_for_another_cooldown() {
        let b = breaker(1, 10);
        fail(&b, 1).await;
        b.admit().await.record(false);
        assert_eq!(b.state(), CircuitState::Open);
        let start = Instant::now();
        b.admit().await.record(true);
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn only_one_probe_at_a_time_and_others_wait_for_its_result() {
        let b = breaker(1, 1);
        fail(&b, 1).await;
        let probe = b.admit().await;
        let waiter = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.admit().await.is_probe() }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            !waiter.is_finished(),
            "a second attempt waits while probing"
        );
        probe.record(true);
        assert!(
            !waiter.await.unwrap(),
            "after the probe closed it, a normal attempt"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreported_probe_lets_another_attempt_probe() {
        let b = breaker(1, 1);
        fail(&b, 1).await;
        let probe = b.admit().await;
        let waiter = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.admit().await.is_probe() }
        });
        drop(probe); // e.g. the worker was absent
        assert!(waiter.await.unwrap(), "the next attempt becomes the probe");
    }

    #[tokio::test(start_paused = true)]
    async fn openings_in_a_row_count_until_a_success() {
        let b = breaker(1, 1);
        fail(&b, 1).await;
        assert_eq!(b.opens_in_a_row(), 1);
        b.admit().await.record(false); // the probe fails: open again
        assert_eq!(b.opens_in_a_row(), 2);
        b.admit().await.record(true); // the probe succeeds
        assert_eq!(b.opens_in_a_row(), 0);
        fail(&b, 1).await;
        assert_eq!(
            b.opens_in_a_row(),
            1,
            "counting starts again after a success"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn state_changes_are_published() {
        let b = breaker(1, 5);
        let mut changes = b.subscribe();
        fail(&b, 1).await;
        changes.changed().await.unwrap();
        assert_eq!(*changes.borrow_and_update(), CircuitState::Open);
    }
}
