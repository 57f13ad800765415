//! The calls that put things into a deployment and look at its plumbing: installing and
//! upgrading plugins, publishing packages and events, provisioning and inspecting the
//! streams, explaining an event, reading a plugin's logs. Their bodies, checked.

use std::time::Duration;

use serde::Deserialize;
use switchyard_control::registry::TenantScope;
use switchyard_dispatcher::provision::{Limits, MAX_REPLICAS};
use switchyard_schemas::manifest::Manifest;
use switchyard_schemas::semver::Version;
use switchyard_schemas::{ContentType, Event, EventId, EventType, PluginId, Tenant};
use time::OffsetDateTime;

use super::plugin_id;
use crate::error::ApiError;

/// The `source` of events an operator publishes through the API.
pub const CONSOLE_SOURCE: &str = "urn:switchyard:console";

/// What the ids of dead-letter replays start with; an event published here may not.
const REPLAY_ID_PREFIX: &str = "redrive:";

/// The most log lines one call answers.
pub const MAX_LOG_LINES: usize = 1000;

/// What to install.
#[derive(Debug, Clone, PartialEq)]
pub enum InstallSource {
    /// A package of the deployment's package store.
    Stored {
        /// The plugin.
        plugin: PluginId,
        /// Its version; the highest published when absent.
        version: Option<Version>,
    },
    /// A manifest alone (the development path: nothing is verified).
    Manifest {
        /// The manifest, checked.
        manifest: Box<Manifest>,
        /// Its text, for the lines of a refusal.
        text: String,
    },
}

/// An installation or an upgrade, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Install {
    /// What to install.
    pub source: InstallSource,
    /// The tenants; `None` keeps an installed plugin's.
    pub tenants: Option<TenantScope>,
    /// Approve what it asks for at once.
    pub approve: bool,
    /// Install an unsigned package.
    pub allow_unsigned: bool,
    /// Install a package signed by a key the deployment does not trust.
    pub allow_untrusted: bool,
    /// Accept a version older than the installed one.
    pub allow_downgrade: bool,
    /// An upgrade of this plugin (it must be installed, and be what the source holds).
    pub upgrade: Option<PluginId>,
}

impl Install {
    /// The plugin it is about: the upgraded one, else the one its source names.
    pub fn plugin(&self) -> &PluginId {
        self.upgrade
            .as_ref()
            .unwrap_or_else(|| self.source_plugin())
    }

    /// Whether it takes an admin: installing what no trusted key signed (a manifest alone,
    /// an unsigned or untrusted package) sets the deployment's trust aside.
    pub fn sets_trust_aside(&self) -> bool {
        self.allow_unsigned
            || self.allow_untrusted
            || matches!(self.source, InstallSource::Manifest { .. })
    }
}

/// The body of `plugins.install` and `plugins.upgrade`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallArgs {
    /// The plugin (`plugins.upgrade` over NATS; HTTP takes it from the path).
    #[serde(default)]
    pub plugin: Option<String>,
    /// A package of the store: `ID@VERSION`, or `ID` for its highest version.
    #[serde(default)]
    pub package: Option<String>,
    /// A manifest's TOML text (the development path).
    #[serde(default)]
    pub manifest: Option<String>,
    /// The tenants whose events it receives.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Every tenant, including later ones.
    #[serde(default)]
    pub all_tenants: bool,
    /// Approve at once.
    #[serde(default)]
    pub approve: bool,
    /// Install an unsigned package (admin).
    #[serde(default)]
    pub allow_unsigned: bool,
    /// Install a package signed by an untrusted key (admin).
    #[serde(default)]
    pub allow_untrusted: bool,
    /// Accept an older version.
    #[serde(default)]
    pub allow_downgrade: bool,
}

