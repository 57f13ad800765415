//! Whether a plugin fits beside the installed ones: the Switchyard version it needs (`core`),
//! the plugins it requires (`[dependencies] requires`, semver ranges), the plugins it cannot
//! run with (`conflicts`, both ways), downgrades, and the installed plugins that require it.
//!
//! Checked at install, upgrade, enable and removal; every refusal names the manifest key at
//! fault ([`Incompatibility::key`]), which the CLI turns into a line of the manifest file.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use semver::{Version, VersionReq};
use switchyard_schemas::{Manifest, PluginId};

use crate::registry::Registration;

/// The Switchyard version that runs, which manifests' `core` ranges must admit.
pub fn core_version() -> Version {
    // The workspace's version, the same for every crate and the `switchyard` binary.
    Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or_else(|_| Version::new(0, 0, 0))
}

/// One reason a plugin does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Incompatibility {
    /// Its `core` range does not admit the running Switchyard.
    #[error("it needs Switchyard `{required}`, and {running} runs")]
    Core {
        /// The manifest's `core`.
        required: VersionReq,
        /// The running version.
        running: Version,
    },
    /// A plugin it requires is not installed.
    #[error("it requires plugin `{plugin}` `{range}`, which is not installed")]
    Missing {
        /// The required plugin.
        plugin: PluginId,
        /// The range it needs.
        range: VersionReq,
    },
    /// A plugin it requires is installed in a version outside the range.
    #[error("it requires plugin `{plugin}` `{range}`, and {installed} is installed")]
    WrongVersion {
        /// The required plugin.
        plugin: PluginId,
        /// The range it needs.
        range: VersionReq,
        /// The version installed.
        installed: Version,
    },
    /// A plugin it requires is installed but not running: disabled or waiting for approval
    /// (checked when enabling).
    #[error("it requires plugin `{plugin}`, which is installed but not enabled")]
    NotEnabled {
        /// The required plugin.
        plugin: PluginId,
    },
    /// It conflicts with an installed plugin.
    #[error("it conflicts with plugin `{plugin}`, which is installed")]
    Conflicts {
        /// The installed plugin it names.
        plugin: PluginId,
    },
    /// An installed plugin conflicts with it.
    #[error("the installed plugin `{by}` conflicts with it")]
    ConflictedBy {
        /// The installed plugin that names it.
        by: PluginId,
    },
    /// It is older than the installed version.
    #[error("it is {proposed}, older than the installed {installed}: a downgrade (allow it with --allow-downgrade)")]
    Downgrade {
        /// The version installed.
        installed: Version,
        /// The version proposed.
        proposed: Version,
    },
    /// An installed plugin requires it in a range the change leaves (an upgrade out of the
    /// range, or its removal).
    #[error("the installed plugin `{by}` requires it as `{range}`{}", match proposed {
        Some(version) => format!(", which {version} is not"),
        None => String::new(),
    })]
    RequiredBy {
        /// The installed plugin that requires it.
        by: PluginId,
        /// The range that plugin needs.
        range: VersionReq,
        /// The version proposed, or `None` for a removal.
        proposed: Option<Version>,
    },
}

impl Incompatibility {
    /// The key of the proposed manifest at fault (`plugin.core`,
    /// `dependencies.requires.geo-lookup`, `dependencies.conflicts`, `plugin.version`), when
    /// the fault is in that manifest.
    pub fn key(&self) -> Option<String> {
        match self {
            Self::Core { .. } => Some("plugin.core".to_owned()),
            Self::Missing { plugin, .. }
            | Self::WrongVersion { plugin, .. }
            | Self::NotEnabled { plugin } => Some(format!("dependencies.requires.{plugin}")),
            Self::Conflicts { .. } => Some("dependencies.conflicts".to_owned()),
            Self::Downgrade { .. }
            | Self::RequiredBy {
                proposed: Some(_), ..
            } => Some("plugin.version".to_owned()),
            Self::ConflictedBy { .. } | Self::RequiredBy { proposed: None, .. } => None,
        }
    }
}

/// Every reason a change was refused, one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibilities(pub Vec<Incompatibility>);

impl fmt::Display for Incompatibilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Incompatibilities {}

