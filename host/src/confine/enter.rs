//! The trampoline a worker starts through (`switchyard-enter`): it confines itself, then
//! becomes the worker, so that nothing of the worker ever runs unconfined.
//!
//! ```text
//! switchyard-enter [--procs <cgroup.procs file>]... [--rlimit <name>=<n>]...
//!                  [--user <uid>:<gid>] [--parent <pid>] -- <program> [args]...
//! ```
//!
//! It writes its own process id into each `cgroup.procs` file (joining the cage), sets each
//! rlimit (soft and hard), becomes the user `--user` (no supplementary groups; an
//! unprivileged user keeps no capability, so it can neither leave its cgroup nor raise its
//! limits), asks to be killed when its parent `--parent` (the host) dies, sets no new
//! privileges, and `exec`s the program with the environment and working directory it was
//! given. When any step fails it exits with [`ENTER_FAILED`] and says why on stderr; the
//! worker is not started.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The option naming a `cgroup.procs` file to join.
pub(super) const PROCS: &str = "--procs";
/// The option setting an rlimit.
pub(super) const RLIMIT: &str = "--rlimit";
/// The option naming the user (`uid:gid`) the worker runs as.
pub(super) const USER: &str = "--user";
/// The option naming the host's process id: the worker is killed when it dies.
pub(super) const PARENT: &str = "--parent";

/// The exit code of a trampoline that could not confine itself or start the worker.
pub const ENTER_FAILED: i32 = 126;

/// One resource limit the worker runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rlimit {
    /// `RLIMIT_NOFILE`.
    OpenFiles(u64),
    /// `RLIMIT_AS`.
    AddressSpace(u64),
    /// `RLIMIT_NPROC`.
    Processes(u64),
}

impl fmt::Display for Rlimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OpenFiles(n) => write!(f, "nofile={n}"),
            Self::AddressSpace(n) => write!(f, "as={n}"),
            Self::Processes(n) => write!(f, "nproc={n}"),
        }
    }
}

