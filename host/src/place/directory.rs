//! The hosts of a deployment: each writes its record into the key-value bucket
//! `{PREFIX}_HOSTS` every heartbeat, and a host whose record was not written within the
//! timeout is taken as gone (its record's age is the server's time of writing, read against
//! the reader's clock: keep the clocks synchronized).

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use switchyard_bus::kv::open_or_create;
use switchyard_bus::stream_name;
use switchyard_schemas::Namespace;
use time::OffsetDateTime;

/// How long a host record is kept in the bucket at most when no longer written: a record that
/// old belongs to a host long gone.
const RECORD_MAX_AGE: Duration = Duration::from_secs(3600);

/// Why the host directory could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlaceError {
    /// The bucket could not be opened or created.
    #[error(transparent)]
    Bucket(#[from] switchyard_bus::kv::BucketError),
    /// A read or write of the bucket failed.
    #[error("cannot {action} in {bucket}: {reason}")]
    Store {
        /// What was being done.
        action: &'static str,
        /// The bucket.
        bucket: String,
        /// Why.
        reason: String,
    },
    /// Another host of the same name is live.
    #[error(
        "a host named `{name}` is already running (pid {pid} on {machine}, last seen {age:?} \
         ago); give this one another --name"
    )]
    NameTaken {
        /// The name.
        name: String,
        /// The other host's process id.
        pid: u32,
        /// The machine it runs on.
        machine: String,
        /// How long ago it last wrote its record.
        age: Duration,
    },
}

/// What a host says about itself with each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Its name, unique among the live hosts of the deployment.
    pub name: String,
    /// An id of this run of it, so that a second process under the same name is told apart.
    pub run: String,
    /// The machine it runs on.
    pub machine: String,
    /// Its process id.
    pub pid: u32,
    /// The confinement mechanism in force on its machine.
    pub mechanism: String,
    /// Its Switchyard version.
    pub version: String,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

/// A host found live, and how long ago it last wrote its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveHost {
    /// Its record.
    pub record: HostRecord,
    /// How long ago it was written.
    pub age: Duration,
}

/// The hosts of a deployment: `{PREFIX}_HOSTS`.
#[derive(Debug, Clone)]
pub struct HostDirectory {
    store: kv::Store,
    bucket: String,
}

impl HostDirectory {
    /// Opens the directory of `namespace`, creating its bucket if needed.
    ///
    /// # Errors
    /// [`PlaceError::Bucket`].
    pub async fn open(js: &jetstream::Context, namespace: &Namespace) -> Result<Self, PlaceError> {
        let bucket = stream_name(namespace, "HOSTS");
        let store = open_or_create(
            js,
            kv::Config {
                bucket: bucket.clone(),
                description: "Switchyard hosts and their heartbeats".into(),
                history: 1,
                max_age: RECORD_MAX_AGE,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self { store, bucket })
    }

    /// Writes `record`: a heartbeat.
    ///
    /// # Errors
    /// [`PlaceError::Store`].
    pub async fn beat(&self, record: &HostRecord) -> Result<(), PlaceError> {
        let body = serde_json::to_vec(record).expect("a host record serializes");
        self.store
            .put(record.name.as_str(), body.into())
            .await
            .map(drop)
            .map_err(|e| self.error("write the host's record", e))
    }

    /// Removes the record of the host `name`: it is leaving, and its instances go elsewhere
    /// at once rather than after the timeout.
    ///
    /// # Errors
    /// [`PlaceError::Store`].
    pub async fn leave(&self, name: &str) -> Result<(), PlaceError> {
        self.store
            .purge(name)
            .await
            .map_err(|e| self.error("remove the host's record", e))
    }

    /// The hosts whose record was written within `timeout`, sorted by name. A record that does
    /// not decode is skipped (and logged).
    ///
    /// # Errors
    /// [`PlaceError::Store`].
    pub async fn live(&self, timeout: Duration) -> Result<Vec<LiveHost>, PlaceError> {
        let keys: Vec<String> = self
            .store
            .keys()
            .await
            .map_err(|e| self.error("list the hosts", e))?
            .try_collect()
            .await
            .map_err(|e| self.error("list the hosts", e))?;
        let now = OffsetDateTime::now_utc();
        let mut live = Vec::new();
        for key in keys {
            let entry = self
                .store
                .entry(key.as_str())
                .await
                .map_err(|e| self.error("read a host's record", e))?;
            let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                continue;
            };
            let age = Duration::try_from(now - entry.created).unwrap_or(Duration::ZERO);
            if age > timeout {
                continue;
            }
            match serde_json::from_slice::<HostRecord>(&entry.value) {
                Ok(record) if record.name == key => live.push(LiveHost { record, age }),
                Ok(_) | Err(_) => {
                    tracing::warn!(bucket = %self.bucket, %key, "skipping a host record that does not decode");
                }
            }
        }
        live.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        Ok(live)
    }

    /// Refuses to start a second host under `record`'s name while another run of it is live.
    ///
    /// # Errors
    /// [`PlaceError::NameTaken`]; [`PlaceError::Store`].
    pub async fn claim(&self, record: &HostRecord, timeout: Duration) -> Result<(), PlaceError> {
        let live = self.live(timeout).await?;
        if let Some(other) = live
            .into_iter()
            .find(|h| h.record.name == record.name && h.record.run != record.run)
        {
            return Err(PlaceError::NameTaken {
                name: record.name.clone(),
                pid: other.record.pid,
                machine: other.record.machine,
                age: other.age,
            });
        }
        self.beat(record).await
    }

    fn error(&self, action: &'static str, reason: impl std::fmt::Display) -> PlaceError {
        PlaceError::Store {
            action,
            bucket: self.bucket.clone(),
            reason: reason.to_string(),
        }
    }
}
