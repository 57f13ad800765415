//! Unpacking a verified package into a directory: its manifest, and its worker with the
//! worker's files, as a host runs it.
//!
//! Nothing is written before the package is verified as installing verifies it
//! ([`verify_for_install`]); each part's digest is checked again right before its bytes are
//! written, every path is checked again against the part-path rules and must stay inside the
//! directory, and files are created new (never through an existing file or link). The worker's
//! binary (or the command's program, when it is a part) is made executable; every other file is
//! written readable and not executable.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use super::archive::{Package, Part};
use super::error::Tampering;
use super::index::{check_part_path, Worker};
use super::verify::{verify_for_install, Allowances, InstallRefusal, Installable, TrustedKeys};
use super::{PackageError, MANIFEST_PART};

/// The mode of the worker's executable.
#[cfg(unix)]
const EXECUTABLE_MODE: u32 = 0o755;
/// The mode of every other file.
#[cfg(unix)]
const FILE_MODE: u32 = 0o644;

/// What [`unpack`] wrote.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// What verifying found, and the manifest.
    pub installable: Installable,
    /// The directory it was unpacked into.
    pub dir: PathBuf,
    /// The manifest's path.
    pub manifest: PathBuf,
    /// The executable written: the binary for the target, or the command's program when it is
    /// a part of the package (`None`: a program of the host's, e.g. `python3`).
    pub executable: Option<PathBuf>,
    /// The worker's command line, relative to `dir`: the binary alone, or the command's words.
    pub command: Vec<String>,
    /// Every file written, relative to `dir`, in the package's order.
    pub files: Vec<String>,
}

