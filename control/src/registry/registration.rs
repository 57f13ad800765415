//! What the registry stores per plugin: its manifest, the tenants it serves, and when.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use switchyard_schemas::{Manifest, PluginId, Tenant};
use time::OffsetDateTime;

use super::failed::Failure;
use super::provenance::Provenance;
use crate::lifecycle::approval::{Approval, Requested};

/// One registered plugin, stored as JSON under its plugin id.
///
/// Unknown fields are ignored when reading, so that a dispatcher keeps working while a newer
/// CLI writes registrations with more in them during a rolling upgrade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// The plugin's validated manifest (its canonical form, validated again on reading).
    pub manifest: Manifest,
    /// The tenants whose events the plugin receives.
    pub tenants: TenantScope,
    /// When it was registered or last replaced.
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
    /// Whether the plugin may run: a disabled plugin's workers are refused at connect (when
    /// the broker enforces rights, see `docs/security.md`) and the dispatcher holds its
    /// events until it is enabled again. Registrations stored before this field existed read
    /// as enabled.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// The events stream's next sequence when the registration was stored (set by
    /// [`Registry::put`](super::Registry::put)): the consumers of its subscriptions start
    /// there, so the plugin receives every event published after its registration was
    /// acknowledged, whenever a dispatcher first creates them. Registrations stored before
    /// this field existed start at the consumer's creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_sequence: Option<u64>,
    /// Installed and waiting for an operator to approve what it asks for: it does not run
    /// (its events wait, from its registration on) until approved. Registrations stored
    /// before approvals existed read as approved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_approval: bool,
    /// Who approved what it asks for, and what that was; `None` for a registration approved
    /// by the program that stored it ([`Registration::new`]) or stored before approvals
    /// existed (then what it asks for now counts as approved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// An upgrade that asks for more than was approved, waiting for approval; the approved
    /// version keeps running meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_upgrade: Option<Box<PendingUpgrade>>,
    /// Why the plugin was marked failed, when it was ([`LifecycleState::Failed`]): its events
    /// are held and its workers refused until an operator enables it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Where its manifest came from (a verified package, or a manifest alone) and the
    /// decision that let it in; `None` for registrations stored by a program directly, or
    /// before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// An upgrade waiting for approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingUpgrade {
    /// The new manifest.
    pub manifest: Manifest,
    /// When it was proposed.
    #[serde(with = "time::serde::rfc3339")]
    pub proposed_at: OffsetDateTime,
    /// Where the new manifest came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// Where a plugin is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleState {
    /// Installed, waiting for an operator to approve what it asks for.
    PendingApproval,
    /// Approved and enabled: it runs.
    Enabled,
    /// Approved and disabled: its events wait, its workers are refused.
    Disabled,
    /// Approved and enabled, but marked failed (by a dispatcher whose circuit kept opening,
    /// or a host): like disabled, its events wait and its workers are refused, until an
    /// operator enables it again. Why and since when: [`Registration::failure`].
    Failed,
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PendingApproval => "pending approval",
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::Failed => "failed",
        })
    }
}

fn enabled_by_default() -> bool {
    true
}

impl Registration {
    /// A registration made now.
    pub fn new(manifest: Manifest, tenants: TenantScope) -> Self {
        Self {
            manifest,
            tenants,
            registered_at: OffsetDateTime::now_utc(),
            enabled: true,
            start_sequence: None,
            awaiting_approval: false,
            approval: None,
            pending_upgrade: None,
            failure: None,
            provenance: None,
        }
    }

    /// A registration installed now and waiting for an operator's approval
    /// ([`LifecycleState::PendingApproval`]); it runs only once approved.
    pub fn pending(manifest: Manifest, tenants: TenantScope) -> Self {
        Self {
            awaiting_approval: true,
            ..Self::new(manifest, tenants)
        }
    }

    /// Where the plugin is in its lifecycle.
    pub fn state(&self) -> LifecycleState {
        if self.awaiting_approval {
            LifecycleState::PendingApproval
        } else if !self.enabled {
            LifecycleState::Disabled
        } else if self.failure.is_some() {
            LifecycleState::Failed
        } else {
            LifecycleState::Enabled
        }
    }

    /// Whether the plugin may run: approved, enabled and not failed.
    pub fn is_active(&self) -> bool {
        self.state() == LifecycleState::Enabled
    }

    /// What the operator approved: the recorded approval, or what it asks for now when it
    /// was approved by the program that stored it.
    pub fn approved_rights(&self) -> Requested {
        self.approval.as_ref().map_or_else(
            || Requested::of(&self.manifest, &self.tenants),
            |approval| approval.rights.clone(),
        )
    }

    /// The plugin's id, which is also its key in the registry.
    pub fn plugin_id(&self) -> &PluginId {
        &self.manifest.plugin.id
    }
}

/// The tenants a plugin serves.
///
/// Stored as `"all"` or as a list of tenant names. `Only` is never empty: [`TenantScope::only`]
/// refuses an empty set, and so do serializing and deserializing (a registration serving
/// nobody cannot be stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant, including ones that appear later.
    All,
    /// These tenants only.
    Only(BTreeSet<Tenant>),
}

/// A tenant scope was asked for with no tenant in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a plugin must serve at least one tenant (or all tenants)")]
pub struct EmptyTenantScope;

impl TenantScope {
    /// The scope of exactly these tenants; duplicates count once.
    ///
    /// # Errors
    /// [`EmptyTenantScope`] when there are none.
    pub fn only(tenants: impl IntoIterator<Item = Tenant>) -> Result<Self, EmptyTenantScope> {
        let tenants: BTreeSet<Tenant> = tenants.into_iter().collect();
        if tenants.is_empty() {
            Err(EmptyTenantScope)
        } else {
            Ok(Self::Only(tenants))
        }
    }

