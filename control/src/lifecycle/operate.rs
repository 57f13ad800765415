//! The operator's lifecycle verbs on an installed plugin: approve, reject, enable, disable,
//! roll back. One implementation, used by the CLI and the management API alike.
//!
//! Each verb reads the registry, checks, and writes conditionally; when another change to the
//! registry came first it starts over ([`Operator::retrying`]). Every write is audited with the
//! acting [`Auditor`], and a change is announced as a lifecycle event (docs/lifecycle.md).

use std::future::Future;

use async_nats::jetstream;
use switchyard_bus::Publisher;
use switchyard_schemas::manifest::Manifest;
use switchyard_schemas::{Namespace, PluginId};
use time::OffsetDateTime;

use super::approval::Approval;
use super::compat;
use super::events::{self, LifecycleEvent, LifecycleKind};
use super::rollback::{self, RollbackError, RollbackTarget};
use crate::audit::{Action, Auditor};
use crate::registry::{Registration, Registry, RegistryError, Snapshot, CONFLICT_ATTEMPTS};
use crate::settings::edit::{audited, describe};
use crate::settings::{Changed, OperatorSettings, SettingChange, SettingsError, SettingsStore};

/// Why a lifecycle verb was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    /// The plugin is not registered.
    #[error("no plugin `{plugin}` is registered (in `{bucket}`)")]
    NotRegistered {
        /// The plugin.
        plugin: PluginId,
        /// The registry's bucket.
        bucket: String,
    },
    /// The change does not fit: beside the other plugins, or with the settings set for it.
    #[error("{what} is refused:\n{problems}")]
    Incompatible {
        /// What was refused, e.g. `enabling audit-log`.
        what: String,
        /// Every problem, one per line.
        problems: String,
    },
    /// No revision to roll back to: none given exists, or none of another version.
    #[error("{0}")]
    NoTarget(String),
    /// Every try met a concurrent change to the registry.
    #[error(
        "{what} gave up after {attempts} tries: the registry kept changing meanwhile ({last})"
    )]
    KeptChanging {
        /// What was being done.
        what: String,
        /// How many tries.
        attempts: usize,
        /// The last conflict.
        last: String,
    },
    /// The registry could not be read or written.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The settings could not be read.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// A removed plugin's credential could not be revoked.
    #[error("the credential could not be revoked: {0}")]
    Credentials(String),
    /// A settings change that cannot be made as asked (a name given twice).
    #[error("{0}")]
    BadChange(String),
    /// The change is made but its audit entry could not be stored.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// An upgrade of a plugin that is not installed.
    #[error("{0} is not installed; install it first")]
    NotInstalled(PluginId),
    /// A new installation that names no tenants.
    #[error("{0} is not installed: name the tenants whose events it receives (or all tenants)")]
    NeedsTenants(PluginId),
    /// An upgrade that asks for more than was approved and changes the tenants too.
    #[error(
        "an upgrade of {0} that asks for more cannot change the tenants too: change them \
         first, or approve it at once"
    )]
    TenantsWithUpgrade(PluginId),
    /// The package store has no such package.
    #[error("{0}")]
    NoPackage(String),
    /// The package does not verify, or is not allowed.
    #[error(transparent)]
    Refused(Box<crate::package::InstallRefusal>),
    /// The package store could not be used, or refused the package.
    #[error(transparent)]
    PackageStore(Box<crate::package::StoreError>),
    /// The trusted keys could not be read.
    #[error("the trusted keys could not be read: {0}")]
    Trust(String),
}

/// What a verb did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The plugin.
    pub plugin: PluginId,
    /// Whether the registry changed (`false`: nothing was waiting, or it was so already).
    pub changed: bool,
    /// One line for a person: what was done, with the revision written.
    pub message: String,
    /// The registration as stored now (`None` after a rejection removed it, or when the
    /// plugin was left as it was).
    pub registration: Option<Registration>,
    /// What the plugin may do now, one line each, for an approval.
    pub rights: Vec<String>,
    /// What else was done with it, one line each (a removal's settings forgotten, its
    /// credential revoked).
    pub also: Vec<String>,
    /// What went wrong after the change was stored (an announcement not published).
    pub warnings: Vec<String>,
}

