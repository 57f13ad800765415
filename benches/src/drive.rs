//! Driving a load through a system under test: publish at a pace (or flat out), keeping a
//! bounded number of publish acknowledgements outstanding, and wait until every delivery is
//! settled.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;

use crate::wire::Wire;
use crate::{BenchError, BenchResult};

/// Publishes awaiting their acknowledgement at once. Large enough that publishing never
/// waits on the stream's round trip at the paced rates, the same for every system.
pub const PUBLISH_WINDOW: usize = 256;
/// How often completion is checked. Runs last seconds, so 1 ms is below 0.1 % of a run.
const SETTLE_POLL: Duration = Duration::from_millis(1);
/// Pacing granularity: tokio's timers have millisecond resolution, so a paced run publishes
/// the events due in each millisecond together.
const PACE_TICK: Duration = Duration::from_millis(1);

/// How fast events are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// As fast as publishing allows (with [`PUBLISH_WINDOW`] acknowledgements outstanding).
    FlatOut,
    /// This many events per second.
    Paced {
        /// Events per second.
        per_second: u32,
    },
}

/// A system under test, set up and ready to deliver.
pub trait System {
    /// Publishes event number `seq` and waits for the stream to store it. The publish time
    /// is stamped into the event when the future is first polled, right before sending.
    fn publish(&self, seq: u64) -> impl Future<Output = BenchResult<()>>;

    /// How many deliveries have been settled (acknowledged or dead-lettered) so far, over
    /// the plugins that count for this run.
    fn settled(&self) -> u64;

    /// What the system's connections have carried so far.
    fn wire(&self) -> Wire;
}

/// What one drive took.
#[derive(Debug, Clone, Copy)]
pub struct Drive {
    /// From the first publish until the last delivery was settled.
    pub elapsed: Duration,
    /// From the first publish until the last was acknowledged by the stream.
    pub publishing: Duration,
}

/// Publishes `events` events under `load` and waits until `settlements` deliveries are
/// settled, or fails after `timeout`.
///
/// # Errors
/// When a publish fails, or the deliveries do not settle in time.
pub async fn drive<S: System>(
    system: &S,
    load: Load,
    events: u64,
    settlements: u64,
    timeout: Duration,
) -> BenchResult<Drive> {
    let start = Instant::now();
    let publishing = async {
        publish_all(system, load, events, start).await?;
        Ok::<_, BenchError>(start.elapsed())
    };
    let settling = async {
        let deadline = start + timeout;
        let mut poll = tokio::time::interval(SETTLE_POLL);
        loop {
            poll.tick().await;
            let settled = system.settled();
            if settled >= settlements {
                return Ok(start.elapsed());
            }
            if Instant::now() > deadline {
                return Err(BenchError::new(
                    "wait for the deliveries",
                    format!("only {settled} of {settlements} settled within {timeout:?}"),
                ));
            }
        }
    };
    let (publishing, elapsed) = futures::try_join!(publishing, settling)?;
    Ok(Drive {
        elapsed,
        publishing,
    })
}

async fn publish_all<S: System>(
    system: &S,
    load: Load,
    events: u64,
    start: Instant,
) -> BenchResult<()> {
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0;
    let mut pace = tokio::time::interval(PACE_TICK);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while sent < events || !in_flight.is_empty() {
        let due = match load {
            Load::FlatOut => events,
            Load::Paced { per_second } => {
                let due = start.elapsed().as_secs_f64() * f64::from(per_second);
                (due as u64).min(events)
            }
        };
        while sent < due && in_flight.len() < PUBLISH_WINDOW {
            in_flight.push(system.publish(sent));
            sent += 1;
        }
        let pacing = sent < events && matches!(load, Load::Paced { .. });
        tokio::select! {
            Some(published) = in_flight.next(), if !in_flight.is_empty() => published?,
            _ = pace.tick(), if pacing => {}
            // Unreachable: the loop only goes on with something in flight or still to pace.
            else => {}
        }
    }
    Ok(())
}
