//! Lifecycle events: what happened to a plugin (installed, approved, upgraded, enabled,
//! disabled, failed, removed, rolled back; its workers up or down), published as ordinary events of
//! the tenant [`SYSTEM_TENANT`], so that operators' tools and other plugins can react through
//! the same durable delivery as any event (a plugin subscribes to `switchyard.plugin.*` for
//! that tenant).

use semver::Version;
use serde::{Deserialize, Serialize};
use switchyard_bus::{PublishError, Publisher};
use switchyard_schemas::{ContentType, EncodeError, Event, EventType, Tenant};

/// The tenant lifecycle events are published for.
pub const SYSTEM_TENANT: &str = "switchyard";
/// Their `source`.
pub const SOURCE: &str = "urn:switchyard:control";
/// The schema version of [`LifecycleEvent`].
pub const SCHEMA_VERSION: Version = Version::new(1, 0, 0);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleKind {
    /// Installed, waiting for approval (or approved at once).
    Installed,
    /// What it asks for was approved.
    Approved,
    /// An upgrade asking for more waits for approval.
    UpgradeProposed,
    /// A new version took effect.
    Upgraded,
    /// A pending installation or upgrade was rejected.
    Rejected,
    /// Enabled.
    Enabled,
    /// Disabled.
    Disabled,
    /// Marked failed (the reason is the event's `detail`).
    Failed,
    /// Removed.
    Removed,
    /// Rolled back to an earlier revision.
    RolledBack,
    /// A dispatcher found a worker of the plugin again.
    WorkerUp,
    /// A dispatcher found no worker of the plugin.
    WorkerDown,
}

impl LifecycleKind {
    /// The event type: `switchyard.plugin.{what}` or `switchyard.worker.{up,down}`.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Installed => "switchyard.plugin.installed",
            Self::Approved => "switchyard.plugin.approved",
            Self::UpgradeProposed => "switchyard.plugin.upgrade-proposed",
            Self::Upgraded => "switchyard.plugin.upgraded",
            Self::Rejected => "switchyard.plugin.rejected",
            Self::Enabled => "switchyard.plugin.enabled",
            Self::Disabled => "switchyard.plugin.disabled",
            Self::Failed => "switchyard.plugin.failed",
            Self::Removed => "switchyard.plugin.removed",
            Self::RolledBack => "switchyard.plugin.rolled-back",
            Self::WorkerUp => "switchyard.worker.up",
            Self::WorkerDown => "switchyard.worker.down",
        }
    }
}

/// The data of a lifecycle event (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// The plugin.
    pub plugin: String,
    /// Its version after the change, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its lifecycle state after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Who made the change (an operator), or which dispatcher saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// More, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The event announcing `what` of `data`.
///
/// # Errors
/// An [`EncodeError`] when an attribute is invalid (never for the values above).
pub fn event(what: LifecycleKind, data: &LifecycleEvent) -> Result<Event, EncodeError> {
    let tenant = Tenant::new(SYSTEM_TENANT).map_err(EncodeError::BadType)?;
    let event_type = EventType::new(what.event_type()).map_err(EncodeError::BadType)?;
    let mut builder = Event::builder(tenant, SOURCE).content_type(ContentType::Json);
    builder = builder.subject(data.plugin.clone());
    builder.build_as(event_type, SCHEMA_VERSION, data)
}

/// Publishes `what` of `data` with `publisher`.
///
/// # Errors
/// A [`PublishError`] when the event is not stored.
pub async fn announce(
    publisher: &Publisher,
    what: LifecycleKind,
    data: &LifecycleEvent,
) -> Result<(), PublishError> {
    publisher.publish_event(&event(what, data)?).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_a_valid_event() {
        for kind in [
            LifecycleKind::Installed,
            LifecycleKind::Approved,
            LifecycleKind::UpgradeProposed,
            LifecycleKind::Upgraded,
            LifecycleKind::Rejected,
            LifecycleKind::Enabled,
            LifecycleKind::Disabled,
            LifecycleKind::Failed,
            LifecycleKind::Removed,
            LifecycleKind::RolledBack,
            LifecycleKind::WorkerUp,
            LifecycleKind::WorkerDown,
        ] {
            let built = event(
                kind,
                &LifecycleEvent {
                    plugin: "billing".to_owned(),
                    ..LifecycleEvent::default()
                },
            )
            .unwrap();
            assert_eq!(built.attributes.event_type.as_str(), kind.event_type());
            assert_eq!(built.attributes.tenant.as_str(), SYSTEM_TENANT);
        }
    }
}
