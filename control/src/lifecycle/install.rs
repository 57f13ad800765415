//! Installing and upgrading a plugin: from a verified package of the deployment's package
//! store, or (for development) from its manifest alone. One implementation, used by the CLI
//! and the management API alike.
//!
//! A [`Candidate`] is what is to be installed and where it came from;
//! [`Operator::install`](super::operate::Operator::install) checks it beside the installed
//! plugins and writes it: a new plugin waits for approval unless approved at once, an upgrade
//! that asks for more than was approved waits for approval while the approved version keeps
//! running.

use async_nats::jetstream;
use switchyard_schemas::manifest::Manifest;
use switchyard_schemas::semver::Version;
use switchyard_schemas::{Namespace, PluginId};
use time::OffsetDateTime;

use super::approval::{Approval, Requested};
use super::compat;
use super::events::LifecycleKind;
use super::operate::{OperateError, Operator, Outcome};
use crate::audit::{Action, Auditor};
use crate::package::{
    object_name, verify_for_install, Allow, Allowances, Package, PackageStore, Published,
    TrustStore, TrustedKeys, MANIFEST_PART,
};
use crate::registry::{PendingUpgrade, Provenance, Registration, Registry, Snapshot, TenantScope};
use crate::settings::SettingsStore;

/// A manifest to install, where it came from, and how to name its lines in a refusal.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The manifest.
    pub manifest: Manifest,
    /// Where it came from, stored with the registration.
    pub provenance: Provenance,
    /// What a refusal names as the manifest, e.g. its file's path.
    pub label: String,
    /// The manifest's text, for the lines of a refusal.
    pub text: String,
}

/// Which package to install.
#[derive(Debug)]
pub enum PackageChoice {
    /// A package given whole (a file); it is published to the package store when it
    /// verifies, so that every dispatcher and host finds it.
    Given(Box<Package>),
    /// A package of the package store: the plugin, and its version (`None`: the highest
    /// published).
    Stored {
        /// The plugin.
        plugin: PluginId,
        /// The version; the highest published when absent.
        version: Option<Version>,
    },
}

/// What the operator allows a package that is not signed by a trusted key.
#[derive(Debug, Clone, Copy, Default)]
pub struct PackageAllowances {
    /// An unsigned package may be installed.
    pub unsigned: bool,
    /// A package signed by a key the deployment does not trust may be installed.
    pub untrusted: bool,
}

impl PackageAllowances {
    /// The allowances for `package`'s plugin (none when its manifest cannot be read).
    pub fn for_package(self, package: &Package) -> Allowances {
        let mut allow = Allowances::none();
        if let Ok(manifest) = package.manifest() {
            if self.unsigned {
                allow = allow.allow(manifest.plugin.id.clone(), Allow::Unsigned);
            }
            if self.untrusted {
                allow = allow.allow(manifest.plugin.id, Allow::Untrusted);
            }
        }
        allow
    }
}

/// A verified package ready to install, and whether it was published to the store now.
#[derive(Debug)]
pub struct VerifiedPackage {
    /// What to install.
    pub candidate: Candidate,
    /// The store's object name, when the package was published to the store now.
    pub published: Option<String>,
}

impl Candidate {
    /// A manifest alone (the development path: nothing is verified; recorded as "from
    /// manifest, no package").
    pub fn from_manifest(manifest: Manifest, label: impl Into<String>, text: String) -> Self {
        Self {
            manifest,
            provenance: Provenance::manifest(),
            label: label.into(),
            text,
        }
    }