/// Why a package was not unpacked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// The package may not be installed: tampered, a bad signature, or unsigned or untrusted
    /// and not allowed; or an invalid manifest.
    #[error(transparent)]
    Refused(#[from] InstallRefusal),
    /// The package holds no binary for the target asked for.
    #[error("the package holds no worker binary for {target} (it has: {available})")]
    NoBinary {
        /// The target triple asked for.
        target: String,
        /// The targets it has, comma-separated.
        available: String,
    },
    /// A part's bytes changed between verifying and writing (not expected: the package is in
    /// memory).
    #[error("not unpacked: {0}")]
    Tampered(#[from] Tampering),
    /// A part path that would leave the directory.
    #[error("not unpacked: {0}")]
    Path(#[from] PackageError),
    /// The directory is not empty: unpacking never replaces files.
    #[error("{dir} is not empty; unpack into a new or empty directory", dir = .dir.display())]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// A file or directory could not be made.
    #[error("cannot {action} {path}: {source}", path = .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The target triple of this host as package binaries are named, e.g.
/// `x86_64-unknown-linux-gnu`, `aarch64-apple-darwin`.
pub fn host_target() -> String {
    let arch = std::env::consts::ARCH;
    match std::env::consts::OS {
        "linux" if cfg!(target_env = "musl") => format!("{arch}-unknown-linux-musl"),
        "linux" => format!("{arch}-unknown-linux-gnu"),
        "macos" => format!("{arch}-apple-darwin"),
        "windows" => format!("{arch}-pc-windows-msvc"),
        os => format!("{arch}-unknown-{os}"),
    }
}

/// Verifies `package` ([`verify_for_install`] against `trust` and `allow`), then writes its
/// manifest and its worker for `target` into `dir` (created if missing, and which must be
/// empty): every part except other targets' binaries, each under its path.
///
/// # Errors
/// [`UnpackError::Refused`] before anything is written when the package may not be installed;
/// [`UnpackError::NoBinary`] when it has no binary for `target`; [`UnpackError::NotEmpty`];
/// [`UnpackError::Tampered`] or [`UnpackError::Path`] when a part fails its checks again (what
/// was written before it stays); [`UnpackError::Io`].
pub fn unpack(
    package: &Package,
    trust: &TrustedKeys,
    allow: &Allowances,
    dir: &Path,
    target: &str,
) -> Result<Unpacked, UnpackError> {
    let installable = verify_for_install(package, trust, allow)?;
    let (executable, command) = worker_of(&package.index().worker, target)?;
    let root = prepare(dir)?;
    let other_binaries = other_targets_binaries(&package.index().worker, target);
    let mut files = Vec::new();
    for part in package.parts() {
        let path = part.entry.path.as_str();
        // A binary of another target only (two targets may share one binary).
        if other_binaries.contains(&path) && executable.as_deref() != Some(path) {
            continue;
        }
        let executable = executable.as_deref() == Some(path);
        write_part(&root, &part, executable)?;
        files.push(path.to_owned());
    }
    Ok(Unpacked {
        installable,
        manifest: root.join(MANIFEST_PART),
        executable: executable.map(|path| root.join(path)),
        dir: root,
        command,
        files,
    })
}

/// The part to make executable (if the worker's program is one) and the command line.
fn worker_of(worker: &Worker, target: &str) -> Result<(Option<String>, Vec<String>), UnpackError> {
    match worker {
        Worker::Binaries(binaries) => match binaries.get(target) {
            Some(path) => Ok((Some(path.clone()), vec![path.clone()])),
            None => Err(UnpackError::NoBinary {
                target: target.to_owned(),
                available: binaries.keys().cloned().collect::<Vec<_>>().join(", "),
            }),
        },
        Worker::Command(words) => {
            let program = words.first().filter(|program| {
                check_part_path(program).is_ok() && program.as_str() != MANIFEST_PART
            });
            Ok((program.cloned(), words.clone()))
        }
    }
}

/// The binaries of the other targets: not written.
fn other_targets_binaries<'a>(worker: &'a Worker, target: &str) -> Vec<&'a str> {
    match worker {
        Worker::Binaries(binaries) => binaries
            .iter()
            .filter(|(triple, _)| triple.as_str() != target)
            .map(|(_, path)| path.as_str())
            .collect(),
        Worker::Command(_) => Vec::new(),
    }
}

/// Creates `dir` if missing and checks that it is an empty directory; returns its canonical
/// path.
fn prepare(dir: &Path) -> Result<PathBuf, UnpackError> {
    let io = |action, source| UnpackError::Io {
        action,
        path: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(|e| io("create the directory", e))?;
    let root = dir
        .canonicalize()
        .map_err(|e| io("resolve the directory", e))?;
    let mut entries = fs::read_dir(&root).map_err(|e| io("read the directory", e))?;
    if entries.next().is_some() {
        return Err(UnpackError::NotEmpty { dir: root });
    }
    Ok(root)
}

/// `root` joined with the part path `path`, which must be a part path made only of plain
/// components.
fn inside(root: &Path, path: &str) -> Result<PathBuf, UnpackError> {
    check_part_path(path)?;
    let relative = Path::new(path);
    if !relative
        .components()
        .all(|component| matches!(component, Component::Normal(_)))
    {
        return Err(PackageError::BadPath {
            path: path.to_owned(),
            reason: "it would leave the directory".to_owned(),
        }
        .into());
    }
    Ok(root.join(relative))
}

/// Checks the part's digest again and writes it as a new file under `root`.
fn write_part(root: &Path, part: &Part<'_>, executable: bool) -> Result<(), UnpackError> {
    part.check()?;
    let target = inside(root, &part.entry.path)?;
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(|source| UnpackError::Io {
            action: "create the directory",
            path: parent.to_owned(),
            source,
        })?;
        // The directories were made just now, in a directory that was empty: still, make sure
        // nothing resolves outside it.
        let resolved = parent.canonicalize().map_err(|source| UnpackError::Io {
            action: "resolve the directory",
            path: parent.to_owned(),
            source,
        })?;
        if !resolved.starts_with(root) {
            return Err(PackageError::BadPath {
                path: part.entry.path.clone(),
                reason: format!(
                    "it resolves to {}, outside the directory",
                    resolved.display()
                ),
            }
            .into());
        }
    }
    let io = |action, source| UnpackError::Io {
        action,
        path: target.clone(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if executable {
            EXECUTABLE_MODE
        } else {
            FILE_MODE
        });
    }
    let mut file = options.open(&target).map_err(|e| io("create", e))?;
    file.write_all(&part.data).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("write", e))?;
    #[cfg(unix)]
    {
        // The umask may have taken bits off the mode asked for at creation.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = if executable {
            EXECUTABLE_MODE
        } else {
            FILE_MODE
        };
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))
            .map_err(|e| io("set the mode of", e))?;
    }
    #[cfg(not(unix))]
    let _ = executable;
    Ok(())
}
