//! Reading typed values out of a TOML table while recording every problem with its key.
//!
//! serde's derive stops at the first error and cannot name every unknown key, so the manifest
//! is parsed into a plain [`Table`] and walked with these helpers instead. Each read returns
//! `Err(Reported)` after recording why, and the caller carries on with the next key.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use semver::{Version, VersionReq};
use toml::{Table, Value};

use super::error::{ProblemKind, Problems, Reported};
use super::limits::{parse_size, ParseSizeError, Size};
use crate::name::NameError;

/// The path of a key from the document's root, as shown in problems:
/// `subscriptions[1].policy.timeout`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeyPath(String);

impl KeyPath {
    /// The root of the document.
    pub(super) fn root() -> Self {
        Self::default()
    }

    /// The key `name` inside this table. Keys that are not bare TOML keys are quoted.
    pub(super) fn child(&self, name: &str) -> Self {
        let mut path = self.0.clone();
        if !path.is_empty() {
            path.push('.');
        }
        if is_bare_key(name) {
            path.push_str(name);
        } else {
            path.push_str(&format!("{name:?}"));
        }
        Self(path)
    }

    /// The element `index` (from 0) of this array.
    pub(super) fn index(&self, index: usize) -> Self {
        Self(format!("{}[{index}]", self.0))
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&KeyPath> for String {
    fn from(path: &KeyPath) -> Self {
        path.0.clone()
    }
}

fn is_bare_key(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A table of the manifest whose keys have been checked against the ones it may have.
#[derive(Debug)]
pub(super) struct Section<'a> {
    table: &'a Table,
    path: KeyPath,
}

impl<'a> Section<'a> {
    /// Reports every key of `table` that is not in `known`.
    pub(super) fn new(
        table: &'a Table,
        path: KeyPath,
        known: &[&str],
        problems: &mut Problems,
    ) -> Self {
        for key in table.keys().filter(|key| !known.contains(&key.as_str())) {
            problems.report(
                &path.child(key),
                ProblemKind::UnknownKey,
                format!("unknown key; expected one of: {}", known.join(", ")),
            );
        }
        Self { table, path }
    }

    /// The key `name`, present or not.
    pub(super) fn key(&self, name: &str) -> KeyPath {
        self.path.child(name)
    }

    /// The value at `name`, or `None` when it is absent.
    pub(super) fn optional(&self, name: &str) -> Option<Field<'a>> {
        self.table.get(name).map(|value| Field {
            value,
            key: self.key(name),
        })
    }

    /// The value at `name`, reporting it missing when it is absent.
    pub(super) fn required(
        &self,
        name: &str,
        problems: &mut Problems,
    ) -> Result<Field<'a>, Reported> {
        self.optional(name).ok_or_else(|| {
            problems.report(
                &self.key(name),
                ProblemKind::Missing,
                "required key is missing",
            )
        })
    }
}

/// One value of the manifest and its key.
#[derive(Debug, Clone)]
pub(super) struct Field<'a> {
    pub(super) value: &'a Value,
    pub(super) key: KeyPath,
}

impl<'a> Field<'a> {
    /// Records a problem with this value.
    pub(super) fn report(
        &self,
        problems: &mut Problems,
        kind: ProblemKind,
        message: impl Into<String>,
    ) -> Reported {
        problems.report(&self.key, kind, message)
    }

    fn wrong_type(&self, problems: &mut Problems, expected: &str) -> Reported {
        let found = self.value.type_str();
        self.report(
            problems,
            ProblemKind::WrongType,
            format!("expected {expected}, found {found}"),
        )
    }

