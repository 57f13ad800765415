//! Building a package from a directory: `plugin.toml`, a `package.toml` saying how the worker
//! runs and which files it needs, and those files.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use switchyard_schemas::Manifest;

use super::archive::{sha256_hex, Package};
use super::error::PackageError;
use super::index::{check_part_path, PackageIndex, PartEntry, Worker};
use super::{FORMAT, MANIFEST_PART, MAX_PACKAGE_BYTES, MAX_PARTS, MAX_PART_BYTES};

/// The file of a package's source directory that says what goes into the package.
pub const SOURCE_FILE: &str = "package.toml";

/// The longest `package.toml`, in bytes.
const MAX_SOURCE_BYTES: u64 = 64 * 1024;

/// What `package.toml` says: how the worker runs, and which files go with it. Paths are
/// relative to its directory, and are the paths the files are installed at.
///
/// ```toml
/// # A binary per target triple:
/// [binaries]
/// x86_64-unknown-linux-gnu = "bin/x86_64-unknown-linux-gnu/audit-log"
///
/// # or a command line, run in the plugin's directory:
/// # command = ["python3", "worker.py"]
///
/// # Files or directories shipped beside it (the binaries are included by themselves):
/// files = ["worker.py", "audit"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSource {
    /// The worker's binary for each target triple.
    #[serde(default)]
    pub binaries: BTreeMap<String, String>,
    /// The worker's command line, for a worker that is not a native binary.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// Other files and directories to ship. Within a directory, names starting with `.` are
    /// left out.
    #[serde(default)]
    pub files: Vec<String>,
}

/// Builds an unsigned package from the directory `dir` (its `plugin.toml`, its
/// [`SOURCE_FILE`] and the files that names).
///
/// # Errors
/// [`PackageError::Build`] naming the problem (a missing or invalid file, a path that is not a
/// valid part path, a file that is not a regular file), [`PackageError::Manifest`] with every
/// problem of an invalid manifest, [`PackageError::TooLarge`] or [`PackageError::TooMany`]
/// beyond a limit (checked before reading), [`PackageError::Io`].
pub fn build_from_dir(dir: &Path) -> Result<Package, PackageError> {
    let manifest_bytes = read_bounded(
        &dir.join(MANIFEST_PART),
        switchyard_schemas::MAX_MANIFEST_BYTES as u64,
        "MAX_MANIFEST_BYTES",
    )?;
    build_from_dir_with_manifest(dir, manifest_bytes)
}

