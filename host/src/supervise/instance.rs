//! Running one worker instance under supervision: started confined, its output kept, started
//! again with backoff when it ends, given up on in a crash loop, stopped gracefully.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::output::{OutputLog, Stream};
use super::restarts::{Decision, RestartPolicy, Restarts};
use crate::confine::{Cage, Confinement, Ended, Launch};

/// What happened to a supervised instance, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceEvent {
    /// It started (again), as this process.
    Started {
        /// Its process id.
        pid: u32,
        /// How many times it was started before.
        restarts: usize,
    },
    /// It could not be started (the trampoline or the spawn failed).
    SpawnFailed {
        /// Why.
        reason: String,
    },
    /// It ended on its own (or was killed, e.g. over its memory limit).
    Ended {
        /// How.
        ended: Ended,
        /// How long it had run.
        uptime: Duration,
        /// What comes next: a restart after a pause, or nothing (a crash loop).
        next: Decision,
    },
    /// It ended too often: it is not started again.
    CrashLoop {
        /// How many times it ended within the policy's window.
        ends: u32,
    },
    /// It was stopped on request.
    Stopped {
        /// How it ended (`None` when it was not running).
        ended: Option<Ended>,
    },
}

/// How one instance is supervised.
#[derive(Debug, Clone)]
pub struct Supervision {
    /// How it is started.
    pub launch: Launch,
    /// The `switchyard-enter` trampoline.
    pub enter: PathBuf,
    /// When it is started again.
    pub restarts: RestartPolicy,
    /// How long a stop waits after SIGTERM before SIGKILL.
    pub grace: Duration,
}

/// Runs `supervision` in `cage` until `stop` (or a crash loop), reporting each step to
/// `events` and keeping the output in `output`.
pub async fn supervise(
    supervision: Supervision,
    confinement: Confinement,
    cage: Cage,
    output: OutputLog,
    events: mpsc::UnboundedSender<InstanceEvent>,
    stop: CancellationToken,
) -> Cage {
    let mut restarts = Restarts::new(supervision.restarts);
    loop {
        let kills_before = cage.out_of_memory_kills();
        let started = supervision
            .launch
            .command(&confinement, &cage, &supervision.enter)
            .map_err(|e| e.to_string())
            .and_then(|mut command| {
                command.stdout(Stdio::piped()).stderr(Stdio::piped());
                command.spawn().map_err(|e| e.to_string())
            });
        let mut child = match started {
            Ok(child) => child,
            Err(reason) => {
                let _ = events.send(InstanceEvent::SpawnFailed { reason });
                let _ = events.send(InstanceEvent::Stopped { ended: None });
                return cage;
            }
        };
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(output.clone().follow(Stream::Stdout, stdout));
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(output.clone().follow(Stream::Stderr, stderr));
        }
        let pid = child.id().unwrap_or(0);
        let _ = events.send(InstanceEvent::Started {
            pid,
            restarts: restarts.count(),
        });
        let since = Instant::now();
        let status = tokio::select! {
            status = child.wait() => status,
            () = stop.cancelled() => {
                let ended = terminate(&mut child, pid, supervision.grace)
                    .await
                    .map(|status| cage.ended(status, kills_before));
                let _ = events.send(InstanceEvent::Stopped { ended });
                return cage;
            }
        };
        let ended = match status {
            Ok(status) => cage.ended(status, kills_before),
            Err(_) => Ended {
                code: None,
                signal: None,
                out_of_memory: false,
            },
        };
        // What the worker left behind (children in its process group or its cage) goes with
        // it: a restart must not run beside stale processes that hold its limits.
        kill_group(pid);
        cage.kill_all();
        let uptime = since.elapsed();
        let next = restarts.ended(Instant::now(), uptime);
        let _ = events.send(InstanceEvent::Ended {
            ended,
            uptime,
            next,
        });
        match next {
            Decision::CrashLoop { ends } => {
                let _ = events.send(InstanceEvent::CrashLoop { ends });
                return cage;
            }
            Decision::Restart(pause) => {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = stop.cancelled() => {
                        let _ = events.send(InstanceEvent::Stopped { ended: None });
                        return cage;
                    }
                }
            }
        }
    }
}

/// SIGKILL to what is left of the process group `pid` led.
fn kill_group(pid: u32) {
    signal_group(pid, rustix::process::Signal::KILL);
}

/// Sends `signal` to the process group `pid` leads (a worker started by [`supervise`] leads
/// its own); a pid that cannot be one is ignored.
pub(crate) fn signal_group(pid: u32, signal: rustix::process::Signal) {
    let group = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(group) = group {
        let _ = rustix::process::kill_process_group(group, signal);
    }
}

/// SIGTERM to the worker's process group, then SIGKILL after `grace`; its exit status.
async fn terminate(
    child: &mut tokio::process::Child,
    pid: u32,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    signal_group(pid, rustix::process::Signal::TERM);
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        return status.ok();
    }
    kill_group(pid);
    let _ = child.start_kill();
    child.wait().await.ok()
}