    /// Whether the plugin receives the events of `tenant`.
    pub fn includes(&self, tenant: &Tenant) -> bool {
        match self {
            Self::All => true,
            Self::Only(tenants) => tenants.contains(tenant),
        }
    }

    /// The tenants named, or `None` for [`TenantScope::All`].
    pub fn tenants(&self) -> Option<&BTreeSet<Tenant>> {
        match self {
            Self::All => None,
            Self::Only(tenants) => Some(tenants),
        }
    }
}

/// `all tenants`, or the tenants separated by commas.
impl fmt::Display for TenantScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("all tenants"),
            Self::Only(tenants) => {
                for (i, tenant) in tenants.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{tenant}")?;
                }
                Ok(())
            }
        }
    }
}

/// The keyword that stands for [`TenantScope::All`] in the stored form.
const ALL_KEYWORD: &str = "all";

impl Serialize for TenantScope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::All => serializer.serialize_str(ALL_KEYWORD),
            Self::Only(tenants) if tenants.is_empty() => Err(ser::Error::custom(EmptyTenantScope)),
            Self::Only(tenants) => tenants.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for TenantScope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScopeVisitor)
    }
}

/// Reads `"all"` or a non-empty list of tenants, with a message naming what was wrong.
struct ScopeVisitor;

impl<'de> Visitor<'de> for ScopeVisitor {
    type Value = TenantScope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{ALL_KEYWORD}\" or a non-empty list of tenants")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        if value == ALL_KEYWORD {
            Ok(TenantScope::All)
        } else {
            Err(E::invalid_value(de::Unexpected::Str(value), &self))
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut tenants = BTreeSet::new();
        while let Some(tenant) = seq.next_element::<Tenant>()? {
            tenants.insert(tenant);
        }
        TenantScope::only(tenants).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> Tenant {
        Tenant::new(name).unwrap()
    }

    #[test]
    fn scope_serializes_as_keyword_or_list() {
        assert_eq!(
            serde_json::to_string(&TenantScope::All).unwrap(),
            r#""all""#
        );
        let only = TenantScope::only([tenant("globex"), tenant("acme")]).unwrap();
        assert_eq!(
            serde_json::to_string(&only).unwrap(),
            r#"["acme","globex"]"#
        );
        for scope in [TenantScope::All, only] {
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(serde_json::from_str::<TenantScope>(&json).unwrap(), scope);
        }
    }

    #[test]
    fn scope_refuses_empty_lists_other_keywords_and_bad_names() {
        for bad in [r#"[]"#, r#""some""#, r#"["a.b"]"#, "3"] {
            assert!(
                serde_json::from_str::<TenantScope>(bad).is_err(),
                "{bad} should be refused"
            );
        }
        assert_eq!(TenantScope::only([]), Err(EmptyTenantScope));
    }

    #[test]
    fn registrations_stored_without_the_enabled_flag_read_as_enabled() {
        let manifest = r#"{"plugin":{"id":"audit","version":"1.0.0","core":"*"}}"#;
        let old = format!(
            r#"{{"manifest":{manifest},"tenants":"all","registered_at":"2026-01-01T00:00:00Z"}}"#
        );
        let registration: Registration = serde_json::from_str(&old).unwrap();
        assert!(registration.enabled);
        let mut disabled = registration;
        disabled.enabled = false;
        let json = serde_json::to_string(&disabled).unwrap();
        assert!(!serde_json::from_str::<Registration>(&json).unwrap().enabled);
    }

    #[test]
    fn a_failure_takes_the_plugin_out_of_service_unless_it_is_disabled_or_pending() {
        let manifest = r#"{"plugin":{"id":"audit","version":"1.0.0","core":"*"}}"#;
        let old = format!(
            r#"{{"manifest":{manifest},"tenants":"all","registered_at":"2026-01-01T00:00:00Z"}}"#
        );
        let mut registration: Registration = serde_json::from_str(&old).unwrap();
        assert_eq!(registration.failure, None, "stored before failures existed");
        assert_eq!(registration.provenance, None);
        registration.failure = Some(Failure {
            reason: "its circuit kept opening".into(),
            since: OffsetDateTime::now_utc(),
            by: "dispatcher d1".into(),
        });
        assert_eq!(registration.state(), LifecycleState::Failed);
        assert!(!registration.is_active());
        assert_eq!(LifecycleState::Failed.to_string(), "failed");
        let json = serde_json::to_string(&registration).unwrap();
        assert_eq!(
            serde_json::from_str::<Registration>(&json).unwrap(),
            registration
        );
        registration.enabled = false;
        assert_eq!(registration.state(), LifecycleState::Disabled);
        registration.awaiting_approval = true;
        assert_eq!(registration.state(), LifecycleState::PendingApproval);
    }

    #[test]
    fn includes_and_displays() {
        let only = TenantScope::only([tenant("acme"), tenant("globex")]).unwrap();
        assert!(only.includes(&tenant("acme")));
        assert!(!only.includes(&tenant("initech")));
        assert!(TenantScope::All.includes(&tenant("initech")));
        assert_eq!(only.to_string(), "acme, globex");
        assert_eq!(TenantScope::All.to_string(), "all tenants");
        assert_eq!(TenantScope::All.tenants(), None);
        assert_eq!(only.tenants().map(BTreeSet::len), Some(2));
    }
}
