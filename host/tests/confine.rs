//! Each limit proven on this machine: a worker over its memory limit is killed and recorded as
//! such, one forking past its process limit is refused, one spinning the CPU is throttled to
//! its share, open files are capped, and the worker runs with no new privileges, only the
//! environment it is given and a private working directory. The rlimit fallback is tried too.
//! Workers are plain programs (`sh`, coreutils) started through the `switchyard-enter`
//! trampoline, as the host starts them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use switchyard_host::confine::{Cage, Confinement, Ended, Launch, Limits, Mechanism, ENTER_FAILED};
use tempfile::TempDir;

/// The trampoline, built with these tests.
const ENTER: &str = env!("CARGO_BIN_EXE_switchyard-enter");
/// How long one worker may run.
const DEADLINE: Duration = Duration::from_secs(60);
/// Where the workers find `sh`, `head`, `timeout` and the rest.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A confinement of its own for each test (the host name keeps their cages apart).
fn confinement(test: &str) -> Confinement {
    Confinement::detect(&format!("test-{}-{test}", std::process::id())).expect("a valid name")
}

/// Runs `launch` in `cage` to its end; returns how it ended and what it printed.
async fn run(confinement: &Confinement, cage: &Cage, launch: &Launch) -> (Ended, Output) {
    let kills_before = cage.out_of_memory_kills();
    let command = launch
        .command(confinement, cage, Path::new(ENTER))
        .expect("the command is built");
    let mut command = command;
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().expect("the trampoline starts");
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("the worker ends in time")
        .expect("its output is read");
    (cage.ended(output.status, kills_before), output)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn shell(dir: &TempDir, script: &str) -> Launch {
    Launch::new("/bin/sh", dir.path().join("work"))
        .args(["-c", script])
        .env("PATH", PATH)
}

#[test]
fn this_machine_confines_with_cgroups() {
    let confinement = confinement("mechanism");
    let mechanism = confinement.mechanism();
    assert!(
        matches!(
            mechanism,
            Mechanism::CgroupV1 { .. } | Mechanism::CgroupV2 { .. }
        ),
        "{mechanism}"
    );
    assert!(mechanism.to_string().starts_with("cgroup v"), "{mechanism}");
}

#[tokio::test]
async fn a_worker_over_its_memory_limit_is_killed_and_recorded_as_such() {
    let confinement = confinement("memory");
    let limits = Limits {
        memory_bytes: Some(64 * 1024 * 1024),
        ..Limits::default()
    };
    let cage = confinement.cage("leaker", &limits).unwrap();
    let dir = TempDir::new().unwrap();
    // 512 MiB held in one shell variable.
    let leak = shell(
        &dir,
        "x=$(head -c 536870912 /dev/zero | tr '\\0' a); echo survived",
    );
    let (ended, output) = run(&confinement, &cage, &leak).await;
    assert!(ended.out_of_memory, "{ended:?} {}", text(&output.stderr));
    assert_eq!(ended.to_string(), "killed: over its memory limit");
    assert!(!text(&output.stdout).contains("survived"));

    // Within the limit, the same worker lives.
    let small = shell(
        &dir,
        "x=$(head -c 1048576 /dev/zero | tr '\\0' a); echo survived",
    );
    let (ended, output) = run(&confinement, &cage, &small).await;
    assert!(!ended.out_of_memory, "{ended:?}");
    assert_eq!(ended.code, Some(0), "{}", text(&output.stderr));
    cage.remove().await.unwrap();
    confinement.remove_host_cgroups();
}

#[tokio::test]
async fn a_worker_forking_past_its_process_limit_is_refused() {
    let confinement = confinement("pids");
    let limits = Limits {
        max_processes: Some(4),
        ..Limits::default()
    };
    let cage = confinement.cage("forker", &limits).unwrap();
    let dir = TempDir::new().unwrap();
    let forker = shell(
        &dir,
        "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1 & done; wait; echo done",
    );
    let (ended, output) = run(&confinement, &cage, &forker).await;
    assert!(
        cage.refused_processes() > 0,
        "{ended:?} {}",
        text(&output.stderr)
    );
    assert!(!ended.out_of_memory);
    cage.remove().await.unwrap();
    confinement.remove_host_cgroups();
}

#[tokio::test]
async fn a_worker_spinning_the_cpu_is_throttled_to_its_share() {
    let confinement = confinement("cpu");
    let limits = Limits {
        cpu_millicores: Some(100),
        ..Limits::default()
    };
    let cage = confinement.cage("spinner", &limits).unwrap();
    let dir = TempDir::new().unwrap();
    let spinner = shell(&dir, "timeout 1 sh -c 'while :; do :; done'; exit 0");
    let (ended, output) = run(&confinement, &cage, &spinner).await;
    assert_eq!(ended.code, Some(0), "{}", text(&output.stderr));
    let throttled = cage.usage().cpu_throttled_periods.expect("counted");
    // A tenth of a core: stopped in most 100 ms periods of the second it spun.
    assert!(throttled >= 3, "throttled in {throttled} periods");
    cage.remove().await.unwrap();
    confinement.remove_host_cgroups();
}

#[tokio::test]
async fn open_files_privileges_environment_and_working_directory_are_confined() {
    let confinement = confinement("rest");
    let limits = Limits {
        open_files: Some(16),
        ..Limits::default()
    };
    let cage = confinement.cage("quiet", &limits).unwrap();
    let dir = TempDir::new().unwrap();
    let workdir = dir.path().join("work");
    let probe = Launch::new("/bin/sh", &workdir)
        .args([
            "-c",
            "ulimit -n; ulimit -H -n; grep NoNewPrivs /proc/self/status; pwd; /usr/bin/env",
        ])
        .env("SWITCHYARD_PLUGIN_TOKEN", "t")
        .limits(limits);
    let (ended, output) = run(&confinement, &cage, &probe).await;
    assert_eq!(ended.code, Some(0), "{}", text(&output.stderr));
    let out = text(&output.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "16", "{out}");
    assert_eq!(lines[1], "16", "{out}");
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["NoNewPrivs:", "1"]
    );
    assert_eq!(Path::new(lines[3]), workdir, "{out}");
    // The shell adds PWD (and may add OLDPWD); nothing of this process's environment leaks.
    let env: Vec<&str> = lines[4..]
        .iter()
        .copied()
        .filter(|line| !line.starts_with("PWD=") && !line.starts_with("OLDPWD="))
        .collect();
    assert_eq!(env, ["SWITCHYARD_PLUGIN_TOKEN=t"], "{out}");
    let mode = std::fs::metadata(&workdir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    cage.remove().await.unwrap();
    confinement.remove_host_cgroups();
}

#[tokio::test]
async fn without_cgroups_rlimits_are_the_fallback() {
    let confinement =
        Confinement::rlimits_only(&format!("test-{}-rlimits", std::process::id())).unwrap();
    assert!(confinement
        .mechanism()
        .to_string()
        .contains("CPU share is NOT limited"));
    let limits = Limits {
        memory_bytes: Some(256 * 1024 * 1024),
        max_processes: Some(10_000),
        open_files: Some(32),
        ..Limits::default()
    };
    let cage = confinement.cage("fallback", &limits).unwrap();
    assert!(cage.procs_files().is_empty());
    let dir = TempDir::new().unwrap();
    let probe = shell(&dir, "ulimit -v; ulimit -n").limits(limits);
    let (ended, output) = run(&confinement, &cage, &probe).await;
    assert_eq!(ended.code, Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "262144\n32\n");
    cage.remove().await.unwrap();
}

#[tokio::test]
async fn a_worker_that_cannot_start_says_why_and_exits_with_the_trampolines_code() {
    let confinement = confinement("missing");
    let cage = confinement.cage("ghost", &Limits::default()).unwrap();
    let dir = TempDir::new().unwrap();
    let missing = Launch::new("/nonexistent/worker", dir.path().join("work"));
    let (ended, output) = run(&confinement, &cage, &missing).await;
    assert_eq!(ended.code, Some(ENTER_FAILED));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("cannot start /nonexistent/worker"),
        "{stderr}"
    );
    cage.remove().await.unwrap();
    confinement.remove_host_cgroups();
}

#[test]
fn names_that_are_not_directory_names_are_refused() {
    for name in ["", ".", "..", "a/b", "a b", &"x".repeat(129)] {
        assert!(Confinement::detect(name).is_err(), "{name:?}");
    }
    let confinement = confinement("names");
    assert!(confinement.cage("../escape", &Limits::default()).is_err());
}