    /// The package `choice` names, verified against the deployment's trusted keys and what
    /// the operator allows; a package given whole is published to the package store too. The
    /// decision is recorded in the provenance as `actor`'s.
    ///
    /// # Errors
    /// [`OperateError::NoPackage`] when the store has no such package (or it holds another
    /// plugin or version), [`OperateError::Refused`] when it does not verify or is not
    /// allowed, [`OperateError::PackageStore`] when the store cannot be used (or another
    /// package of the same version is published).
    pub async fn from_package(
        js: &jetstream::Context,
        namespace: &Namespace,
        choice: PackageChoice,
        allow: PackageAllowances,
        actor: &str,
    ) -> Result<VerifiedPackage, OperateError> {
        let store = PackageStore::open(js, namespace).await.map_err(boxed)?;
        let (package, label, given) = match choice {
            PackageChoice::Given(package) => (*package, None, true),
            PackageChoice::Stored { plugin, version } => {
                let (package, object) = fetch_stored(&store, &plugin, version).await?;
                (package, Some(object), false)
            }
        };
        let trust = match TrustStore::open_existing(js, namespace)
            .await
            .map_err(|e| OperateError::Trust(e.to_string()))?
        {
            Some(trust) => trust
                .trusted_keys()
                .await
                .map_err(|e| OperateError::Trust(e.to_string()))?,
            None => TrustedKeys::none(),
        };
        let installable = verify_for_install(&package, &trust, &allow.for_package(&package))
            .map_err(|refusal| OperateError::Refused(Box::new(refusal)))?;
        let manifest = installable.manifest;
        let object = object_name(&manifest.plugin.id, &manifest.plugin.version);
        let published = if given {
            match store.publish(&package, false).await.map_err(boxed)? {
                (name, Published::New) => Some(name),
                _ => None,
            }
        } else {
            None
        };
        let text = package
            .part(MANIFEST_PART)
            .map(|part| String::from_utf8_lossy(&part.data).into_owned())
            .unwrap_or_default();
        let provenance = Provenance::package(
            object.clone(),
            package.sha256(),
            &installable.verdict,
            actor,
        );
        Ok(VerifiedPackage {
            candidate: Candidate {
                manifest,
                provenance,
                label: format!("{}/{MANIFEST_PART}", label.unwrap_or(object)),
                text,
            },
            published,
        })
    }
}

fn boxed(error: crate::package::StoreError) -> OperateError {
    OperateError::PackageStore(Box::new(error))
}

/// The package published for `plugin` at `version` (the highest published when `None`), and
/// its object's name. It is checked to hold that plugin and version.
///
/// # Errors
/// [`OperateError::NoPackage`]; [`OperateError::PackageStore`].
pub async fn fetch_stored(
    store: &PackageStore,
    plugin: &PluginId,
    version: Option<Version>,
) -> Result<(Package, String), OperateError> {
    let missing = |what: String| {
        OperateError::NoPackage(format!(
            "no package {what} is published in {}",
            store.bucket()
        ))
    };
    let version = match version {
        Some(version) => version,
        None => store
            .latest(plugin)
            .await
            .map_err(boxed)?
            .ok_or_else(|| missing(format!("of {plugin}")))?,
    };
    let object = object_name(plugin, &version);
    let package = store
        .get(plugin, &version)
        .await
        .map_err(boxed)?
        .ok_or_else(|| missing(object.clone()))?;
    if let Ok(manifest) = package.manifest() {
        if &manifest.plugin.id != plugin || manifest.plugin.version != version {
            return Err(OperateError::NoPackage(format!(
                "the package stored as {object} holds {} {}",
                manifest.plugin.id, manifest.plugin.version
            )));
        }
    }
    Ok((package, object))
}

/// How to install a [`Candidate`].
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// The tenants whose events the plugin receives; `None` keeps an installed plugin's (a
    /// new one must be given them).
    pub tenants: Option<TenantScope>,
    /// Accept a version older than the one installed.
    pub allow_downgrade: bool,
    /// Approve what it asks for at once (by the acting operator).
    pub approve: bool,
    /// The plugin must be installed already (an upgrade).
    pub upgrade_only: bool,
}

