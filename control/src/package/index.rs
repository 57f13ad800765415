//! The index of a package: every part with its size and digest, and how the worker runs.
//!
//! The index is signed as the exact bytes of its canonical form, so it is read only in that
//! form: compact JSON (no whitespace), object keys in the order of the fields below (which is
//! also their alphabetical order), strings escaped as `serde_json` escapes them. Any other
//! spelling of the same content is refused rather than interpreted.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::error::PackageError;
use super::{
    FORMAT, MANIFEST_PART, MAX_COMMAND_ARGS, MAX_COMMAND_ARG_BYTES, MAX_INDEX_BYTES,
    MAX_PACKAGE_BYTES, MAX_PARTS, MAX_PART_BYTES, MAX_PATH_BYTES, MAX_PATH_COMPONENT_BYTES,
    MAX_PATH_DEPTH, MAX_TARGETS,
};

/// What a package holds. Its fields are public so that tools can build one; reading
/// ([`PackageIndex::decode`]) checks every rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageIndex {
    /// The format's version: [`FORMAT`].
    pub format: u32,
    /// Every part, in the order the archive holds them; the first is [`MANIFEST_PART`].
    pub parts: Vec<PartEntry>,
    /// How the plugin's worker is run.
    pub worker: Worker,
}

/// One part of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartEntry {
    /// Where it is installed, relative to the plugin's directory ([`check_part_path`]).
    pub path: String,
    /// The SHA-256 of its bytes, in lower-case hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// How a plugin's worker is run once its package is installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Worker {
    /// A native binary per target triple (`x86_64-unknown-linux-gnu` → the path of its part).
    Binaries(BTreeMap<String, String>),
    /// A command line run in the plugin's directory, e.g. `["python3", "worker.py"]`; the
    /// first word is a program on the host's `PATH` or a part of the package.
    Command(Vec<String>),
}

impl PackageIndex {
    /// The canonical form: the bytes that are signed and stored.
    pub fn to_canonical_json(&self) -> Vec<u8> {
        // Serializing plain structs, strings, integers and a BTreeMap cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an index from its canonical bytes, and checks it ([`PackageIndex::check`]).
    ///
    /// # Errors
    /// [`PackageError::TooLarge`] beyond [`MAX_INDEX_BYTES`]; [`PackageError::Index`] when it
    /// is not JSON of the index's shape or not in canonical form; any error of
    /// [`PackageIndex::check`].
    pub fn decode(bytes: &[u8]) -> Result<Self, PackageError> {
        let size = bytes.len() as u64;
        if size > MAX_INDEX_BYTES {
            return Err(PackageError::too_large(
                "the index",
                size,
                MAX_INDEX_BYTES,
                "MAX_INDEX_BYTES",
            ));
        }
        let index: PackageIndex = serde_json::from_slice(bytes)
            .map_err(|e| PackageError::index(format!("not an index: {e}")))?;
        if index.to_canonical_json() != bytes {
            return Err(PackageError::index(
                "not in canonical form (compact JSON, keys in order): it is refused rather \
                 than read another way than it was signed",
            ));
        }
        index.check()?;
        Ok(index)
    }

    /// Checks every rule of the format: the format version, the number and sizes of the
    /// parts, their paths, their digests' spelling, and the worker.
    ///
    /// # Errors
    /// The first rule broken, naming the part, target or limit.
    pub fn check(&self) -> Result<(), PackageError> {
        if self.format != FORMAT {
            return Err(PackageError::index(format!(
                "format {} is not supported (this Switchyard reads format {FORMAT})",
                self.format
            )));
        }
        if self.parts.len() > MAX_PARTS {
            return Err(PackageError::TooMany {
                what: "parts",
                count: self.parts.len(),
                max: MAX_PARTS,
                limit: "MAX_PARTS",
            });
        }
        match self.parts.first() {
            Some(first) if first.path == MANIFEST_PART => {}
            Some(first) => {
                return Err(PackageError::index(format!(
                    "the first part is {:?}; it must be {MANIFEST_PART:?}",
                    first.path
                )))
            }
            None => return Err(PackageError::index("it lists no part")),
        }
        let mut seen = HashSet::with_capacity(self.parts.len());
        let mut total: u64 = 0;
        for part in &self.parts {
            check_part_path(&part.path)?;
            if !seen.insert(part.path.as_str()) {
                return Err(PackageError::index(format!(
                    "part {:?} is listed twice",
                    part.path
                )));
            }
            if part.sha256.len() != 64
                || !part
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(PackageError::index(format!(
                    "part {:?}: sha256 {:?} is not 64 lower-case hex digits",
                    part.path, part.sha256
                )));
            }
            let max = if part.path == MANIFEST_PART {
                switchyard_schemas::MAX_MANIFEST_BYTES as u64
            } else {
                MAX_PART_BYTES
            };
            if part.size > max {
                let limit = if part.path == MANIFEST_PART {
                    "MAX_MANIFEST_BYTES"
                } else {
                    "MAX_PART_BYTES"
                };
                return Err(PackageError::too_large(
                    format!("part {:?} (as the index says)", part.path),
                    part.size,
                    max,
                    limit,
                ));
            }
            total = total.saturating_add(part.size);
        }
        if total > MAX_PACKAGE_BYTES {
            return Err(PackageError::too_large(
                "the parts together (as the index says)",
                total,
                MAX_PACKAGE_BYTES,
                "MAX_PACKAGE_BYTES",
            ));
        }
        self.worker.check(&seen)
    }

