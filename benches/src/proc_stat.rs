//! CPU time and resident memory of a process, from Linux's `/proc`.

use std::time::Duration;

/// Linux reports CPU times in `/proc/<pid>/stat` in ticks of `USER_HZ`, which is 100 on
/// every architecture Linux exposes to user space this way (it is part of the ABI).
const TICKS_PER_SECOND: u64 = 100;

/// Where to read: this process or another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// `/proc/self`.
    OwnProcess,
    /// `/proc/<pid>`, e.g. the nats-server child.
    Other(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::OwnProcess => "/proc/self".to_owned(),
            Pid::Other(pid) => format!("/proc/{pid}"),
        }
    }
}

/// User plus system CPU time the process has used so far; `None` off Linux or when the
/// process is gone.
pub fn cpu_time(pid: Pid) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("{}/stat", pid.dir())).ok()?;
    parse_cpu_ticks(&stat).map(|ticks| Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// `utime + stime` from the text of `/proc/<pid>/stat`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses; the fields after its last
    // `)` are fixed: state is field 3, utime field 14, stime field 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// The resident set size (`VmRSS`) in bytes.
pub fn rss_bytes(pid: Pid) -> Option<u64> {
    let status = std::fs::read_to_string(format!("{}/status", pid.dir())).ok()?;
    parse_rss(&status)
}

fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU used by a process between two moments.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: Pid,
    start: Option<Duration>,
}

impl CpuMeter {
    /// Starts measuring `pid`.
    pub fn start(pid: Pid) -> Self {
        Self {
            pid,
            start: cpu_time(pid),
        }
    }

    /// CPU time used since [`CpuMeter::start`] (zero when it cannot be read).
    pub fn used(&self) -> Duration {
        match (self.start, cpu_time(self.pid)) {
            (Some(start), Some(now)) => now.saturating_sub(start),
            _ => Duration::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_past_a_command_with_spaces() {
        let stat = "1234 (my (odd) cmd) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }

    #[test]
    fn reads_rss() {
        let status = "Name:\tx\nVmRSS:\t   2048 kB\nThreads:\t4\n";
        assert_eq!(parse_rss(status), Some(2048 * 1024));
    }

    #[test]
    fn own_process_is_readable_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(cpu_time(Pid::OwnProcess).is_some());
            assert!(rss_bytes(Pid::OwnProcess).unwrap() > 0);
        }
    }
}
