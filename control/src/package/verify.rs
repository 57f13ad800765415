//! Whether a package may be installed: its signature, its parts, and the operators' trust.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use switchyard_schemas::{Manifest, ManifestErrors, PluginId};

use super::archive::Package;
use super::error::{PackageError, Tampering};
use super::key::{shown, PublisherKey};

/// The publisher keys a deployment trusts, each with the name an operator gave it. A snapshot:
/// [`TrustStore::trusted_keys`](super::TrustStore::trusted_keys) reads the deployment's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    keys: BTreeMap<PublisherKey, String>,
}

impl TrustedKeys {
    /// No key at all: every signed package is [`Verdict::UntrustedKey`].
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts `key` under `name`.
    #[must_use]
    pub fn with(mut self, key: PublisherKey, name: impl Into<String>) -> Self {
        self.keys.insert(key, name.into());
        self
    }

    /// The name `key` is trusted under, if it is trusted.
    pub fn name_of(&self, key: &PublisherKey) -> Option<&str> {
        self.keys.get(key).map(String::as_str)
    }

    /// Every trusted key with its name.
    pub fn iter(&self) -> impl Iterator<Item = (&PublisherKey, &str)> {
        self.keys.iter().map(|(key, name)| (key, name.as_str()))
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl FromIterator<(PublisherKey, String)> for TrustedKeys {
    fn from_iter<I: IntoIterator<Item = (PublisherKey, String)>>(iter: I) -> Self {
        Self {
            keys: iter.into_iter().collect(),
        }
    }
}

/// A trusted publisher: its key and the name operators gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedPublisher {
    /// The key the package is signed with.
    pub key: PublisherKey,
    /// The name it is trusted under.
    pub name: String,
}

/// What verifying a package found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by a trusted publisher, every part intact.
    Trusted {
        /// Who signed it.
        publisher: TrustedPublisher,
    },
    /// Not signed; every part matches its (unauthenticated) index.
    Unsigned,
    /// Signed, the signature valid and every part intact, but by a key the deployment does
    /// not trust.
    UntrustedKey {
        /// The key it is signed with.
        key: PublisherKey,
    },
    /// A part's bytes do not match the index: never installable.
    Tampered(Tampering),
    /// The signature does not verify (another key's, another index's, or not a signature):
    /// never installable.
    BadSignature {
        /// The key the package claims, as text (it may not even be a key).
        key: String,
        /// Why it does not verify.
        reason: String,
    },
}

impl Verdict {
    /// Whether this verdict lets a package be installed with no allowance.
    pub fn is_trusted(&self) -> bool {
        matches!(self, Verdict::Trusted { .. })
    }

    /// A short name: `trusted`, `unsigned`, `untrusted_key`, `tampered`, `bad_signature`.
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::Trusted { .. } => "trusted",
            Verdict::Unsigned => "unsigned",
            Verdict::UntrustedKey { .. } => "untrusted_key",
            Verdict::Tampered(_) => "tampered",
            Verdict::BadSignature { .. } => "bad_signature",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Trusted { publisher } => write!(
                f,
                "signed by {} (trusted as {:?}); every part intact",
                publisher.key, publisher.name
            ),
            Verdict::Unsigned => f.write_str("not signed"),
            Verdict::UntrustedKey { key } => write!(
                f,
                "signed by {key}, a key this deployment does not trust (`switchyard trust add`)"
            ),
            Verdict::Tampered(tampering) => write!(f, "tampered: {tampering}"),
            Verdict::BadSignature { key, reason } => write!(
                f,
                "bad signature: it claims the key {}, but {reason}",
                shown(key)
            ),
        }
    }
}

/// What may be allowed for one plugin that a trusted signature would otherwise be needed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Allow {
    /// An unsigned package.
    Unsigned,
    /// A package signed by a key the deployment does not trust.
    Untrusted,
}

/// Which plugins may be installed unsigned, or signed by an untrusted key. Empty by default:
/// only trusted packages pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowances {
    per_plugin: BTreeMap<PluginId, BTreeSet<Allow>>,
}

impl Allowances {
    /// Nothing allowed.
    pub fn none() -> Self {
        Self::default()
    }

    /// Allows `what` for `plugin`.
    #[must_use]
    pub fn allow(mut self, plugin: PluginId, what: Allow) -> Self {
        self.per_plugin.entry(plugin).or_default().insert(what);
        self
    }

    /// Whether `what` is allowed for `plugin`.
    pub fn allows(&self, plugin: &PluginId, what: Allow) -> bool {
        self.per_plugin
            .get(plugin)
            .is_some_and(|allowed| allowed.contains(&what))
    }
}

