//! What this host should run: the instances the placement gives it, of the plugins that are
//! enabled and were installed from a package.

use std::collections::BTreeMap;

use switchyard_control::registry::{InstalledFrom, LifecycleState, Registration};
use switchyard_schemas::manifest::RunPolicy;
use switchyard_schemas::PluginId;

use crate::place::{hosts_for, Slot};

/// One instance this host should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    /// The plugin version, as registered.
    pub(crate) version: String,
    /// The package's object in the store (`plugin/version`).
    pub(crate) package: String,
    /// The package's digest as installed: the package fetched must match it.
    pub(crate) sha256: Option<String>,
    /// What installing allowed for it (`unsigned`, `untrusted_key`), or `None` (trusted).
    pub(crate) allowed: Option<String>,
    /// How it runs.
    pub(crate) run: RunPolicy,
}

/// The instances `me` should run, by plugin and slot, given every registration and the live
/// hosts' names; and the enabled plugins no host can run (installed from a manifest).
pub(crate) fn desired(
    registrations: &[Registration],
    live: &[&str],
    me: &str,
) -> (BTreeMap<(PluginId, Slot), Wanted>, Vec<PluginId>) {
    let mut wanted = BTreeMap::new();
    let mut unrunnable = Vec::new();
    for registration in registrations {
        if registration.state() != LifecycleState::Enabled {
            continue;
        }
        let manifest = &registration.manifest;
        let plugin = manifest.plugin.id.clone();
        let Some(provenance) = registration
            .provenance
            .as_ref()
            .filter(|p| p.from == InstalledFrom::Package)
        else {
            unrunnable.push(plugin);
            continue;
        };
        let Some(package) = provenance.package.clone() else {
            unrunnable.push(plugin);
            continue;
        };
        let instances = manifest.run.instances_for(live.len());
        for (slot, host) in hosts_for(plugin.as_str(), instances, live)
            .into_iter()
            .enumerate()
        {
            if host != me {
                continue;
            }
            let slot = Slot::try_from(slot).unwrap_or(Slot::MAX);
            wanted.insert(
                (plugin.clone(), slot),
                Wanted {
                    version: manifest.plugin.version.to_string(),
                    package: package.clone(),
                    sha256: provenance.sha256.clone(),
                    allowed: provenance
                        .allowed_by
                        .as_ref()
                        .and(provenance.verdict.clone()),
                    run: manifest.run,
                },
            );
        }
    }
    (wanted, unrunnable)
}
