//! What dispatchers tell operators about themselves: the circuit state of each (plugin,
//! subscription), per dispatcher instance, in a key-value bucket.
//!
//! Each instance writes its own key `{plugin}.{subscription}.{instance}` when a state changes
//! and again every [`REFRESH`], and a heartbeat `_alive.{instance}` every [`HEARTBEAT`]; it
//! deletes its keys when it stops gracefully. An instance whose heartbeat is older than
//! [`STALE_AFTER`] (three missed heartbeats) is presumed gone (killed, frozen or cut off):
//! readers show its reports as such and leave them out of the circuit summary. The bucket
//! itself forgets keys after [`MAX_AGE`], so nobody has to clean up after the dead.
//!
//! The heartbeat is one write per instance, not per subscription: a dispatcher serving a
//! thousand plugins re-writes their states every 20 s, but proves it is alive every 5 s.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use switchyard_bus::stream_name;
use switchyard_schemas::{Namespace, PluginId};
use time::OffsetDateTime;

use crate::pipeline::breaker::CircuitState;

/// How often a dispatcher re-writes its states (well within [`MAX_AGE`]).
pub const REFRESH: Duration = Duration::from_secs(20);
/// How often a dispatcher writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// How old an instance's last heartbeat may be before it is presumed gone: three missed
/// heartbeats, so that one slow or lost write is not mistaken for a death.
pub const STALE_AFTER: Duration = Duration::from_secs(3 * HEARTBEAT.as_secs());
/// The key prefix of heartbeats.
const ALIVE: &str = "_alive";
/// How long a state is kept without being re-written, after which the bucket drops it.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// One instance's report about one (plugin, subscription).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CircuitReport {
    /// The plugin.
    pub plugin: PluginId,
    /// The subscription.
    pub subscription: String,
    /// The dispatcher instance.
    pub instance: String,
    /// Its circuit state.
    pub state: CircuitState,
    /// When it was written: by the dispatcher's clock as published, and by nats-server's
    /// clock as read back by [`StatusBoard::circuits`] (so that one skewed dispatcher clock
    /// cannot make its reports look fresh or stale).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl CircuitReport {
    fn key(&self) -> String {
        format!("{}.{}.{}", self.plugin, self.subscription, self.instance)
    }
}

/// A report as read back, with when its instance was last seen alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenReport {
    /// The report.
    pub report: CircuitReport,
    /// The instance's latest sign of life by nats-server's clock: its heartbeat, or this
    /// report's write when that is later.
    pub last_seen: OffsetDateTime,
}

impl SeenReport {
    /// How long before `now` the instance was last seen (zero if that is in the future).
    pub fn age(&self, now: OffsetDateTime) -> Duration {
        Duration::try_from(now - self.last_seen).unwrap_or(Duration::ZERO)
    }

    /// Whether, at `now`, the instance has not been seen for more than [`STALE_AFTER`] and
    /// is presumed gone.
    pub fn is_stale(&self, now: OffsetDateTime) -> bool {
        self.age(now) > STALE_AFTER
    }
}

/// A heartbeat's value: which instance, and when by its own clock (for humans reading the
/// bucket; readers use the server's time of the write).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Heartbeat {
    instance: String,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
}

/// Why the status board could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("status bucket `{bucket}`: {action}: {reason}")]
pub struct StatusError {
    /// The bucket.
    pub bucket: String,
    /// What was being done.
    pub action: &'static str,
    /// What happened.
    pub reason: String,
}

/// The status bucket of a deployment.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    store: kv::Store,
    bucket: String,
}

