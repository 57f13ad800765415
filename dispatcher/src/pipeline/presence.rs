//! Whether any worker of a plugin is connected.
//!
//! A delivery that meets "no responders" marks the plugin absent and waits here, keeping its
//! event (and its attempt count) instead of failing it. While absent, one prober asks the
//! delivery subject with growing pauses (capped, so there is no busy loop); a worker's hello
//! on the control subject ends the wait at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The first pause between probes; it doubles up to [`MAX_PROBE_INTERVAL`].
pub const FIRST_PROBE_INTERVAL: Duration = Duration::from_millis(50);
/// The longest pause between probes.
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Presence of one plugin's workers, shared by its subscriptions.
#[derive(Debug)]
pub struct Presence {
    present: watch::Sender<bool>,
}

impl Presence {
    /// Workers are assumed present until a delivery finds none.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            present: watch::channel(true).0,
        })
    }

    /// Whether workers are believed present.
    pub fn is_present(&self) -> bool {
        *self.present.borrow()
    }

    /// Follows the presence: each change (workers gone, workers back).
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.present.subscribe()
    }

    /// Records that a delivery found no worker. Returns true when this changed the state, so
    /// that exactly one caller starts probing.
    pub fn mark_absent(&self) -> bool {
        self.present
            .send_if_modified(|present| std::mem::replace(present, false))
    }

    /// Records that a worker answered or said hello.
    pub fn mark_present(&self) {
        self.present
            .send_if_modified(|present| !std::mem::replace(present, true));
    }

    /// Waits until workers are present.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn wait_present(&self) {
        let mut rx = self.present.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|present| *present).await;
    }

    /// Probes with `probe` (true: a worker is there) until one answers or the plugin is
    /// marked present by someone else, pausing from [`FIRST_PROBE_INTERVAL`] up to
    /// [`MAX_PROBE_INTERVAL`] between probes.
    pub async fn probe_until_present<P, F>(&self, mut probe: P)
    where
        P: FnMut() -> F,
        F: std::future::Future<Output = bool>,
    {
        let mut pause = FIRST_PROBE_INTERVAL;
        while !self.is_present() {
            tokio::select! {
                () = self.wait_present() => return,
                () = tokio::time::sleep(pause) => {}
            }
            if probe().await {
                self.mark_present();
                return;
            }
            pause = (pause * 2).min(MAX_PROBE_INTERVAL);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn only_the_first_absence_starts_probing() {
        let p = Presence::new();
        assert!(p.mark_absent());
        assert!(!p.mark_absent());
        p.mark_present();
        assert!(p.mark_absent());
    }

    #[tokio::test(start_paused = true)]
    async fn probes_back_off_to_a_cap_and_stop_when_a_worker_answers() {
        let p = Presence::new();
        p.mark_absent();
        let probes = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        p.probe_until_present(|| async {
            // The worker appears at the 10th probe.
            probes.fetch_add(1, Ordering::SeqCst) + 1 >= 10
        })
        .await;
        assert!(p.is_present());
        assert_eq!(probes.load(Ordering::SeqCst), 10);
        // 50+100+200+400+800 ms, then 1 s five times: no faster than the cap allows.
        assert_eq!(started.elapsed(), Duration::from_millis(6550));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hello_ends_the_wait_without_a_probe() {
        let p = Presence::new();
        p.mark_absent();
        let waiter = tokio::spawn({
            let p = Arc::clone(&p);
            async move { p.wait_present().await }
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!waiter.is_finished());
        p.mark_present();
        waiter.await.unwrap();
    }
}
