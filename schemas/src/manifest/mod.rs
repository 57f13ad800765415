//! Plugin manifests (`plugin.toml`): what a plugin is, what it subscribes to and how its events
//! are delivered, which channels it may use, its quotas, what it depends on, and its settings.
//!
//! [`Manifest::from_toml_str`] reads and validates a manifest. It does not stop at the first
//! problem: an invalid manifest is refused with [`ManifestErrors`], which lists every problem,
//! each with the key at fault (`subscriptions[1].policy.timeout`) and a [`ProblemKind`].
//! The format is described key by key in `docs/manifest.md`.
//!
//! A manifest is stored as its canonical form: [`Manifest::to_toml_string`] for TOML, or
//! serde (`Serialize`/`Deserialize`) for JSON and other formats. Deserializing validates again.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use switchyard_schemas::{EventType, Manifest, ProblemKind};
//!
//! let manifest = Manifest::from_toml_str(r#"
//!     [plugin]
//!     id = "audit-log"
//!     version = "1.2.0"
//!     core = "^0.1"
//!
//!     [[subscriptions]]
//!     name = "orders"
//!     events = ["order.*"]
//!     policy = { timeout = "2s" }
//! "#)?;
//! let orders = &manifest.subscriptions[0];
//! assert!(orders.events[0].matches(&EventType::new("order.created")?));
//! assert_eq!(orders.policy.timeout, Duration::from_secs(2));
//!
//! let errors = Manifest::from_toml_str(r#"
//!     [plugin]
//!     id = "audit log"
//!     version = "1.2"
//!     core = "^0.1"
//! "#).unwrap_err();
//! let keys: Vec<_> = errors.problems().iter().map(|p| (p.key.as_str(), p.kind)).collect();
//! assert_eq!(keys, [("plugin.id", ProblemKind::BadName), ("plugin.version", ProblemKind::BadSemver)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod limits;
mod lines;
mod operations;
mod overlap;
mod overrides;
mod pattern;
mod policy;
mod read;
mod read_settings;
mod run;
mod settings;
mod validate;
mod write;

use std::collections::BTreeMap;
use std::path::Path;