impl Operator {
    /// Installs `candidate`, or upgrades the installed plugin to it.
    ///
    /// Refused, naming the manifest's line at fault, when it does not fit beside the
    /// installed plugins (docs/lifecycle.md), and when the settings set for it do not fit it.
    /// A new plugin waits for approval unless `options.approve`; an upgrade that asks for
    /// more than was approved waits for approval while the approved version keeps running.
    ///
    /// # Errors
    /// [`OperateError`]: `Incompatible` for what does not fit, `NotInstalled` for an upgrade
    /// of a plugin that is not installed, `NeedsTenants` for a new plugin without tenants,
    /// `TenantsWithUpgrade` for an upgrade asking for more that changes the tenants too.
    pub async fn install(
        &self,
        candidate: &Candidate,
        options: &InstallOptions,
    ) -> Result<Outcome, OperateError> {
        let what = format!("installing {}", candidate.manifest.plugin.id);
        let done = self
            .retrying(&what, |registry, snapshot| {
                Box::pin(self.install_once(registry, snapshot, candidate, options))
            })
            .await?;
        Box::pin(self.conclude(done)).await
    }

    async fn install_once(
        &self,
        registry: Registry,
        snapshot: Snapshot,
        candidate: &Candidate,
        options: &InstallOptions,
    ) -> Result<(Option<LifecycleKind>, Outcome), OperateError> {
        let Candidate {
            manifest,
            provenance,
            label,
            text,
        } = candidate;
        let auditor = self.auditor();
        let installed = snapshot.registrations;
        compat::check_install(
            manifest,
            &installed,
            &compat::core_version(),
            options.allow_downgrade,
        )
        .map_err(|refused| incompatible(label, text, &refused))?;
        let id = manifest.plugin.id.clone();
        let previous = installed.into_iter().find(|r| r.plugin_id() == &id);
        if options.upgrade_only && previous.is_none() {
            return Err(OperateError::NotInstalled(id));
        }
        let tenants = match (&options.tenants, &previous) {
            (Some(tenants), _) => tenants.clone(),
            (None, Some(previous)) => previous.tenants.clone(),
            (None, None) => return Err(OperateError::NeedsTenants(id)),
        };
        if let Some(previous) = &previous {
            if installs_nothing_new(previous, manifest, &tenants, provenance, options) {
                let message = format!(
                    "{id} {} is installed already as asked; nothing changed",
                    manifest.plugin.version
                );
                return Ok((None, Outcome::unchanged(&id, message)));
            }
        }
        let mut also = Vec::new();
        if previous.is_none() {
            // Settings left by an earlier installation of this id (a removal that raced a
            // settings change) are not this plugin's.
            if let Some(store) =
                SettingsStore::open_existing(self.jetstream(), self.namespace()).await?
            {
                if store.forget(&id).await? {
                    also.push(format!("forgot the settings and secrets set for {id}"));
                }
            }
        }
        let enabled = previous
            .as_ref()
            .map_or(options.approve, Registration::is_active);
        Box::pin(self.check_settings_allow(manifest, enabled)).await?;
        let version = manifest.plugin.version.clone();
        let manifest = manifest.clone();
        let Some(mut registration) = previous else {
            let mut outcome =
                install_new(&registry, auditor, manifest, tenants, provenance, options).await?;
            also.append(&mut outcome.also);
            outcome.also = also;
            return Ok((Some(LifecycleKind::Installed), outcome));
        };
        // An upgrade (or a change of tenants): what it asks for beyond the approval waits for
        // a new approval, while the approved version keeps running.
        let before = registration.clone();
        let was = registration.manifest.plugin.version.clone();
        let asks = Requested::of(&manifest, &tenants);
        let more = asks.beyond(&registration.approved_rights());
        if !more.is_empty() && !registration.awaiting_approval && !options.approve {
            if registration.tenants != tenants {
                return Err(OperateError::TenantsWithUpgrade(id));
            }
            registration.pending_upgrade = Some(Box::new(PendingUpgrade {
                manifest,
                proposed_at: OffsetDateTime::now_utc(),
                provenance: Some(provenance.clone()),
            }));
            let done = format!(
                "proposed {id} {version}, which waits for approval; {was} keeps running; \
                 {provenance}"
            );
            let revision = registry
                .put_recorded(
                    &registration,
                    Action::PluginReplaced,
                    Some(&before),
                    done,
                    auditor,
                )
                .await?
                .revision;
            let mut outcome = Outcome::changed(
                &id,
                format!(
                    "{id} {version} waits for approval (revision {revision}); {was} keeps \
                     running. It asks for more than was approved:"
                ),
                Some(registration),
            );
            outcome.rights = more;
            outcome.also = also;
            return Ok((Some(LifecycleKind::UpgradeProposed), outcome));
        }
        registration.manifest = manifest;
        registration.tenants = tenants;
        registration.pending_upgrade = None;
        registration.provenance = Some(provenance.clone());
        registration.registered_at = OffsetDateTime::now_utc();
        if options.approve {
            approve_now(&mut registration, auditor);
        }
        let done = format!(
            "replaced {id} {was} with {version} for {} ({}); {provenance}",
            registration.tenants,
            registration.state()
        );
        let revision = registry
            .put_recorded(
                &registration,
                Action::PluginReplaced,
                Some(&before),
                done,
                auditor,
            )
            .await?
            .revision;
        let message = format!(
            "updated {id} {version} for {} (revision {revision}, was {was}; {}); {provenance}",
            registration.tenants,
            registration.state(),
        );
        let mut outcome = Outcome::changed(&id, message, Some(registration));
        outcome.also = also;
        Ok((Some(LifecycleKind::Upgraded), outcome))
    }
}