impl InstallArgs {
    /// The installation these arguments ask, checked; `upgrade` names the plugin of an
    /// upgrade.
    ///
    /// # Errors
    /// [`ApiError::bad_request`] naming the problem.
    pub fn check(self, upgrade: Option<PluginId>) -> Result<Install, ApiError> {
        let source = match (self.package, self.manifest) {
            (Some(package), None) => {
                let (plugin, version) = package_ref(&package)?;
                InstallSource::Stored { plugin, version }
            }
            (None, Some(text)) => {
                let manifest = Manifest::from_toml_str(&text).map_err(|errors| {
                    ApiError::bad_request(format!("the manifest is not valid:\n{errors}"))
                })?;
                InstallSource::Manifest {
                    manifest: Box::new(manifest),
                    text,
                }
            }
            _ => {
                return Err(ApiError::bad_request(
                    "an installation takes either `package` (ID@VERSION of the package store) \
                     or `manifest` (its TOML text)",
                ))
            }
        };
        let tenants = match (self.all_tenants, self.tenants.is_empty()) {
            (true, true) => Some(TenantScope::All),
            (false, true) => None,
            (false, false) => Some(tenant_scope(&self.tenants)?),
            (true, false) => {
                return Err(ApiError::bad_request(
                    "give `tenants` or `all_tenants: true`, not both",
                ))
            }
        };
        let install = Install {
            source,
            tenants,
            approve: self.approve,
            allow_unsigned: self.allow_unsigned,
            allow_untrusted: self.allow_untrusted,
            allow_downgrade: self.allow_downgrade,
            upgrade,
        };
        if let Some(upgrade) = &install.upgrade {
            let plugin = install.source_plugin();
            if upgrade != plugin {
                return Err(ApiError::bad_request(format!(
                    "an upgrade of {upgrade} cannot install {plugin}"
                )));
            }
        }
        Ok(install)
    }
}

impl Install {
    /// The plugin the source names, known before anything is fetched.
    pub fn source_plugin(&self) -> &PluginId {
        match &self.source {
            InstallSource::Stored { plugin, .. } => plugin,
            InstallSource::Manifest { manifest, .. } => &manifest.plugin.id,
        }
    }
}

/// `ID@VERSION` or `ID`, checked.
///
/// # Errors
/// [`ApiError::bad_request`].
pub fn package_ref(text: &str) -> Result<(PluginId, Option<Version>), ApiError> {
    let (plugin, version) = match text.split_once('@') {
        Some((plugin, version)) => (plugin, Some(version)),
        None => (text, None),
    };
    let plugin = plugin_id(plugin.trim())?;
    let version = version
        .map(|v| Version::parse(v.trim()))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("bad package version after `@`: {e}")))?;
    Ok((plugin, version))
}

/// Tenants, checked: at least one, each valid.
///
/// # Errors
/// [`ApiError::bad_request`].
pub fn tenant_scope(tenants: &[String]) -> Result<TenantScope, ApiError> {
    let tenants = tenants
        .iter()
        .map(|t| Tenant::new(t).map_err(|e| ApiError::bad_request(format!("bad tenant: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    TenantScope::only(tenants).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// The body of `streams.provision`: replicas and limits (what is left out keeps the default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionArgs {
    /// Copies kept in a cluster: 1, 3 or 5 (default 1).
    #[serde(default)]
    pub replicas: Option<usize>,
    /// How long events are kept, in seconds.
    #[serde(default)]
    pub events_max_age_secs: Option<u64>,
    /// The most bytes the events stream keeps.
    #[serde(default)]
    pub events_max_bytes: Option<i64>,
    /// How long dead letters are kept, in seconds.
    #[serde(default)]
    pub dlq_max_age_secs: Option<u64>,
    /// The most bytes the dead-letter stream keeps.
    #[serde(default)]
    pub dlq_max_bytes: Option<i64>,
    /// How long audit entries are kept, in seconds (0: until the stream is full).
    #[serde(default)]
    pub audit_max_age_secs: Option<u64>,
    /// The most bytes the audit stream keeps.
    #[serde(default)]
    pub audit_max_bytes: Option<i64>,
}

impl ProvisionArgs {
    /// The limits, checked.
    ///
    /// # Errors
    /// [`ApiError::bad_request`] naming the value at fault.
    pub fn check(self) -> Result<Limits, ApiError> {
        let replicas = self.replicas.unwrap_or(1);
        if replicas == 0 || replicas > MAX_REPLICAS {
            return Err(ApiError::bad_request(format!(
                "`replicas` is 1 to {MAX_REPLICAS}"
            )));
        }
        let limits = Limits {
            replicas,
            events_max_age: self.events_max_age_secs.map(Duration::from_secs),
            events_max_bytes: self.events_max_bytes,
            dlq_max_age: self.dlq_max_age_secs.map(Duration::from_secs),
            dlq_max_bytes: self.dlq_max_bytes,
            audit_max_age: self.audit_max_age_secs.map(Duration::from_secs),
            audit_max_bytes: self.audit_max_bytes,
        };
        limits
            .check()
            .map_err(|problem| ApiError::bad_request(problem.to_string()))?;
        Ok(limits)
    }
}

/// Where `explain` starts looking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExplainFrom {
    /// The start of the stream.
    Start,
    /// Events stored at or after this time.
    Time(OffsetDateTime),
    /// This stream sequence on.
    Sequence(u64),
}

/// The body of `explain`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainArgs {
    /// The event's id.
    #[serde(default)]
    pub event_id: String,
    /// Search only events stored at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// Search from this stream sequence on.
    #[serde(default)]
    pub from_sequence: Option<u64>,
}

impl ExplainArgs {
    /// The id and where to start, checked.
    ///
    /// # Errors
    /// [`ApiError::bad_request`].
    pub fn check(self) -> Result<(EventId, ExplainFrom), ApiError> {
        let id = EventId::new(self.event_id.trim())
            .map_err(|e| ApiError::bad_request(format!("bad event id: {e}")))?;
        let from = match (self.since.filter(|s| !s.is_empty()), self.from_sequence) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "give `since` or `from_sequence`, not both",
                ))
            }
            (Some(since), None) => ExplainFrom::Time(
                OffsetDateTime::parse(&since, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| ApiError::bad_request(format!("bad `since` (RFC 3339): {e}")))?,
            ),
            (None, Some(sequence)) => ExplainFrom::Sequence(sequence),
            (None, None) => ExplainFrom::Start,
        };
        Ok((id, from))
    }
}