    /// The value as a string.
    pub(super) fn string(&self, problems: &mut Problems) -> Result<&'a str, Reported> {
        self.value
            .as_str()
            .ok_or_else(|| self.wrong_type(problems, "a string"))
    }

    /// The value as a boolean.
    pub(super) fn boolean(&self, problems: &mut Problems) -> Result<bool, Reported> {
        self.value
            .as_bool()
            .ok_or_else(|| self.wrong_type(problems, "a boolean"))
    }

    /// The value as a table.
    pub(super) fn table(&self, problems: &mut Problems) -> Result<&'a Table, Reported> {
        self.value
            .as_table()
            .ok_or_else(|| self.wrong_type(problems, "a table"))
    }

    /// The value as a table whose keys are checked against `known`.
    pub(super) fn section(
        &self,
        problems: &mut Problems,
        known: &[&str],
    ) -> Result<Section<'a>, Reported> {
        let table = self.table(problems)?;
        Ok(Section::new(table, self.key.clone(), known, problems))
    }

    /// The elements of an array, each with its own key.
    pub(super) fn array(&self, problems: &mut Problems) -> Result<Vec<Field<'a>>, Reported> {
        let items = self
            .value
            .as_array()
            .ok_or_else(|| self.wrong_type(problems, "an array"))?;
        Ok(items
            .iter()
            .enumerate()
            .map(|(index, value)| Field {
                value,
                key: self.key.index(index),
            })
            .collect())
    }

    /// The elements of an array that must have at least one; `what` names them in the message.
    pub(super) fn non_empty_array(
        &self,
        problems: &mut Problems,
        what: &str,
    ) -> Result<Vec<Field<'a>>, Reported> {
        let items = self.array(problems)?;
        if items.is_empty() {
            return Err(self.report(
                problems,
                ProblemKind::Missing,
                format!("must list at least one {what}"),
            ));
        }
        Ok(items)
    }

    /// The value as an integer from 1 to `max`.
    pub(super) fn count_up_to(
        &self,
        problems: &mut Problems,
        max: u32,
    ) -> Result<std::num::NonZeroU32, Reported> {
        self.count_in(problems, 1..=max)
    }

    /// The value as an integer within `range` (which must not include 0).
    pub(super) fn count_in(
        &self,
        problems: &mut Problems,
        range: RangeInclusive<u32>,
    ) -> Result<std::num::NonZeroU32, Reported> {
        let Some(number) = self.value.as_integer() else {
            return Err(self.wrong_type(problems, "an integer"));
        };
        u32::try_from(number)
            .ok()
            .filter(|number| range.contains(number))
            .and_then(std::num::NonZeroU32::new)
            .ok_or_else(|| {
                self.report(
                    problems,
                    ProblemKind::OutOfRange,
                    format!(
                        "{number} is out of range: must be from {} to {}",
                        range.start(),
                        range.end()
                    ),
                )
            })
    }

    /// The value as a size in bytes within `range`: an integer (bytes) or a string such as
    /// `"256KiB"` or `"1MiB"`.
    pub(super) fn size_in(
        &self,
        problems: &mut Problems,
        range: RangeInclusive<u32>,
    ) -> Result<std::num::NonZeroU32, Reported> {
        let wide = u64::from(*range.start())..=u64::from(*range.end());
        let bytes = self.bytes_in(problems, wide)?;
        // Within a range of `u32`s that does not include 0 (as every such range here).
        Ok(u32::try_from(bytes)
            .ok()
            .and_then(std::num::NonZeroU32::new)
            .unwrap_or(std::num::NonZeroU32::MAX))
    }

    /// The value as a size in bytes within `range`, as [`Field::size_in`] reads it.
    pub(super) fn bytes_in(
        &self,
        problems: &mut Problems,
        range: RangeInclusive<u64>,
    ) -> Result<u64, Reported> {
        let bytes = match self.value {
            // A negative count of bytes is a number out of range, not a malformed one.
            Value::Integer(bytes) => u64::try_from(*bytes).map_err(|_| None),
            Value::String(text) => parse_size(text).map_err(|err| match err {
                ParseSizeError::Malformed(_) => Some(err),
                ParseSizeError::Overflow(_) => None,
            }),
            _ => return Err(self.wrong_type(problems, "a size such as \"256KiB\" or bytes")),
        };
        if let Err(Some(malformed)) = &bytes {
            return Err(self.report(problems, ProblemKind::BadSize, malformed.to_string()));
        }
        bytes
            .ok()
            .filter(|bytes| range.contains(bytes))
            .ok_or_else(|| {
                let shown = match self.value {
                    Value::String(text) => format!("`{text}`"),
                    other => other.to_string(),
                };
                self.report(
                    problems,
                    ProblemKind::OutOfRange,
                    format!(
                        "{shown} is out of range: must be from {} to {}",
                        Size(*range.start()),
                        Size(*range.end())
                    ),
                )
            })
    }

    /// The value as a number; an integer is accepted where a float is expected (`2` for `2.0`).
    pub(super) fn float(&self, problems: &mut Problems) -> Result<f64, Reported> {
        match self.value {
            Value::Float(number) => Ok(*number),
            Value::Integer(number) => Ok(*number as f64),
            _ => Err(self.wrong_type(problems, "a number")),
        }
    }

    /// The value as a duration written for humantime (`"5s"`, `"1m 30s"`).
    pub(super) fn duration(&self, problems: &mut Problems) -> Result<Duration, Reported> {
        let Some(text) = self.value.as_str() else {
            return Err(self.wrong_type(problems, "a duration string such as \"5s\""));
        };
        humantime::parse_duration(text).map_err(|err| {
            self.report(
                problems,
                ProblemKind::BadDuration,
                format!(
                    "`{text}` is not a duration ({err}); write e.g. \"250ms\", \"5s\", \"1m 30s\""
                ),
            )
        })
    }

    /// The value as a duration within `range`.
    pub(super) fn duration_in(
        &self,
        problems: &mut Problems,
        range: RangeInclusive<Duration>,
    ) -> Result<Duration, Reported> {
        let duration = self.duration(problems)?;
        if range.contains(&duration) {
            return Ok(duration);
        }
        let (min, max) = (range.start(), range.end());
        Err(self.report(
            problems,
            ProblemKind::OutOfRange,
            format!(
                "{} is out of range: must be from {} to {}",
                humantime::format_duration(duration),
                humantime::format_duration(*min),
                humantime::format_duration(*max),
            ),
        ))
    }

    /// The value as a semver version.
    pub(super) fn version(&self, problems: &mut Problems) -> Result<Version, Reported> {
        let text = self.string(problems)?;
        Version::parse(text).map_err(|err| {
            self.report(
                problems,
                ProblemKind::BadSemver,
                format!("`{text}` is not a semver version such as \"1.2.0\": {err}"),
            )
        })
    }

    /// The value as a semver version requirement.
    pub(super) fn version_req(&self, problems: &mut Problems) -> Result<VersionReq, Reported> {
        let text = self.string(problems)?;
        VersionReq::parse(text).map_err(|err| {
            self.report(
                problems,
                ProblemKind::BadVersionReq,
                format!("`{text}` is not a semver version range such as \"^1.2\": {err}"),
            )
        })
    }

    /// The value as one of the validated names (plugin id, channel name, ...).
    pub(super) fn name<N>(&self, problems: &mut Problems) -> Result<N, Reported>
    where
        N: FromStr<Err = NameError>,
    {
        let text = self.string(problems)?;
        text.parse()
            .map_err(|err: NameError| self.report(problems, ProblemKind::BadName, err.to_string()))
    }
}