/// Whether installing `manifest` for `tenants` from `provenance` over `previous` would change
/// nothing: the same manifest from the same bytes for the same tenants, nothing waiting, and
/// no approval asked for that is not there. Such a repeat writes no revision and no record.
fn installs_nothing_new(
    previous: &Registration,
    manifest: &Manifest,
    tenants: &TenantScope,
    provenance: &Provenance,
    options: &InstallOptions,
) -> bool {
    let same_source = previous
        .provenance
        .as_ref()
        .is_some_and(|p| p.from == provenance.from && p.sha256 == provenance.sha256);
    previous.manifest == *manifest
        && previous.tenants == *tenants
        && previous.pending_upgrade.is_none()
        && same_source
        && (!options.approve || !previous.awaiting_approval)
}

/// Approves what `registration` asks for, by `auditor`'s actor, as it is written.
fn approve_now(registration: &mut Registration, auditor: &Auditor) {
    registration.awaiting_approval = false;
    registration.approval = Some(Approval::by_actor(
        &registration.manifest,
        &registration.tenants,
        auditor.actor(),
    ));
}

/// Writes a new installation: it waits for approval unless the operator approves it now.
async fn install_new(
    registry: &Registry,
    auditor: &Auditor,
    manifest: Manifest,
    tenants: TenantScope,
    provenance: &Provenance,
    options: &InstallOptions,
) -> Result<Outcome, OperateError> {
    let id = manifest.plugin.id.clone();
    let version = manifest.plugin.version.clone();
    let mut registration = Registration::pending(manifest, tenants);
    registration.provenance = Some(provenance.clone());
    if options.approve {
        approve_now(&mut registration, auditor);
    }
    let done = format!(
        "installed {id} {version} for {} ({}); {provenance}",
        registration.tenants,
        registration.state()
    );
    let revision = registry
        .put_recorded(&registration, Action::PluginRegistered, None, done, auditor)
        .await?
        .revision;
    let mut message = format!(
        "installed {id} {version} for {} (revision {revision}, {}); {provenance}",
        registration.tenants,
        registration.state(),
    );
    let waits = registration.awaiting_approval;
    let rights = if waits {
        message.push_str("\nit asks for:");
        registration.approved_rights().describe()
    } else {
        Vec::new()
    };
    let mut outcome = Outcome::changed(&id, message, Some(registration));
    outcome.rights = rights;
    Ok(outcome)
}

/// A refusal of the manifest labelled `label`: each problem on its own line, with the line of
/// the key at fault.
fn incompatible(label: &str, text: &str, refused: &compat::Incompatibilities) -> OperateError {
    let problems = refused
        .0
        .iter()
        .map(|problem| {
            let at =
                problem.key().map(
                    |key| match switchyard_schemas::manifest::key_line(text, &key) {
                        Some(line) => format!("{label}:{line}: {key}: "),
                        None => format!("{label}: {key}: "),
                    },
                );
            format!("{}{problem}", at.unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join("\n");
    OperateError::Incompatible {
        what: format!("installing `{label}`"),
        problems,
    }
}