use semver::{Version, VersionReq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use self::error::Problems;
pub use self::error::{ManifestErrors, ManifestLoadError, ManifestProblem, ProblemKind};
pub use self::limits::{
    Limits, DEFAULT_MAX_BYTES_PER_SECOND, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PAYLOAD,
    DEFAULT_MAX_SUBSCRIPTIONS, MAX_BYTES_PER_SECOND_RANGE, MAX_CONNECTIONS_RANGE,
    MAX_PAYLOAD_RANGE, MAX_SUBSCRIPTIONS_RANGE,
};
pub use self::lines::key_line;
pub use self::operations::{
    Callers, MessageType, Operation, DEFAULT_OPERATION_IN_FLIGHT, DEFAULT_OPERATION_TIMEOUT,
    MAX_CALLER_PLUGINS, MAX_OPERATIONS, MAX_OPERATION_DESCRIPTION_BYTES,
};
pub use self::pattern::{EventPattern, PatternError};
pub use self::policy::{Backoff, DeliveryPolicy, ParseRateError, Rate, RatePeriod};
pub use self::run::{
    RunPolicy, CPU_MILLICORES_RANGE, CRASH_LOOP_ENDS_RANGE, CRASH_LOOP_WINDOW_RANGE,
    HEALTH_GRACE_RANGE, HEARTBEAT_TIMEOUT_RANGE, INSTANCES_RANGE, MAX_PROCESSES_RANGE,
    MEMORY_RANGE, OPEN_FILES_RANGE, STOP_GRACE_RANGE,
};
pub use self::settings::{
    compose as compose_settings, SettingError, SettingKind, SettingSpec, SettingsSchema,
    MAX_SETTINGS, MAX_SETTINGS_BYTES, MAX_SETTING_NAME_BYTES, MAX_SETTING_VALUE_BYTES,
};
pub use crate::name::SubscriptionName;
use crate::name::{ChannelName, EventType, PluginId, Tag};

/// `toml`, whose [`Table`](toml::Table) holds a manifest's free-form settings.
pub use toml;

/// The longest manifest text [`Manifest::from_toml_str`] reads, in bytes (1 MiB). A registered
/// manifest travels and is stored as one NATS message, and NATS refuses larger ones by default.
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

/// The most subscriptions a manifest may have. Each is a JetStream consumer of its own.
pub const MAX_SUBSCRIPTIONS: usize = 256;

/// The most event patterns one subscription may list: its consumer's filter subjects.
pub const MAX_PATTERNS_PER_SUBSCRIPTION: usize = 10_000;

/// The most tags a manifest's `[plugin]` may list.
pub const MAX_TAGS: usize = 32;

/// The longest `author` or `license`, in bytes.
pub const MAX_TEXT_BYTES: usize = 256;

/// The longest `homepage` or `repository` URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// A plugin's validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Who the plugin is (`[plugin]`).
    pub plugin: PluginInfo,
    /// What it subscribes to, each with its resolved delivery policy (`[[subscriptions]]`).
    pub subscriptions: Vec<Subscription>,
    /// The channels it may use (`[channels]`).
    pub channels: ChannelGrants,
    /// The request/reply operations it answers (`[[operations]]`).
    pub operations: Vec<Operation>,
    /// Its quotas (`[limits]`); the defaults when the manifest has none.
    pub limits: Limits,
    /// How a host runs its workers (`[run]`); the defaults when the manifest has none.
    pub run: RunPolicy,
    /// Other plugins it needs or cannot run with (`[dependencies]`).
    pub dependencies: Dependencies,
    /// The settings' defaults, handed to the plugin's handlers (`[settings]`); read them into
    /// a type of the plugin's own with `settings.clone().try_into::<T>()`. Operators may
    /// override them, and set secrets, within [`Manifest::settings_schema`].
    pub settings: toml::Table,
    /// What each setting is (`[settings_schema]`), or, without one, each default's type.
    pub settings_schema: SettingsSchema,
}

/// Who a plugin is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin's id.
    pub id: PluginId,
    /// The plugin's own version.
    pub version: Version,
    /// The Switchyard core versions it runs on.
    pub core: VersionReq,
    /// What it does, for operators.
    pub description: Option<String>,
    /// Who wrote it (a person or an organisation), for operators and the catalog.
    pub author: Option<String>,
    /// Its licence, e.g. an SPDX expression such as `"Apache-2.0"`. Not interpreted.
    pub license: Option<String>,
    /// Its home page: an `http://` or `https://` URL.
    pub homepage: Option<String>,
    /// Where its source is: an `http://` or `https://` URL.
    pub repository: Option<String>,
    /// Tags for finding it in the catalog; at most [`MAX_TAGS`], no duplicates.
    pub tags: Vec<Tag>,
    /// The catalog category it belongs to.
    pub category: Option<Tag>,
}

/// One subscription: a set of event types, delivered through one JetStream consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    /// Its name, unique within the manifest.
    pub name: SubscriptionName,
    /// The event types it receives; never empty, no pattern covers another.
    pub events: Vec<EventPattern>,
    /// The schema versions of those events it accepts.
    pub versions: VersionReq,
    /// How its events are delivered: its own overrides, then `[defaults]`, then the built-in
    /// defaults.
    pub policy: DeliveryPolicy,
}

impl Subscription {
    /// Whether an event of this type and schema version is for this subscription.
    pub fn accepts(&self, event_type: &EventType, schema_version: &Version) -> bool {
        self.versions.matches(schema_version)
            && self
                .events
                .iter()
                .any(|pattern| pattern.matches(event_type))
    }
}

/// The channels a plugin asks to use. The broker enforces them once an operator approves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelGrants {
    /// Channels it may publish to.
    pub send: Vec<ChannelName>,
    /// Channels it may receive from.
    pub receive: Vec<ChannelName>,
}

impl ChannelGrants {
    /// Whether the plugin may publish to `channel`.
    pub fn can_send(&self, channel: &ChannelName) -> bool {
        self.send.contains(channel)
    }

