//! Reading `NAME=VALUE` assignments as a plugin's manifest types them, and describing a change
//! for people and the audit log: shared by `switchyard settings` and the management API.

use switchyard_schemas::manifest::toml::{self, Table, Value};
use switchyard_schemas::manifest::SettingKind;
use switchyard_schemas::Manifest;

use super::{OperatorSettings, SettingChange};

/// Reads `NAME=VALUE` with the value as TOML, or as text when it is not TOML or when the
/// setting is a string (so that `mode=true` sets the text `true` of a string setting).
///
/// # Errors
/// Why it cannot be read, for a person.
pub fn parse_assignment(pair: &str, manifest: &Manifest) -> Result<(String, Value), String> {
    let Some((name, text)) = pair.split_once('=') else {
        return Err(format!("`{}` has no `=`", printable(&shortened(pair))));
    };
    let name = name.trim().to_owned();
    let parsed = toml::from_str::<Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut table| table.remove("v"));
    let spec = manifest.settings_schema.spec(&name);
    let is_string = spec.is_some_and(|spec| spec.kind == SettingKind::String);
    let value = match parsed {
        Some(value) if !is_string || value.is_str() => value,
        // Text for a string setting; for any other, text that is not TOML is a mistake.
        None if spec.is_some() && !is_string => {
            let digits = text.trim().trim_start_matches(['-', '+']);
            let reason = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                "a whole number beyond the range of 64-bit integers".to_owned()
            } else {
                toml::from_str::<Table>(&format!("v = {text}"))
                    .err()
                    .map(|e| e.message().to_owned())
                    .unwrap_or_default()
            };
            return Err(format!(
                "`{}` is not a value for `{name}` written as in TOML ({reason})",
                printable(&shortened(text))
            ));
        }
        _ => Value::String(text.to_owned()),
    };
    Ok((name, value))
}

/// What changed, for people and the audit log: names, and plain values; never a secret's
/// value. Names unset that were not set are left out.
pub fn describe(changes: &[SettingChange], not_set: &[String]) -> String {
    changes
        .iter()
        .filter(|change| !not_set.iter().any(|name| name == change.name()))
        .map(|change| match change {
            SettingChange::Set(name, value) => {
                format!("set {name} = {}", shortened(&value.to_string()))
            }
            SettingChange::SetSecret(name, _) => format!("set secret {name}"),
            SettingChange::Unset(name) => format!("unset {name}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The settings as the audit log records them: plain values, and the names of the secrets.
pub fn audited(settings: &OperatorSettings) -> serde_json::Value {
    serde_json::json!({
        "values": settings.values,
        "values_revision": settings.values_revision,
        "secrets": settings.secrets.keys().collect::<Vec<_>>(),
        "secrets_revision": settings.secrets_revision,
    })
}

/// `text`, or its start and its length when it is long (a value may be 16 KiB).
pub fn shortened(text: &str) -> String {
    const SHOWN: usize = 64;
    if text.chars().count() <= SHOWN {
        return text.to_owned();
    }
    let start: String = text.chars().take(SHOWN).collect();
    format!("{start}… ({} bytes)", text.len())
}

/// Control characters escaped, so that a message cannot move a terminal's cursor (the CLI
/// prints untrusted text through this too).
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
