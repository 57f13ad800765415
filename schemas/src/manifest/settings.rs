//! The settings a plugin declares (`[settings_schema]`), and the check of a value an operator
//! sets against them.
//!
//! A manifest's `[settings]` holds the defaults; `[settings_schema.<name>]` declares each
//! setting: its type, whether it is a secret, whether it is required, and bounds. A manifest
//! without `[settings_schema]` gets one inferred from its defaults: each default's key with its
//! type, nothing secret, nothing required. Operators may set only declared settings, each to
//! a value of its type within its bounds (docs/lifecycle.md, "Settings").

use std::collections::BTreeMap;
use std::fmt;

use toml::{Table, Value};

/// The most settings a manifest may declare.
pub const MAX_SETTINGS: usize = 256;

/// The longest setting name, in bytes.
pub const MAX_SETTING_NAME_BYTES: usize = 64;

/// The largest value one setting (or secret) may hold, as JSON, in bytes (16 KiB).
pub const MAX_SETTING_VALUE_BYTES: usize = 16 * 1024;

/// The largest a plugin's plain settings may be all together, as JSON, in bytes (128 KiB),
/// and its secrets too: both travel to its workers in one message.
pub const MAX_SETTINGS_BYTES: usize = 128 * 1024;

/// The type of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SettingKind {
    /// A string.
    String,
    /// A whole number (64-bit).
    Integer,
    /// A number; a whole number is accepted too.
    Float,
    /// `true` or `false`.
    Boolean,
    /// An array of values.
    Array,
    /// A table of values.
    Table,
}

impl SettingKind {
    /// The names written in `type = "..."`.
    pub const NAMES: &'static [&'static str] =
        &["string", "integer", "float", "boolean", "array", "table"];

    /// The kind named `name` (one of [`SettingKind::NAMES`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "string" => Self::String,
            "integer" => Self::Integer,
            "float" => Self::Float,
            "boolean" => Self::Boolean,
            "array" => Self::Array,
            "table" => Self::Table,
            _ => return None,
        })
    }

    /// The kind of `value`; `None` for a date or time, which settings do not hold.
    pub fn of(value: &Value) -> Option<Self> {
        Some(match value {
            Value::String(_) => Self::String,
            Value::Integer(_) => Self::Integer,
            Value::Float(_) => Self::Float,
            Value::Boolean(_) => Self::Boolean,
            Value::Array(_) => Self::Array,
            Value::Table(_) => Self::Table,
            Value::Datetime(_) => return None,
        })
    }

    /// Whether `value` is of this kind (an integer counts as a float).
    pub fn admits(self, value: &Value) -> bool {
        matches!(
            (self, value),
            (Self::String, Value::String(_))
                | (Self::Integer, Value::Integer(_))
                | (Self::Float, Value::Float(_) | Value::Integer(_))
                | (Self::Boolean, Value::Boolean(_))
                | (Self::Array, Value::Array(_))
                | (Self::Table, Value::Table(_))
        )
    }

    /// Whether `min`, `max` and `choices` apply (numbers), and `max_length` (strings, arrays).
    pub(super) fn is_number(self) -> bool {
        matches!(self, Self::Integer | Self::Float)
    }

    pub(super) fn has_length(self) -> bool {
        matches!(self, Self::String | Self::Array)
    }
}

impl fmt::Display for SettingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::String => "string",
            Self::Integer => "integer",
            Self::Float => "float",
            Self::Boolean => "boolean",
            Self::Array => "array",
            Self::Table => "table",
        })
    }
}

/// One declared setting (`[settings_schema.<name>]`).
#[derive(Debug, Clone, PartialEq)]
pub struct SettingSpec {
    /// Its type.
    pub kind: SettingKind,
    /// What it is for, shown to operators.
    pub description: Option<String>,
    /// A secret: set with `switchyard settings set-secret`, stored apart from the other
    /// settings, never printed, never given a default in the manifest. Always a string.
    pub secret: bool,
    /// The plugin cannot be enabled while it has no value (neither a default nor one set).
    pub required: bool,
    /// The smallest value (numbers).
    pub min: Option<f64>,
    /// The largest value (numbers).
    pub max: Option<f64>,
    /// The longest value, in characters (strings) or elements (arrays).
    pub max_length: Option<usize>,
    /// The only values allowed, when not empty (strings and numbers).
    pub choices: Vec<Value>,
}

impl SettingSpec {
    /// A setting of `kind` with no bounds, not secret, not required.
    pub fn of_kind(kind: SettingKind) -> Self {
        Self {
            kind,
            description: None,
            secret: false,
            required: false,
            min: None,
            max: None,
            max_length: None,
            choices: Vec::new(),
        }
    }