    /// The entry of the part at `path`.
    pub fn part(&self, path: &str) -> Option<&PartEntry> {
        self.parts.iter().find(|part| part.path == path)
    }
}

impl Worker {
    fn check(&self, parts: &HashSet<&str>) -> Result<(), PackageError> {
        match self {
            Worker::Binaries(targets) => {
                if targets.is_empty() {
                    return Err(PackageError::index("the worker names no binary"));
                }
                if targets.len() > MAX_TARGETS {
                    return Err(PackageError::TooMany {
                        what: "target triples",
                        count: targets.len(),
                        max: MAX_TARGETS,
                        limit: "MAX_TARGETS",
                    });
                }
                for (target, path) in targets {
                    check_target(target)?;
                    if path == MANIFEST_PART || !parts.contains(path.as_str()) {
                        return Err(PackageError::index(format!(
                            "the binary for {target} is {path:?}, which is not a part of the \
                             package"
                        )));
                    }
                }
            }
            Worker::Command(words) => {
                if words.len() > MAX_COMMAND_ARGS {
                    return Err(PackageError::TooMany {
                        what: "words in the worker's command line",
                        count: words.len(),
                        max: MAX_COMMAND_ARGS,
                        limit: "MAX_COMMAND_ARGS",
                    });
                }
                match words.first() {
                    Some(program) if !program.trim().is_empty() => {}
                    _ => return Err(PackageError::index("the worker's command line is empty")),
                }
                for word in words {
                    if word.len() > MAX_COMMAND_ARG_BYTES {
                        return Err(PackageError::too_large(
                            "a word of the worker's command line",
                            word.len() as u64,
                            MAX_COMMAND_ARG_BYTES as u64,
                            "MAX_COMMAND_ARG_BYTES",
                        ));
                    }
                    if word.chars().any(char::is_control) {
                        return Err(PackageError::index(format!(
                            "the worker's command line word {word:?} holds a control character"
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Checks that `path` is a part path: relative, `/`-separated, at most [`MAX_PATH_DEPTH`]
/// components of 1 to [`MAX_PATH_COMPONENT_BYTES`] characters from `A-Z a-z 0-9 . _ - +`, none
/// starting with `.` (so no `.`, `..` or hidden file), at most [`MAX_PATH_BYTES`] in all.
/// Such a path stays inside any directory it is joined to, on every platform.
///
/// # Errors
/// [`PackageError::BadPath`] saying which rule it breaks.
pub fn check_part_path(path: &str) -> Result<(), PackageError> {
    if path.is_empty() {
        return Err(PackageError::bad_path(path, "it is empty"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(PackageError::bad_path(
            path,
            format!(
                "{} bytes; at most {MAX_PATH_BYTES} (MAX_PATH_BYTES)",
                path.len()
            ),
        ));
    }
    if path.starts_with('/') {
        return Err(PackageError::bad_path(path, "it is absolute"));
    }
    let components: Vec<&str> = path.split('/').collect();
    if components.len() > MAX_PATH_DEPTH {
        return Err(PackageError::bad_path(
            path,
            format!(
                "{} components; at most {MAX_PATH_DEPTH} (MAX_PATH_DEPTH)",
                components.len()
            ),
        ));
    }
    for component in components {
        if component.is_empty() {
            return Err(PackageError::bad_path(path, "it has an empty component"));
        }
        if component == ".." || component == "." {
            return Err(PackageError::bad_path(
                path,
                format!("a component is `{component}`"),
            ));
        }
        if component.starts_with('.') {
            return Err(PackageError::bad_path(
                path,
                format!("component {component:?} starts with `.`"),
            ));
        }
        if component.len() > MAX_PATH_COMPONENT_BYTES {
            return Err(PackageError::bad_path(
                path,
                format!(
                    "component of {} bytes; at most {MAX_PATH_COMPONENT_BYTES} \
                     (MAX_PATH_COMPONENT_BYTES)",
                    component.len()
                ),
            ));
        }
        if let Some(c) = component
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
        {
            return Err(PackageError::bad_path(
                path,
                format!("{c:?} is not allowed (only A-Z a-z 0-9 . _ - + and / between components)"),
            ));
        }
    }
    Ok(())
}

/// A target triple as rustc names them: 1 to 64 characters of `a-z A-Z 0-9 _ . -`, with at
/// least one `-`, not starting or ending with `-`.
fn check_target(target: &str) -> Result<(), PackageError> {
    let valid = (1..=64).contains(&target.len())
        && target.contains('-')
        && !target.starts_with('-')
        && !target.ends_with('-')
        && target
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(PackageError::index(format!(
            "{target:?} is not a target triple such as \"x86_64-unknown-linux-gnu\""
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> PackageIndex {
        PackageIndex {
            format: FORMAT,
            parts: vec![
                PartEntry {
                    path: MANIFEST_PART.into(),
                    sha256: "0".repeat(64),
                    size: 10,
                },
                PartEntry {
                    path: "bin/worker".into(),
                    sha256: "a".repeat(64),
                    size: 20,
                },
            ],
            worker: Worker::Binaries(BTreeMap::from([(
                "x86_64-unknown-linux-gnu".into(),
                "bin/worker".into(),
            )])),
        }
    }

    #[test]
    fn the_canonical_form_reads_back_and_no_other_spelling_does() {
        let bytes = index().to_canonical_json();
        assert_eq!(PackageIndex::decode(&bytes).unwrap(), index());
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with(r#"{"format":1,"parts":[{"path":"plugin.toml","#),
            "{text}"
        );
        let spaced = text.replacen(":1,", ": 1,", 1);
        let err = PackageIndex::decode(spaced.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("canonical"), "{err}");
        let extra = text.replacen('{', r#"{"extra":1,"#, 1);
        assert!(PackageIndex::decode(extra.as_bytes()).is_err());
    }

    #[test]
    fn paths_that_could_escape_or_hide_are_refused() {
        for path in [
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            ".hidden",
            "a/.git/config",
            "a\\..\\b",
            "C:x",
            "a b",
            "é",
            "",
            "a/",
        ] {
            assert!(check_part_path(path).is_err(), "{path:?} accepted");
        }
        for path in [
            "plugin.toml",
            "bin/x86_64-unknown-linux-gnu/worker",
            "lib/a+b-c_d.py",
        ] {
            check_part_path(path).unwrap();
        }
        let deep = vec!["a"; MAX_PATH_DEPTH + 1].join("/");
        assert!(check_part_path(&deep).is_err());
        assert!(check_part_path(&"a".repeat(MAX_PATH_COMPONENT_BYTES + 1)).is_err());
    }

    #[test]
    fn sizes_beyond_the_limits_are_refused_as_the_index_says_them() {
        let mut big = index();
        big.parts[1].size = MAX_PART_BYTES + 1;
        let err = big.check().unwrap_err();
        assert!(err.to_string().contains("MAX_PART_BYTES"), "{err}");
        let mut manifest = index();
        manifest.parts[0].size = switchyard_schemas::MAX_MANIFEST_BYTES as u64 + 1;
        let err = manifest.check().unwrap_err();
        assert!(err.to_string().contains("MAX_MANIFEST_BYTES"), "{err}");
        let mut total = index();
        for n in 0..3 {
            total.parts.push(PartEntry {
                path: format!("big{n}"),
                sha256: "b".repeat(64),
                size: MAX_PART_BYTES,
            });
        }
        let err = total.check().unwrap_err();
        assert!(err.to_string().contains("MAX_PACKAGE_BYTES"), "{err}");
    }

    #[test]
    fn the_worker_must_name_parts_and_valid_targets() {
        let mut missing = index();
        missing.worker = Worker::Binaries(BTreeMap::from([(
            "x86_64-unknown-linux-gnu".into(),
            "bin/other".into(),
        )]));
        assert!(missing.check().is_err());
        let mut bad_target = index();
        bad_target.worker =
            Worker::Binaries(BTreeMap::from([("x86 64".into(), "bin/worker".into())]));
        assert!(bad_target.check().is_err());
        let mut empty = index();
        empty.worker = Worker::Command(vec![]);
        assert!(empty.check().is_err());
        let mut control = index();
        control.worker = Worker::Command(vec!["python3".into(), "a\u{1b}[2J".into()]);
        assert!(control.check().is_err());
        let mut command = index();
        command.worker = Worker::Command(vec!["python3".into(), "worker.py".into()]);
        command.check().unwrap();
    }
}