impl Outcome {
    pub(crate) fn unchanged(plugin: &PluginId, message: String) -> Self {
        Self {
            plugin: plugin.clone(),
            changed: false,
            message,
            registration: None,
            rights: Vec::new(),
            also: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(crate) fn changed(
        plugin: &PluginId,
        message: String,
        registration: Option<Registration>,
    ) -> Self {
        Self {
            plugin: plugin.clone(),
            changed: true,
            message,
            registration,
            rights: Vec::new(),
            also: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

/// The lifecycle verbs of one deployment, acting as one [`Auditor`].
#[derive(Debug, Clone)]
pub struct Operator {
    js: jetstream::Context,
    namespace: Namespace,
    registry: Registry,
    auditor: Auditor,
    announcer: Publisher,
}

impl Operator {
    /// The verbs over `registry`, audited by `auditor`, announcing with `announcer`.
    pub fn new(
        js: jetstream::Context,
        namespace: Namespace,
        registry: Registry,
        auditor: Auditor,
        announcer: Publisher,
    ) -> Self {
        Self {
            js,
            namespace,
            registry,
            auditor,
            announcer,
        }
    }

    /// The same verbs acting as another auditor (another person).
    pub fn acting_as(&self, auditor: Auditor) -> Self {
        Self {
            auditor,
            ..self.clone()
        }
    }

    /// The registry the verbs change.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Who the verbs act as.
    pub fn auditor(&self) -> &Auditor {
        &self.auditor
    }

    /// The JetStream context the verbs use.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The deployment's namespace.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Approves what waits for approval: an installation (left disabled with `disabled`) or
    /// an upgrade.
    ///
    /// # Errors
    /// [`OperateError`].
    pub async fn approve(
        &self,
        plugin: &PluginId,
        disabled: bool,
    ) -> Result<Outcome, OperateError> {
        let what = format!("approving {plugin}");
        let outcome = self
            .retrying(&what, |registry, snapshot| {
                Box::pin(self.approve_once(plugin, disabled, registry, snapshot))
            })
            .await?;
        self.conclude(outcome).await
    }

    async fn approve_once(
        &self,
        plugin: &PluginId,
        disabled: bool,
        registry: Registry,
        snapshot: Snapshot,
    ) -> Result<(Option<LifecycleKind>, Outcome), OperateError> {
        let (mut registration, installed) = self.registered_in(snapshot, plugin)?;
        let before = registration.clone();
        if let Some(upgrade) = registration.pending_upgrade.take() {
            let manifest = upgrade.manifest;
            // The others may have changed since it was proposed.
            compat::check_install(&manifest, &installed, &compat::core_version(), true).map_err(
                |refused| OperateError::Incompatible {
                    what: format!("approving the upgrade of {plugin}"),
                    problems: refused.to_string(),
                },
            )?;
            self.check_settings_allow(&manifest, registration.enabled)
                .await?;
            let from = registration.manifest.plugin.version.clone();
            registration.approval = Some(Approval::by_actor(
                &manifest,
                &registration.tenants,
                self.auditor.actor(),
            ));
            registration.manifest = manifest;
            registration.provenance = upgrade.provenance;
            registration.registered_at = OffsetDateTime::now_utc();
            let done = format!(
                "approved the upgrade of {plugin} from {from} to {}",
                registration.manifest.plugin.version
            );
            let revision = registry
                .put_recorded(
                    &registration,
                    Action::Approved,
                    Some(&before),
                    done.clone(),
                    &self.auditor,
                )
                .await?
                .revision;
            let mut outcome = Outcome::changed(
                plugin,
                format!("{done} (revision {revision}); it asks for:"),
                Some(registration.clone()),
            );
            outcome.rights = registration.approved_rights().describe();
            return Ok((Some(LifecycleKind::Upgraded), outcome));
        }
        if !registration.awaiting_approval {
            return Ok((
                None,
                Outcome::unchanged(plugin, format!("{plugin} has nothing waiting for approval")),
            ));
        }
        registration.awaiting_approval = false;
        registration.enabled = !disabled;
        if registration.enabled {
            compat::check_enable(&registration, &installed).map_err(|refused| {
                OperateError::Incompatible {
                    what: format!("enabling {plugin} (approve it disabled)"),
                    problems: refused.to_string(),
                }
            })?;
            self.check_settings_allow(&registration.manifest, true)
                .await?;
        }
        registration.approval = Some(Approval::by_actor(
            &registration.manifest,
            &registration.tenants,
            self.auditor.actor(),
        ));
        let done = format!(
            "approved {plugin} {} ({})",
            registration.manifest.plugin.version,
            registration.state()
        );
        let revision = registry
            .put_recorded(
                &registration,
                Action::Approved,
                Some(&before),
                done,
                &self.auditor,
            )
            .await?
            .revision;
        let mut outcome = Outcome::changed(
            plugin,
            format!(
                "approved {plugin} {} ({}, revision {revision}); it may:",
                registration.manifest.plugin.version,
                registration.state()
            ),
            Some(registration.clone()),
        );
        outcome.rights = registration.approved_rights().describe();
        Ok((Some(LifecycleKind::Approved), outcome))
    }

    /// Rejects what waits for approval: an upgrade (the current version stays) or an
    /// installation (removed).
    ///
    /// # Errors
    /// [`OperateError`].
    pub async fn reject(&self, plugin: &PluginId) -> Result<Outcome, OperateError> {
        let what = format!("rejecting {plugin}");
        let outcome = self
            .retrying(&what, |registry, snapshot| {
                Box::pin(self.reject_once(plugin, registry, snapshot))
            })
            .await?;
        self.conclude(outcome).await
    }

    async fn reject_once(
        &self,
        plugin: &PluginId,
        registry: Registry,
        snapshot: Snapshot,
    ) -> Result<(Option<LifecycleKind>, Outcome), OperateError> {
        let (mut registration, _) = self.registered_in(snapshot, plugin)?;
        let before = registration.clone();
        if let Some(upgrade) = registration.pending_upgrade.take() {
            let done = format!(
                "rejected the upgrade of {plugin} to {}; {} stays",
                upgrade.manifest.plugin.version, registration.manifest.plugin.version
            );
            let revision = registry
                .put_recorded(
                    &registration,
                    Action::Rejected,
                    Some(&before),
                    done.clone(),
                    &self.auditor,
                )
                .await?
                .revision;
            let outcome = Outcome::changed(
                plugin,
                format!("{done} (revision {revision})"),
                Some(registration),
            );
            Ok((Some(LifecycleKind::Rejected), outcome))
        } else if registration.awaiting_approval {
            let done = format!("rejected {plugin}: its installation is removed");
            registry
                .remove_recorded(plugin, Action::Rejected, done.clone(), &self.auditor)
                .await?;
            // Announced without a registration: there is none any more.
            let outcome = Outcome::changed(plugin, done, None);
            Ok((Some(LifecycleKind::Rejected), outcome))
        } else {
            Ok((
                None,
                Outcome::unchanged(plugin, format!("{plugin} has nothing waiting for approval")),
            ))
        }
    }

    /// Enables (`enabled`) or disables the plugin. Enabling a failed plugin recovers it: its
    /// failure is cleared.
    ///
    /// # Errors
    /// [`OperateError`].
    pub async fn set_enabled(
        &self,
        plugin: &PluginId,
        enabled: bool,
    ) -> Result<Outcome, OperateError> {
        let what = format!(
            "{} {plugin}",
            if enabled { "enabling" } else { "disabling" }
        );
        let outcome = self
            .retrying(&what, |registry, snapshot| {
                Box::pin(self.set_enabled_once(plugin, enabled, registry, snapshot))
            })
            .await?;
        self.conclude(outcome).await
    }

    async fn set_enabled_once(
        &self,
        plugin: &PluginId,
        enabled: bool,
        registry: Registry,
        snapshot: Snapshot,
    ) -> Result<(Option<LifecycleKind>, Outcome), OperateError> {
        let (mut registration, installed) = self.registered_in(snapshot, plugin)?;
        let verb = if enabled { "enabled" } else { "disabled" };
        let recovering = enabled && registration.failure.is_some();
        if registration.enabled == enabled && !recovering {
            return Ok((
                None,
                Outcome::unchanged(plugin, format!("{plugin} is {verb} already")),
            ));
        }
        if enabled {
            compat::check_enable(&registration, &installed).map_err(|refused| {
                OperateError::Incompatible {
                    what: format!("enabling {plugin}"),
                    problems: refused.to_string(),
                }
            })?;
            self.check_settings_allow(&registration.manifest, true)
                .await?;
        }
        let before = registration.clone();
        registration.enabled = enabled;
        let mut done = format!("{verb} {plugin}");
        if enabled {
            if let Some(failure) = registration.failure.take() {
                let since = failure
                    .since
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|_| failure.since.to_string());
                done = format!(
                    "{done}, recovering it from failed (since {since}: {})",
                    failure.reason
                );
            }
        }
        let (action, kind) = if enabled {
            (Action::PluginEnabled, LifecycleKind::Enabled)
        } else {
            (Action::PluginDisabled, LifecycleKind::Disabled)
        };
        let revision = registry
            .put_recorded(
                &registration,
                action,
                Some(&before),
                done.clone(),
                &self.auditor,
            )
            .await?
            .revision;
        Ok((
            Some(kind),
            Outcome::changed(
                plugin,
                format!("{done} (revision {revision})"),
                Some(registration),
            ),
        ))
    }

    /// Rolls the plugin back to revision `to`, or to the latest earlier revision of another
    /// version.
    ///
    /// # Errors
    /// [`OperateError`].
    pub async fn rollback(
        &self,
        plugin: &PluginId,
        to: Option<u64>,
    ) -> Result<Outcome, OperateError> {
        let what = format!("rolling {plugin} back");
        let outcome = self
            .retrying(&what, |registry, snapshot| {
                Box::pin(self.rollback_once(plugin, to, registry, snapshot))
            })
            .await?;
        self.conclude(outcome).await
    }

    async fn rollback_once(
        &self,
        plugin: &PluginId,
        to: Option<u64>,
        registry: Registry,
        snapshot: Snapshot,
    ) -> Result<(Option<LifecycleKind>, Outcome), OperateError> {
        let target = match to {
            Some(revision) => RollbackTarget::Revision(revision),
            None => RollbackTarget::PreviousVersion,
        };
        let plan = rollback::plan(&registry, snapshot, plugin, target)
            .await
            .map_err(|error| match error {
                RollbackError::NotRegistered { plugin, bucket } => {
                    OperateError::NotRegistered { plugin, bucket }
                }
                RollbackError::NoTarget(reason) => OperateError::NoTarget(reason),
                RollbackError::Incompatible {
                    plugin,
                    revision,
                    problems,
                } => OperateError::Incompatible {
                    what: format!("rolling {plugin} back to revision {revision}"),
                    problems,
                },
                RollbackError::Registry(error) => error.into(),
            })?;
        self.check_settings_allow(&plan.restored.manifest, plan.current.enabled)
            .await?;
        let revision = rollback::apply(&registry, &plan, None, &self.auditor).await?;
        let message = format!(
            "rolled {plugin} back from {} to {} (revision {} restored as {revision}; {})",
            plan.current.manifest.plugin.version,
            plan.restored.manifest.plugin.version,
            plan.revision,
            plan.restored.state()
        );
        Ok((
            Some(LifecycleKind::RolledBack),
            Outcome::changed(plugin, message, Some(plan.restored)),
        ))
    }

    /// Removes the plugin, and with `cascade` the plugins that require it first; refused
    /// without `cascade` when others require it. Each removed plugin's settings and secrets
    /// are forgotten and its credential revoked (a plugin added again later gets a new one).
    ///
    /// # Errors
    /// [`OperateError`]; [`OperateError::Credentials`] when a credential could not be revoked
    /// (the removals are made).
    pub async fn remove(&self, plugin: &PluginId, cascade: bool) -> Result<Outcome, OperateError> {
        let what = format!("removing {plugin}");
        let removed = self
            .retrying(&what, |registry, snapshot| {
                Box::pin(self.remove_once(plugin, cascade, registry, snapshot))
            })
            .await?;
        // One line per plugin, in the order they were removed: dependents first.
        let message = removed
            .iter()
            .map(|plugin| format!("removed {plugin}"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut outcome = Outcome::changed(plugin, message, None);
        let settings = SettingsStore::open_existing(&self.js, &self.namespace).await?;
        let credentials = crate::auth::CredentialStore::open_existing(&self.js, &self.namespace)
            .await
            .map_err(|e| OperateError::Credentials(e.to_string()))?;
        for removed in &removed {
            if let Some(settings) = &settings {
                if settings.forget(removed).await? {
                    outcome
                        .also
                        .push(format!("forgot the settings and secrets set for {removed}"));
                }
            }
            if let Some(credentials) = &credentials {
                let revoked = credentials
                    .revoke_audited(removed, Some("with the plugin's removal"), &self.auditor)
                    .await
                    .map_err(|e| OperateError::Credentials(e.to_string()))?;
                if revoked {
                    outcome
                        .also
                        .push(format!("revoked the credential of {removed}"));
                }
            }
            let data = LifecycleEvent {
                plugin: removed.to_string(),
                version: None,
                state: None,
                actor: Some(self.auditor.actor().name.clone()),
                detail: None,
            };
            if let Err(error) =
                events::announce(&self.announcer, LifecycleKind::Removed, &data).await
            {
                outcome.warnings.push(format!(
                    "{removed} is removed, but its lifecycle event was not published: {error}"
                ));
            }
        }
        Ok(outcome)
    }

    async fn remove_once(
        &self,
        plugin: &PluginId,
        cascade: bool,
        registry: Registry,
        snapshot: Snapshot,
    ) -> Result<Vec<PluginId>, OperateError> {
        let installed = snapshot.registrations;
        if !installed.iter().any(|r| r.plugin_id() == plugin) {
            return Err(OperateError::NotRegistered {
                plugin: plugin.clone(),
                bucket: registry.bucket().to_owned(),
            });
        }
        let order = if cascade {
            compat::removal_order(plugin, &installed)
        } else {
            compat::check_removal(plugin, &installed).map_err(|refused| {
                OperateError::Incompatible {
                    what: format!("removing {plugin} (remove them too with cascade)"),
                    problems: refused.to_string(),
                }
            })?;
            vec![plugin.clone()]
        };
        let mut removed = Vec::new();
        for plugin in order {
            if registry.unregister(&plugin, &self.auditor).await? {
                removed.push(plugin);
            }
        }
        Ok(removed)
    }

    /// Changes what is set for the plugin's settings: within what its manifest declares,
    /// checked again against its registration after the write (a lifecycle change may have
    /// landed meanwhile) and taken back when it no longer fits; recorded as
    /// `settings_changed` (names and plain values, never a secret's value). Running workers
    /// receive the change at once.
    ///
    /// # Errors
    /// [`OperateError`]: `BadChange` for a name given twice, `Incompatible` for a name neither
    /// declared nor set to unset or a change that does not fit, `Settings` for a value the
    /// manifest refuses.
    pub async fn change_settings(
        &self,
        plugin: &PluginId,
        changes: &[SettingChange],
    ) -> Result<Outcome, OperateError> {
        let mut seen = std::collections::BTreeSet::new();
        if let Some(twice) = changes.iter().find(|change| !seen.insert(change.name())) {
            return Err(OperateError::BadChange(format!(
                "`{}` is given twice",
                twice.name()
            )));
        }
        let registration =
            self.registry
                .get(plugin)
                .await?
                .ok_or_else(|| OperateError::NotRegistered {
                    plugin: plugin.clone(),
                    bucket: self.registry.bucket().to_owned(),
                })?;
        let store = SettingsStore::open(&self.js, &self.namespace, 1).await?;
        let unsetting: Vec<&str> = changes
            .iter()
            .filter_map(|change| match change {
                SettingChange::Unset(name) => Some(name.as_str()),
                _ => None,
            })
            .collect();
        if !unsetting.is_empty() {
            check_unset(&store, &registration, &unsetting).await?;
        }
        let changed =
            Box::pin(store.change(plugin, &registration.manifest.settings_schema, changes)).await?;
        Box::pin(self.settings_still_fit(&store, &registration, &changed)).await?;
        let mut lines: Vec<String> = changed
            .not_set
            .iter()
            .map(|name| format!("{name} was not set"))
            .collect();
        let described = describe(changes, &changed.not_set);
        if described.is_empty() {
            return Ok(Outcome::unchanged(plugin, lines.join("\n")));
        }
        let done = format!("changed the settings of {plugin}: {described}");
        let entry = self
            .auditor
            .entry(crate::audit::Action::SettingsChanged, plugin.as_str())
            .before(Some(audited(&changed.before)))
            .after(Some(audited(&changed.after)))
            .detail(described.clone());
        self.auditor.record(done, &entry).await?;
        lines.push(format!(
            "{plugin}: {described} (settings revision {}, secrets revision {}); running workers receive it now",
            changed.after.values_revision, changed.after.secrets_revision
        ));
        Ok(Outcome::changed(plugin, lines.join("\n"), None))
    }

    /// After a settings change: the plugin must still be registered, and, when its
    /// registration changed since the checks, the settings must fit the new one. Otherwise the
    /// change is taken back (forgotten, for a plugin removed meanwhile) and refused.
    async fn settings_still_fit(
        &self,
        store: &SettingsStore,
        checked: &Registration,
        changed: &Changed,
    ) -> Result<(), OperateError> {
        let plugin = checked.plugin_id();
        let Some(now) = self.registry.get(plugin).await? else {
            store.forget(plugin).await?;
            return Err(OperateError::Incompatible {
                what: format!("changing the settings of {plugin}"),
                problems: format!("{plugin} was removed meanwhile; what was set is forgotten"),
            });
        };
        if &now == checked {
            return Ok(());
        }
        let mut problems: Vec<String> = changed
            .after
            .problems(&now.manifest.settings_schema)
            .iter()
            .map(ToString::to_string)
            .collect();
        if now.is_active() {
            let missing = changed.after.missing_required(&now.manifest);
            if !missing.is_empty() {
                problems.push(format!(
                    "{plugin} is enabled and requires {}",
                    missing.join(", ")
                ));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        store.revert(plugin, changed).await?;
        Err(OperateError::Incompatible {
            what: format!(
                "changing the settings of {plugin} (its registration changed meanwhile, to version {}; the change was taken back)",
                now.manifest.plugin.version
            ),
            problems: problems.join("\n"),
        })
    }

    /// Makes a change against the registry as it is now, and makes it again when another
    /// change to the registry came first.
    ///
    /// `change` gets the registry's [`Snapshot`] (what its checks read) and a registry whose
    /// writes are stored only while nothing has changed since that snapshot
    /// ([`Registry::expecting`]). When a write is refused for a concurrent change, the whole
    /// change (reading, checking, writing) is made again, at most [`CONFLICT_ATTEMPTS`]
    /// times.
    ///
    /// # Errors
    /// What `change` fails with; [`OperateError::KeptChanging`] when every try met a
    /// concurrent change.
    pub async fn retrying<T, E, F, Fut>(&self, what: &str, change: F) -> Result<T, E>
    where
        F: FnMut(Registry, Snapshot) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: From<OperateError> + From<RegistryError> + AsConflict,
    {
        retrying(&self.registry, what, change).await
    }

    /// The registration of `plugin` in `snapshot`, and every registration.
    fn registered_in(
        &self,
        snapshot: Snapshot,
        plugin: &PluginId,
    ) -> Result<(Registration, Vec<Registration>), OperateError> {
        registered_in(&self.registry, snapshot, plugin)
    }

    /// Whether the settings set for the plugin fit `manifest` (enabled or not).
    pub(crate) async fn check_settings_allow(
        &self,
        manifest: &Manifest,
        enabled: bool,
    ) -> Result<(), OperateError> {
        check_settings_allow(&self.js, &self.namespace, manifest, enabled).await
    }

    /// Ends a change: holds the plugin back when settings changed meanwhile no longer fit it,
    /// then announces the change.
    pub(crate) async fn conclude(
        &self,
        (kind, mut outcome): (Option<LifecycleKind>, Outcome),
    ) -> Result<Outcome, OperateError> {
        let Some(kind) = kind else {
            return Ok(outcome);
        };
        if let Some(written) = &outcome.registration {
            Box::pin(self.hold_back_if_unfit(written)).await?;
        }
        let plugin = outcome.plugin.to_string();
        let data = LifecycleEvent {
            plugin,
            version: outcome
                .registration
                .as_ref()
                .map(|r| r.manifest.plugin.version.to_string()),
            state: outcome.registration.as_ref().map(|r| r.state().to_string()),
            actor: Some(self.auditor.actor().name.clone()),
            detail: None,
        };
        if let Err(error) = events::announce(&self.announcer, kind, &data).await {
            outcome.warnings.push(format!(
                "the change is made, but its lifecycle event `{}` was not published: {error}",
                kind.event_type()
            ));
        }
        Ok(outcome)
    }

    /// After a change that leaves `written` enabled: its settings, read again, must still fit
    /// it (a settings change may have landed between the checks and the write). When they do
    /// not, the plugin is disabled at once (audited) and the change is refused.
    async fn hold_back_if_unfit(&self, written: &Registration) -> Result<(), OperateError> {
        hold_back_if_unfit(
            &self.js,
            &self.namespace,
            &self.registry,
            written,
            &self.auditor,
        )
        .await
    }
}

/// Refuses to unset `names` of `registration`'s plugin when one is neither declared nor set (a
/// typo, most likely, not a no-op), or when the plugin is enabled and would lack a required
/// setting.
async fn check_unset(
    store: &SettingsStore,
    registration: &Registration,
    names: &[&str],
) -> Result<(), OperateError> {
    let plugin = registration.plugin_id();
    let current = store.get(plugin).await?;
    let schema = &registration.manifest.settings_schema;
    let unknown: Vec<String> = names
        .iter()
        .filter(|name| {
            schema.spec(name).is_none()
                && !current.values.contains_key(**name)
                && !current.secrets.contains_key(**name)
        })
        .map(|name| format!("{plugin} declares no setting `{name}`, and none is set"))
        .collect();
    if !unknown.is_empty() {
        return Err(OperateError::Incompatible {
            what: format!("unsetting settings of {plugin}"),
            problems: unknown.join("\n"),
        });
    }
    if registration.is_active() {
        let mut after = current.clone();
        for name in names {
            after.values.remove(*name);
            after.secrets.remove(*name);
        }
        let missing = after.missing_required(&registration.manifest);
        if !missing.is_empty() {
            return Err(OperateError::Incompatible {
                what: format!("unsetting settings of {plugin}"),
                problems: format!(
                    "{plugin} is enabled and requires {}, which would have no value; disable it first",
                    missing.join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// An error type that can say whether it is a registry write refused for a concurrent change.
pub trait AsConflict {
    /// The conflict, when this is one.
    fn as_conflict(&self) -> Option<&RegistryError>;
}

impl AsConflict for OperateError {
    fn as_conflict(&self) -> Option<&RegistryError> {
        match self {
            OperateError::Registry(conflict @ RegistryError::Conflict { .. }) => Some(conflict),
            _ => None,
        }
    }
}

/// [`Operator::retrying`] for callers that have a registry only.
///
/// # Errors
/// As [`Operator::retrying`].
pub async fn retrying<T, E, F, Fut>(registry: &Registry, what: &str, mut change: F) -> Result<T, E>
where
    F: FnMut(Registry, Snapshot) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: From<OperateError> + From<RegistryError> + AsConflict,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let snapshot = registry.snapshot().await?;
        let guarded = registry.expecting(snapshot.sequence);
        match change(guarded, snapshot).await {
            Err(error) => match error.as_conflict() {
                Some(_) if attempt < CONFLICT_ATTEMPTS => {}
                Some(conflict) => {
                    return Err(OperateError::KeptChanging {
                        what: what.to_owned(),
                        attempts: attempt,
                        last: conflict.to_string(),
                    }
                    .into())
                }
                None => return Err(error),
            },
            done => return done,
        }
    }
}

/// The registration of `plugin` in `snapshot`, and every registration.
///
/// # Errors
/// [`OperateError::NotRegistered`].
pub fn registered_in(
    registry: &Registry,
    snapshot: Snapshot,
    plugin: &PluginId,
) -> Result<(Registration, Vec<Registration>), OperateError> {
    let installed = snapshot.registrations;
    let registration = installed
        .iter()
        .find(|r| r.plugin_id() == plugin)
        .cloned()
        .ok_or_else(|| OperateError::NotRegistered {
            plugin: plugin.clone(),
            bucket: registry.bucket().to_owned(),
        })?;
    Ok((registration, installed))
}

/// Whether the settings set for `manifest`'s plugin fit it (enabled or not).
///
/// # Errors
/// [`OperateError::Incompatible`] naming every problem; [`OperateError::Settings`] when the
/// settings cannot be read.
pub async fn check_settings_allow(
    js: &jetstream::Context,
    namespace: &Namespace,
    manifest: &Manifest,
    enabled: bool,
) -> Result<(), OperateError> {
    let set = match SettingsStore::open_existing(js, namespace).await? {
        Some(store) => store.get(&manifest.plugin.id).await?,
        None => OperatorSettings::default(),
    };
    let problems = set.unfit_for(manifest, enabled);
    if problems.is_empty() {
        return Ok(());
    }
    Err(OperateError::Incompatible {
        what: format!(
            "{} {}: its settings",
            manifest.plugin.id, manifest.plugin.version
        ),
        problems: problems.join("\n"),
    })
}

/// After a lifecycle change that leaves `written` enabled: its settings, read again, must
/// still fit it (a settings change may have landed between the checks and the write). When
/// they do not, the plugin is disabled at once (audited) and the change is refused: its events
/// wait, none is lost, and the operator fixes the settings and enables it.
///
/// # Errors
/// [`OperateError::Incompatible`] when the plugin was held back.
pub async fn hold_back_if_unfit(
    js: &jetstream::Context,
    namespace: &Namespace,
    registry: &Registry,
    written: &Registration,
    auditor: &Auditor,
) -> Result<(), OperateError> {
    if !written.is_active() {
        return Ok(());
    }
    let Err(OperateError::Incompatible { problems, .. }) =
        Box::pin(check_settings_allow(js, namespace, &written.manifest, true)).await
    else {
        return Ok(());
    };
    let plugin = written.plugin_id();
    let mut disabled = written.clone();
    disabled.enabled = false;
    let done = format!("disabled {plugin}: a settings change landed meanwhile and does not fit");
    Box::pin(registry.put_recorded(
        &disabled,
        Action::PluginDisabled,
        Some(written),
        done,
        auditor,
    ))
    .await?;
    Err(OperateError::Incompatible {
        what: format!(
            "{plugin}: a settings change landed at the same time, and the plugin is disabled again until its settings fit"
        ),
        problems,
    })
}
