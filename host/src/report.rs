//! What each running instance is doing, as its host last reported it: the key-value bucket
//! `{PREFIX}_INSTANCES`, one entry per plugin instance (`{plugin}.{slot}`), written by the host
//! that runs it on every heartbeat and removed when it stops it. `switchyard plugins status`
//! reads it.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use switchyard_bus::kv::{open_existing, open_or_create};
use switchyard_bus::stream_name;
use switchyard_schemas::Namespace;
use time::OffsetDateTime;

use crate::place::{PlaceError, Slot};

/// How long an instance's entry is kept at most when no longer written.
const REPORT_MAX_AGE: Duration = Duration::from_secs(3600);

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Being prepared: its package fetched, verified and unpacked.
    Preparing,
    /// Its worker process runs.
    Running,
    /// Its worker ended; it is started again after a pause.
    Restarting,
    /// It ended too often: not started again, and the plugin marked failed.
    CrashLoop,
    /// It could not be prepared or started (the reason is in `last_end`).
    CannotStart,
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Preparing => "preparing",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::CrashLoop => "crash loop",
            Self::CannotStart => "cannot start",
        })
    }
}

/// One instance as its host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// The plugin.
    pub plugin: String,
    /// Which of its instances.
    pub slot: Slot,
    /// The host running it.
    pub host: String,
    /// The plugin version it runs.
    pub version: String,
    /// Where it is.
    pub state: InstanceState,
    /// Its worker's process id, while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// When its worker last started.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// How many times it was started again.
    pub restarts: u32,
    /// Memory in use by its processes, in bytes (with cgroups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// CPU used since the last report, in thousandths of a core (with cgroup v2's or v1's
    /// accounting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_millicores: Option<u64>,
    /// How its worker last ended, or why it cannot start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_end: Option<String>,
    /// The version an instance on trial beside it runs, while this host upgrades it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrading_to: Option<String>,
    /// Lines its workers wrote that were not published (they wrote faster than the host
    /// publishes), since it was started on this host.
    #[serde(default)]
    pub lines_lost: u64,
    /// When this report was written.
    #[serde(with = "time::serde::rfc3339")]
    pub reported_at: OffsetDateTime,
}

impl InstanceReport {
    /// The key of `plugin`'s instance `slot`.
    pub fn key(plugin: &str, slot: Slot) -> String {
        format!("{plugin}.{slot}")
    }
}

/// The instance reports of a deployment: `{PREFIX}_INSTANCES`.
#[derive(Debug, Clone)]
pub struct InstanceBoard {
    store: kv::Store,
    bucket: String,
}

/// The name of the reports bucket of `namespace`.
pub fn bucket_name(namespace: &Namespace) -> String {
    stream_name(namespace, "INSTANCES")
}

impl InstanceBoard {
    /// Opens the board of `namespace`, creating its bucket if needed (a host).
    ///
    /// # Errors
    /// [`PlaceError::Bucket`].
    pub async fn open(js: &jetstream::Context, namespace: &Namespace) -> Result<Self, PlaceError> {
        let bucket = bucket_name(namespace);
        let store = open_or_create(
            js,
            kv::Config {
                bucket: bucket.clone(),
                description: "Switchyard plugin instances as their hosts report them".into(),
                history: 1,
                max_age: REPORT_MAX_AGE,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self { store, bucket })
    }

    /// Opens the board of `namespace` if a host ever made it (a reader).
    ///
    /// # Errors
    /// [`PlaceError::Bucket`].
    pub async fn open_existing(
        js: &jetstream::Context,
        namespace: &Namespace,
    ) -> Result<Option<Self>, PlaceError> {
        let bucket = bucket_name(namespace);
        Ok(open_existing(js, &bucket)
            .await?
            .map(|store| Self { store, bucket }))
    }

    /// Writes `report`.
    ///
    /// # Errors
    /// [`PlaceError::Store`].
    pub async fn put(&self, report: &InstanceReport) -> Result<(), PlaceError> {
        let body = serde_json::to_vec(report).expect("a report serializes");
        self.store
            .put(
                InstanceReport::key(&report.plugin, report.slot),
                body.into(),
            )
            .await
            .map(drop)
            .map_err(|e| self.error("write an instance report", e))
    }

    /// Removes the report of `plugin`'s instance `slot`, if `host` wrote it last (another
    /// host may run it by now).
    ///
    /// # Errors
    /// [`PlaceError::Store`].
    pub async fn remove(&self, plugin: &str, slot: Slot, host: &str) -> Result<(), PlaceError> {
        let key = InstanceReport::key(plugin, slot);
        let current = self
            .store
            .get(key.as_str())
            .await
            .map_err(|e| self.error("read an instance report", e))?;
        let ours = current
            .and_then(|body| serde_json::from_slice::<InstanceReport>(&body).ok())
            .is_some_and(|report| report.host == host);
        if ours {
            self.store
                .purge(key.as_str())
                .await
                .map_err(|e| self.error("remove an instance report", e))?;
        }
        Ok(())
    }

    /// Every report, sorted by plugin and slot; `plugin` only, when given.
    ///
    /// # Errors
    /// [`PlaceError::Store`].
    pub async fn list(&self, plugin: Option<&str>) -> Result<Vec<InstanceReport>, PlaceError> {
        let keys: Vec<String> = self
            .store
            .keys()
            .await
            .map_err(|e| self.error("list the instances", e))?
            .try_collect()
            .await
            .map_err(|e| self.error("list the instances", e))?;
        let mut reports = Vec::new();
        for key in keys {
            if plugin.is_some_and(|p| key.rsplit_once('.').map(|(id, _)| id) != Some(p)) {
                continue;
            }
            let body = self
                .store
                .get(key.as_str())
                .await
                .map_err(|e| self.error("read an instance report", e))?;
            if let Some(report) = body.and_then(|b| serde_json::from_slice(&b).ok()) {
                reports.push(report);
            }
        }
        reports.sort_by(|a: &InstanceReport, b| (&a.plugin, a.slot).cmp(&(&b.plugin, b.slot)));
        Ok(reports)
    }

    fn error(&self, action: &'static str, reason: impl std::fmt::Display) -> PlaceError {
        PlaceError::Store {
            action,
            bucket: self.bucket.clone(),
            reason: reason.to_string(),
        }
    }
}
