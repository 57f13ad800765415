//! The live view: the overview computed once a second while someone watches, for all viewers
//! together (a hundred open consoles cost what one does).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::management::Management;

/// The latest overview as JSON text, or what kept it from being read.
pub type Update = Result<Arc<String>, Arc<String>>;

/// The live view's updates. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Live {
    updates: watch::Sender<Update>,
}

impl Live {
    /// How often the overview is computed while someone watches.
    pub const EVERY: Duration = Duration::from_secs(1);
    /// How often a viewer's token is checked again.
    pub const RECHECK: Duration = Duration::from_secs(5);

    /// The live view of `management`, and the task that computes it (aborted with the
    /// console).
    pub fn start(management: Management) -> (Self, JoinHandle<()>) {
        let (updates, _) = watch::channel(Ok(Arc::new("{}".to_owned())));
        let live = Self { updates };
        let sender = live.updates.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Self::EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if sender.receiver_count() == 0 {
                    continue;
                }
                let update = match management.overview().await {
                    Ok(overview) => Ok(Arc::new(overview.to_string())),
                    Err(error) => Err(Arc::new(error.body().to_string())),
                };
                let _previous = sender.send_replace(update);
            }
        });
        (live, task)
    }

    /// A viewer's receiver of updates.
    pub fn subscribe(&self) -> watch::Receiver<Update> {
        self.updates.subscribe()
    }
}
