//! The states that entries record before and after a change, kept short and free of secrets.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::registry::{LifecycleState, Registration, TenantScope};

/// The longest list of sequences an entry spells out; past it the rest is counted.
const MAX_RANGES_TEXT: usize = 16 * 1024;

/// A registration as an entry records it: version, tenants, lifecycle state, a pending
/// upgrade's version, who approved it, subscriptions, channels, dependencies, the names of
/// its settings, why it failed (if it did) and where it was installed from (its provenance). Setting values are left out: a plugin's settings may hold secrets.
pub fn registration_summary(registration: &Registration) -> Value {
    #[derive(Serialize)]
    struct Subscription<'a> {
        name: &'a str,
        events: Vec<&'a str>,
        versions: String,
    }
    #[derive(Serialize)]
    struct Channels<'a> {
        send: Vec<&'a str>,
        receive: Vec<&'a str>,
    }
    #[derive(Serialize)]
    struct Summary<'a> {
        version: String,
        description: Option<&'a str>,
        core: String,
        tenants: Option<Vec<&'a str>>,
        all_tenants: bool,
        enabled: bool,
        state: LifecycleState,
        pending_upgrade: Option<String>,
        approved_by: Option<&'a str>,
        subscriptions: Vec<Subscription<'a>>,
        channels: Channels<'a>,
        requires: BTreeMap<&'a str, String>,
        conflicts: Vec<&'a str>,
        settings: Vec<&'a str>,
        failure: Option<&'a crate::registry::Failure>,
        provenance: Option<&'a crate::registry::Provenance>,
    }
    let manifest = &registration.manifest;
    let tenants = match &registration.tenants {
        TenantScope::All => None,
        TenantScope::Only(tenants) => Some(tenants.iter().map(|t| t.as_str()).collect()),
    };
    let summary = Summary {
        version: manifest.plugin.version.to_string(),
        description: manifest.plugin.description.as_deref(),
        core: manifest.plugin.core.to_string(),
        all_tenants: tenants.is_none(),
        tenants,
        enabled: registration.enabled,
        state: registration.state(),
        pending_upgrade: registration
            .pending_upgrade
            .as_ref()
            .map(|pending| pending.manifest.plugin.version.to_string()),
        approved_by: registration.approval.as_ref().map(|a| a.by.as_str()),
        subscriptions: manifest
            .subscriptions
            .iter()
            .map(|s| Subscription {
                name: s.name.as_str(),
                events: s.events.iter().map(|p| p.as_str()).collect(),
                versions: s.versions.to_string(),
            })
            .collect(),
        channels: Channels {
            send: manifest.channels.send.iter().map(|c| c.as_str()).collect(),
            receive: manifest
                .channels
                .receive
                .iter()
                .map(|c| c.as_str())
                .collect(),
        },
        requires: manifest
            .dependencies
            .requires
            .iter()
            .map(|(id, range)| (id.as_str(), range.to_string()))
            .collect(),
        conflicts: manifest
            .dependencies
            .conflicts
            .iter()
            .map(|c| c.as_str())
            .collect(),
        settings: manifest.settings.keys().map(String::as_str).collect(),
        failure: registration.failure.as_ref(),
        provenance: registration.provenance.as_ref(),
    };
    // Plain strings, lists and maps: encoding cannot fail.
    serde_json::to_value(summary).unwrap_or(Value::Null)
}

/// Sequences as ranges, `3-7, 9, 12-13`, sorted; a very long list ends with `… (N more)`.
pub fn sequence_ranges(sequences: &[u64]) -> String {
    let mut sorted = sequences.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for sequence in sorted {
        match ranges.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(sequence) => *last = sequence,
            _ => ranges.push((sequence, sequence)),
        }
    }
    let mut text = String::new();
    for (i, (first, last)) in ranges.iter().enumerate() {
        if text.len() > MAX_RANGES_TEXT {
            let more: u64 = ranges[i..].iter().map(|(f, l)| l - f + 1).sum();
            text.push_str(&format!(", … ({more} more)"));
            break;
        }
        if i > 0 {
            text.push_str(", ");
        }
        if first == last {
            text.push_str(&first.to_string());
        } else {
            text.push_str(&format!("{first}-{last}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_read_as_ranges() {
        assert_eq!(sequence_ranges(&[]), "");
        assert_eq!(sequence_ranges(&[9, 3, 4, 5, 12, 13, 4]), "3-5, 9, 12-13");
        let many: Vec<u64> = (0..20_000).map(|i| i * 2).collect();
        let text = sequence_ranges(&many);
        assert!(text.len() < MAX_RANGES_TEXT + 64, "{}", text.len());
        assert!(text.ends_with("more)"), "{}", &text[text.len() - 40..]);
    }

    #[test]
    fn a_summary_names_settings_but_not_their_values() {
        let manifest = switchyard_schemas::Manifest::from_toml_str(
            r#"
            [plugin]
            id = "billing"
            version = "1.2.0"
            core = "*"

            [[subscriptions]]
            name = "orders"
            events = ["order.*"]

            [settings]
            api_key = "sk-live-very-secret"
            "#,
        )
        .unwrap();
        let summary = registration_summary(&Registration::new(manifest, TenantScope::All));
        assert_eq!(summary["version"], "1.2.0");
        assert_eq!(summary["all_tenants"], true);
        assert_eq!(summary["state"], "enabled");
        assert!(summary["pending_upgrade"].is_null());
        assert_eq!(summary["settings"], serde_json::json!(["api_key"]));
        assert_eq!(summary["subscriptions"][0]["events"][0], "order.*");
        assert!(!summary.to_string().contains("sk-live"), "{summary}");
    }
}
