//! What one audit entry says: who did what to which target, what it was before and after.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Actor;

/// What was done. A closed list: an entry names one of these, in snake case
/// (`plugin_registered`), which is also a token of its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A plugin was registered (`switchyard plugins add`, no earlier registration).
    PluginRegistered,
    /// A registered plugin's registration was replaced (`plugins add` again).
    PluginReplaced,
    /// A plugin's registration was removed.
    PluginRemoved,
    /// A disabled plugin was enabled.
    PluginEnabled,
    /// A plugin was disabled.
    PluginDisabled,
    /// A plugin got its first secret.
    CredentialsIssued,
    /// A plugin got a new secret; the earlier one stopped working.
    CredentialsRotated,
    /// A plugin's secret was revoked (`plugins credentials --revoke`, or its removal).
    CredentialsRevoked,
    /// Dead letters were replayed to the plugin that failed them.
    DlqReplayed,
    /// Dead letters were deleted without replay.
    DlqPurged,
    /// A plugin's channel grants changed.
    GrantChanged,
    /// A plugin was installed (plugin lifecycle).
    Installed,
    /// A pending plugin was approved.
    Approved,
    /// A pending plugin was rejected.
    Rejected,
    /// A plugin was upgraded.
    Upgraded,
    /// A plugin was rolled back to an earlier version.
    RolledBack,
    /// A plugin's settings changed.
    SettingsChanged,
    /// A publisher key was trusted.
    TrustAdded,
    /// A publisher key is no longer trusted.
    TrustRemoved,
    /// A plugin was marked failed (by a dispatcher whose circuit kept opening, or a host).
    PluginFailed,
    /// A service login was added, or given new tenants and a new secret
    /// (`switchyard services add`).
    ServiceAdded,
    /// A service login was removed.
    ServiceRemoved,
    /// An operator of the management API was added, or given a new token or role.
    OperatorAdded,
    /// An operator of the management API was removed.
    OperatorRemoved,
    /// The management API answered a read (what was read is the target).
    ApiViewed,
    /// The management API refused a call: no operator, or a role that does not allow it.
    ApiRefused,
    /// A call of the management API failed (the error is the detail).
    ApiFailed,
    /// An operator called a plugin's operation through the management API (the outcome is
    /// the detail).
    OperationCalled,
    /// An operator published an event through the management API (its id, type and stored
    /// sequence are the detail).
    EventPublished,
    /// A package was published to the deployment's package store through the management API.
    PackagePublished,
    /// The streams and buckets were provisioned through the management API (what changed is
    /// the detail).
    StreamsProvisioned,
}

impl Action {
    /// Every action, in declaration order.
    pub const ALL: [Action; 31] = [
        Action::PluginRegistered,
        Action::PluginReplaced,
        Action::PluginRemoved,
        Action::PluginEnabled,
        Action::PluginDisabled,
        Action::CredentialsIssued,
        Action::CredentialsRotated,
        Action::CredentialsRevoked,
        Action::DlqReplayed,
        Action::DlqPurged,
        Action::GrantChanged,
        Action::Installed,
        Action::Approved,
        Action::Rejected,
        Action::Upgraded,
        Action::RolledBack,
        Action::SettingsChanged,
        Action::TrustAdded,
        Action::TrustRemoved,
        Action::PluginFailed,
        Action::ServiceAdded,
        Action::ServiceRemoved,
        Action::OperatorAdded,
        Action::OperatorRemoved,
        Action::ApiViewed,
        Action::ApiRefused,
        Action::ApiFailed,
        Action::OperationCalled,
        Action::EventPublished,
        Action::PackagePublished,
        Action::StreamsProvisioned,
    ];

    /// The action's name, e.g. `plugin_registered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::PluginRegistered => "plugin_registered",
            Action::PluginReplaced => "plugin_replaced",
            Action::PluginRemoved => "plugin_removed",
            Action::PluginEnabled => "plugin_enabled",
            Action::PluginDisabled => "plugin_disabled",
            Action::CredentialsIssued => "credentials_issued",
            Action::CredentialsRotated => "credentials_rotated",
            Action::CredentialsRevoked => "credentials_revoked",
            Action::DlqReplayed => "dlq_replayed",
            Action::DlqPurged => "dlq_purged",
            Action::GrantChanged => "grant_changed",
            Action::Installed => "installed",
            Action::Approved => "approved",
            Action::Rejected => "rejected",
            Action::Upgraded => "upgraded",
            Action::RolledBack => "rolled_back",
            Action::SettingsChanged => "settings_changed",
            Action::TrustAdded => "trust_added",
            Action::TrustRemoved => "trust_removed",
            Action::PluginFailed => "plugin_failed",
            Action::ServiceAdded => "service_added",
            Action::ServiceRemoved => "service_removed",
            Action::OperatorAdded => "operator_added",
            Action::OperatorRemoved => "operator_removed",
            Action::ApiViewed => "api_viewed",
            Action::ApiRefused => "api_refused",
            Action::ApiFailed => "api_failed",
            Action::OperationCalled => "operation_called",
            Action::EventPublished => "event_published",
            Action::PackagePublished => "package_published",
            Action::StreamsProvisioned => "streams_provisioned",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the [`Action`]s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit action `{0}` (one of: {names})", names = Action::ALL.map(Action::as_str).join(", "))]
pub struct UnknownAction(pub String);

impl FromStr for Action {
    type Err = UnknownAction;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|action| action.as_str() == name)
            .ok_or_else(|| UnknownAction(name.to_owned()))
    }
}

