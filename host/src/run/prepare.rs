//! Making an instance ready to start: its package fetched from the store, checked against the
//! digest it was installed with, verified again against the trusted keys, and unpacked into
//! the instance's own directory, which becomes its working directory.

use std::path::{Path, PathBuf};

use switchyard_control::package::{unpack, Allow, Allowances, PackageStore, TrustedKeys, Unpacked};
use switchyard_schemas::semver::Version;
use switchyard_schemas::PluginId;

use super::desired::Wanted;

/// Where programs named by a package's command (such as `python3`) are looked for, and the
/// `PATH` its worker gets.
pub(crate) const WORKER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Why an instance could not be prepared: said in its report, and it is not started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrepareError {
    /// The store could not be read.
    #[error("cannot fetch the package {package}: {reason}")]
    Fetch { package: String, reason: String },
    /// The store has no such package.
    #[error("the package {package} is not in the package store")]
    Missing { package: String },
    /// The package is not the one installed.
    #[error(
        "the package {package} in the store (sha256 {found}) is not the one installed \
         (sha256 {installed}); not run"
    )]
    Replaced {
        package: String,
        found: String,
        installed: String,
    },
    /// It does not verify, or cannot be unpacked.
    #[error("the package {package} cannot be run: {reason}")]
    Unpack { package: String, reason: String },
    /// The command's program is nowhere on the worker's path.
    #[error(
        "the package's command runs `{program}`, which is neither a file of the package, an \
         absolute path to a program, nor a program in {WORKER_PATH}"
    )]
    NoProgram { program: String },
}

/// What an instance is started with.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    /// The program.
    pub(crate) program: PathBuf,
    /// Its arguments.
    pub(crate) args: Vec<String>,
    /// Its working directory, holding the unpacked package.
    pub(crate) dir: PathBuf,
}

/// Fetches, checks and unpacks `wanted`'s package for `plugin` into `dir` (emptied first).
pub(crate) async fn prepare(
    store: &PackageStore,
    trust: &TrustedKeys,
    plugin: &PluginId,
    wanted: &Wanted,
    dir: &Path,
) -> Result<Prepared, PrepareError> {
    let package_name = wanted.package.clone();
    let version: Version = wanted.version.parse().map_err(|e| PrepareError::Fetch {
        package: package_name.clone(),
        reason: format!("bad version: {e}"),
    })?;
    let package = store
        .get(plugin, &version)
        .await
        .map_err(|e| PrepareError::Fetch {
            package: package_name.clone(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| PrepareError::Missing {
            package: package_name.clone(),
        })?;
    if let Some(installed) = &wanted.sha256 {
        let found = package.sha256();
        if &found != installed {
            return Err(PrepareError::Replaced {
                package: package_name,
                found,
                installed: installed.clone(),
            });
        }
    }
    let mut allow = Allowances::none();
    match wanted.allowed.as_deref() {
        Some("unsigned") => allow = allow.allow(plugin.clone(), Allow::Unsigned),
        Some("untrusted_key") => allow = allow.allow(plugin.clone(), Allow::Untrusted),
        _ => {}
    }
    let unpack_failed = |reason: String| PrepareError::Unpack {
        package: package_name.clone(),
        reason,
    };
    let dir = dir.to_owned();
    let trust = trust.clone();
    let target = switchyard_control::package::host_target();
    let unpacked: Unpacked = tokio::task::spawn_blocking(move || {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("cannot empty {}: {e}", dir.display()))?;
        }
        unpack(&package, &trust, &allow, &dir, &target).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| unpack_failed(e.to_string()))?
    .map_err(unpack_failed)?;
    let mut words = unpacked.command.iter();
    let first = words.next().cloned().unwrap_or_default();
    // A command's first word is the program when the package holds a file of that name;
    // otherwise a program of the machine's (`sh`, `python3`).
    let program = match &unpacked.executable {
        // Relative to its working directory: a worker of another user may not be able to
        // reach the absolute path (a parent directory private to the host's user).
        Some(path) if path.is_file() => match path.strip_prefix(&unpacked.dir) {
            Ok(inside) => PathBuf::from(".").join(inside),
            Err(_) => path.clone(),
        },
        _ => find_program(&first).ok_or(PrepareError::NoProgram { program: first })?,
    };
    Ok(Prepared {
        program,
        args: words.cloned().collect(),
        dir: unpacked.dir,
    })
}

/// `program` as a path: itself when it is an absolute path to a file, else the first match on
/// [`WORKER_PATH`]. A relative path that is not a file of the package names nothing.
fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program)).filter(|p| p.is_absolute() && p.is_file());
    }
    WORKER_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
}
