//! What is wrong with a manifest: every problem, each naming the key at fault.

use std::fmt;
use std::path::PathBuf;

/// What kind of problem a [`ManifestProblem`] is, for matching without reading messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// The text is not valid TOML. The message gives the line and column.
    Syntax,
    /// A key that the format does not know (often a typo).
    UnknownKey,
    /// A required key is absent, or a list that must not be empty is empty.
    Missing,
    /// A value of the wrong TOML type, such as a number where a string is expected.
    WrongType,
    /// A version that is not a semver 2.0 version (`1.2.0`).
    BadSemver,
    /// A version range that is not a semver requirement (`^1.2`, `>=1, <3`).
    BadVersionReq,
    /// A duration that humantime cannot read (`5s`, `1m 30s`, `250ms`).
    BadDuration,
    /// A rate that is not `N/s`, `N/m` or `N/h`.
    BadRate,
    /// A size that is not a whole number of bytes, or one followed by `B`, `KiB`, `MiB` or
    /// `GiB` (`"256KiB"`).
    BadSize,
    /// A number or duration outside its allowed range.
    OutOfRange,
    /// A plugin id, subscription name or channel name that is not a valid token.
    BadName,
    /// A plugin id reserved for a trusted login (`dispatcher`, `admin`, `system`): a plugin
    /// logs in with its id as user name, so it cannot be one of theirs.
    Reserved,
    /// An event type pattern that is not valid.
    BadPattern,
    /// A text that is empty or holds control characters, or a `homepage` or `repository` that
    /// is not an `http://` or `https://` URL.
    BadText,
    /// A value listed twice where each must be unique.
    Duplicate,
    /// An event pattern that covers another one of the same subscription; JetStream refuses a
    /// consumer whose filter subjects overlap this way.
    Overlap,
    /// A manifest, or a list in it, beyond a documented limit:
    /// [`MAX_MANIFEST_BYTES`](super::MAX_MANIFEST_BYTES), [`MAX_SUBSCRIPTIONS`](super::MAX_SUBSCRIPTIONS)
    /// or [`MAX_PATTERNS_PER_SUBSCRIPTION`](super::MAX_PATTERNS_PER_SUBSCRIPTION). The message
    /// names the limit.
    TooLarge,
    /// Values that are each valid but contradict each other, such as a backoff whose
    /// `initial` exceeds its `max`, or a plugin that both requires and conflicts with another.
    Inconsistent,
}

/// One problem found in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestProblem {
    /// The key at fault, as a path from the document's root: `plugin.id`,
    /// `subscriptions[1].policy.timeout`, `dependencies.requires."odd key"`. Empty for a
    /// syntax error, which has no key; its message gives the line and column instead.
    pub key: String,
    /// What kind of problem it is.
    pub kind: ProblemKind,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in a manifest, section by section. Never empty.
///
/// Its `Display` is a header line followed by one line per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestErrors {
    problems: Vec<ManifestProblem>,
}

impl ManifestErrors {
    /// The problems, in the order they were found.
    pub fn problems(&self) -> &[ManifestProblem] {
        &self.problems
    }

    /// The problems, owned.
    pub fn into_problems(self) -> Vec<ManifestProblem> {
        self.problems
    }

    /// How many problems there are (at least one).
    pub fn len(&self) -> usize {
        self.problems.len()
    }

    /// Always `false`: a manifest is refused only when something is wrong with it. Provided
    /// because a `len` without it looks like an oversight.
    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        let plural = if count == 1 { "" } else { "s" };
        write!(f, "invalid plugin manifest ({count} problem{plural}):")?;
        for problem in &self.problems {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a ManifestErrors {
    type Item = &'a ManifestProblem;
    type IntoIter = std::slice::Iter<'a, ManifestProblem>;

    fn into_iter(self) -> Self::IntoIter {
        self.problems.iter()
    }
}

/// Why [`Manifest::from_path`](super::Manifest::from_path) failed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestLoadError {
    /// The file could not be read.
    #[error("cannot read plugin manifest {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read, but the manifest in it is not valid.
    #[error("{}: {errors}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        errors: ManifestErrors,
    },
}

/// Proof that a problem was recorded. Readers return `Err(Reported)` for a value they could not
/// read; since only [`Problems::report`] makes one, a failed read can never go unexplained.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reported(());

/// Collects problems while a manifest is read, so that reading goes on after the first one.
#[derive(Debug, Default)]
pub(super) struct Problems {
    found: Vec<ManifestProblem>,
}

impl Problems {
    /// Records a problem at `key`.
    pub(super) fn report(
        &mut self,
        key: impl Into<String>,
        kind: ProblemKind,
        message: impl Into<String>,
    ) -> Reported {
        self.found.push(ManifestProblem {
            key: key.into(),
            kind,
            message: message.into(),
        });
        Reported(())
    }

    /// `Ok(value)` when nothing was reported, else every problem.
    pub(super) fn finish<T>(self, read: Result<T, Reported>) -> Result<T, ManifestErrors> {
        match read {
            Ok(value) if self.found.is_empty() => Ok(value),
            _ => Err(ManifestErrors {
                problems: self.found,
            }),
        }
    }
}
