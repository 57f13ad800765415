//! What is in force for a plugin's settings, as `switchyard settings show --json` prints it and
//! the management API answers: one shape for both. Secrets are named, never shown.

use serde::Serialize;
use switchyard_schemas::manifest::toml::Value;
use switchyard_schemas::manifest::SettingSpec;
use switchyard_schemas::{Manifest, PluginId};

use super::OperatorSettings;

/// One setting.
#[derive(Debug, Clone, Serialize)]
pub struct SettingRow {
    /// Its name.
    pub name: String,
    /// Its type, as the manifest declares it.
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether it is a secret.
    pub secret: bool,
    /// Whether the plugin cannot be enabled without a value.
    pub required: bool,
    /// `default`, `set`, or `none`.
    pub source: &'static str,
    /// The value in force; absent for secrets and for settings with none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// What the manifest says of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Every setting of a plugin, and what is in force.
#[derive(Debug, Clone, Serialize)]
pub struct SettingsReport {
    /// The plugin.
    pub plugin: PluginId,
    /// Its version.
    pub version: String,
    /// Whether the manifest declares its settings (`[settings_schema]`) or they are
    /// inferred from its defaults.
    pub declared: bool,
    /// The revision of the values set.
    pub values_revision: u64,
    /// The revision of the secrets set.
    pub secrets_revision: u64,
    /// Every setting.
    pub settings: Vec<SettingRow>,
    /// Required settings with no value: the plugin cannot be enabled.
    pub missing_required: Vec<String>,
}

impl SettingsReport {
    /// What is in force for `manifest` with `set`.
    pub fn of(manifest: &Manifest, set: &OperatorSettings) -> Self {
        Self {
            plugin: manifest.plugin.id.clone(),
            version: manifest.plugin.version.to_string(),
            declared: manifest.settings_schema.is_declared(),
            values_revision: set.values_revision,
            secrets_revision: set.secrets_revision,
            missing_required: set.missing_required(manifest),
            settings: manifest
                .settings_schema
                .specs()
                .map(|(name, spec)| row(name, spec, manifest, set))
                .collect(),
        }
    }
}

fn row(name: &str, spec: &SettingSpec, manifest: &Manifest, set: &OperatorSettings) -> SettingRow {
    let (source, value) = if spec.secret {
        let source = if set.secrets.contains_key(name) {
            "set"
        } else {
            "none"
        };
        (source, None)
    } else if let Some(value) = set.values.get(name) {
        ("set", Some(value.clone()))
    } else if let Some(value) = manifest.settings.get(name) {
        ("default", Some(value.clone()))
    } else {
        ("none", None)
    };
    SettingRow {
        name: name.to_owned(),
        kind: spec.kind.to_string(),
        secret: spec.secret,
        required: spec.required,
        source,
        value,
        description: spec.description.clone(),
    }
}