    /// Checks `value` against this setting's type and bounds; `name` names it in the error.
    ///
    /// # Errors
    /// The [`SettingError`] saying what does not fit.
    pub fn check(&self, name: &str, value: &Value) -> Result<(), SettingError> {
        let wrong_type = || SettingError::WrongType {
            name: name.to_owned(),
            expected: self.kind,
            found: value.type_str(),
        };
        if !self.kind.admits(value) {
            return Err(wrong_type());
        }
        if let Some(problem) = unsupported(value) {
            return Err(SettingError::Unsupported {
                name: name.to_owned(),
                what: problem,
            });
        }
        let encoded = serde_json::to_vec(value).map_err(|_| wrong_type())?;
        if encoded.len() > MAX_SETTING_VALUE_BYTES {
            return Err(SettingError::TooLarge {
                name: name.to_owned(),
                bytes: encoded.len(),
                max: MAX_SETTING_VALUE_BYTES,
            });
        }
        if let Some(number) = as_number(value) {
            let below = self.min.is_some_and(|min| number < min);
            let above = self.max.is_some_and(|max| number > max);
            if below || above {
                return Err(SettingError::OutOfRange {
                    name: name.to_owned(),
                    value: value.to_string(),
                    range: range_text(self.min, self.max),
                });
            }
        }
        if let Some(max) = self.max_length {
            let length = match value {
                Value::String(text) => text.chars().count(),
                Value::Array(items) => items.len(),
                _ => 0,
            };
            if length > max {
                return Err(SettingError::TooLong {
                    name: name.to_owned(),
                    // Not even a secret's length is shown.
                    length: if self.secret { None } else { Some(length) },
                    max,
                });
            }
        }
        if !self.choices.is_empty() && !self.choices.iter().any(|choice| same(choice, value)) {
            return Err(SettingError::NotAChoice {
                name: name.to_owned(),
                // A secret's value is never shown, not even the one refused.
                value: if self.secret {
                    "the value given".to_owned()
                } else {
                    value.to_string()
                },
                choices: self
                    .choices
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(())
    }
}

/// Equal as setting values: `2` is the choice `2.0` of a float setting.
pub(super) fn same(choice: &Value, value: &Value) -> bool {
    match (as_number(choice), as_number(value)) {
        (Some(a), Some(b)) => a == b,
        _ => choice == value,
    }
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(number) => Some(*number as f64),
        Value::Float(number) => Some(*number),
        _ => None,
    }
}

fn range_text(min: Option<f64>, max: Option<f64>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!("from {min} to {max}"),
        (Some(min), None) => format!("at least {min}"),
        (None, Some(max)) => format!("at most {max}"),
        (None, None) => "any".to_owned(),
    }
}

/// Whether `value` is or holds a float that is NaN or infinite, which JSON cannot carry.
pub(super) fn has_non_finite(value: &Value) -> bool {
    match value {
        Value::Float(number) => !number.is_finite(),
        Value::Array(items) => items.iter().any(has_non_finite),
        Value::Table(table) => table.values().any(has_non_finite),
        _ => false,
    }
}

/// What in `value` settings cannot carry, since they travel and are stored as JSON: a date or
/// time, or a float that is not a number or infinite (JSON has neither).
pub(super) fn unsupported(value: &Value) -> Option<&'static str> {
    match value {
        Value::Datetime(_) => Some("a date or time (write it as a string)"),
        Value::Float(number) if !number.is_finite() => Some("NaN or infinity"),
        Value::Array(items) => items.iter().find_map(unsupported),
        Value::Table(table) => table.values().find_map(unsupported),
        _ => None,
    }
}

