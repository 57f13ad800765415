//! What a plugin asks for, and the operator's approval of it.
//!
//! An installed plugin runs only once an operator approved what it asks for: the events it
//! subscribes to, the channels it sends and receives on, the tenants it serves, and its
//! quotas. An upgrade that asks for more (a new event pattern, a new channel, another tenant,
//! a higher quota) waits for approval again while the approved version keeps running; one
//! that asks for the same or less takes effect at once.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use switchyard_schemas::Manifest;
use time::OffsetDateTime;

use crate::audit::Actor;
use crate::registry::TenantScope;

/// What a plugin asks for: the rights an operator approves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requested {
    /// The event patterns of its subscriptions.
    pub events: BTreeSet<String>,
    /// The channels it sends on.
    pub channels_send: BTreeSet<String>,
    /// The channels it receives from.
    pub channels_receive: BTreeSet<String>,
    /// The tenants it serves.
    pub tenants: TenantScope,
    /// Its quotas: subscriptions, message size, connections, bytes per second.
    pub limits: [u32; 4],
    /// The names of its declared settings, each marked when secret or required (their values
    /// are the operator's, not rights).
    pub settings: BTreeSet<String>,
    /// Who may call its operations, one entry per operation and kind of caller, and per
    /// tenant it is offered to (`` `quote` by plugin `billing` ``, `` `quote` for every tenant ``).
    /// Approvals stored before operations existed read as none.
    #[serde(default)]
    pub operations: BTreeSet<String>,
}

impl Requested {
    /// What `manifest` asks for when serving `tenants`.
    pub fn of(manifest: &Manifest, tenants: &TenantScope) -> Self {
        let limits = &manifest.limits;
        Self {
            events: manifest
                .subscriptions
                .iter()
                .flat_map(|s| s.events.iter().map(ToString::to_string))
                .collect(),
            channels_send: manifest
                .channels
                .send
                .iter()
                .map(ToString::to_string)
                .collect(),
            channels_receive: manifest
                .channels
                .receive
                .iter()
                .map(ToString::to_string)
                .collect(),
            tenants: tenants.clone(),
            limits: [
                limits.max_subscriptions.get(),
                limits.max_payload.get(),
                limits.max_connections.get(),
                limits.max_bytes_per_second.get(),
            ],
            settings: manifest
                .settings_schema
                .specs()
                .map(|(name, spec)| match (spec.secret, spec.required) {
                    (true, true) => format!("{name} (secret, required)"),
                    (true, false) => format!("{name} (secret)"),
                    (false, true) => format!("{name} (required)"),
                    (false, false) => name.to_owned(),
                })
                .collect(),
            operations: operation_exposure(manifest),
        }
    }

    /// What this asks for beyond `approved`, one line each; empty when it asks for nothing
    /// more. An event pattern counts as new unless the very same pattern was approved.
    pub fn beyond(&self, approved: &Requested) -> Vec<String> {
        let mut more = Vec::new();
        for event in self.events.difference(&approved.events) {
            more.push(format!("receive events `{event}`"));
        }
        for channel in self.channels_send.difference(&approved.channels_send) {
            more.push(format!("send on channel `{channel}`"));
        }
        for channel in self.channels_receive.difference(&approved.channels_receive) {
            more.push(format!("receive from channel `{channel}`"));
        }
        match (&self.tenants, &approved.tenants) {
            (_, TenantScope::All) => {}
            (TenantScope::All, TenantScope::Only(_)) => more.push("serve all tenants".to_owned()),
            (TenantScope::Only(new), TenantScope::Only(old)) => {
                for tenant in new.difference(old) {
                    more.push(format!("serve tenant `{tenant}`"));
                }
            }
        }
        for exposure in self.operations.difference(&approved.operations) {
            more.push(format!("offer operation {exposure}"));
        }
        const NAMES: [&str; 4] = [
            "max_subscriptions",
            "max_payload",
            "max_connections",
            "max_bytes_per_second",
        ];
        for ((name, new), old) in NAMES.iter().zip(self.limits).zip(approved.limits) {
            if new > old {
                more.push(format!("raise the quota {name} from {old} to {new}"));
            }
        }
        more
    }

