//! One instance's cgroup: made with its limits, joined by the worker before `exec`, read for
//! usage and out-of-memory kills, removed when the worker is gone.

use std::path::{Path, PathBuf};

use super::detect::Mechanism;
use super::{ConfineError, Limits};

/// The CPU period the quota is enforced over, in microseconds.
const CPU_PERIOD_MICROS: u64 = 100_000;

/// What an instance consumes now, as its cgroup counts it. `None`: not counted here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Memory in use, in bytes.
    pub memory_bytes: Option<u64>,
    /// Processes and threads.
    pub processes: Option<u64>,
    /// CPU time used, in microseconds (cgroup v2).
    pub cpu_micros: Option<u64>,
    /// Periods in which the CPU quota stopped it.
    pub cpu_throttled_periods: Option<u64>,
}

/// One instance's cgroup (one directory per v1 hierarchy, or one in v2), or nothing when
/// confinement is by rlimits alone.
#[derive(Debug)]
pub struct Cage {
    version: Version,
    /// The directories made, one per hierarchy.
    dirs: Vec<PathBuf>,
}

/// Reads what a cage's processes consume ([`Cage::meter`]); reads nothing once the cage is
/// removed.
#[derive(Debug, Clone)]
pub struct Meter {
    version: Version,
    dirs: Vec<PathBuf>,
}

impl Meter {
    /// What the cage's processes consume now. With cgroup v1 (no `cpuacct` hierarchy used),
    /// CPU time is the sum over the processes in the cage now (`/proc/<pid>/stat`): the time
    /// of children that already ended is not counted.
    pub fn usage(&self) -> Usage {
        match self.version {
            Version::None => Usage::default(),
            Version::V1 => Usage {
                memory_bytes: read_number(&self.dirs[0].join("memory.usage_in_bytes")),
                processes: read_number(&self.dirs[2].join("pids.current")),
                cpu_micros: processes_cpu_micros(&self.dirs[0].join("cgroup.procs")),
                cpu_throttled_periods: read_key(&self.dirs[1].join("cpu.stat"), "nr_throttled"),
            },
            Version::V2 => Usage {
                memory_bytes: read_number(&self.dirs[0].join("memory.current")),
                processes: read_number(&self.dirs[0].join("pids.current")),
                cpu_micros: read_key(&self.dirs[0].join("cpu.stat"), "usage_usec"),
                cpu_throttled_periods: read_key(&self.dirs[0].join("cpu.stat"), "nr_throttled"),
            },
        }
    }
}

/// The CPU time (user and system) of the processes listed in `procs`, in microseconds.
fn processes_cpu_micros(procs: &Path) -> Option<u64> {
    let pids = std::fs::read_to_string(procs).ok()?;
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let total_ticks: u64 = pids
        .lines()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok())
        .filter_map(|stat| {
            // The fields after the command (which may hold spaces) in parentheses; utime and
            // stime are the 14th and 15th fields of the line, the 12th and 13th after it.
            let after = stat.rsplit_once(')')?.1;
            let mut fields = after.split_whitespace().skip(11);
            let user: u64 = fields.next()?.parse().ok()?;
            let system: u64 = fields.next()?.parse().ok()?;
            Some(user + system)
        })
        .sum();
    Some(total_ticks.saturating_mul(1_000_000) / ticks)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
    None,
}

impl Cage {
    /// The cage `instance` of `host` as it exists (made by an earlier run), without changing
    /// it: to be removed.
    pub(super) fn existing(mechanism: &Mechanism, host: &str, instance: &str) -> Self {
        let group = Path::new("switchyard").join(host).join(instance);
        match mechanism {
            Mechanism::Rlimits => Self {
                version: Version::None,
                dirs: Vec::new(),
            },
            Mechanism::CgroupV1 { memory, cpu, pids } => Self {
                version: Version::V1,
                dirs: vec![memory.join(&group), cpu.join(&group), pids.join(&group)],
            },
            Mechanism::CgroupV2 { base } => Self {
                version: Version::V2,
                dirs: vec![base.join(&group)],
            },
        }
    }

