//! How a host runs a plugin's workers (`[run]`): how many instances, what each process may
//! consume, how long it gets to stop, and when its restarts count as a crash loop.

use std::num::NonZeroU32;
use std::ops::RangeInclusive;
use std::time::Duration;

use toml::Table;

use super::error::{ProblemKind, Problems, Reported};
use super::limits::Size;
use super::read::Field;

/// One mebibyte.
const MIB: u64 = 1024 * 1024;

/// The `min_instances` and `max_instances` a manifest may ask for.
pub const INSTANCES_RANGE: RangeInclusive<u32> = 1..=64;
/// The `memory` a manifest may ask for per worker process: 16 MiB to 64 GiB.
pub const MEMORY_RANGE: RangeInclusive<u64> = 16 * MIB..=64 * 1024 * MIB;
/// The `cpu_millicores` a manifest may ask for: a hundredth of a core to 256 cores.
pub const CPU_MILLICORES_RANGE: RangeInclusive<u32> = 10..=256_000;
/// The `max_processes` a manifest may ask for (processes and threads).
pub const MAX_PROCESSES_RANGE: RangeInclusive<u32> = 8..=32_768;
/// The `open_files` a manifest may ask for.
pub const OPEN_FILES_RANGE: RangeInclusive<u32> = 64..=1_048_576;
/// The `stop_grace` a manifest may ask for.
pub const STOP_GRACE_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(300);
/// The `crash_loop_ends` a manifest may ask for.
pub const CRASH_LOOP_ENDS_RANGE: RangeInclusive<u32> = 2..=100;
/// The `crash_loop_window` a manifest may ask for.
pub const CRASH_LOOP_WINDOW_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(10)..=Duration::from_secs(24 * 3600);

/// The `heartbeat_timeout` a manifest may ask for: at least a few of the SDK's 5 s heartbeats.
pub const HEARTBEAT_TIMEOUT_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(5)..=Duration::from_secs(600);

/// The `health_grace` a manifest may ask for.
pub const HEALTH_GRACE_RANGE: RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(600);

/// How a host runs a plugin's workers: part of what an operator approves. The defaults fit a
/// small event handler; a manifest raises what its workers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunPolicy {
    /// The fewest worker instances run, all hosts together (1 to 64; default 1).
    pub min_instances: NonZeroU32,
    /// The most worker instances run, all hosts together (`min_instances` to 64; default
    /// `min_instances`). Between the two, one instance runs per live host.
    pub max_instances: NonZeroU32,
    /// The memory one worker process may use, in bytes (16 MiB to 64 GiB; default 256 MiB).
    pub memory_bytes: u64,
    /// The CPU time one worker process may use, in thousandths of a core (10 to 256 000;
    /// default 1000, one core).
    pub cpu_millicores: NonZeroU32,
    /// The processes and threads one worker may have at once (8 to 32 768; default 256).
    pub max_processes: NonZeroU32,
    /// The file descriptors one worker process may have open (64 to 1 048 576; default 1024).
    pub open_files: NonZeroU32,
    /// How long a worker gets between SIGTERM and SIGKILL (1 s to 5 min; default 10 s).
    pub stop_grace: Duration,
    /// How many ends of one instance within `crash_loop_window` make a crash loop, which marks
    /// the plugin failed (2 to 100; default 5).
    pub crash_loop_ends: NonZeroU32,
    /// The window `crash_loop_ends` are counted in (10 s to 24 h; default 5 min).
    pub crash_loop_window: Duration,
    /// A worker that has sent heartbeats (SDK workers send one every 5 s) and then sends none
    /// for this long is taken as hung, killed and started again (5 s to 10 min; default
    /// 30 s). A worker that never sent one is not checked.
    pub heartbeat_timeout: Duration,
    /// How long an instance of a new version must run without ending (and, when the version
    /// before sent heartbeats, have sent one) before it replaces an instance of the version
    /// before during an upgrade (1 s to 10 min; default 10 s). One that ends first fails the
    /// upgrade, and the host rolls the plugin back.
    pub health_grace: Duration,
}

impl Default for RunPolicy {
    fn default() -> Self {
        let one = NonZeroU32::MIN;
        Self {
            min_instances: one,
            max_instances: one,
            memory_bytes: 256 * MIB,
            cpu_millicores: NonZeroU32::new(1000).expect("not 0"),
            max_processes: NonZeroU32::new(256).expect("not 0"),
            open_files: NonZeroU32::new(1024).expect("not 0"),
            stop_grace: Duration::from_secs(10),
            crash_loop_ends: NonZeroU32::new(5).expect("not 0"),
            crash_loop_window: Duration::from_secs(300),
            heartbeat_timeout: Duration::from_secs(30),
            health_grace: Duration::from_secs(10),
        }
    }
}

impl RunPolicy {
    /// How many instances run when `hosts` hosts are live: one per host, within
    /// `min_instances..=max_instances`.
    pub fn instances_for(&self, hosts: usize) -> u32 {
        let hosts = u32::try_from(hosts).unwrap_or(u32::MAX);
        hosts.clamp(self.min_instances.get(), self.max_instances.get())
    }
}