/// One entry of the audit log, as its writer makes it.
///
/// `before` and `after` describe the target's state around the change (a summary, never a
/// secret); `null` where there was none (before a registration, after a removal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// A unique id, also the message's `Nats-Msg-Id`: appending the same entry twice within
    /// the stream's duplicate window stores it once.
    pub id: String,
    /// When the writer made the entry, by its own clock. The time the server stored it
    /// ([`StoredEntry::stored`]) is the one to trust.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Who did it.
    pub actor: Actor,
    /// What was done.
    pub action: Action,
    /// To what: a plugin id for the plugin and dead-letter actions.
    pub target: String,
    /// The target's state before, or `null`.
    pub before: Option<serde_json::Value>,
    /// The target's state after, or `null`.
    pub after: Option<serde_json::Value>,
    /// What happened, in words.
    pub detail: Option<String>,
}

impl AuditEntry {
    /// An entry made now by `actor`, with a fresh id and nothing before or after.
    pub fn new(actor: Actor, action: Action, target: impl Into<String>) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            time: OffsetDateTime::now_utc(),
            actor,
            action,
            target: target.into(),
            before: None,
            after: None,
            detail: None,
        }
    }

    /// With this state before (`None`: there was none).
    #[must_use]
    pub fn before(mut self, before: Option<serde_json::Value>) -> Self {
        self.before = before;
        self
    }

    /// With this state after (`None`: there is none).
    #[must_use]
    pub fn after(mut self, after: Option<serde_json::Value>) -> Self {
        self.after = after;
        self
    }

    /// With this detail.
    #[must_use]
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// An entry as the audit stream holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEntry {
    /// Its sequence in the audit stream.
    pub sequence: u64,
    /// When the server stored it: the time to trust.
    #[serde(with = "time::serde::rfc3339")]
    pub stored: OffsetDateTime,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// Which entries [`AuditLog::list`](super::AuditLog::list) returns; the default matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only entries by this actor: its full name, its NATS user, its OS user (alone or as
    /// `user@host`) or the name it declared ([`Actor::is`]).
    pub actor: Option<String>,
    /// Only entries of this action.
    pub action: Option<Action>,
    /// Only entries about this target (e.g. a plugin id), exactly.
    pub target: Option<String>,
    /// Only entries stored at or after this time (the server's time).
    pub since: Option<OffsetDateTime>,
    /// Only entries stored at or before this time.
    pub until: Option<OffsetDateTime>,
    /// At most this many, the oldest first.
    pub limit: Option<usize>,
}

impl AuditFilter {
    /// Whether `stored` passes every condition.
    pub fn matches(&self, stored: &StoredEntry) -> bool {
        let entry = &stored.entry;
        self.action.is_none_or(|action| action == entry.action)
            && self.target.as_deref().is_none_or(|t| t == entry.target)
            && self.actor.as_deref().is_none_or(|who| entry.actor.is(who))
            && self.since.is_none_or(|since| stored.stored >= since)
            && self.until.is_none_or(|until| stored.stored <= until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_have_snake_case_names_that_read_back() {
        for action in Action::ALL {
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
            assert_eq!(action.as_str().parse::<Action>(), Ok(action));
            assert!(action
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
        assert_eq!("rolled_back".parse(), Ok(Action::RolledBack));
        let unknown = "plugin_exploded".parse::<Action>().unwrap_err();
        assert!(unknown.to_string().contains("dlq_purged"), "{unknown}");
    }

    #[test]
    fn an_entry_serializes_every_field_with_null_for_missing_values() {
        let entry = AuditEntry::new(Actor::declared("ci"), Action::PluginRemoved, "billing");
        let json = serde_json::to_value(&entry).unwrap();
        for field in [
            "id", "time", "actor", "action", "target", "before", "after", "detail",
        ] {
            assert!(json.get(field).is_some(), "{field} in {json}");
        }
        assert_eq!(json["before"], serde_json::Value::Null);
        assert_eq!(json["action"], "plugin_removed");
        let back: AuditEntry = serde_json::from_value(json).unwrap();
        assert_eq!(back, entry);
    }
}
