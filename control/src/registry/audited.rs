//! The registry's operator-facing writes, each recorded in the audit log after it is made.

use serde_json::json;
use switchyard_schemas::PluginId;

use super::{Registration, Registry, RegistryError};
use crate::audit::{registration_summary, Action, Auditor};

/// What [`Registry::put_recorded`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The registration's revision in the bucket.
    pub revision: u64,
    /// The audit entry's sequence in the audit stream.
    pub audit_sequence: u64,
}

impl Registry {
    /// Stores `registration` ([`put`](Self::put)), then records `action` about its plugin:
    /// `before` (the registration it replaces, `None` for a new one) and the registration
    /// stored, as [`registration_summary`]s, and `done` ("disabled billing") with the
    /// revision as the entry's detail.
    ///
    /// What a change is, is the caller's to say: `plugin_registered`, `plugin_replaced`,
    /// `plugin_enabled`, `plugin_disabled`, or a lifecycle action (`approved`, `rejected`,
    /// `upgraded`, `rolled_back`, `grant_changed`, `settings_changed`).
    ///
    /// # Errors
    /// The errors of [`put`](Self::put) (nothing stored, nothing recorded), and
    /// [`RegistryError::Audit`] with
    /// [`AuditError::NotRecorded`](crate::audit::AuditError::NotRecorded) when the
    /// registration was stored and its entry could not be.
    pub async fn put_recorded(
        &self,
        registration: &Registration,
        action: Action,
        before: Option<&Registration>,
        done: impl Into<String>,
        auditor: &Auditor,
    ) -> Result<Recorded, RegistryError> {
        let plugin = registration.plugin_id();
        let revision = self.put(registration).await?;
        let done = done.into();
        let entry = auditor
            .entry(action, plugin.as_str())
            .before(before.map(registration_summary))
            .after(Some(registration_summary(registration)))
            .detail(format!("{done}; revision {revision}"));
        let audit_sequence = auditor.record(done, &entry).await?;
        Ok(Recorded {
            revision,
            audit_sequence,
        })
    }

    /// Removes `plugin` ([`remove`](Self::remove)) and records `plugin_removed`; see
    /// [`remove_recorded`](Self::remove_recorded).
    ///
    /// # Errors
    /// As [`remove_recorded`](Self::remove_recorded).
    pub async fn unregister(
        &self,
        plugin: &PluginId,
        auditor: &Auditor,
    ) -> Result<bool, RegistryError> {
        self.remove_recorded(
            plugin,
            Action::PluginRemoved,
            format!("removed {plugin}"),
            auditor,
        )
        .await
    }

    /// Removes `plugin` ([`remove`](Self::remove)) and records `action` (`plugin_removed`,
    /// or `rejected` for an installation turned down) with its registration before (or why
    /// its entry did not decode) and `done` as the detail; returns whether it was registered
    /// (nothing is recorded when it was not).
    ///
    /// # Errors
    /// The errors of [`remove`](Self::remove), and [`RegistryError::Audit`] when the plugin
    /// was removed and the entry could not be stored.
    pub async fn remove_recorded(
        &self,
        plugin: &PluginId,
        action: Action,
        done: impl Into<String>,
        auditor: &Auditor,
    ) -> Result<bool, RegistryError> {
        let Some(removed) = self.remove_entry(plugin).await? else {
            return Ok(false);
        };
        let before = match &removed {
            Ok(registration) => registration_summary(registration),
            Err(reason) => json!({ "unreadable": reason }),
        };
        let done = done.into();
        let entry = auditor
            .entry(action, plugin.as_str())
            .before(Some(before))
            .detail(done.clone());
        auditor.record(done, &entry).await?;
        Ok(true)
    }
}