    /// Whether the plugin may receive from `channel`.
    pub fn can_receive(&self, channel: &ChannelName) -> bool {
        self.receive.contains(channel)
    }
}

impl Manifest {
    /// The operation named `name`, if the plugin declares one.
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.iter().find(|op| op.name.as_str() == name)
    }
}

/// Other plugins a plugin needs, or cannot be installed beside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dependencies {
    /// Plugins that must be installed, each in a version within its range.
    pub requires: BTreeMap<PluginId, VersionReq>,
    /// Plugins that must not be installed at the same time.
    pub conflicts: Vec<PluginId>,
}

impl Manifest {
    /// Reads and validates a manifest written in TOML.
    ///
    /// # Errors
    /// [`ManifestErrors`] listing every problem: a single [`ProblemKind::TooLarge`] when the
    /// text is longer than [`MAX_MANIFEST_BYTES`], a single [`ProblemKind::Syntax`] when the
    /// text is not TOML, otherwise each unknown key, missing key, wrong type and invalid value.
    pub fn from_toml_str(text: &str) -> Result<Self, ManifestErrors> {
        if text.len() > MAX_MANIFEST_BYTES {
            let mut problems = Problems::default();
            let reported = problems.report(
                "",
                ProblemKind::TooLarge,
                format!(
                    "the manifest is {} bytes; at most {MAX_MANIFEST_BYTES} are read \
                     (MAX_MANIFEST_BYTES)",
                    text.len()
                ),
            );
            return problems.finish(Err(reported));
        }
        match toml::from_str::<toml::Table>(text) {
            Ok(table) => Self::from_table(&table),
            Err(err) => {
                let mut problems = Problems::default();
                let reported = problems.report("", ProblemKind::Syntax, syntax_message(text, &err));
                problems.finish(Err(reported))
            }
        }
    }

    /// Reads and validates the manifest in the file at `path`.
    ///
    /// # Errors
    /// [`ManifestLoadError::Read`] when the file cannot be read, [`ManifestLoadError::Invalid`]
    /// with every problem when its manifest is not valid.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ManifestLoadError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestLoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|errors| ManifestLoadError::Invalid {
            path: path.to_owned(),
            errors,
        })
    }

    /// Validates a manifest already parsed as a TOML table.
    ///
    /// # Errors
    /// [`ManifestErrors`] listing every problem, as for [`Manifest::from_toml_str`].
    pub fn from_table(table: &toml::Table) -> Result<Self, ManifestErrors> {
        let mut problems = Problems::default();
        let manifest = validate::read_manifest(table, &mut problems);
        problems.finish(manifest)
    }

    /// The manifest in its canonical form: no `[defaults]`, every subscription with its full
    /// resolved policy, `[limits]` written out. [`Manifest::from_table`] reads it back to an equal manifest.
    pub fn to_table(&self) -> toml::Table {
        write::write_manifest(self)
    }

    /// The canonical form (see [`Manifest::to_table`]) as TOML text, which
    /// [`Manifest::from_toml_str`] reads back to an equal manifest.
    pub fn to_toml_string(&self) -> String {
        self.to_table().to_string()
    }
}

/// Serializes the canonical form (see [`Manifest::to_table`]): durations and rates as the
/// strings of the TOML format, so the JSON reads like the manifest.
impl Serialize for Manifest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_table().serialize(serializer)
    }
}

/// Reads the same shape as `plugin.toml`, and validates it as [`Manifest::from_table`] does;
/// the error message lists every problem.
impl<'de> Deserialize<'de> for Manifest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(deserializer)?;
        Self::from_table(&table).map_err(serde::de::Error::custom)
    }
}

/// `line L, column C: message`, from the parser's byte span.
fn syntax_message(text: &str, err: &toml::de::Error) -> String {
    let message = err.message().trim().replace('\n', "; ");
    let Some(span) = err.span() else {
        return format!("not valid TOML: {message}");
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |last_line| last_line.chars().count())
        + 1;
    format!("not valid TOML at line {line}, column {column}: {message}")
}