/// A package that may be installed: its manifest, read from the verified bytes, and the
/// verdict that let it through (trusted, or unsigned or untrusted by an allowance).
#[derive(Debug, Clone)]
pub struct Installable {
    /// The plugin's manifest.
    pub manifest: Manifest,
    /// Why it passed: [`Verdict::Trusted`], or [`Verdict::Unsigned`] or
    /// [`Verdict::UntrustedKey`] allowed for this plugin.
    pub verdict: Verdict,
}

/// Why a package may not be installed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InstallRefusal {
    /// Tampered or badly signed: refused whatever is allowed.
    #[error("refused: {0}")]
    Failed(Verdict),
    /// Unsigned or signed by an untrusted key, and not allowed for this plugin.
    #[error("refused: {verdict}; not allowed for plugin {plugin}{hint}", hint = allow_hint(.verdict))]
    NotAllowed {
        /// The plugin the package is of.
        plugin: PluginId,
        /// What verifying found.
        verdict: Verdict,
    },
    /// Intact and acceptable, but its manifest is not valid.
    #[error("refused: {manifest}: {0}", manifest = super::MANIFEST_PART)]
    Manifest(ManifestErrors),
    /// Its manifest is not UTF-8 text.
    #[error("refused: {manifest} is not UTF-8 text", manifest = super::MANIFEST_PART)]
    ManifestNotText,
}

fn allow_hint(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Unsigned => " (allow unsigned packages for it explicitly, or sign it)",
        Verdict::UntrustedKey { .. } => {
            " (trust the key, or allow untrusted packages for it explicitly)"
        }
        _ => "",
    }
}

impl InstallRefusal {
    /// The verdict behind the refusal, when verifying got that far.
    pub fn verdict(&self) -> Option<&Verdict> {
        match self {
            InstallRefusal::Failed(verdict) | InstallRefusal::NotAllowed { verdict, .. } => {
                Some(verdict)
            }
            InstallRefusal::Manifest(_) | InstallRefusal::ManifestNotText => None,
        }
    }
}

impl Package {
    /// Verifies the package: its signature first (over the index), then every part against
    /// the index, then whether its key is in `trust`.
    pub fn verdict(&self, trust: &TrustedKeys) -> Verdict {
        let signer = match self.signature() {
            None => None,
            Some(signature) => match signature.verify(self.index_bytes()) {
                Ok(key) => Some(key),
                Err(reason) => {
                    return Verdict::BadSignature {
                        key: signature.key.clone(),
                        reason,
                    }
                }
            },
        };
        if let Err(tampering) = self.check_parts() {
            return Verdict::Tampered(tampering);
        }
        match signer {
            None => Verdict::Unsigned,
            Some(key) => match trust.name_of(&key) {
                Some(name) => Verdict::Trusted {
                    publisher: TrustedPublisher {
                        name: name.to_owned(),
                        key,
                    },
                },
                None => Verdict::UntrustedKey { key },
            },
        }
    }
}

/// Decides whether `package` may be installed: what installing calls.
///
/// A tampered package or a bad signature is refused, whatever is allowed. Otherwise the
/// manifest is read (from bytes now verified) for the plugin's id, and a package signed by a
/// key in `trust` passes; an unsigned one passes only if `allow` allows [`Allow::Unsigned`]
/// for that plugin, one signed by another key only if it allows [`Allow::Untrusted`].
///
/// # Errors
/// [`InstallRefusal`] saying why, with the [`Verdict`] where there is one.
pub fn verify_for_install(
    package: &Package,
    trust: &TrustedKeys,
    allow: &Allowances,
) -> Result<Installable, InstallRefusal> {
    let verdict = package.verdict(trust);
    let needs = match &verdict {
        Verdict::Tampered(_) | Verdict::BadSignature { .. } => {
            return Err(InstallRefusal::Failed(verdict))
        }
        Verdict::Trusted { .. } => None,
        Verdict::Unsigned => Some(Allow::Unsigned),
        Verdict::UntrustedKey { .. } => Some(Allow::Untrusted),
    };
    let manifest = match package.manifest() {
        Ok(manifest) => manifest,
        Err(PackageError::Manifest(errors)) => return Err(InstallRefusal::Manifest(errors)),
        Err(PackageError::ManifestNotText) => return Err(InstallRefusal::ManifestNotText),
        // The parts were checked just above; a manifest that no longer matches cannot happen.
        Err(_) => return Err(InstallRefusal::Failed(verdict)),
    };
    if let Some(needed) = needs {
        if !allow.allows(&manifest.plugin.id, needed) {
            return Err(InstallRefusal::NotAllowed {
                plugin: manifest.plugin.id,
                verdict,
            });
        }
    }
    Ok(Installable { manifest, verdict })
}
