//! Keeping a held event from being redelivered while the dispatcher legitimately waits
//! (rate limiter, open circuit, absent worker): JetStream's ack wait is extended with
//! "in progress" acknowledgements at a steady interval.

use std::future::Future;
use std::time::Duration;

/// Runs `work`; every `interval` until it finishes, awaits `tick` (the in-progress ack).
///
/// The first tick comes one interval after the start, so short waits cost nothing.
pub async fn keep_alive<W, T, TF>(interval: Duration, mut tick: T, work: W) -> W::Output
where
    W: Future,
    T: FnMut() -> TF,
    TF: Future<Output = ()>,
{
    tokio::pin!(work);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = ticker.tick() => tick().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_at_the_interval_while_the_work_runs() {
        let ticks = AtomicU32::new(0);
        let value = keep_alive(
            Duration::from_secs(10),
            || async {
                ticks.fetch_add(1, Ordering::SeqCst);
            },
            async {
                tokio::time::sleep(Duration::from_secs(35)).await;
                7
            },
        )
        .await;
        assert_eq!(value, 7);
        assert_eq!(ticks.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn short_work_never_ticks() {
        let ticks = AtomicU32::new(0);
        keep_alive(
            Duration::from_secs(10),
            || async {
                ticks.fetch_add(1, Ordering::SeqCst);
            },
            tokio::time::sleep(Duration::from_secs(9)),
        )
        .await;
        assert_eq!(ticks.load(Ordering::SeqCst), 0);
    }
}
