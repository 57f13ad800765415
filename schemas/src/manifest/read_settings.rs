//! Reading `[settings]` (the defaults) and `[settings_schema]` (what each setting is), and
//! checking the defaults against the schema.

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::error::{ProblemKind, Problems, Reported};
use super::read::{Field, Section};
use super::settings::{
    has_non_finite, same, unsupported, SettingError, SettingKind, SettingSpec, SettingsSchema,
    MAX_SETTINGS, MAX_SETTING_NAME_BYTES,
};

const SPEC_KEYS: &[&str] = &[
    "type",
    "description",
    "secret",
    "required",
    "min",
    "max",
    "max_length",
    "choices",
];

/// Reads the defaults and the schema of `document`, checking each against the other.
pub(super) fn read_settings(
    document: &Section<'_>,
    problems: &mut Problems,
) -> Result<(Table, SettingsSchema), Reported> {
    let defaults = document
        .optional("settings")
        .map_or(Ok(Table::new()), |f| f.table(problems).cloned())?;
    let schema = match document.optional("settings_schema") {
        Some(field) => SettingsSchema::declared(read_schema(&field, problems)?),
        None => SettingsSchema::inferred(&defaults),
    };
    check_defaults(document, &defaults, &schema, problems)?;
    Ok((defaults, schema))
}

fn read_schema(
    field: &Field<'_>,
    problems: &mut Problems,
) -> Result<BTreeMap<String, SettingSpec>, Reported> {
    let table = field.table(problems)?;
    if table.len() > MAX_SETTINGS {
        return Err(field.report(
            problems,
            ProblemKind::TooLarge,
            format!(
                "{} settings; a plugin may declare at most {MAX_SETTINGS} (MAX_SETTINGS)",
                table.len()
            ),
        ));
    }
    let mut specs = BTreeMap::new();
    let mut failed = None;
    for (name, value) in table {
        let spec_field = Field {
            value,
            key: field.key.child(name),
        };
        match read_spec(name, &spec_field, problems) {
            Ok(spec) => {
                specs.insert(name.clone(), spec);
            }
            Err(reported) => failed = Some(reported),
        }
    }
    failed.map_or(Ok(specs), Err)
}

fn read_spec(
    name: &str,
    field: &Field<'_>,
    problems: &mut Problems,
) -> Result<SettingSpec, Reported> {
    check_name(name, field, problems)?;
    let section = field.section(problems, SPEC_KEYS)?;
    let kind_field = section.required("type", problems)?;
    let kind_name = kind_field.string(problems)?;
    let kind = SettingKind::from_name(kind_name).ok_or_else(|| {
        kind_field.report(
            problems,
            ProblemKind::WrongType,
            format!(
                "unknown setting type `{kind_name}`; expected one of: {}",
                SettingKind::NAMES.join(", ")
            ),
        )
    })?;
    let mut spec = SettingSpec::of_kind(kind);
    let mut failed: Option<Reported> = None;
    if let Some(f) = section.optional("description") {
        match f.string(problems) {
            Ok(text) => spec.description = Some(text.to_owned()),
            Err(reported) => failed = Some(reported),
        }
    }
    for (key, target) in [
        ("secret", &mut spec.secret),
        ("required", &mut spec.required),
    ] {
        if let Some(f) = section.optional(key) {
            match f.value.as_bool() {
                Some(flag) => *target = flag,
                None => {
                    failed =
                        Some(f.report(problems, ProblemKind::WrongType, "expected true or false"));
                }
            }
        }
    }
    for key in ["min", "max"] {
        let Some(f) = section.optional(key) else {
            continue;
        };
        if !kind.is_number() {
            failed = Some(only_for(&f, "integer and float settings", problems));
            continue;
        }
        match f.float(problems) {
            Ok(bound) if !bound.is_finite() => {
                failed = Some(f.report(
                    problems,
                    ProblemKind::OutOfRange,
                    "must be a finite number (not NaN or infinity)",
                ));
            }
            Ok(bound) if kind == SettingKind::Integer && bound.fract() != 0.0 => {
                failed = Some(f.report(
                    problems,
                    ProblemKind::WrongType,
                    "a bound of an integer setting must be a whole number",
                ));
            }
            Ok(bound) if key == "min" => spec.min = Some(bound),
            Ok(bound) => spec.max = Some(bound),
            Err(reported) => failed = Some(reported),
        }
    }
    if let Some(f) = section.optional("max_length") {
        if !kind.has_length() {
            failed = Some(only_for(&f, "string and array settings", problems));
        } else {
            match f.value.as_integer().and_then(|n| usize::try_from(n).ok()) {
                Some(max) => spec.max_length = Some(max),
                None => {
                    failed = Some(f.report(
                        problems,
                        ProblemKind::WrongType,
                        "expected a whole number from 0",
                    ));
                }
            }
        }
    }
    if let Some(f) = section.optional("choices") {
        if !(kind.is_number() || kind == SettingKind::String) {
            failed = Some(only_for(&f, "string, integer and float settings", problems));
        } else {
            let items = f.array(problems)?;
            if items.is_empty() {
                failed = Some(f.report(
                    problems,
                    ProblemKind::Missing,
                    "must list at least one choice (leave it out to allow any value)",
                ));
            }
            for item in items {
                if kind.admits(item.value) && unsupported(item.value).is_none() {
                    if spec.choices.iter().any(|c| same(c, item.value)) {
                        failed =
                            Some(item.report(problems, ProblemKind::Duplicate, "listed twice"));
                    }
                    spec.choices.push(item.value.clone());
                } else {
                    failed = Some(item.report(
                        problems,
                        ProblemKind::WrongType,
                        format!("a choice of {} setting must be {}", a(kind), a(kind)),
                    ));
                }
            }
        }
    }
    if let (Some(min), Some(max)) = (spec.min, spec.max) {
        if min > max {
            failed = Some(field.report(
                problems,
                ProblemKind::Inconsistent,
                format!("min ({min}) is greater than max ({max})"),
            ));
        }
    }
    if spec.secret && kind != SettingKind::String {
        failed = Some(field.report(
            problems,
            ProblemKind::Inconsistent,
            "a secret must be of type \"string\"",
        ));
    }
    if spec.secret && !spec.choices.is_empty() {
        failed = Some(field.report(
            problems,
            ProblemKind::Inconsistent,
            "a secret cannot have choices: they would be in the manifest, which is not secret",
        ));
    }
    if failed.is_none() {
        // Every choice must be a value the setting can take.
        let mut unbounded = spec.clone();
        unbounded.choices.clear();
        for choice in &spec.choices {
            if let Err(error) = unbounded.check(name, choice) {
                failed = Some(field.report(
                    problems,
                    ProblemKind::Inconsistent,
                    format!("the choice {choice} can never be set: {error}"),
                ));
            }
        }
    }
    failed.map_or(Ok(spec), Err)
}