/// Whether `manifest` may be installed (or replace the installed plugin of its id) beside
/// `installed`, on Switchyard `core`.
///
/// # Errors
/// Every [`Incompatibility`] found.
pub fn check_install(
    manifest: &Manifest,
    installed: &[Registration],
    core: &Version,
    allow_downgrade: bool,
) -> Result<(), Incompatibilities> {
    let id = &manifest.plugin.id;
    let proposed = &manifest.plugin.version;
    let mut problems = Vec::new();
    if !manifest.plugin.core.matches(core) {
        problems.push(Incompatibility::Core {
            required: manifest.plugin.core.clone(),
            running: core.clone(),
        });
    }
    let others: Vec<&Registration> = installed.iter().filter(|r| r.plugin_id() != id).collect();
    if let Some(current) = installed.iter().find(|r| r.plugin_id() == id) {
        let installed = &current.manifest.plugin.version;
        if proposed < installed && !allow_downgrade {
            problems.push(Incompatibility::Downgrade {
                installed: installed.clone(),
                proposed: proposed.clone(),
            });
        }
    }
    problems.extend(requirements(manifest, &others, false));
    for conflict in &manifest.dependencies.conflicts {
        if others.iter().any(|r| r.plugin_id() == conflict) {
            problems.push(Incompatibility::Conflicts {
                plugin: conflict.clone(),
            });
        }
    }
    for other in &others {
        let theirs = &other.manifest.dependencies;
        if theirs.conflicts.contains(id) {
            problems.push(Incompatibility::ConflictedBy {
                by: other.plugin_id().clone(),
            });
        }
        if let Some(range) = theirs.requires.get(id) {
            if !range.matches(proposed) {
                problems.push(Incompatibility::RequiredBy {
                    by: other.plugin_id().clone(),
                    range: range.clone(),
                    proposed: Some(proposed.clone()),
                });
            }
        }
    }
    finish(problems)
}

/// Whether the installed `registration` may be enabled: its requirements are installed in
/// range and enabled.
///
/// # Errors
/// Every [`Incompatibility`] found.
pub fn check_enable(
    registration: &Registration,
    installed: &[Registration],
) -> Result<(), Incompatibilities> {
    let others: Vec<&Registration> = installed
        .iter()
        .filter(|r| r.plugin_id() != registration.plugin_id())
        .collect();
    finish(requirements(&registration.manifest, &others, true))
}

/// Whether `plugin` may be removed: no installed plugin requires it.
///
/// # Errors
/// An [`Incompatibility::RequiredBy`] per plugin that requires it.
pub fn check_removal(
    plugin: &PluginId,
    installed: &[Registration],
) -> Result<(), Incompatibilities> {
    finish(
        installed
            .iter()
            .filter_map(|r| {
                r.manifest.dependencies.requires.get(plugin).map(|range| {
                    Incompatibility::RequiredBy {
                        by: r.plugin_id().clone(),
                        range: range.clone(),
                        proposed: None,
                    }
                })
            })
            .collect(),
    )
}

/// The plugins to remove for `plugin` to go with everything that requires it, directly or
/// not: dependents first, `plugin` last.
pub fn removal_order(plugin: &PluginId, installed: &[Registration]) -> Vec<PluginId> {
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue = VecDeque::from([plugin.clone()]);
    while let Some(next) = queue.pop_front() {
        if !seen.insert(next.clone()) {
            continue;
        }
        order.push(next.clone());
        for dependent in installed
            .iter()
            .filter(|r| r.manifest.dependencies.requires.contains_key(&next))
        {
            queue.push_back(dependent.plugin_id().clone());
        }
    }
    order.reverse();
    order
}

fn requirements(
    manifest: &Manifest,
    others: &[&Registration],
    must_be_enabled: bool,
) -> Vec<Incompatibility> {
    let mut problems = Vec::new();
    for (plugin, range) in &manifest.dependencies.requires {
        match others.iter().find(|r| r.plugin_id() == plugin) {
            None => problems.push(Incompatibility::Missing {
                plugin: plugin.clone(),
                range: range.clone(),
            }),
            Some(found) if !range.matches(&found.manifest.plugin.version) => {
                problems.push(Incompatibility::WrongVersion {
                    plugin: plugin.clone(),
                    range: range.clone(),
                    installed: found.manifest.plugin.version.clone(),
                });
            }
            Some(found) if must_be_enabled && !found.is_active() => {
                problems.push(Incompatibility::NotEnabled {
                    plugin: plugin.clone(),
                });
            }
            Some(_) => {}
        }
    }
    problems
}

