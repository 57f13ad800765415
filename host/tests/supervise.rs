//! Supervision against real processes: a crash-looping worker is restarted with growing
//! pauses and then given up on; a worker is stopped gracefully, or killed when it ignores
//! SIGTERM; a worker killed over its memory limit is restarted and the end recorded as such;
//! its output is kept within its bound.

use std::path::PathBuf;
use std::time::Duration;

use switchyard_host::confine::{Confinement, Launch, Limits};
use switchyard_host::supervise::{
    supervise, Decision, InstanceEvent, OutputLog, RestartPolicy, Supervision,
};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const ENTER: &str = env!("CARGO_BIN_EXE_switchyard-enter");
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// How long any one expected step may take.
const DEADLINE: Duration = Duration::from_secs(30);

fn quick() -> RestartPolicy {
    RestartPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(80),
        stable_after: Duration::from_secs(60),
        crash_loop_ends: 4,
        window: Duration::from_secs(60),
    }
}

struct Run {
    events: mpsc::UnboundedReceiver<InstanceEvent>,
    output: OutputLog,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<switchyard_host::confine::Cage>,
    confinement: Confinement,
    _dir: TempDir,
}

fn start(test: &str, script: &str, limits: Limits, grace: Duration, log_bytes: usize) -> Run {
    let confinement = Confinement::detect(&format!("sup-{}-{test}", std::process::id())).unwrap();
    let cage = confinement.cage("w0", &limits).unwrap();
    let dir = TempDir::new().unwrap();
    let launch = Launch::new("/bin/sh", dir.path().join("work"))
        .args(["-c", script])
        .env("PATH", PATH)
        .limits(limits);
    let (tx, events) = mpsc::unbounded_channel();
    let output = OutputLog::new(log_bytes);
    let stop = CancellationToken::new();
    let task = tokio::spawn(supervise(
        Supervision {
            launch,
            enter: PathBuf::from(ENTER),
            restarts: quick(),
            grace,
        },
        confinement.clone(),
        cage,
        output.clone(),
        tx,
        stop.clone(),
    ));
    Run {
        events,
        output,
        stop,
        task,
        confinement,
        _dir: dir,
    }
}

impl Run {
    async fn next(&mut self) -> InstanceEvent {
        tokio::time::timeout(DEADLINE, self.events.recv())
            .await
            .expect("the next event in time")
            .expect("the supervisor reports until it ends")
    }

    async fn finish(self) {
        let cage = self.task.await.expect("the supervisor does not panic");
        cage.remove().await.unwrap();
        self.confinement.remove_host_cgroups();
    }
}

