//! What can be wrong with a package, each naming the entry, part or limit at fault.

use std::path::PathBuf;

use switchyard_schemas::ManifestErrors;

/// A part whose bytes do not match what the index says of them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error(
    "part {part:?} does not match the index: sha256 expected {expected_sha256}, actual \
     {actual_sha256}"
)]
pub struct Tampering {
    /// The part's path.
    pub part: String,
    /// The digest the index lists, in lower-case hex.
    pub expected_sha256: String,
    /// The digest of the bytes the package holds.
    pub actual_sha256: String,
}

/// Why a package cannot be read, built or signed.
///
/// Values taken from the package (paths, keys) are shown quoted and escaped (`{:?}`), since
/// they are not to be trusted with a terminal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// Something is larger than a limit allows; nothing was read past the size.
    #[error("{what} is {size} bytes; at most {max} are allowed ({limit})")]
    TooLarge {
        /// What was too large: `the package`, `part "bin/x"`, `the index`.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
        /// The limit's name in the code and the docs, e.g. `MAX_PACKAGE_BYTES`.
        limit: &'static str,
    },
    /// Too many of something (parts, targets, words of the command line).
    #[error("{what}: {count}; at most {max} are allowed ({limit})")]
    TooMany {
        /// What there are too many of.
        what: &'static str,
        /// How many there are.
        count: usize,
        /// The limit.
        max: usize,
        /// The limit's name.
        limit: &'static str,
    },
    /// The bytes are not a ustar archive as a package is written (a bad header checksum, a
    /// truncated entry, bytes after the end).
    #[error("not a readable package: {reason}")]
    Container {
        /// What is wrong.
        reason: String,
    },
    /// An entry of the archive that a package may not hold, or not at that place.
    #[error("entry {position} ({path:?}): {reason}")]
    Entry {
        /// Its position in the archive, from 1.
        position: usize,
        /// Its path as the archive gives it.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The index is missing, not JSON of the expected shape, or not in canonical form.
    #[error("bad index: {reason}")]
    Index {
        /// What is wrong.
        reason: String,
    },
    /// A part path that could escape the directory the package is installed in, or is not
    /// written the one allowed way.
    #[error("bad part path {path:?}: {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A part whose size in the archive is not the one the index says.
    #[error("part {part:?}: the index says {index_size} bytes, the package holds {actual_size}")]
    SizeMismatch {
        /// The part's path.
        part: String,
        /// The size the index lists.
        index_size: u64,
        /// The size of the archive's entry.
        actual_size: u64,
    },
    /// The signature entry is not a signature at all (not JSON of its shape).
    #[error("bad signature entry: {reason}")]
    SignatureEntry {
        /// What is wrong.
        reason: String,
    },
    /// A part whose bytes do not match the index.
    #[error(transparent)]
    Tampered(#[from] Tampering),
    /// The manifest part is not valid (or not UTF-8).
    #[error("{MANIFEST}: {0}", MANIFEST = super::MANIFEST_PART)]
    Manifest(ManifestErrors),
    /// The manifest part is not UTF-8.
    #[error("{MANIFEST} is not UTF-8 text", MANIFEST = super::MANIFEST_PART)]
    ManifestNotText,
    /// A publisher key or seed that cannot be used.
    #[error("{0}")]
    Key(String),
    /// What `switchyard package build` was given cannot be packaged.
    #[error("cannot build a package from {dir}: {reason}", dir = .dir.display())]
    Build {
        /// The source directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{action} {path}: {source}", path = .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl PackageError {
    pub(super) fn container(reason: impl Into<String>) -> Self {
        Self::Container {
            reason: reason.into(),
        }
    }

    pub(super) fn index(reason: impl Into<String>) -> Self {
        Self::Index {
            reason: reason.into(),
        }
    }

    pub(super) fn bad_path(path: &str, reason: impl Into<String>) -> Self {
        Self::BadPath {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }

    pub(super) fn too_large(
        what: impl Into<String>,
        size: u64,
        max: u64,
        limit: &'static str,
    ) -> Self {
        Self::TooLarge {
            what: what.into(),
            size,
            max,
            limit,
        }
    }
}