/// The body of `logs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsArgs {
    /// The plugin.
    #[serde(default)]
    pub plugin: String,
    /// How many of the newest lines (default 100, at most 1,000).
    #[serde(default)]
    pub lines: Option<usize>,
}

/// The body of `events.publish`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishArgs {
    /// The tenant.
    #[serde(default)]
    pub tenant: String,
    /// The event type.
    #[serde(default, rename = "type")]
    pub event_type: String,
    /// The data's schema version (default 1.0.0).
    #[serde(default)]
    pub schema_version: Option<String>,
    /// The data (default `{}`).
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// `json` or `msgpack` (default).
    #[serde(default)]
    pub content_type: Option<String>,
    /// The event's id, for an idempotent publish (default: a fresh one).
    #[serde(default)]
    pub id: Option<String>,
    /// The CloudEvents subject.
    #[serde(default)]
    pub subject: Option<String>,
}

impl PublishArgs {
    /// The event, built and checked (source [`CONSOLE_SOURCE`]).
    ///
    /// # Errors
    /// [`ApiError::bad_request`] naming the attribute at fault.
    pub fn check(self) -> Result<Event, ApiError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            ApiError::bad_request(format!("bad {what}: {e}"))
        };
        let tenant = Tenant::new(&self.tenant).map_err(|e| bad("tenant", &e))?;
        let event_type = EventType::new(&self.event_type).map_err(|e| bad("type", &e))?;
        let version = Version::parse(self.schema_version.as_deref().unwrap_or("1.0.0"))
            .map_err(|e| bad("schema_version", &e))?;
        let content_type = match self.content_type.as_deref() {
            None | Some("msgpack") => ContentType::MessagePack,
            Some("json") => ContentType::Json,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "bad content_type `{}`: `json` or `msgpack`",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        let mut builder = Event::builder(tenant, CONSOLE_SOURCE).content_type(content_type);
        if let Some(subject) = self.subject.filter(|s| !s.is_empty()) {
            builder = builder.subject(subject);
        }
        if let Some(id) = self.id.filter(|s| !s.is_empty()) {
            if id.starts_with(REPLAY_ID_PREFIX) {
                return Err(ApiError::bad_request(format!(
                    "bad id: ids starting with `{REPLAY_ID_PREFIX}` are the replays' own"
                )));
            }
            builder = builder.id(EventId::new(&id).map_err(|e| bad("id", &e))?);
        }
        let data = self.data.unwrap_or_else(|| serde_json::json!({}));
        builder
            .build_as(event_type, version, &data)
            .map_err(|e| bad("event", &e))
    }
}