/// Why a setting's value, or a change of settings, is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingError {
    /// The plugin declares no setting of this name.
    #[error("the plugin declares no setting `{name}` (it declares: {declared})")]
    Unknown {
        /// The name.
        name: String,
        /// The declared names, comma-separated, or `none`.
        declared: String,
    },
    /// A value of another type than the setting's.
    #[error("setting `{name}` is {expected}, not {found}")]
    WrongType {
        /// The setting.
        name: String,
        /// Its type.
        expected: SettingKind,
        /// The value's TOML type (`datetime` for dates, which settings cannot hold).
        found: &'static str,
    },
    /// A value that is or holds what settings cannot carry: a date or time, NaN or infinity.
    #[error("setting `{name}` holds {what}, which settings cannot carry")]
    Unsupported {
        /// The setting.
        name: String,
        /// What it holds.
        what: &'static str,
    },
    /// A number outside the setting's bounds.
    #[error("setting `{name}`: {value} is out of range: must be {range}")]
    OutOfRange {
        /// The setting.
        name: String,
        /// The value.
        value: String,
        /// The bounds, for a person.
        range: String,
    },
    /// A string or array longer than the setting's `max_length`.
    #[error("setting `{name}` is {} long; at most {max}", length.map_or_else(|| "too".to_owned(), |n| n.to_string()))]
    TooLong {
        /// The setting.
        name: String,
        /// Its length (none for a secret).
        length: Option<usize>,
        /// The most allowed.
        max: usize,
    },
    /// A value that is not one of the setting's `choices`.
    #[error("setting `{name}`: {value} is not one of: {choices}")]
    NotAChoice {
        /// The setting.
        name: String,
        /// The value.
        value: String,
        /// The choices, comma-separated.
        choices: String,
    },
    /// A value larger than [`MAX_SETTING_VALUE_BYTES`].
    #[error("setting `{name}` is {bytes} bytes as JSON; at most {max}")]
    TooLarge {
        /// The setting.
        name: String,
        /// Its size.
        bytes: usize,
        /// The most allowed.
        max: usize,
    },
    /// A secret set as a plain setting: it would be stored and printed with them.
    #[error("setting `{name}` is a secret: set it with `switchyard settings set-secret`, which keeps it apart and never prints it")]
    IsSecret {
        /// The setting.
        name: String,
    },
    /// A plain setting set as a secret.
    #[error("setting `{name}` is not declared secret: set it with `switchyard settings set`")]
    NotSecret {
        /// The setting.
        name: String,
    },
    /// Settings (or secrets) that would no longer fit in one message to the workers.
    #[error(
        "the plugin's settings (or its secrets) would be {bytes} bytes as JSON; at most {max}"
    )]
    AllTooLarge {
        /// Their size.
        bytes: usize,
        /// The most allowed.
        max: usize,
    },
}

/// The settings a plugin declares, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettingsSchema {
    specs: BTreeMap<String, SettingSpec>,
    declared: bool,
}

impl SettingsSchema {
    /// A schema declared by the manifest (`[settings_schema]`).
    pub fn declared(specs: BTreeMap<String, SettingSpec>) -> Self {
        Self {
            specs,
            declared: true,
        }
    }

    /// The schema of a manifest without `[settings_schema]`: each default with its type.
    pub fn inferred(defaults: &Table) -> Self {
        let specs = defaults
            .iter()
            .filter_map(|(name, value)| {
                SettingKind::of(value).map(|kind| (name.clone(), SettingSpec::of_kind(kind)))
            })
            .collect();
        Self {
            specs,
            declared: false,
        }
    }

    /// Whether the manifest declares it (rather than it being inferred from the defaults).
    pub fn is_declared(&self) -> bool {
        self.declared
    }

    /// The declared setting `name`.
    pub fn spec(&self, name: &str) -> Option<&SettingSpec> {
        self.specs.get(name)
    }

    /// Every declared setting, by name.
    pub fn specs(&self) -> impl Iterator<Item = (&str, &SettingSpec)> {
        self.specs.iter().map(|(name, spec)| (name.as_str(), spec))
    }

    /// The names of the secrets.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.specs().filter(|(_, s)| s.secret).map(|(name, _)| name)
    }

    /// Whether no setting is declared.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Checks a plain (not secret) setting an operator sets.
    ///
    /// # Errors
    /// [`SettingError::Unknown`], [`SettingError::IsSecret`], or what the setting's check says.
    pub fn check_value(&self, name: &str, value: &Value) -> Result<(), SettingError> {
        let spec = self.known(name)?;
        if spec.secret {
            return Err(SettingError::IsSecret {
                name: name.to_owned(),
            });
        }
        spec.check(name, value)
    }

    /// Checks a secret an operator sets.
    ///
    /// # Errors
    /// [`SettingError::Unknown`], [`SettingError::NotSecret`], or what the setting's check says.
    pub fn check_secret(&self, name: &str, value: &str) -> Result<(), SettingError> {
        let spec = self.known(name)?;
        if !spec.secret {
            return Err(SettingError::NotSecret {
                name: name.to_owned(),
            });
        }
        spec.check(name, &Value::String(value.to_owned()))
    }

    fn known(&self, name: &str) -> Result<&SettingSpec, SettingError> {
        self.spec(name).ok_or_else(|| SettingError::Unknown {
            name: name.to_owned(),
            declared: if self.specs.is_empty() {
                "none".to_owned()
            } else {
                self.specs.keys().cloned().collect::<Vec<_>>().join(", ")
            },
        })
    }

    /// Every problem with settings an operator set, checked against this schema (e.g. a new
    /// version's): each plain value and each secret's name.
    pub fn problems<'a>(
        &self,
        values: &Table,
        secret_names: impl IntoIterator<Item = &'a str>,
    ) -> Vec<SettingError> {
        let plain = values
            .iter()
            .filter_map(|(name, value)| self.check_value(name, value).err());
        let secrets = secret_names.into_iter().filter_map(|name| {
            let spec = match self.known(name) {
                Ok(spec) => spec,
                Err(error) => return Some(error),
            };
            (!spec.secret).then(|| SettingError::NotSecret {
                name: name.to_owned(),
            })
        });
        plain.chain(secrets).collect()
    }

    /// The required settings that have no value among `defaults`, `values` and
    /// `secret_names`.
    pub fn missing_required<'a>(
        &self,
        defaults: &Table,
        values: &Table,
        secret_names: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        let secrets: Vec<&str> = secret_names.into_iter().collect();
        self.specs()
            .filter(|(name, spec)| {
                spec.required
                    && !defaults.contains_key(*name)
                    && !values.contains_key(*name)
                    && !secrets.contains(name)
            })
            .map(|(name, _)| name.to_owned())
            .collect()
    }
}

