//! What dispatchers tell operators about themselves: the circuit state of each (plugin,
//! subscription), per dispatcher instance, in a key-value bucket.
//!
//! Each instance writes its own key `{plugin}.{subscription}.{instance}` when a state changes
//! and again every [`REFRESH`]; the bucket forgets keys after [`MAX_AGE`], so an instance that
//! died stops being reported without anyone cleaning up after it.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use switchyard_bus::stream_name;
use switchyard_schemas::{Namespace, PluginId};
use time::OffsetDateTime;

use crate::pipeline::breaker::CircuitState;

/// How often a dispatcher re-writes its states.
pub const REFRESH: Duration = Duration::from_secs(20);
/// How long a state is kept without being re-written.
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
    /// When it was written.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl CircuitReport {
    fn key(&self) -> String {
        format!("{}.{}.{}", self.plugin, self.subscription, self.instance)
    }
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
        let store = match js.get_key_value(&bucket).await {
            Ok(store) => store,
            Err(_) => {
                let config = kv::Config {
                    bucket: bucket.clone(),
                    description: "Switchyard dispatcher status: circuit states".to_owned(),
                    history: 1,
                    max_age: MAX_AGE,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                };
                match js.create_key_value(config).await {
                    Ok(store) => store,
                    // Another dispatcher created it in between.
                    Err(create) => js
                        .get_key_value(&bucket)
                        .await
                        .map_err(|_| error("create", create.to_string()))?,
                }
            }
        };
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

    /// Every current report, sorted by plugin, subscription and instance. Unreadable entries
    /// are skipped.
    ///
    /// # Errors
    /// A [`StatusError`] when the bucket cannot be read.
    pub async fn circuits(&self) -> Result<Vec<CircuitReport>, StatusError> {
        let keys: Vec<String> = self
            .store
            .keys()
            .await
            .map_err(|e| self.error("list", e))?
            .try_collect()
            .await
            .map_err(|e| self.error("list", e))?;
        let mut reports = Vec::with_capacity(keys.len());
        for key in keys {
            if let Ok(Some(value)) = self.store.get(&key).await {
                if let Ok(report) = serde_json::from_slice::<CircuitReport>(&value) {
                    reports.push(report);
                }
            }
        }
        reports.sort_by_key(CircuitReport::key);
        Ok(reports)
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
    fn the_worst_state_wins() {
        use CircuitState::*;
        assert_eq!(worst([Closed, Open, HalfOpen]), Some(Open));
        assert_eq!(worst([Closed, HalfOpen]), Some(HalfOpen));
        assert_eq!(worst([]), None);
    }
}
