//! What every instance task of a host shares: its identity and connection, the stores it
//! reads, the worker user ids it hands out, the secrets it issued and when each instance was
//! last heard from.

use std::path::PathBuf;
use std::sync::Mutex;

use switchyard_control::auth::{CredentialStore, PluginSecret};
use switchyard_control::lifecycle::failure::FailureReporter;
use switchyard_control::package::{PackageStore, TrustedKeys};
use switchyard_schemas::{Namespace, PluginId};

use super::lock;
use crate::confine::Confinement;
use crate::place::Slot;
use crate::report::{InstanceBoard, InstanceReport};
use crate::supervise::RestartPolicy;

/// What every instance task of a host shares.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) namespace: Namespace,
    pub(crate) client: async_nats::Client,
    pub(crate) state_dir: PathBuf,
    pub(crate) enter: PathBuf,
    pub(crate) worker_url: String,
    pub(crate) worker_env: Vec<(String, String)>,
    pub(crate) output_bytes: usize,
    pub(crate) restarts: RestartPolicy,
    pub(crate) confinement: Confinement,
    pub(crate) store: PackageStore,
    /// The trusted keys as last read.
    pub(crate) trust: Mutex<TrustedKeys>,
    pub(crate) board: InstanceBoard,
    pub(crate) failures: FailureReporter,
    /// Where the broker enforces plugin rights: the credentials, from which this host issues
    /// itself a secret per plugin it runs.
    pub(crate) credentials: Option<CredentialStore>,
    /// The user ids in use by instances, and the range they come from.
    pub(crate) uids: Option<Mutex<UidPool>>,
    /// The secrets issued so far, per plugin (one per plugin for the host's life).
    pub(crate) secrets: tokio::sync::Mutex<std::collections::HashMap<PluginId, PluginSecret>>,
    /// When each instance (`{plugin}.{slot}@{version}`) was last heard from: its hellos and
    /// heartbeats.
    pub(crate) heard: Mutex<std::collections::HashMap<String, tokio::time::Instant>>,
}

/// The user ids of a host's workers: one of its own per instance, machine-wide (each id is
/// held with a lock every host of the machine respects).
pub(crate) struct UidPool {
    pub(super) range: std::ops::RangeInclusive<u32>,
    pub(super) held: std::collections::BTreeMap<u32, lock::MachineLock>,
}

impl Shared {
    /// A user id no other instance on this machine has, when workers change users; `Err`
    /// when the range is used up. Whatever still runs as that id (children of a worker whose
    /// host was killed) is killed first: they must not share the new instance's files.
    pub(crate) fn take_uid(&self) -> Result<Option<u32>, String> {
        let Some(pool) = &self.uids else {
            return Ok(None);
        };
        let mut pool = pool.lock().expect("never poisoned");
        let range = pool.range.clone();
        for uid in range.clone() {
            if pool.held.contains_key(&uid) {
                continue;
            }
            match lock::MachineLock::take_uid(uid) {
                Ok(Some(lock)) => {
                    kill_processes_of(uid);
                    pool.held.insert(uid, lock);
                    return Ok(Some(uid));
                }
                Ok(None) => continue,
                Err(error) => return Err(format!("cannot take a worker user id: {error}")),
            }
        }
        Err(format!(
            "every worker user id of {}-{} is in use on this machine",
            range.start(),
            range.end()
        ))
    }

    /// Gives back a user id from [`Shared::take_uid`].
    pub(crate) fn give_back_uid(&self, uid: u32) {
        if let Some(pool) = &self.uids {
            pool.lock().expect("never poisoned").held.remove(&uid);
        }
    }

    /// The trusted keys as last read.
    pub(crate) fn trust(&self) -> TrustedKeys {
        self.trust.lock().expect("never poisoned").clone()
    }

    /// Writes the instance's report; a failure is logged (the next heartbeat writes again).
    pub(crate) async fn put_report(&self, report: &Mutex<InstanceReport>) {
        let report = report.lock().expect("never poisoned").clone();
        if let Err(error) = self.board.put(&report).await {
            tracing::warn!(%error, "cannot report an instance");
        }
    }

    /// The secret `plugin`'s workers log in with, issued by this host the first time; `None`
    /// where the broker does not enforce plugin rights.
    ///
    /// # Errors
    /// Why none could be issued.
    pub(crate) async fn secret_of(
        &self,
        plugin: &PluginId,
    ) -> Result<Option<PluginSecret>, String> {
        let Some(credentials) = &self.credentials else {
            return Ok(None);
        };
        let mut secrets = self.secrets.lock().await;
        if let Some(secret) = secrets.get(plugin) {
            return Ok(Some(secret.clone()));
        }
        let auditor = self.failures.auditor().await.map_err(|e| e.to_string())?;
        let secret = credentials
            .issue_for_host(plugin, &self.name, &auditor)
            .await
            .map_err(|e| format!("cannot issue the plugin's secret: {e}"))?;
        secrets.insert(plugin.clone(), secret.clone());
        Ok(Some(secret))
    }

    /// Takes back the secrets this host issued itself (it stops).
    pub(super) async fn forget_secrets(&self) {
        let Some(credentials) = &self.credentials else {
            return;
        };
        for plugin in self.secrets.lock().await.keys() {
            if let Err(error) = credentials.forget_host(plugin, &self.name).await {
                tracing::warn!(%plugin, %error, "cannot take back the host's secret");
            }
        }
    }

    /// Whether the instance named `name` was heard from since `since`.
    pub(crate) fn heard_since(&self, name: &str, since: tokio::time::Instant) -> bool {
        self.heard
            .lock()
            .expect("never poisoned")
            .get(name)
            .is_some_and(|last| *last >= since)
    }

    /// Removes the instance's report, if this host wrote it last.
    pub(crate) async fn forget(&self, plugin: &PluginId, slot: Slot) {
        if let Err(error) = self.board.remove(plugin.as_str(), slot, &self.name).await {
            tracing::warn!(%error, "cannot remove an instance's report");
        }
    }
}

/// Kills every process running as `uid` (found in `/proc`).
fn kill_processes_of(uid: u32) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        // `Uid:	real	effective	saved	filesystem`
        let runs_as = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .is_some_and(|ids| ids.split_whitespace().any(|id| id == uid.to_string()));
        if runs_as {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                tracing::warn!(
                    uid,
                    pid = pid.as_raw_nonzero().get(),
                    "killing a leftover process of a worker user id"
                );
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}