/// The settings a plugin's workers run with: the manifest's defaults, overridden by what the
/// operator set, then the secrets.
pub fn compose<'a>(
    defaults: &Table,
    values: &Table,
    secrets: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Table {
    let mut settings = defaults.clone();
    settings.extend(values.iter().map(|(k, v)| (k.clone(), v.clone())));
    settings.extend(
        secrets
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned()))),
    );
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> SettingsSchema {
        let mut retries = SettingSpec::of_kind(SettingKind::Integer);
        retries.min = Some(0.0);
        retries.max = Some(10.0);
        let mut mode = SettingSpec::of_kind(SettingKind::String);
        mode.choices = vec![Value::from("fast"), Value::from("safe")];
        mode.max_length = Some(4);
        let mut key = SettingSpec::of_kind(SettingKind::String);
        key.secret = true;
        key.required = true;
        SettingsSchema::declared(BTreeMap::from([
            ("retries".to_owned(), retries),
            ("mode".to_owned(), mode),
            ("api_key".to_owned(), key),
            ("ratio".to_owned(), SettingSpec::of_kind(SettingKind::Float)),
        ]))
    }

    #[test]
    fn values_are_checked_for_type_bounds_and_choices() {
        let schema = schema();
        assert!(schema.check_value("retries", &Value::Integer(10)).is_ok());
        assert!(matches!(
            schema.check_value("retries", &Value::Integer(11)),
            Err(SettingError::OutOfRange { .. })
        ));
        assert!(matches!(
            schema.check_value("retries", &Value::from("3")),
            Err(SettingError::WrongType {
                found: "string",
                ..
            })
        ));
        assert!(schema.check_value("ratio", &Value::Integer(2)).is_ok());
        assert!(matches!(
            schema.check_value("mode", &Value::from("slow")),
            Err(SettingError::NotAChoice { .. })
        ));
        assert!(matches!(
            schema.check_value("nope", &Value::Integer(1)),
            Err(SettingError::Unknown { .. })
        ));
        let huge = Value::from("x".repeat(MAX_SETTING_VALUE_BYTES));
        assert!(matches!(
            SettingSpec::of_kind(SettingKind::String).check("big", &huge),
            Err(SettingError::TooLarge { .. })
        ));
    }

    #[test]
    fn secrets_and_plain_settings_are_not_interchangeable() {
        let schema = schema();
        assert!(matches!(
            schema.check_value("api_key", &Value::from("k")),
            Err(SettingError::IsSecret { .. })
        ));
        assert!(schema.check_secret("api_key", "k").is_ok());
        assert!(matches!(
            schema.check_secret("mode", "fast"),
            Err(SettingError::NotSecret { .. })
        ));
    }

    #[test]
    fn required_settings_without_a_value_are_listed() {
        let schema = schema();
        let none = Table::new();
        assert_eq!(
            schema.missing_required(&none, &none, []),
            vec!["api_key".to_owned()]
        );
        assert!(schema
            .missing_required(&none, &none, ["api_key"])
            .is_empty());
    }

    #[test]
    fn an_inferred_schema_takes_each_default_type() {
        let defaults: Table = toml::from_str("greeting = \"hi\"\ncount = 2").unwrap();
        let schema = SettingsSchema::inferred(&defaults);
        assert!(!schema.is_declared());
        assert!(schema.check_value("count", &Value::Integer(5)).is_ok());
        assert!(schema.check_value("greeting", &Value::Integer(5)).is_err());
        assert!(schema.check_value("other", &Value::Integer(5)).is_err());
    }

    #[test]
    fn composed_settings_layer_defaults_values_and_secrets() {
        let defaults: Table = toml::from_str("a = 1\nb = 2").unwrap();
        let values: Table = toml::from_str("b = 3").unwrap();
        let settings = compose(&defaults, &values, [("k", "s")]);
        assert_eq!(settings["a"], Value::Integer(1));
        assert_eq!(settings["b"], Value::Integer(3));
        assert_eq!(settings["k"], Value::from("s"));
    }
}