/// The keys of `[run]`.
const RUN_KEYS: &[&str] = &[
    "min_instances",
    "max_instances",
    "memory",
    "cpu_millicores",
    "max_processes",
    "open_files",
    "stop_grace",
    "crash_loop_ends",
    "crash_loop_window",
    "heartbeat_timeout",
    "health_grace",
];

/// `[run]`: each key optional, each missing one at its default (`max_instances`: at
/// `min_instances`).
pub(super) fn read_run(field: &Field<'_>, problems: &mut Problems) -> Result<RunPolicy, Reported> {
    let run = field.section(problems, RUN_KEYS)?;
    let defaults = RunPolicy::default();
    let min_instances = run
        .optional("min_instances")
        .map_or(Ok(defaults.min_instances), |f| {
            f.count_in(problems, INSTANCES_RANGE)
        });
    let max_instances = run
        .optional("max_instances")
        .map(|f| (f.count_in(problems, INSTANCES_RANGE), f));
    let memory_bytes = run
        .optional("memory")
        .map_or(Ok(defaults.memory_bytes), |f| {
            f.bytes_in(problems, MEMORY_RANGE)
        });
    let cpu_millicores = run
        .optional("cpu_millicores")
        .map_or(Ok(defaults.cpu_millicores), |f| {
            f.count_in(problems, CPU_MILLICORES_RANGE)
        });
    let max_processes = run
        .optional("max_processes")
        .map_or(Ok(defaults.max_processes), |f| {
            f.count_in(problems, MAX_PROCESSES_RANGE)
        });
    let open_files = run
        .optional("open_files")
        .map_or(Ok(defaults.open_files), |f| {
            f.count_in(problems, OPEN_FILES_RANGE)
        });
    let stop_grace = run
        .optional("stop_grace")
        .map_or(Ok(defaults.stop_grace), |f| {
            f.duration_in(problems, STOP_GRACE_RANGE)
        });
    let crash_loop_ends = run
        .optional("crash_loop_ends")
        .map_or(Ok(defaults.crash_loop_ends), |f| {
            f.count_in(problems, CRASH_LOOP_ENDS_RANGE)
        });
    let crash_loop_window = run
        .optional("crash_loop_window")
        .map_or(Ok(defaults.crash_loop_window), |f| {
            f.duration_in(problems, CRASH_LOOP_WINDOW_RANGE)
        });
    let heartbeat_timeout = run
        .optional("heartbeat_timeout")
        .map_or(Ok(defaults.heartbeat_timeout), |f| {
            f.duration_in(problems, HEARTBEAT_TIMEOUT_RANGE)
        });
    let health_grace = run
        .optional("health_grace")
        .map_or(Ok(defaults.health_grace), |f| {
            f.duration_in(problems, HEALTH_GRACE_RANGE)
        });
    let min_instances = min_instances?;
    let max_instances = match max_instances {
        None => min_instances,
        Some((max, field)) => {
            let max = max?;
            if max < min_instances {
                return Err(field.report(
                    problems,
                    ProblemKind::Inconsistent,
                    format!("max_instances {max} is below min_instances {min_instances}"),
                ));
            }
            max
        }
    };
    Ok(RunPolicy {
        min_instances,
        max_instances,
        memory_bytes: memory_bytes?,
        cpu_millicores: cpu_millicores?,
        max_processes: max_processes?,
        open_files: open_files?,
        stop_grace: stop_grace?,
        crash_loop_ends: crash_loop_ends?,
        crash_loop_window: crash_loop_window?,
        heartbeat_timeout: heartbeat_timeout?,
        health_grace: health_grace?,
    })
}

/// Always written, defaults included, as `[limits]` is: what an operator approved stays.
pub(super) fn write_run(run: &RunPolicy) -> Table {
    let count = |n: NonZeroU32| toml::Value::from(i64::from(n.get()));
    let duration = |d: Duration| toml::Value::from(humantime::format_duration(d).to_string());
    let mut table = Table::new();
    table.insert("min_instances".into(), count(run.min_instances));
    table.insert("max_instances".into(), count(run.max_instances));
    table.insert("memory".into(), Size(run.memory_bytes).to_string().into());
    table.insert("cpu_millicores".into(), count(run.cpu_millicores));
    table.insert("max_processes".into(), count(run.max_processes));
    table.insert("open_files".into(), count(run.open_files));
    table.insert("stop_grace".into(), duration(run.stop_grace));
    table.insert("crash_loop_ends".into(), count(run.crash_loop_ends));
    table.insert("crash_loop_window".into(), duration(run.crash_loop_window));
    table.insert("heartbeat_timeout".into(), duration(run.heartbeat_timeout));
    table.insert("health_grace".into(), duration(run.health_grace));
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_follow_the_hosts_within_bounds() {
        let policy = RunPolicy {
            min_instances: NonZeroU32::new(2).unwrap(),
            max_instances: NonZeroU32::new(4).unwrap(),
            ..RunPolicy::default()
        };
        assert_eq!(policy.instances_for(0), 2);
        assert_eq!(policy.instances_for(1), 2);
        assert_eq!(policy.instances_for(3), 3);
        assert_eq!(policy.instances_for(9), 4);
    }
}