#[tokio::test]
async fn a_crash_looping_worker_is_restarted_with_growing_pauses_then_given_up_on() {
    let mut run = start(
        "loop",
        "echo starting; exit 3",
        Limits::default(),
        Duration::from_secs(1),
        1 << 16,
    );
    let mut pauses = Vec::new();
    loop {
        match run.next().await {
            InstanceEvent::Started { .. } => {}
            InstanceEvent::Ended { ended, next, .. } => {
                assert_eq!(ended.code, Some(3));
                if let Decision::Restart(pause) = next {
                    pauses.push(pause);
                }
            }
            InstanceEvent::CrashLoop { ends } => {
                assert_eq!(ends, 4);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let ms = Duration::from_millis;
    assert_eq!(pauses, [ms(20), ms(40), ms(80)]);
    // The output is read on tasks of its own: wait for the last start's line.
    let starts = || {
        run.output
            .lines()
            .iter()
            .filter(|l| l.text == "starting")
            .count()
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while starts() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} starts",
            starts()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(starts(), 4);
    run.finish().await;
}

#[tokio::test]
async fn a_stop_asks_with_sigterm_and_kills_a_worker_that_ignores_it() {
    let polite = "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done";
    let mut run = start(
        "polite",
        polite,
        Limits::default(),
        Duration::from_secs(10),
        1 << 16,
    );
    assert!(matches!(run.next().await, InstanceEvent::Started { .. }));
    wait_for_line(&run.output, "up").await;
    run.stop.cancel();
    match run.next().await {
        InstanceEvent::Stopped { ended: Some(ended) } => {
            assert_eq!(ended.code, Some(0), "{ended:?}")
        }
        other => panic!("unexpected {other:?}"),
    }
    run.finish().await;

    let stubborn = "trap '' TERM; echo up; while :; do sleep 0.05; done";
    let mut run = start(
        "stubborn",
        stubborn,
        Limits::default(),
        Duration::from_millis(300),
        1 << 16,
    );
    assert!(matches!(run.next().await, InstanceEvent::Started { .. }));
    wait_for_line(&run.output, "up").await;
    run.stop.cancel();
    match run.next().await {
        InstanceEvent::Stopped { ended: Some(ended) } => {
            assert_eq!(ended.signal, Some(9), "{ended:?}")
        }
        other => panic!("unexpected {other:?}"),
    }
    run.finish().await;
}

#[tokio::test]
async fn a_worker_killed_over_its_memory_limit_is_restarted_and_the_end_recorded() {
    let limits = Limits {
        memory_bytes: Some(64 * 1024 * 1024),
        ..Limits::default()
    };
    let leak = "x=$(head -c 536870912 /dev/zero | tr '\\0' a)";
    let mut run = start("oom", leak, limits, Duration::from_secs(1), 1 << 16);
    assert!(matches!(
        run.next().await,
        InstanceEvent::Started { restarts: 0, .. }
    ));
    match run.next().await {
        InstanceEvent::Ended { ended, next, .. } => {
            assert!(ended.out_of_memory, "{ended:?}");
            assert!(matches!(next, Decision::Restart(_)));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        run.next().await,
        InstanceEvent::Started { restarts: 1, .. }
    ));
    run.stop.cancel();
    while !matches!(run.next().await, InstanceEvent::Stopped { .. }) {}
    run.finish().await;
}

#[tokio::test]
async fn a_chatty_worker_keeps_only_its_newest_output_within_the_bound() {
    let chatty = "i=0; while [ $i -lt 5000 ]; do echo line $i; i=$((i+1)); done; echo last >&2; exec sleep 60";
    let mut run = start(
        "chatty",
        chatty,
        Limits::default(),
        Duration::from_millis(200),
        4096,
    );
    assert!(matches!(run.next().await, InstanceEvent::Started { .. }));
    wait_for_line(&run.output, "last").await;
    let lines = run.output.lines();
    let kept: usize = lines.iter().map(|l| l.text.len()).sum();
    assert!(kept <= 4096, "{kept} bytes kept");
    assert!(run.output.dropped_lines() > 4000);
    run.stop.cancel();
    while !matches!(run.next().await, InstanceEvent::Stopped { .. }) {}
    run.finish().await;
}

#[tokio::test]
async fn a_worker_that_cannot_be_started_is_reported_and_not_retried_forever() {
    let confinement = Confinement::detect(&format!("sup-{}-spawn", std::process::id())).unwrap();
    let cage = confinement.cage("w0", &Limits::default()).unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    let task = tokio::spawn(supervise(
        Supervision {
            launch: Launch::new("/bin/true", "/proc/no-such-dir/work"),
            enter: PathBuf::from(ENTER),
            restarts: quick(),
            grace: Duration::from_secs(1),
        },
        confinement.clone(),
        cage,
        OutputLog::new(1024),
        tx,
        CancellationToken::new(),
    ));
    match tokio::time::timeout(DEADLINE, events.recv()).await.unwrap() {
        Some(InstanceEvent::SpawnFailed { reason }) => {
            assert!(reason.contains("working directory"), "{reason}")
        }
        other => panic!("unexpected {other:?}"),
    }
    task.await.unwrap().remove().await.unwrap();
    confinement.remove_host_cgroups();
}

/// Waits until the worker has written `text` as a line.
async fn wait_for_line(output: &OutputLog, text: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !output.lines().iter().any(|line| line.text == text) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no line {text:?}: {:?}",
            output.lines()
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