/// `kind` with its article: "an integer", "a string".
fn a(kind: SettingKind) -> String {
    match kind {
        SettingKind::Integer | SettingKind::Array => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}

fn only_for(field: &Field<'_>, what: &str, problems: &mut Problems) -> Reported {
    field.report(
        problems,
        ProblemKind::Inconsistent,
        format!("applies to {what} only"),
    )
}

fn check_name(name: &str, field: &Field<'_>, problems: &mut Problems) -> Result<(), Reported> {
    let valid = !name.is_empty()
        && name.len() <= MAX_SETTING_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        return Ok(());
    }
    Err(field.report(
        problems,
        ProblemKind::BadName,
        format!("a setting name is 1 to {MAX_SETTING_NAME_BYTES} letters, digits, `_` or `-`"),
    ))
}

/// Every default must fit its declared setting, and a secret has none (it would be in the
/// manifest, which is not secret).
fn check_defaults(
    document: &Section<'_>,
    defaults: &Table,
    schema: &SettingsSchema,
    problems: &mut Problems,
) -> Result<(), Reported> {
    let Some(field) = document.optional("settings") else {
        return Ok(());
    };
    let table = field.table(problems)?;
    let mut failed = None;
    if !schema.is_declared() && table.len() > MAX_SETTINGS {
        failed = Some(field.report(
            problems,
            ProblemKind::TooLarge,
            format!(
                "{} settings; a plugin may have at most {MAX_SETTINGS} (MAX_SETTINGS)",
                table.len()
            ),
        ));
    }
    debug_assert_eq!(table.len(), defaults.len());
    for (name, value) in table {
        let f = Field {
            value,
            key: field.key.child(name),
        };
        if !schema.is_declared() {
            if let Err(reported) = check_name(name, &f, problems) {
                failed = Some(reported);
                continue;
            }
        }
        let problem = check_default(name, value, schema);
        if let Some((kind, message)) = problem {
            failed = Some(f.report(problems, kind, message));
        }
    }
    failed.map_or(Ok(()), Err)
}

fn check_default(
    name: &str,
    value: &Value,
    schema: &SettingsSchema,
) -> Option<(ProblemKind, String)> {
    // Stored as JSON, which has no NaN nor infinity: such a default could not be read back.
    if has_non_finite(value) {
        return Some((
            ProblemKind::OutOfRange,
            "holds NaN or infinity, which a manifest cannot carry".to_owned(),
        ));
    }
    // Inferred from the defaults: they fit by construction.
    if !schema.is_declared() {
        return None;
    }
    let Some(spec) = schema.spec(name) else {
        return Some((
            ProblemKind::UnknownKey,
            format!("`{name}` is not declared in [settings_schema]"),
        ));
    };
    if spec.secret {
        return Some((
            ProblemKind::Inconsistent,
            format!("`{name}` is a secret: it has no default in the manifest; operators set it with `switchyard settings set-secret`"),
        ));
    }
    spec.check(name, value).err().map(|error| {
        let kind = match error {
            SettingError::WrongType { .. } | SettingError::Unsupported { .. } => {
                ProblemKind::WrongType
            }
            SettingError::TooLarge { .. } => ProblemKind::TooLarge,
            _ => ProblemKind::OutOfRange,
        };
        (kind, error.to_string())
    })
}