/// Reports every value of `items` (each with its key) that equals an earlier one; `what` names
/// the values in the message. Hashed, not compared pairwise: a list may be long.
pub(super) fn report_duplicates<T: Eq + Hash + fmt::Display>(
    items: &[(KeyPath, T)],
    what: &str,
    problems: &mut Problems,
) {
    let mut seen: HashMap<&T, &KeyPath> = HashMap::with_capacity(items.len());
    for (key, value) in items {
        if let Some(first) = seen.get(value).copied().or_else(|| {
            seen.insert(value, key);
            None
        }) {
            problems.report(
                key,
                ProblemKind::Duplicate,
                format!("{what} `{value}` is already listed at {first}"),
            );
        }
    }
}

/// The `name` of each table in `items` that has a string one, with its key: compared as
/// written, so that a name is checked for duplicates even when the rest of its table is
/// invalid (a malformed name is reported by the table itself).
pub(super) fn names_of<'a>(items: &[Field<'a>]) -> Vec<(KeyPath, &'a str)> {
    items
        .iter()
        .filter_map(|item| {
            let name = item.value.get("name")?.as_str()?;
            Some((item.key.child("name"), name))
        })
        .collect()
}

/// The elements of a list that could be read, each with its key, and whether any could not.
#[derive(Debug)]
pub(super) struct ReadList<T> {
    pub(super) read: Vec<(KeyPath, T)>,
    failed: Option<Reported>,
}

impl<T> ReadList<T> {
    /// Reads every element of `items` with `read_one`, going on after a failure.
    pub(super) fn new(
        items: &[Field<'_>],
        problems: &mut Problems,
        mut read_one: impl FnMut(&Field<'_>, &mut Problems) -> Result<T, Reported>,
    ) -> Self {
        let mut read = Vec::with_capacity(items.len());
        let mut failed = None;
        for item in items {
            match read_one(item, problems) {
                Ok(value) => read.push((item.key.clone(), value)),
                Err(reported) => failed = Some(reported),
            }
        }
        Self { read, failed }
    }

    /// The values, or `Err` when any element could not be read.
    pub(super) fn into_values(self) -> Result<Vec<T>, Reported> {
        match self.failed {
            Some(reported) => Err(reported),
            None => Ok(self.read.into_iter().map(|(_, value)| value).collect()),
        }
    }
}
