//! Confining one worker process: its limits, the mechanism that enforces them on this machine,
//! and what became of the process.
//!
//! [`Confinement::detect`] finds the strongest mechanism the machine offers: cgroup v2 when
//! its hierarchy has the `memory`, `cpu` and `pids` controllers for us, else the cgroup v1
//! `memory`, `cpu` and `pids` hierarchies where they are mounted and writable, else rlimits
//! alone (documented as the last fallback: no CPU share, memory as address space). A
//! [`Cage`] is one instance's cgroup; [`Launch::command`] builds the command that starts the
//! worker inside it, through the `switchyard-enter` trampoline ([`enter`]), which confines
//! itself (cage, rlimits, no new privileges) and then becomes the worker.

mod cgroup;
mod command;
mod detect;
mod enter;

use std::fmt;
use std::path::PathBuf;

pub use cgroup::{Cage, Meter, Usage};
pub use command::Launch;
pub use detect::Mechanism;
pub use enter::{enter, ENTER_FAILED};

/// What one worker process may consume. `None`: not limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Memory, in bytes (with cgroups: resident memory and swap; with rlimits: address space).
    pub memory_bytes: Option<u64>,
    /// CPU time, in thousandths of one core (`500`: half a core), enforced per 100 ms period.
    pub cpu_millicores: Option<u32>,
    /// Processes and threads it may have at once.
    pub max_processes: Option<u32>,
    /// Open file descriptors (an rlimit in every mechanism).
    pub open_files: Option<u64>,
}

/// Why a worker could not be confined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfineError {
    /// A cgroup file or directory could not be used.
    #[error("cannot {action} {}: {source}", path.display())]
    Cgroup {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The working directory could not be prepared.
    #[error("cannot prepare the working directory {}: {source}", path.display())]
    WorkingDirectory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A name that cannot be a cgroup's.
    #[error("bad instance name {0:?}: use letters, digits, `-`, `_` and `.`")]
    BadName(String),
}

/// How a confined process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Whether the kernel killed it for going over its memory limit.
    pub out_of_memory: bool,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.out_of_memory {
            return f.write_str("killed: over its memory limit");
        }
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}"),
            (None, Some(signal)) => write!(f, "killed by signal {signal}"),
            (None, None) => f.write_str("ended"),
        }
    }
}

/// The mechanism in force on this machine, and where the host's cgroups go.
#[derive(Debug, Clone)]
pub struct Confinement {
    mechanism: Mechanism,
    /// The host's own name, so that several hosts on one machine keep apart.
    host: String,
}

impl Confinement {
    /// Finds the strongest mechanism this machine offers, for the host named `host` (a name
    /// of letters, digits, `-`, `_` and `.`).
    ///
    /// # Errors
    /// [`ConfineError::BadName`] for a name that cannot be a directory's.
    pub fn detect(host: &str) -> Result<Self, ConfineError> {
        check_name(host)?;
        Ok(Self {
            mechanism: Mechanism::detect(),
            host: host.to_owned(),
        })
    }

    /// Confinement by rlimits alone, whatever the machine offers (for tests of the fallback).
    ///
    /// # Errors
    /// As [`Confinement::detect`].
    pub fn rlimits_only(host: &str) -> Result<Self, ConfineError> {
        check_name(host)?;
        Ok(Self {
            mechanism: Mechanism::Rlimits,
            host: host.to_owned(),
        })
    }

    /// The mechanism in force.
    pub fn mechanism(&self) -> &Mechanism {
        &self.mechanism
    }

    /// Removes the host's own cgroup directories once its cages are gone (the kernel keeps a
    /// cgroup that still holds one). Missing directories are fine.
    pub fn remove_host_cgroups(&self) {
        let dirs: Vec<std::path::PathBuf> = match &self.mechanism {
            Mechanism::Rlimits => Vec::new(),
            Mechanism::CgroupV1 { memory, cpu, pids } => {
                vec![memory.clone(), cpu.clone(), pids.clone()]
            }
            Mechanism::CgroupV2 { base } => vec![base.clone()],
        };
        for dir in dirs {
            let _ = std::fs::remove_dir(dir.join("switchyard").join(&self.host));
        }
    }

    /// Kills and removes what an earlier run of this host left behind (a host killed hard
    /// cannot stop its workers; they stay in their cages until a host of the same name starts
    /// again). Returns the instances removed.
    pub async fn remove_leftovers(&self) -> Vec<String> {
        let first = match &self.mechanism {
            Mechanism::Rlimits => return Vec::new(),
            Mechanism::CgroupV1 { memory, .. } => memory.clone(),
            Mechanism::CgroupV2 { base } => base.clone(),
        };
        let Ok(entries) = std::fs::read_dir(first.join("switchyard").join(&self.host)) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for entry in entries.flatten() {
            let Some(instance) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !entry.path().is_dir() || check_name(&instance).is_err() {
                continue;
            }
            let cage = Cage::existing(&self.mechanism, &self.host, &instance);
            match cage.remove().await {
                Ok(()) => removed.push(instance),
                Err(error) => tracing::warn!(%instance, %error, "cannot remove a leftover cgroup"),
            }
        }
        removed
    }

    /// Makes the cgroup of the instance `instance` with `limits` (nothing with rlimits).
    ///
    /// # Errors
    /// [`ConfineError`] when a cgroup cannot be made or limited.
    pub fn cage(&self, instance: &str, limits: &Limits) -> Result<Cage, ConfineError> {
        check_name(instance)?;
        Cage::create(&self.mechanism, &self.host, instance, limits)
    }
}

impl Cage {
    /// How a process of this cage ended, given its exit status and the cage's count of
    /// out-of-memory kills before it started ([`Cage::out_of_memory_kills`]).
    pub fn ended(&self, status: std::process::ExitStatus, kills_before: u64) -> Ended {
        use std::os::unix::process::ExitStatusExt;
        let signal = status.signal();
        Ended {
            code: status.code(),
            signal,
            out_of_memory: signal == Some(SIGKILL) && self.out_of_memory_kills() > kills_before,
        }
    }
}

/// The signal the kernel's out-of-memory killer sends.
const SIGKILL: i32 = 9;

/// Names become directory names: no separators, no dots alone, nothing odd.
fn check_name(name: &str) -> Result<(), ConfineError> {
    let fine = !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if fine {
        Ok(())
    } else {
        Err(ConfineError::BadName(name.to_owned()))
    }
}