    pub(super) fn create(
        mechanism: &Mechanism,
        host: &str,
        instance: &str,
        limits: &Limits,
    ) -> Result<Self, ConfineError> {
        let group = Path::new("switchyard").join(host).join(instance);
        match mechanism {
            Mechanism::Rlimits => Ok(Self {
                version: Version::None,
                dirs: Vec::new(),
            }),
            Mechanism::CgroupV1 { memory, cpu, pids } => {
                let cage = Self {
                    version: Version::V1,
                    dirs: vec![memory.join(&group), cpu.join(&group), pids.join(&group)],
                };
                for dir in &cage.dirs {
                    make_dir(dir)?;
                }
                cage.limit_v1(limits)?;
                Ok(cage)
            }
            Mechanism::CgroupV2 { base } => {
                // Every level between the base and the instance hands the controllers on.
                let mut dir = base.clone();
                for level in [Path::new("switchyard"), Path::new(host)] {
                    dir = dir.join(level);
                    make_dir(&dir)?;
                    write(&dir.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
                }
                let cage = Self {
                    version: Version::V2,
                    dirs: vec![base.join(&group)],
                };
                make_dir(&cage.dirs[0])?;
                cage.limit_v2(limits)?;
                Ok(cage)
            }
        }
    }

    fn limit_v1(&self, limits: &Limits) -> Result<(), ConfineError> {
        let [memory, cpu, pids] = [&self.dirs[0], &self.dirs[1], &self.dirs[2]];
        if let Some(bytes) = limits.memory_bytes {
            write(&memory.join("memory.limit_in_bytes"), &bytes.to_string())?;
            // With swap, the limit on memory alone only moves the excess to swap.
            let with_swap = memory.join("memory.memsw.limit_in_bytes");
            if with_swap.exists() {
                write(&with_swap, &bytes.to_string())?;
            }
        }
        if let Some(millicores) = limits.cpu_millicores {
            write(
                &cpu.join("cpu.cfs_period_us"),
                &CPU_PERIOD_MICROS.to_string(),
            )?;
            write(
                &cpu.join("cpu.cfs_quota_us"),
                &quota(millicores).to_string(),
            )?;
        }
        if let Some(max) = limits.max_processes {
            write(&pids.join("pids.max"), &max.to_string())?;
        }
        Ok(())
    }

    fn limit_v2(&self, limits: &Limits) -> Result<(), ConfineError> {
        let dir = &self.dirs[0];
        if let Some(bytes) = limits.memory_bytes {
            write(&dir.join("memory.max"), &bytes.to_string())?;
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                write(&swap, "0")?;
            }
        }
        if let Some(millicores) = limits.cpu_millicores {
            write(
                &dir.join("cpu.max"),
                &format!("{} {CPU_PERIOD_MICROS}", quota(millicores)),
            )?;
        }
        if let Some(max) = limits.max_processes {
            write(&dir.join("pids.max"), &max.to_string())?;
        }
        Ok(())
    }

    /// The `cgroup.procs` files a process writes its id into to join this cage.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs
            .iter()
            .map(|dir| dir.join("cgroup.procs"))
            .collect()
    }

    /// How many times the kernel killed a process of this cage for going over its memory
    /// limit.
    pub fn out_of_memory_kills(&self) -> u64 {
        let (file, key) = match self.version {
            Version::V1 => (self.dirs[0].join("memory.oom_control"), "oom_kill"),
            Version::V2 => (self.dirs[0].join("memory.events"), "oom_kill"),
            Version::None => return 0,
        };
        read_key(&file, key).unwrap_or(0)
    }

    /// What the cage's processes consume now.
    pub fn usage(&self) -> Usage {
        self.meter().usage()
    }

    /// A reader of this cage's usage that can be kept apart from it (the cage itself goes to
    /// the supervisor).
    pub fn meter(&self) -> Meter {
        Meter {
            version: self.version,
            dirs: self.dirs.clone(),
        }
    }

    /// Kills every process in the cage now (what a worker that ended left behind), without
    /// waiting: before the next worker starts in it.
    pub fn kill_all(&self) {
        for dir in &self.dirs {
            kill_all(dir);
        }
    }

    /// How many times a process of this cage was refused a new process or thread.
    pub fn refused_processes(&self) -> u64 {
        let file = match self.version {
            Version::V1 => self.dirs[2].join("pids.events"),
            Version::V2 => self.dirs[0].join("pids.events"),
            Version::None => return 0,
        };
        read_key(&file, "max").unwrap_or(0)
    }

    /// Removes the cage's directories, first killing whatever is still in them (children
    /// that outlived the worker go with it). The kernel frees a cgroup only once its last
    /// process is gone, so this retries for up to 5 s.
    ///
    /// # Errors
    /// [`ConfineError::Cgroup`] naming the first directory that could not be removed.
    pub async fn remove(self) -> Result<(), ConfineError> {
        let deadline = tokio::time::Instant::now() + REMOVE_WITHIN;
        for dir in &self.dirs {
            loop {
                kill_all(dir);
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => break,
                    Err(error)
                        if error.kind() == std::io::ErrorKind::ResourceBusy
                            && tokio::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    Err(source) => {
                        return Err(ConfineError::Cgroup {
                            action: "remove the cgroup",
                            path: dir.clone(),
                            source,
                        })
                    }
                }
            }
        }
        Ok(())
    }
}

/// How long [`Cage::remove`] waits for the kernel to free a cage.
const REMOVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Sends SIGKILL to every process still in the cgroup `dir`.
fn kill_all(dir: &Path) {
    let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs
        .lines()
        .filter_map(|line| line.trim().parse::<i32>().ok())
    {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// The CFS quota for `millicores` per period, at least the kernel's minimum of 1 ms.
fn quota(millicores: u32) -> u64 {
    (u64::from(millicores) * CPU_PERIOD_MICROS / 1000).max(1000)
}

fn make_dir(dir: &Path) -> Result<(), ConfineError> {
    std::fs::create_dir_all(dir).map_err(|source| ConfineError::Cgroup {
        action: "make the cgroup",
        path: dir.to_owned(),
        source,
    })
}

fn write(file: &Path, value: &str) -> Result<(), ConfineError> {
    std::fs::write(file, value).map_err(|source| ConfineError::Cgroup {
        action: "write",
        path: file.to_owned(),
        source,
    })
}

fn read_number(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The number after `key` in a file of `key value` lines.
fn read_key(file: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(' ')?;
            (name == key).then(|| value.trim().parse().ok()).flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_is_per_period_with_the_kernels_minimum() {
        assert_eq!(quota(1000), 100_000);
        assert_eq!(quota(250), 25_000);
        assert_eq!(quota(1), 1000);
    }
}
