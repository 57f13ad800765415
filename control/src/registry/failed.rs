//! The `failed` state: a plugin that keeps failing is taken out of service, its events held,
//! until an operator enables it again.

use serde::{Deserialize, Serialize};
use switchyard_schemas::PluginId;
use time::OffsetDateTime;

use super::{LifecycleState, Registration, Registry, RegistryError};
use crate::audit::{Action, Auditor};

/// Why and since when a plugin is failed, and who said so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Why, e.g. `the circuit of orders opened 3 times in a row without a success`.
    pub reason: String,
    /// Since when.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// Who marked it failed: a dispatcher instance, a host, an operator (the audit actor's
    /// name).
    pub by: String,
}

/// What [`Registry::mark_failed`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum MarkedFailed {
    /// It is failed now; the registration stored.
    Failed(Box<Registration>),
    /// It was failed already: nothing changed (the first reason stands).
    AlreadyFailed,
    /// It does not run (waiting for approval, or disabled): nothing changed.
    NotRunning(LifecycleState),
    /// No plugin of this id is registered.
    NotRegistered,
}

/// How many times a change made against a registry that changed meanwhile is tried again.
pub(super) const CONFLICT_ATTEMPTS: usize = 5;

impl Registry {
    /// Marks `plugin` failed for `reason`, recorded in the audit log as `plugin_failed` by
    /// `auditor`'s actor: its events are held (none lost) and its workers refused, as for a
    /// disabled plugin, until an operator enables it (`switchyard plugins enable`). Only a
    /// running (approved and enabled) plugin is marked; the write is conditional on the
    /// registry as read, and tried again when another change came first.
    ///
    /// # Errors
    /// The errors of [`put`](Self::put) and [`RegistryError::Audit`] as for
    /// [`put_recorded`](Self::put_recorded); [`RegistryError::Conflict`] when the registry
    /// kept changing for [`CONFLICT_ATTEMPTS`] tries.
    pub async fn mark_failed(
        &self,
        plugin: &PluginId,
        reason: &str,
        auditor: &Auditor,
    ) -> Result<MarkedFailed, RegistryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sequence = self.last_sequence().await?;
            let Some(current) = self.get(plugin).await? else {
                return Ok(MarkedFailed::NotRegistered);
            };
            match current.state() {
                LifecycleState::Enabled => {}
                LifecycleState::Failed => return Ok(MarkedFailed::AlreadyFailed),
                other => return Ok(MarkedFailed::NotRunning(other)),
            }
            let mut failed = current.clone();
            failed.failure = Some(Failure {
                reason: reason.to_owned(),
                since: OffsetDateTime::now_utc(),
                by: auditor.actor().name.clone(),
            });
            let written = self
                .expecting(sequence)
                .put_recorded(
                    &failed,
                    Action::PluginFailed,
                    Some(&current),
                    format!("marked {plugin} failed: {reason}"),
                    auditor,
                )
                .await;
            match written {
                Ok(_) => return Ok(MarkedFailed::Failed(Box::new(failed))),
                Err(RegistryError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => continue,
                Err(error) => return Err(error),
            }
        }
    }
}