/// [`build_from_dir`] with `manifest_bytes` as the package's manifest instead of the
/// directory's `plugin.toml` (which is neither read nor packaged): what `switchyard dev
/// --watch` does to give each build a version of its own.
///
/// # Errors
/// As [`build_from_dir`].
pub fn build_from_dir_with_manifest(
    dir: &Path,
    manifest_bytes: Vec<u8>,
) -> Result<Package, PackageError> {
    let build = |reason: String| PackageError::Build {
        dir: dir.to_owned(),
        reason,
    };
    if manifest_bytes.len() > switchyard_schemas::MAX_MANIFEST_BYTES {
        return Err(PackageError::too_large(
            MANIFEST_PART.to_owned(),
            manifest_bytes.len() as u64,
            switchyard_schemas::MAX_MANIFEST_BYTES as u64,
            "MAX_MANIFEST_BYTES",
        ));
    }
    let source_text = read_bounded(&dir.join(SOURCE_FILE), MAX_SOURCE_BYTES, "MAX_SOURCE_BYTES")?;
    let source_text = String::from_utf8(source_text)
        .map_err(|_| build(format!("{SOURCE_FILE} is not UTF-8 text")))?;
    let source: PackageSource = toml::from_str(&source_text)
        .map_err(|e| build(format!("{SOURCE_FILE}: {}", e.message().trim())))?;
    let manifest_text = std::str::from_utf8(&manifest_bytes)
        .map_err(|_| build(format!("{MANIFEST_PART} is not UTF-8 text")))?;
    Manifest::from_toml_str(manifest_text).map_err(PackageError::Manifest)?;

    let worker = match (source.binaries.is_empty(), &source.command) {
        (false, None) => Worker::Binaries(source.binaries.clone()),
        (true, Some(command)) => Worker::Command(command.clone()),
        (false, Some(_)) => {
            return Err(build(format!(
                "{SOURCE_FILE} gives both `binaries` and `command`; give one"
            )))
        }
        (true, None) => {
            return Err(build(format!(
                "{SOURCE_FILE} says neither how the worker runs: give `binaries` (a binary \
                 per target triple) or `command`"
            )))
        }
    };

    let mut paths = BTreeSet::new();
    for path in source.binaries.values() {
        let path = normalize(path).map_err(build)?;
        let metadata = std::fs::metadata(dir.join(&path))
            .map_err(|e| build(format!("binary {path:?}: {e}")))?;
        if !metadata.is_file() {
            return Err(build(format!("binary {path:?} is not a file")));
        }
        paths.insert(path);
    }
    for listed in &source.files {
        let path = normalize(listed).map_err(build)?;
        collect(dir, &path, &mut paths).map_err(build)?;
    }
    paths.remove(MANIFEST_PART);
    if paths.len() + 1 > MAX_PARTS {
        return Err(PackageError::TooMany {
            what: "files to package",
            count: paths.len() + 1,
            max: MAX_PARTS,
            limit: "MAX_PARTS",
        });
    }
    let worker = match worker {
        Worker::Binaries(targets) => Worker::Binaries(
            targets
                .into_iter()
                .map(|(target, path)| Ok((target, normalize(&path).map_err(build)?)))
                .collect::<Result<_, PackageError>>()?,
        ),
        command => command,
    };

    // Every size is checked before anything is read.
    let mut total = manifest_bytes.len() as u64;
    for path in &paths {
        check_part_path(path)?;
        let file = dir.join(path);
        let size = std::fs::metadata(&file)
            .map_err(|source| PackageError::Io {
                action: "read",
                path: file.clone(),
                source,
            })?
            .len();
        if size > MAX_PART_BYTES {
            return Err(PackageError::too_large(
                format!("file {path:?}"),
                size,
                MAX_PART_BYTES,
                "MAX_PART_BYTES",
            ));
        }
        total = total.saturating_add(size);
    }
    if total > MAX_PACKAGE_BYTES {
        return Err(PackageError::too_large(
            "the files together",
            total,
            MAX_PACKAGE_BYTES,
            "MAX_PACKAGE_BYTES",
        ));
    }

    let mut data = vec![manifest_bytes];
    for path in &paths {
        data.push(read_bounded(
            &dir.join(path),
            MAX_PART_BYTES,
            "MAX_PART_BYTES",
        )?);
    }
    let names = std::iter::once(MANIFEST_PART.to_owned()).chain(paths);
    let parts = names
        .zip(&data)
        .map(|(path, bytes)| PartEntry {
            path,
            sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
        })
        .collect();
    let index = PackageIndex {
        format: FORMAT,
        parts,
        worker,
    };
    let slices: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    Package::assemble(&index, None, &slices)
}

/// A path of `package.toml` as a part path: `/`-separated, without `./` or a trailing `/`.
fn normalize(path: &str) -> Result<String, String> {
    let trimmed = path.trim_start_matches("./").trim_end_matches('/');
    check_part_path(trimmed).map_err(|e| format!("{SOURCE_FILE}: {e}"))?;
    Ok(trimmed.to_owned())
}

/// Adds the file at `path`, or every file under the directory at `path` (names starting with
/// `.` left out), to `paths`.
fn collect(dir: &Path, path: &str, paths: &mut BTreeSet<String>) -> Result<(), String> {
    let full = dir.join(path);
    let metadata = std::fs::metadata(&full).map_err(|e| format!("{path:?}: {e}"))?;
    if metadata.is_file() {
        paths.insert(path.to_owned());
        return Ok(());
    }
    if !metadata.is_dir() {
        return Err(format!("{path:?} is neither a file nor a directory"));
    }
    if std::fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(format!(
            "{path:?} is a link to a directory; list the directory itself"
        ));
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir(&full)
        .map_err(|e| format!("{path:?}: {e}"))?
        .map(|entry| entry.map(|entry| PathBuf::from(entry.file_name())))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{path:?}: {e}"))?;
    names.sort();
    for name in names {
        let Some(name) = name.to_str() else {
            return Err(format!("{path:?} holds a name that is not UTF-8"));
        };
        if name.starts_with('.') {
            continue;
        }
        let child = format!("{path}/{name}");
        check_part_path(&child).map_err(|e| e.to_string())?;
        if paths.len() > MAX_PARTS {
            return Err(format!(
                "more than {MAX_PARTS} files to package (MAX_PARTS)"
            ));
        }
        collect(dir, &child, paths)?;
    }
    Ok(())
}

/// Reads at most `max` bytes of the file at `path`, refusing a larger one before reading.
fn read_bounded(path: &Path, max: u64, limit: &'static str) -> Result<Vec<u8>, PackageError> {
    let io = |source| PackageError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > max {
        return Err(PackageError::too_large(
            path.display().to_string(),
            size,
            max,
            limit,
        ));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(PackageError::too_large(
            path.display().to_string(),
            bytes.len() as u64,
            max,
            limit,
        ));
    }
    Ok(bytes)
}