fn finish(problems: Vec<Incompatibility>) -> Result<(), Incompatibilities> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Incompatibilities(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::TenantScope;

    fn manifest(id: &str, version: &str, extra: &str) -> Manifest {
        Manifest::from_toml_str(&format!(
            "[plugin]\nid = \"{id}\"\nversion = \"{version}\"\ncore = \"*\"\n{extra}"
        ))
        .unwrap()
    }

    fn installed(id: &str, version: &str, extra: &str) -> Registration {
        Registration::new(manifest(id, version, extra), TenantScope::All)
    }

    fn id(name: &str) -> PluginId {
        PluginId::new(name).unwrap()
    }

    #[test]
    fn core_requires_and_conflicts_are_checked_both_ways() {
        let core = Version::new(0, 1, 0);
        let needs_core_9 =
            Manifest::from_toml_str("[plugin]\nid = \"a\"\nversion = \"1.0.0\"\ncore = \"^9.0\"\n")
                .unwrap();
        let refused = check_install(&needs_core_9, &[], &core, false).unwrap_err();
        assert_eq!(refused.0[0].key().as_deref(), Some("plugin.core"));

        let needs_geo = manifest(
            "a",
            "1.0.0",
            "[dependencies]\nrequires = { geo = \"^1\" }\n",
        );
        let refused = check_install(&needs_geo, &[], &core, false).unwrap_err();
        assert!(
            matches!(&refused.0[0], Incompatibility::Missing { plugin, .. } if plugin == &id("geo"))
        );
        assert_eq!(
            refused.0[0].key().as_deref(),
            Some("dependencies.requires.geo")
        );
        let old_geo = installed("geo", "0.9.0", "");
        assert!(matches!(
            &check_install(&needs_geo, &[old_geo], &core, false)
                .unwrap_err()
                .0[0],
            Incompatibility::WrongVersion { .. }
        ));
        assert!(check_install(&needs_geo, &[installed("geo", "1.2.0", "")], &core, false).is_ok());

        let conflicting = manifest("a", "1.0.0", "[dependencies]\nconflicts = [\"old\"]\n");
        assert!(
            check_install(&conflicting, &[installed("old", "1.0.0", "")], &core, false).is_err()
        );
        let hated = installed("b", "1.0.0", "[dependencies]\nconflicts = [\"a\"]\n");
        assert_eq!(
            check_install(&manifest("a", "1.0.0", ""), &[hated], &core, false)
                .unwrap_err()
                .0,
            [Incompatibility::ConflictedBy { by: id("b") }]
        );
    }

    #[test]
    fn downgrades_and_upgrades_out_of_a_dependents_range_are_refused() {
        let core = Version::new(0, 1, 0);
        let current = installed("geo", "1.4.0", "");
        let older = manifest("geo", "1.3.0", "");
        let refused =
            check_install(&older, std::slice::from_ref(&current), &core, false).unwrap_err();
        assert_eq!(refused.0[0].key().as_deref(), Some("plugin.version"));
        assert!(check_install(&older, std::slice::from_ref(&current), &core, true).is_ok());

        let user = installed(
            "maps",
            "1.0.0",
            "[dependencies]\nrequires = { geo = \"^1\" }\n",
        );
        let breaking = manifest("geo", "2.0.0", "");
        assert!(matches!(
            &check_install(&breaking, &[current.clone(), user.clone()], &core, false)
                .unwrap_err()
                .0[0],
            Incompatibility::RequiredBy { by, proposed: Some(_), .. } if by == &id("maps")
        ));
        assert!(check_removal(&id("geo"), &[current.clone(), user.clone()]).is_err());
        assert!(check_removal(&id("maps"), &[current.clone(), user.clone()]).is_ok());
        let app = installed(
            "app",
            "1.0.0",
            "[dependencies]\nrequires = { maps = \"*\" }\n",
        );
        assert_eq!(
            removal_order(&id("geo"), &[current, user, app]),
            [id("app"), id("maps"), id("geo")]
        );
    }

    #[test]
    fn enabling_needs_requirements_enabled() {
        let mut geo = installed("geo", "1.0.0", "");
        geo.enabled = false;
        let maps = installed(
            "maps",
            "1.0.0",
            "[dependencies]\nrequires = { geo = \"^1\" }\n",
        );
        assert_eq!(
            check_enable(&maps, &[geo.clone(), maps.clone()])
                .unwrap_err()
                .0,
            [Incompatibility::NotEnabled { plugin: id("geo") }]
        );
        geo.enabled = true;
        assert!(check_enable(&maps, &[geo, maps.clone()]).is_ok());
    }
}