impl StatusBoard {
    /// Opens the bucket `{PREFIX}_STATUS`, creating it when missing.
    ///
    /// # Errors
    /// A [`StatusError`] when JetStream refuses.
    pub async fn open(js: &jetstream::Context, namespace: &Namespace) -> Result<Self, StatusError> {
        let bucket = stream_name(namespace, "STATUS");
        let error = |action, reason: String| StatusError {
            bucket: bucket.clone(),
            action,
            reason,
        };
        let store = switchyard_bus::kv::open_or_create(
            js,
            kv::Config {
                bucket: bucket.clone(),
                description: "Switchyard dispatcher status: circuit states".to_owned(),
                history: 1,
                max_age: MAX_AGE,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| error(e.action, e.reason))?;
        Ok(Self { store, bucket })
    }

    /// Writes one report.
    ///
    /// # Errors
    /// A [`StatusError`] when the write is not acknowledged.
    pub async fn publish(&self, report: &CircuitReport) -> Result<(), StatusError> {
        let value = serde_json::to_vec(report).map_err(|e| self.error("encode", e))?;
        self.store
            .put(report.key(), value.into())
            .await
            .map_err(|e| self.error("write", e))?;
        Ok(())
    }

    /// Writes `instance`'s heartbeat: it is alive now.
    ///
    /// # Errors
    /// A [`StatusError`] when the write is not acknowledged.
    pub async fn heartbeat(&self, instance: &str) -> Result<(), StatusError> {
        let value = serde_json::to_vec(&Heartbeat {
            instance: instance.to_owned(),
            at: OffsetDateTime::now_utc(),
        })
        .map_err(|e| self.error("encode", e))?;
        self.store
            .put(format!("{ALIVE}.{instance}"), value.into())
            .await
            .map_err(|e| self.error("write", e))?;
        Ok(())
    }

    /// Deletes `instance`'s heartbeat (it is stopping).
    ///
    /// # Errors
    /// A [`StatusError`] when the delete is not acknowledged.
    pub async fn forget_instance(&self, instance: &str) -> Result<(), StatusError> {
        self.store
            .purge(format!("{ALIVE}.{instance}"))
            .await
            .map_err(|e| self.error("delete", e))
    }

    /// Forgets one report (its plugin or subscription is gone).
    ///
    /// # Errors
    /// A [`StatusError`] when the delete is not acknowledged.
    pub async fn forget(
        &self,
        plugin: &PluginId,
        subscription: &str,
        instance: &str,
    ) -> Result<(), StatusError> {
        self.store
            .purge(format!("{plugin}.{subscription}.{instance}"))
            .await
            .map_err(|e| self.error("delete", e))
    }

    /// Every report the bucket holds, sorted by plugin, subscription and instance, those of
    /// instances presumed gone included (see [`SeenReport::is_stale`]); `updated_at` is the
    /// server's time of the write. Unreadable entries are skipped.
    ///
    /// # Errors
    /// A [`StatusError`] when the bucket cannot be read.
    pub async fn circuits(&self) -> Result<Vec<SeenReport>, StatusError> {
        let keys = self.keys().await?;
        let mut reports = Vec::with_capacity(keys.len());
        let mut alive: HashMap<String, OffsetDateTime> = HashMap::new();
        for key in keys {
            let Ok(Some(entry)) = self.store.entry(&key).await else {
                continue;
            };
            // Told apart by their values: a plugin may be named like the heartbeat prefix.
            if let Ok(mut report) = serde_json::from_slice::<CircuitReport>(&entry.value) {
                report.updated_at = entry.created;
                reports.push(report);
            } else if let Ok(heartbeat) = serde_json::from_slice::<Heartbeat>(&entry.value) {
                alive.insert(heartbeat.instance, entry.created);
            }
        }
        reports.sort_by_key(CircuitReport::key);
        Ok(reports
            .into_iter()
            .map(|report| {
                let heartbeat = alive.get(&report.instance).copied();
                let last_seen = heartbeat.map_or(report.updated_at, |h| h.max(report.updated_at));
                SeenReport { report, last_seen }
            })
            .collect())
    }

    /// The instances whose heartbeat is at most [`STALE_AFTER`] old (by nats-server's clock
    /// for the write, this machine's for now), sorted.
    ///
    /// # Errors
    /// A [`StatusError`] when the bucket cannot be read.
    pub async fn live_instances(&self) -> Result<Vec<String>, StatusError> {
        let keys = self.keys().await?;
        let now = OffsetDateTime::now_utc();
        let mut alive = Vec::new();
        for key in keys.iter().filter(|key| key.starts_with(ALIVE)) {
            let Ok(Some(entry)) = self.store.entry(key).await else {
                continue;
            };
            if let Ok(heartbeat) = serde_json::from_slice::<Heartbeat>(&entry.value) {
                let age = Duration::try_from(now - entry.created).unwrap_or(Duration::ZERO);
                if age <= STALE_AFTER {
                    alive.push(heartbeat.instance);
                }
            }
        }
        alive.sort();
        alive.dedup();
        Ok(alive)
    }

    /// Every key the bucket holds.
    async fn keys(&self) -> Result<Vec<String>, StatusError> {
        self.store
            .keys()
            .await
            .map_err(|e| self.error("list", e))?
            .try_collect()
            .await
            .map_err(|e| self.error("list", e))
    }

    fn error(&self, action: &'static str, reason: impl std::fmt::Display) -> StatusError {
        StatusError {
            bucket: self.bucket.clone(),
            action,
            reason: reason.to_string(),
        }
    }
}

/// The worst state among several instances' reports: open beats half-open beats closed.
pub fn worst(states: impl IntoIterator<Item = CircuitState>) -> Option<CircuitState> {
    let rank = |s: &CircuitState| match s {
        CircuitState::Closed => 0,
        CircuitState::HalfOpen => 1,
        CircuitState::Open => 2,
    };
    states.into_iter().max_by_key(rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_presumed_gone_after_three_missed_heartbeats() {
        let now = OffsetDateTime::now_utc();
        let report = |ago: Duration| SeenReport {
            report: CircuitReport {
                plugin: PluginId::new("a").unwrap(),
                subscription: "s".to_owned(),
                instance: "i".to_owned(),
                state: CircuitState::Closed,
                updated_at: now - REFRESH,
            },
            last_seen: now - ago,
        };
        assert!(!report(HEARTBEAT).is_stale(now));
        assert!(!report(STALE_AFTER).is_stale(now));
        assert!(report(STALE_AFTER + Duration::from_secs(1)).is_stale(now));
        assert_eq!(
            report(Duration::from_secs(7)).age(now),
            Duration::from_secs(7)
        );
        assert!(STALE_AFTER < MAX_AGE && REFRESH < MAX_AGE);
    }

    #[test]
    fn the_worst_state_wins() {
        use CircuitState::*;
        assert_eq!(worst([Closed, Open, HalfOpen]), Some(Open));
        assert_eq!(worst([Closed, HalfOpen]), Some(HalfOpen));
        assert_eq!(worst([]), None);
    }
}
