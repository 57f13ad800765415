//! The command that starts a worker confined: through the `switchyard-enter` trampoline,
//! which joins the cage, sets the rlimits and no new privileges on itself and then becomes the
//! worker (`exec`), so that the worker never runs a moment unconfined; in its own process
//! group, in a private working directory, with only the environment it is given.

use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::detect::Mechanism;
use super::enter::{Rlimit, PARENT, PROCS, RLIMIT, USER};
use super::{Cage, ConfineError, Confinement, Limits};

/// How to start one worker process.
#[derive(Debug, Clone)]
pub struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    workdir: PathBuf,
    limits: Limits,
    user: Option<(u32, u32)>,
}

impl Launch {
    /// Starts `program` in `workdir` (made private to the worker: mode 0700), with no
    /// environment but what [`Launch::env`] adds and no limits but [`Launch::limits`].
    pub fn new(program: impl Into<PathBuf>, workdir: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            workdir: workdir.into(),
            limits: Limits::default(),
            user: None,
        }
    }

    /// With these arguments.
    #[must_use]
    pub fn args(mut self, args: impl IntoIterator<Item = impl Into<OsString>>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// With this environment variable (the worker gets no other).
    #[must_use]
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// With these limits.
    #[must_use]
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Runs the worker as this user and group (the trampoline changes to them after joining
    /// its cgroups; needs a host running as root).
    #[must_use]
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// The command, ready to spawn: `enter` (the `switchyard-enter` trampoline) joins `cage`,
    /// applies the rest, and becomes the worker.
    ///
    /// # Errors
    /// [`ConfineError::WorkingDirectory`] when the working directory cannot be made private.
    pub fn command(
        &self,
        confinement: &Confinement,
        cage: &Cage,
        enter: &Path,
    ) -> Result<tokio::process::Command, ConfineError> {
        prepare_workdir(&self.workdir)?;
        let mut command = tokio::process::Command::new(enter);
        for file in cage.procs_files() {
            command.arg(PROCS).arg(file);
        }
        for rlimit in rlimits(&self.limits, confinement.mechanism()) {
            command.arg(RLIMIT).arg(rlimit.to_string());
        }
        if let Some((uid, gid)) = self.user {
            command.arg(USER).arg(format!("{uid}:{gid}"));
        }
        // The worker dies with the host: a host killed hard leaves nothing running.
        command.arg(PARENT).arg(std::process::id().to_string());
        command
            .arg("--")
            .arg(&self.program)
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.workdir)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        Ok(command)
    }
}

/// The resource limits the worker gets: open files always; memory and processes when no
/// cgroup limits them.
fn rlimits(limits: &Limits, mechanism: &Mechanism) -> Vec<Rlimit> {
    let mut set = Vec::new();
    if let Some(files) = limits.open_files {
        set.push(Rlimit::OpenFiles(files));
    }
    if *mechanism == Mechanism::Rlimits {
        if let Some(bytes) = limits.memory_bytes {
            set.push(Rlimit::AddressSpace(bytes));
        }
        if let Some(processes) = limits.max_processes {
            set.push(Rlimit::Processes(u64::from(processes)));
        }
    }
    set
}

/// Makes the working directory if missing and makes it the worker's alone (mode 0700).
fn prepare_workdir(dir: &Path) -> Result<(), ConfineError> {
    let failed = |source| ConfineError::WorkingDirectory {
        path: dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(failed)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)
}
