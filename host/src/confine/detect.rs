//! Which confinement mechanism this machine offers, read from `/proc/self/mountinfo` and
//! `/proc/self/cgroup`.

use std::fmt;
use std::path::{Path, PathBuf};

/// The controllers a worker's limits need.
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// How worker processes are confined on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mechanism {
    /// The unified hierarchy, with `memory`, `cpu` and `pids` delegated to the host's cgroup
    /// (`base`).
    CgroupV2 {
        /// The host process's own cgroup, under which the workers' go.
        base: PathBuf,
    },
    /// The v1 hierarchies of `memory`, `cpu` and `pids`, each at the host process's own cgroup.
    CgroupV1 {
        /// The host's cgroup in the `memory` hierarchy.
        memory: PathBuf,
        /// The host's cgroup in the `cpu` hierarchy.
        cpu: PathBuf,
        /// The host's cgroup in the `pids` hierarchy.
        pids: PathBuf,
    },
    /// No usable cgroup: rlimits only. Memory is limited as address space (`RLIMIT_AS`),
    /// processes per user (`RLIMIT_NPROC`), and CPU share not at all.
    Rlimits,
}

impl Mechanism {
    /// The strongest mechanism available: v2, else v1, else rlimits.
    pub fn detect() -> Self {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = mounts(&mountinfo);
        if let Some(base) = v2_base(&mounts, &membership) {
            return Self::CgroupV2 { base };
        }
        match v1_dirs(&mounts, &membership) {
            Some([memory, cpu, pids]) => Self::CgroupV1 { memory, cpu, pids },
            None => Self::Rlimits,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CgroupV2 { base } => write!(
                f,
                "cgroup v2 (memory, cpu, pids) under {}; rlimits for open files",
                base.display()
            ),
            Self::CgroupV1 { memory, .. } => write!(
                f,
                "cgroup v1 (memory, cpu, pids; memory under {}); rlimits for open files",
                memory.display()
            ),
            Self::Rlimits => f.write_str(
                "rlimits only (no usable cgroup): memory as address space, processes per user, open files; CPU share is NOT limited",
            ),
        }
    }
}

/// A mounted filesystem: its mount point, type and super options.
#[derive(Debug)]
struct Mount<'a> {
    point: &'a str,
    fstype: &'a str,
    options: &'a str,
}

fn mounts(mountinfo: &str) -> Vec<Mount<'_>> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let fstype = right.next()?;
            let _source = right.next()?;
            let options = right.next().unwrap_or("");
            Some(Mount {
                point,
                fstype,
                options,
            })
        })
        .collect()
}

/// Our cgroup in the v2 hierarchy, if it offers every controller we need and lets us hand
/// them to the cgroups we make.
fn v2_base(mounts: &[Mount<'_>], membership: &str) -> Option<PathBuf> {
    let mount = mounts.iter().find(|m| m.fstype == "cgroup2")?;
    let path = membership
        .lines()
        .find_map(|line| line.strip_prefix("0::"))?;
    let base = Path::new(mount.point).join(path.trim_start_matches('/'));
    let available = std::fs::read_to_string(base.join("cgroup.controllers")).ok()?;
    let available: Vec<&str> = available.split_whitespace().collect();
    if !CONTROLLERS.iter().all(|c| available.contains(c)) {
        return None;
    }
    // The controllers must reach the children we make: enabled in our subtree, which the
    // kernel refuses while this cgroup holds processes (unless it is the root).
    let enable = CONTROLLERS.map(|c| format!("+{c}")).join(" ");
    std::fs::write(base.join("cgroup.subtree_control"), enable).ok()?;
    writable(&base).then_some(base)
}

/// Our cgroup in each v1 hierarchy of `memory`, `cpu` and `pids`, if each is mounted and
/// writable.
fn v1_dirs(mounts: &[Mount<'_>], membership: &str) -> Option<[PathBuf; 3]> {
    let dir = |controller: &str| -> Option<PathBuf> {
        let mount = mounts.iter().find(|m| {
            m.fstype == "cgroup" && m.options.split(',').any(|option| option == controller)
        })?;
        let path = membership.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then_some(path)
        })?;
        let dir = Path::new(mount.point).join(path.trim_start_matches('/'));
        writable(&dir).then_some(dir)
    };
    Some([dir("memory")?, dir("cpu")?, dir("pids")?])
}

fn writable(dir: &Path) -> bool {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mounts_are_read_with_their_type_and_options() {
        let mounts = mounts(MOUNTINFO);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[1].point, "/sys/fs/cgroup/cpu");
        assert_eq!(mounts[1].fstype, "cgroup");
        assert_eq!(mounts[1].options, "rw,cpu");
        assert_eq!(mounts[4].fstype, "cgroup2");
    }

    #[test]
    fn odd_lines_are_skipped() {
        assert!(mounts("garbage\n1 2 3\n - \n").is_empty());
    }
}