impl std::str::FromStr for Rlimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` is not name=value"))?;
        let value: u64 = value
            .parse()
            .map_err(|_| format!("`{value}` is not a whole number"))?;
        match name {
            "nofile" => Ok(Self::OpenFiles(value)),
            "as" => Ok(Self::AddressSpace(value)),
            "nproc" => Ok(Self::Processes(value)),
            _ => Err(format!(
                "unknown rlimit `{name}`; expected nofile, as or nproc"
            )),
        }
    }
}

/// What the trampoline was asked to do.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    procs: Vec<PathBuf>,
    rlimits: Vec<Rlimit>,
    user: Option<(u32, u32)>,
    parent: Option<i32>,
    program: Option<OsString>,
    args: Vec<OsString>,
}

fn plan(args: impl IntoIterator<Item = OsString>) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some(PROCS) => plan
                .procs
                .push(args.next().ok_or("--procs needs a file")?.into()),
            Some(RLIMIT) => {
                let value = args.next().ok_or("--rlimit needs name=value")?;
                let value = value.to_str().ok_or("--rlimit is not text")?;
                plan.rlimits.push(value.parse()?);
            }
            Some(USER) => {
                let value = args.next().ok_or("--user needs uid:gid")?;
                let value = value.to_str().ok_or("--user is not text")?;
                let (uid, gid) = value
                    .split_once(':')
                    .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
                    .ok_or_else(|| format!("--user `{value}` is not uid:gid"))?;
                plan.user = Some((uid, gid));
            }
            Some(PARENT) => {
                let value = args.next().ok_or("--parent needs a process id")?;
                let value = value.to_str().and_then(|v| v.parse().ok());
                plan.parent = Some(value.ok_or("--parent is not a process id")?);
            }
            Some("--") => {
                plan.program = Some(args.next().ok_or("no program after --")?);
                plan.args = args.collect();
                return Ok(plan);
            }
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    Err("no `-- <program>`".to_owned())
}

/// Confines this process as `args` say and becomes the program; returns only on failure,
/// with why.
pub fn enter(args: impl IntoIterator<Item = OsString>) -> String {
    let plan = match plan(args) {
        Ok(plan) => plan,
        Err(error) => return error,
    };
    let pid = std::process::id().to_string();
    for file in &plan.procs {
        if let Err(error) = std::fs::write(file, &pid) {
            return format!("cannot join the cgroup {}: {error}", file.display());
        }
    }
    for rlimit in &plan.rlimits {
        let (resource, value) = match *rlimit {
            Rlimit::OpenFiles(n) => (rustix::process::Resource::Nofile, n),
            Rlimit::AddressSpace(n) => (rustix::process::Resource::As, n),
            Rlimit::Processes(n) => (rustix::process::Resource::Nproc, n),
        };
        let limit = rustix::process::Rlimit {
            current: Some(value),
            maximum: Some(value),
        };
        if let Err(error) = rustix::process::setrlimit(resource, limit) {
            return format!("cannot set the rlimit {rlimit}: {error}");
        }
    }
    if let Some((uid, gid)) = plan.user {
        // One thread here (the trampoline starts no other), so the thread's ids are the
        // process's. Groups first: after the uid, changing them is no longer allowed.
        if let Err(error) = rustix::thread::set_thread_groups(&[]) {
            return format!("cannot drop the supplementary groups: {error}");
        }
        if let Err(error) = rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(gid)) {
            return format!("cannot become group {gid}: {error}");
        }
        if let Err(error) = rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(uid)) {
            return format!("cannot become user {uid}: {error}");
        }
    }
    if let Some(parent) = plan.parent {
        // After the user change, which clears it.
        if let Err(error) =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        {
            return format!("cannot ask to end with the host: {error}");
        }
        // The host may have died before the request: then it is not our parent any more.
        if rustix::process::getppid().map(rustix::process::Pid::as_raw_nonzero)
            != rustix::process::Pid::from_raw(parent).map(rustix::process::Pid::as_raw_nonzero)
        {
            return "the host ended before the worker started".to_owned();
        }
    }
    if let Err(error) = rustix::thread::set_no_new_privs(true) {
        return format!("cannot set no new privileges: {error}");
    }
    let program = plan.program.expect("a plan has a program");
    let error = std::process::Command::new(&program).args(&plan.args).exec();
    format!("cannot start {}: {error}", PathBuf::from(program).display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &[&str]) -> Vec<OsString> {
        text.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_plan_reads_its_options_and_the_program() {
        let plan = plan(args(&[
            "--procs",
            "/a",
            "--rlimit",
            "nofile=64",
            "--",
            "worker",
            "--flag",
        ]))
        .unwrap();
        assert_eq!(plan.procs, [PathBuf::from("/a")]);
        assert_eq!(plan.rlimits, [Rlimit::OpenFiles(64)]);
        assert_eq!(plan.program, Some("worker".into()));
        assert_eq!(plan.args, args(&["--flag"]));
        let plan = plan_of(&["--user", "1000:1001", "--parent", "42", "--", "w"]);
        assert_eq!(plan.user, Some((1000, 1001)));
        assert_eq!(plan.parent, Some(42));
    }

    fn plan_of(text: &[&str]) -> Plan {
        plan(args(text)).unwrap()
    }

    #[test]
    fn bad_plans_say_why() {
        assert!(plan(args(&["--rlimit", "cpu=1", "--", "w"]))
            .unwrap_err()
            .contains("cpu"));
        assert!(plan(args(&["--procs"]))
            .unwrap_err()
            .contains("needs a file"));
        assert!(plan(args(&["worker"])).unwrap_err().contains("unexpected"));
        assert!(plan(args(&["--"])).unwrap_err().contains("no program"));
        assert!(plan(args(&["--user", "root", "--", "w"]))
            .unwrap_err()
            .contains("uid:gid"));
        assert!(plan(args(&[])).unwrap_err().contains("no `--"));
        for rlimit in [
            Rlimit::OpenFiles(1),
            Rlimit::AddressSpace(2),
            Rlimit::Processes(3),
        ] {
            assert_eq!(rlimit.to_string().parse::<Rlimit>(), Ok(rlimit));
        }
    }
}