    /// Everything asked for, one line each, for the operator who approves it.
    pub fn describe(&self) -> Vec<String> {
        let list = |set: &BTreeSet<String>| {
            if set.is_empty() {
                "none".to_owned()
            } else {
                set.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        };
        vec![
            format!("events: {}", list(&self.events)),
            format!("sends on channels: {}", list(&self.channels_send)),
            format!("receives from channels: {}", list(&self.channels_receive)),
            format!("tenants: {}", self.tenants),
            format!(
                "quotas: {} subscriptions, {} bytes per message, {} connections, {} bytes/s",
                self.limits[0], self.limits[1], self.limits[2], self.limits[3]
            ),
            format!("settings: {}", list(&self.settings)),
            format!("operations: {}", list(&self.operations)),
        ]
    }
}

/// Who may call each operation of `manifest`, as [`Requested::operations`] lists it.
fn operation_exposure(manifest: &Manifest) -> BTreeSet<String> {
    let mut exposure = BTreeSet::new();
    for operation in &manifest.operations {
        let name = &operation.name;
        let callers = &operation.callers;
        if callers.operators {
            exposure.insert(format!("`{name}` by operators"));
        }
        if callers.services {
            exposure.insert(format!("`{name}` by services"));
        }
        for plugin in &callers.plugins {
            exposure.insert(format!("`{name}` by plugin `{plugin}`"));
        }
        match &callers.tenants {
            None => {
                exposure.insert(format!("`{name}` for every tenant"));
            }
            Some(tenants) => {
                for tenant in tenants {
                    exposure.insert(format!("`{name}` for tenant `{tenant}`"));
                }
            }
        }
    }
    exposure
}

/// An operator's approval of what a plugin asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// What was approved.
    pub rights: Requested,
    /// Who approved it: the audit actor's one-line name (`--actor`, NATS user, OS user and
    /// host), the same as in the approval's audit entry.
    pub by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who approved it, in full, as the audit log records actors; `None` for approvals stored
    /// before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
}

impl Approval {
    /// `by` approves what `manifest` asks for when serving `tenants`, now.
    pub fn of(manifest: &Manifest, tenants: &TenantScope, by: impl Into<String>) -> Self {
        Self {
            rights: Requested::of(manifest, tenants),
            by: by.into(),
            at: OffsetDateTime::now_utc(),
            actor: None,
        }
    }

    /// `actor` (as the audit log records it) approves what `manifest` asks for when serving
    /// `tenants`, now.
    pub fn by_actor(manifest: &Manifest, tenants: &TenantScope, actor: &Actor) -> Self {
        Self {
            actor: Some(actor.clone()),
            ..Self::of(manifest, tenants, actor.name.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_schemas::Tenant;

    fn manifest(extra: &str) -> Manifest {
        Manifest::from_toml_str(&format!(
            "[plugin]\nid = \"a\"\nversion = \"1.0.0\"\ncore = \"*\"\n\
             [[subscriptions]]\nname = \"s\"\nevents = [\"order.*\"]\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn offering_an_operation_to_more_callers_or_tenants_is_beyond_an_approval() {
        let with = |callers: &str| {
            Requested::of(
                &manifest(&format!(
                    "[[operations]]\nname = \"q\"\n\
                     request = {{ type = \"a\", version = \"1.0.0\" }}\n\
                     response = {{ type = \"b\", version = \"1.0.0\" }}\n\
                     callers = {{ {callers} }}\n"
                )),
                &TenantScope::All,
            )
        };
        let approved = with(r#"plugins = ["shop"], tenants = ["acme"]"#);
        assert!(with(r#"plugins = ["shop"], tenants = ["acme"]"#)
            .beyond(&approved)
            .is_empty());
        assert!(
            with(r#"plugins = [], tenants = ["acme"], operators = false"#)
                .beyond(&approved)
                .is_empty(),
            "fewer callers ask for nothing more"
        );
        assert_eq!(
            with(r#"plugins = ["shop", "crm"], tenants = ["acme"]"#).beyond(&approved),
            ["offer operation `q` by plugin `crm`"]
        );
        assert_eq!(
            with(r#"plugins = ["shop"]"#).beyond(&approved),
            ["offer operation `q` for every tenant"]
        );
        assert_eq!(
            with(r#"plugins = ["shop"], tenants = ["acme"], services = true"#).beyond(&approved),
            ["offer operation `q` by services"]
        );
        let old = Requested {
            operations: Default::default(),
            ..approved.clone()
        };
        assert!(
            !approved.beyond(&old).is_empty(),
            "an approval from before operations covers none"
        );
    }

    #[test]
    fn more_events_channels_tenants_or_quota_are_beyond_an_approval() {
        let acme = TenantScope::only([Tenant::new("acme").unwrap()]).unwrap();
        let approved = Requested::of(&manifest(""), &acme);
        assert!(Requested::of(&manifest(""), &acme)
            .beyond(&approved)
            .is_empty());
        let wider = Requested::of(
            &manifest(
                "[[subscriptions]]\nname = \"t\"\nevents = [\"invoice.*\"]\n\
                 [channels]\nsend = [\"alerts\"]\n[limits]\nmax_connections = 50\n",
            ),
            &TenantScope::All,
        );
        let more = wider.beyond(&approved);
        assert_eq!(
            more,
            [
                "receive events `invoice.*`",
                "send on channel `alerts`",
                "serve all tenants",
                "raise the quota max_connections from 8 to 50",
            ]
        );
        // Asking for less needs nothing.
        assert!(approved.beyond(&wider).is_empty());
    }
}
