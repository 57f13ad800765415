//! `switchyard host` as an operator runs it: the built binary, several hosts on one machine
//! against a real nats-server, running workers installed from packages. What is checked from
//! outside: where instances run (`plugins status --json`), what they wrote (`switchyard logs`),
//! what the registry and the audit log say, and which processes are left on the machine.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use switchyard_tests::{run_switchyard, succeeded, wait_until, RunningDispatcher, TestServer};

const BINARY: &str = env!("CARGO_BIN_EXE_switchyard");

/// How long hosts take to notice things in these tests (heartbeat 300 ms, timeout 2 s).
const SETTLE: Duration = Duration::from_secs(30);

async fn switchyard(server: &TestServer, args: &[&str]) -> Output {
    run_switchyard(BINARY, Some(&server.url()), args).await
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Builds a package of plugin `id` whose worker is the shell script `script`, with `run` as
/// the manifest's `[run]` table, and installs it (unsigned, allowed), enabled for all tenants.
async fn install(server: &TestServer, root: &Path, id: &str, script: &str, run: &str) {
    install_worker(server, root, id, ("sh", "worker.sh", script), run).await;
}

/// [`install`] with the worker `(interpreter, file, its text)`.
async fn install_worker(
    server: &TestServer,
    root: &Path,
    id: &str,
    worker: (&str, &str, &str),
    run: &str,
) {
    provision(server).await;
    let file = build(root, id, "1.0.0", worker, run).await;
    succeeded(
        &switchyard(
            server,
            &[
                "plugins",
                "add",
                path(&file),
                "--all-tenants",
                "--approve",
                "--allow-unsigned",
            ],
        )
        .await,
    );
}

/// Small streams: `plugins status` reads the events stream.
async fn provision(server: &TestServer) {
    succeeded(
        &switchyard(
            server,
            &[
                "streams",
                "provision",
                "--events-max-bytes",
                "1000000",
                "--dlq-max-bytes",
                "1000000",
                "--audit-max-bytes",
                "1000000",
            ],
        )
        .await,
    );
}

/// Builds the package of `id` `version` whose worker is `(interpreter, file, its text)`, with
/// `run` as its manifest's `[run]` table.
async fn build(
    root: &Path,
    id: &str,
    version: &str,
    (interpreter, file_name, text): (&str, &str, &str),
    run: &str,
) -> std::path::PathBuf {
    let dir = root.join(format!("{id}-{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("plugin.toml"),
        format!(
            "[plugin]\nid = \"{id}\"\nversion = \"{version}\"\ncore = \"^0.1\"\n\n\
             [[subscriptions]]\nname = \"orders\"\nevents = [\"order.*\"]\n\n[run]\n{run}\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join(file_name), text).unwrap();
    std::fs::write(
        dir.join("package.toml"),
        format!("command = [\"{interpreter}\", \"{file_name}\"]\nfiles = [\"{file_name}\"]\n"),
    )
    .unwrap();
    let file = root.join(format!("{id}-{version}.pkg"));
    succeeded(
        &run_switchyard(
            BINARY,
            None,
            &["package", "build", path(&dir), "--out", path(&file)],
        )
        .await,
    );
    file
}

/// A host name unique on this machine to this test (`{name}-{server port}`): hosts of one
/// name share their cgroups, and tests run side by side.
fn unique(server: &TestServer, name: &str) -> String {
    format!("{name}-{}", server.port())
}

/// Starts `switchyard host` named `name` (made [`unique`]), with its state under `root`.
fn host(server: &TestServer, root: &Path, name: &str) -> RunningDispatcher {
    host_with(server, root, name, &[])
}

/// [`host`] with more arguments.
fn host_with(server: &TestServer, root: &Path, name: &str, more: &[&str]) -> RunningDispatcher {
    let name = &unique(server, name);
    let state = root.join(format!("state-{name}"));
    RunningDispatcher::spawn_command(
        BINARY,
        "host",
        &server.url(),
        &[
            "--name",
            name,
            "--state-dir",
            path(&state),
            "--heartbeat",
            "300ms",
            "--host-timeout",
            "2s",
        ]
        .into_iter()
        .chain(more.iter().copied())
        .collect::<Vec<_>>(),
        &[
            ("RUST_LOG", "info,async_nats=warn"),
            // The host's own environment, which no worker may see.
            ("HOST_ONLY_SECRET", "must-not-leak"),
        ],
    )
}

/// Stops a host as an operator would (SIGTERM): its workers, cgroups and record go with it,
/// and nothing of the test stays on the machine.
async fn stop(mut host: RunningDispatcher) {
    host.terminate().await;
    let status = host.wait(Duration::from_secs(60)).await;
    assert!(status.success(), "{}", host.output());
}

/// `plugins status <id> --json`'s instances.
async fn instances(server: &TestServer, id: &str) -> Vec<Value> {
    let output = switchyard(server, &["plugins", "status", id, "--json"]).await;
    let status: Value = serde_json::from_str(&succeeded(&output)).unwrap();
    status["instances"].as_array().cloned().unwrap_or_default()
}

/// The (slot, host) of each instance in `state`.
async fn placed(server: &TestServer, id: &str, state: &str) -> Vec<(u64, String)> {
    instances(server, id)
        .await
        .iter()
        .filter(|i| i["state"] == state)
        .map(|i| {
            (
                i["slot"].as_u64().unwrap(),
                i["host"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The process ids of the processes whose working directory is under `dir`.
fn processes_in(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
        })
        .collect()
}

/// Whether process `pid` runs (a zombie waiting to be reaped does not).
fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(')')?.1.split_whitespace().next()? != "Z"))
        .unwrap_or(false)
}

fn state_of(output: &Output) -> Value {
    serde_json::from_str(&succeeded(output)).unwrap()
}

#[tokio::test]
async fn two_hosts_share_the_instances_and_a_dead_hosts_are_started_on_the_other() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let script =
        "echo \"started as $SWITCHYARD_INSTANCE uid $(id -u)\"\necho \"env: $(env | sort | tr '\\n' ' ')\"\n\
                  while true; do echo tick; sleep 0.2; done\n";
    install(&server, root.path(), "sharer", script, "min_instances = 2").await;
    let h1 = host(&server, root.path(), "h1");
    let mut h2 = host(&server, root.path(), "h2");

    // One instance each: two hosts live, two instances, spread.
    let spread = wait_until(SETTLE, || async {
        let mut hosts: Vec<String> = placed(&server, "sharer", "running")
            .await
            .into_iter()
            .map(|(_, h)| h)
            .collect();
        hosts.sort();
        hosts == [unique(&server, "h1"), unique(&server, "h2")]
    })
    .await;
    assert!(spread.is_ok(), "{}\n{}", h1.output(), h2.output());

    // Their output is readable, and they got only what the host gives them.
    wait_until(SETTLE, || async {
        let logs = succeeded(&switchyard(&server, &["logs", "sharer", "-n", "1000"]).await);
        logs.contains("started as sharer.0") && logs.contains("started as sharer.1")
    })
    .await
    .expect("both instances' first lines are in the logs");
    let logs = succeeded(&switchyard(&server, &["logs", "sharer", "-n", "1000"]).await);
    let env_line = logs.lines().find(|l| l.contains("env: ")).unwrap();
    for leaked in ["must-not-leak", "CARGO", "RUST_LOG"] {
        assert!(
            !env_line.contains(leaked),
            "{leaked} leaked into the worker: {env_line}"
        );
    }
    assert!(
        env_line.contains("SWITCHYARD_NATS_URL=nats://"),
        "{env_line}"
    );
    assert!(
        env_line.contains("SWITCHYARD_INSTANCE=sharer."),
        "{env_line}"
    );
    // Two hosts on one machine never give two instances the same user.
    if switchyard_host::run::runs_as_root() {
        // The latest start of each instance (one host may have started both before it saw
        // the other, then handed one over): the two running ones have users of their own.
        let mut latest = std::collections::BTreeMap::new();
        for line in logs.lines() {
            if let Some((started, uid)) = line
                .split_once("started as ")
                .and_then(|(_, rest)| rest.split_once(" uid "))
            {
                latest.insert(started.to_owned(), uid.to_owned());
            }
        }
        let uids: std::collections::BTreeSet<&String> = latest.values().collect();
        assert_eq!((latest.len(), uids.len()), (2, 2), "{logs}");
    }
    let newest = succeeded(&switchyard(&server, &["logs", "sharer", "-n", "3"]).await);
    assert_eq!(newest.lines().count(), 3, "{newest}");

    // h2 dies without a word: its worker dies with it, and its instance is started on h1
    // once h2's record is stale.
    let h2_workers = processes_in(&root.path().join(format!("state-{}", unique(&server, "h2"))));
    assert!(!h2_workers.is_empty());
    h2.crash().await;
    wait_until(SETTLE, || async {
        h2_workers.iter().all(|pid| !is_alive(*pid))
    })
    .await
    .expect("a dead host's workers die with it");
    wait_until(SETTLE, || async {
        let placed = placed(&server, "sharer", "running").await;
        placed.len() == 2 && placed.iter().all(|(_, h)| *h == unique(&server, "h1"))
    })
    .await
    .unwrap_or_else(|_| panic!("{}", h1.output()));

    // A clean stop takes the host's workers and reports with it.
    // The workers and their children, all in the instances' directories.
    let h1_workers = processes_in(&root.path().join(format!("state-{}", unique(&server, "h1"))));
    assert!(h1_workers.len() >= 2, "{h1_workers:?}");
    h1.terminate().await;
    let mut h1 = h1;
    assert!(
        h1.wait(Duration::from_secs(30)).await.success(),
        "{}",
        h1.output()
    );
    assert!(instances(&server, "sharer").await.is_empty());
    for pid in h1_workers {
        assert!(
            !is_alive(pid),
            "worker {pid} outlived its host: {:?} {:?}",
            std::fs::read_to_string(format!("/proc/{pid}/stat")),
            std::fs::read_to_string(format!("/proc/{pid}/cgroup")),
        );
    }
}

#[tokio::test]
async fn a_crash_looping_worker_marks_its_plugin_failed_and_says_why() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    install(
        &server,
        root.path(),
        "crasher",
        "echo about to fail >&2\nexit 3\n",
        "crash_loop_ends = 3\ncrash_loop_window = \"1m\"",
    )
    .await;
    let h1 = host(&server, root.path(), "h1");
    wait_until(SETTLE, || async {
        let shown = state_of(&switchyard(&server, &["plugins", "show", "crasher", "--json"]).await);
        shown["state"] == "failed"
    })
    .await
    .unwrap_or_else(|_| panic!("{}", h1.output()));
    let shown = state_of(&switchyard(&server, &["plugins", "show", "crasher", "--json"]).await);
    let reason = shown["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("ended 3 times"), "{reason}");
    let logs = succeeded(&switchyard(&server, &["logs", "crasher"]).await);
    assert!(reason.contains("exited with code 3"), "{reason}\n{logs}");
    let audit = succeeded(&switchyard(&server, &["audit", "--json"]).await);
    assert!(
        audit.contains("plugin_failed")
            && audit.contains(&format!("host {}", unique(&server, "h1"))),
        "{audit}"
    );
    let logs = succeeded(&switchyard(&server, &["logs", "crasher"]).await);
    assert_eq!(logs.matches("stderr: about to fail").count(), 3, "{logs}");
    // Failed: not started again.
    let ends = logs.matches("about to fail").count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = succeeded(&switchyard(&server, &["logs", "crasher"]).await);
    assert_eq!(later.matches("about to fail").count(), ends, "{later}");
    stop(h1).await;
}

#[tokio::test]
async fn a_worker_over_its_memory_limit_is_killed_and_recorded_as_such() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    install(
        &server,
        root.path(),
        "hog",
        "echo allocating\nexec python3 -c 'x = bytearray(200 * 1024 * 1024); import time; time.sleep(60)'\n",
        "memory = \"32MiB\"",
    )
    .await;
    let h1 = host(&server, root.path(), "h1");
    let mechanism_is_cgroups =
        wait_until(SETTLE, || async { h1.stdout().contains("confinement by") })
            .await
            .is_ok()
            && h1.stdout().contains("confinement by cgroup");
    let expected = if mechanism_is_cgroups {
        "killed: over its memory limit"
    } else {
        // rlimits: the allocation fails, and python exits with MemoryError.
        "exited with code 1"
    };
    wait_until(SETTLE, || async {
        instances(&server, "hog")
            .await
            .iter()
            .any(|i| i["last_end"].as_str().is_some_and(|e| e.contains(expected)))
    })
    .await
    .unwrap_or_else(|_| panic!("{}", h1.output()));
    stop(h1).await;
}

#[tokio::test]
async fn a_second_host_of_the_same_name_on_one_machine_is_refused_and_leaves_the_first_alone() {
    let server = TestServer::start().await;
    let other_server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let script = "while true; do echo tick; sleep 0.2; done\n";
    install(&server, root.path(), "steady", script, "").await;
    let first = host(&server, root.path(), "same");
    wait_until(SETTLE, || async {
        !placed(&server, "steady", "running").await.is_empty()
    })
    .await
    .unwrap_or_else(|_| panic!("{}", first.output()));
    let pid = instances(&server, "steady").await[0]["pid"]
        .as_u64()
        .unwrap();

    // The same name, even for another deployment: its cgroups would be the first one's.
    let name = unique(&server, "same");
    let state = root.path().join("second");
    let mut second = RunningDispatcher::spawn_command(
        BINARY,
        "host",
        &other_server.url(),
        &["--name", &name, "--state-dir", path(&state)],
        &[],
    );
    let status = second.wait(Duration::from_secs(30)).await;
    assert!(!status.success());
    assert!(
        second
            .stderr()
            .contains(&format!("another host named `{name}` runs on this machine")),
        "{}",
        second.output()
    );
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the first host's worker was killed"
    );
    assert_eq!(placed(&server, "steady", "running").await.len(), 1);
    stop(first).await;
}

/// A worker that sends a few heartbeats as the SDK does (raw, with the stock Python client),
/// then freezes itself (SIGSTOP): alive to the kernel, silent on the bus.
const FREEZING_WORKER: &str = r#"
import asyncio, json, os, signal
import nats

async def main():
    nc = await nats.connect(os.environ["SWITCHYARD_NATS_URL"])
    instance = os.environ["SWITCHYARD_INSTANCE"]
    plugin = instance.split("@")[0].rsplit(".", 1)[0]
    subject = os.environ["SWITCHYARD_PREFIX"] + ".control.hello." + plugin
    for _ in range(3):
        body = json.dumps({"instance": f"{instance} pid {os.getpid()}"}).encode()
        await nc.publish(subject, body)
        await nc.flush()
        print("beat", flush=True)
        await asyncio.sleep(0.5)
    print("freezing", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)

asyncio.run(main())
"#;

#[tokio::test]
async fn a_worker_that_stops_sending_heartbeats_is_killed_and_started_again() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let (_, site) = switchyard_tests::python_paths().await;
    install_worker(
        &server,
        root.path(),
        "freezer",
        ("python3", "worker.py", FREEZING_WORKER),
        "heartbeat_timeout = \"5s\"",
    )
    .await;
    let pythonpath = format!("PYTHONPATH={}", path(&site));
    let h1 = host_with(&server, root.path(), "h1", &["--worker-env", &pythonpath]);
    wait_until(Duration::from_secs(60), || async {
        instances(&server, "freezer").await.iter().any(|i| {
            i["last_end"].as_str().is_some_and(|e| {
                e.contains("killed by the host: stopped answering (no heartbeat for")
            })
        })
    })
    .await
    .unwrap_or_else(|_| panic!("{}", h1.output()));
    // Started again: a second run's heartbeats are in the logs.
    wait_until(SETTLE, || async {
        let logs = succeeded(&switchyard(&server, &["logs", "freezer", "-n", "1000"]).await);
        logs.matches("stdout: freezing").count() >= 2
    })
    .await
    .unwrap_or_else(|_| panic!("{}", h1.output()));
    stop(h1).await;
}

/// A worker that runs until stopped, printing its version.
fn steady(version: &str) -> String {
    format!("echo \"version {version} up\"\nwhile true; do sleep 0.2; done\n")
}

/// `plugins show <id> --json`'s version.
async fn registered_version(server: &TestServer, id: &str) -> String {
    let shown = state_of(&switchyard(server, &["plugins", "show", id, "--json"]).await);
    shown["version"].as_str().unwrap().to_owned()
}

async fn upgrade(server: &TestServer, file: &Path) {
    succeeded(
        &switchyard(
            server,
            &[
                "plugins",
                "upgrade",
                path(file),
                "--approve",
                "--allow-unsigned",
            ],
        )
        .await,
    );
}

/// Installs `id` 1.0.0 (a [`steady`] worker, `run` as its `[run]`), starts host `h1` and
/// waits until `instances` instances of it run.
async fn steady_on_a_host(
    server: &TestServer,
    root: &Path,
    id: &str,
    run: &str,
    instances: usize,
) -> RunningDispatcher {
    install_worker(server, root, id, ("sh", "worker.sh", &steady("1.0.0")), run).await;
    let h1 = host(server, root, "h1");
    wait_until(SETTLE, || async {
        placed(server, id, "running").await.len() == instances
    })
    .await
    .unwrap_or_else(|_| panic!("{}", h1.output()));
    h1
}

#[tokio::test]
async fn a_new_version_that_fails_its_health_check_is_rolled_back_by_the_host() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let run = "health_grace = \"3s\"";
    let h1 = steady_on_a_host(&server, root.path(), "upgraded", run, 1).await;
    let pid = instances(&server, "upgraded").await[0]["pid"].clone();

    // 2.0.0 starts, then exits at once.
    let broken = "echo \"version 2.0.0 cannot start\" >&2\nexit 1\n";
    let v2 = build(
        root.path(),
        "upgraded",
        "2.0.0",
        ("sh", "worker.sh", broken),
        run,
    )
    .await;
    upgrade(&server, &v2).await;
    assert_eq!(registered_version(&server, "upgraded").await, "2.0.0");

    wait_until(SETTLE, || async {
        registered_version(&server, "upgraded").await == "1.0.0"
    })
    .await
    .unwrap_or_else(|_| panic!("not rolled back:\n{}", h1.output()));
    let audit = succeeded(&switchyard(&server, &["audit", "--json"]).await);
    assert!(audit.contains("rolled_back"), "{audit}");
    assert!(
        audit.contains("2.0.0 failed its health check on host")
            && audit.contains("exited with code 1"),
        "{audit}"
    );
    // The old instance served throughout: the same process, never stopped.
    let now = instances(&server, "upgraded").await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0]["pid"], pid, "{now:?}");
    assert_eq!(now[0]["version"], "1.0.0");
    let logs = succeeded(&switchyard(&server, &["logs", "upgraded", "-n", "1000"]).await);
    assert_eq!(
        logs.matches("version 2.0.0 cannot start").count(),
        1,
        "{logs}"
    );
    stop(h1).await;
}

#[tokio::test]
async fn a_healthy_new_version_replaces_the_instances_one_by_one() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    let run = "min_instances = 2\nhealth_grace = \"1s\"";
    let h1 = steady_on_a_host(&server, root.path(), "rolled", run, 2).await;

    let v2 = build(
        root.path(),
        "rolled",
        "2.0.0",
        ("sh", "worker.sh", &steady("2.0.0")),
        run,
    )
    .await;
    upgrade(&server, &v2).await;
    wait_until(SETTLE, || async {
        let now = instances(&server, "rolled").await;
        now.len() == 2
            && now
                .iter()
                .all(|i| i["version"] == "2.0.0" && i["state"] == "running")
    })
    .await
    .unwrap_or_else(|_| panic!("{}", h1.output()));
    assert_eq!(registered_version(&server, "rolled").await, "2.0.0");

    // One instance at a time: each upgrade finished before the next began.
    let log = h1.stderr();
    let steps: Vec<&str> = log
        .lines()
        .filter_map(|l| {
            if l.contains("upgrading an instance") {
                Some("upgrading")
            } else if l.contains("upgraded an instance") {
                Some("upgraded")
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        steps,
        ["upgrading", "upgraded", "upgrading", "upgraded"],
        "{log}"
    );
    stop(h1).await;
}

/// A worker that logs in as its plugin with the secret its host wrote for it, says so, and
/// stays.
const LOGIN_WORKER: &str = r#"
import asyncio, os
import nats

async def main():
    instance = os.environ["SWITCHYARD_INSTANCE"]
    plugin = instance.split("@")[0].rsplit(".", 1)[0]
    with open(os.environ["SWITCHYARD_PLUGIN_TOKEN_FILE"]) as f:
        token = f.read().strip()
    login = dict(user=plugin, password=token, max_reconnect_attempts=0, allow_reconnect=False)
    nc = await nats.connect(os.environ["SWITCHYARD_NATS_URL"], **login)
    print("connected as", plugin, flush=True)
    # Its manifest allows 2 connections: a second one is let in, a third refused.
    second = await nats.connect(os.environ["SWITCHYARD_NATS_URL"], **login)
    print("second connection let in", flush=True)
    try:
        third = await nats.connect(os.environ["SWITCHYARD_NATS_URL"], **login)
        print("third connection let in", flush=True)
    except Exception as error:
        print("third connection refused:", type(error).__name__, flush=True)
    await second.close()
    while True:
        await asyncio.sleep(1)

asyncio.run(main())
"#;

/// Whether a client logging in as `plugin` with `secret` is let in.
async fn logs_in(url: &str, plugin: &str, secret: &str) -> bool {
    let client =
        async_nats::ConnectOptions::with_user_and_password(plugin.to_owned(), secret.to_owned())
            .max_reconnects(Some(1))
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await;
    match client {
        Ok(client) => client.flush().await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn where_the_broker_enforces_rights_a_hosts_workers_log_in_with_a_secret_it_issued() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name);
    succeeded(&run_switchyard(BINARY, None, &["auth", "init", "--dir", path(dir.path())]).await);
    let server = switchyard_tests::TestServer::with_config_refusing_anonymous(
        switchyard_tests::TestConfig::File(at("nats-auth.conf")),
    )
    .await;
    let host_port = server.url().strip_prefix("nats://").unwrap().to_owned();
    for login in ["dispatcher", "admin", "system"] {
        let file = at(&format!("{login}.url"));
        let url = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, url.replace("127.0.0.1:4222", &host_port)).unwrap();
    }
    let admin = std::fs::read_to_string(at("admin.url"))
        .unwrap()
        .trim()
        .to_owned();
    let admin_file = at("admin.url");
    let as_admin = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        all.extend(["--url-file".to_owned(), path(&admin_file).to_owned()]);
        async move {
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            run_switchyard(BINARY, None, &args).await
        }
    };
    succeeded(
        &as_admin(&[
            "streams",
            "provision",
            "--events-max-bytes",
            "1000000",
            "--dlq-max-bytes",
            "1000000",
            "--audit-max-bytes",
            "1000000",
        ])
        .await,
    );
    let (_, site) = switchyard_tests::python_paths().await;
    let package = build(
        dir.path(),
        "guarded",
        "1.0.0",
        ("python3", "worker.py", LOGIN_WORKER),
        "\n[limits]\nmax_connections = 2",
    )
    .await;
    succeeded(
        &as_admin(&[
            "plugins",
            "add",
            path(&package),
            "--all-tenants",
            "--approve",
            "--allow-unsigned",
        ])
        .await,
    );
    let _auth = tokio::process::Command::new(BINARY)
        .args(["auth", "serve", "--issuer-seed-file"])
        .arg(at("issuer.nk"))
        .arg("--url-file")
        .arg(at("dispatcher.url"))
        .env_remove("SWITCHYARD_NATS_URL")
        .env("SWITCHYARD_AUTH_XKEY_SEED_FILE", at("xkey.nk"))
        .env("SWITCHYARD_AUTH_SYSTEM_URL_FILE", at("system.url"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("auth serve starts");

    let name = format!("sec-{}", server.port());
    let pythonpath = format!("PYTHONPATH={}", path(&site));
    let state = at("state");
    let mut host = RunningDispatcher::spawn_command(
        BINARY,
        "host",
        &admin,
        &[
            "--name",
            &name,
            "--state-dir",
            path(&state),
            "--heartbeat",
            "300ms",
            "--worker-env",
            &pythonpath,
        ],
        &[("RUST_LOG", "info,async_nats=warn")],
    );
    // Anonymous logins are refused: a worker that is in logged in with the host's secret.
    wait_until(Duration::from_secs(60), || async {
        let logs = run_switchyard(
            BINARY,
            None,
            &["logs", "guarded", "--url-file", path(&at("admin.url"))],
        )
        .await;
        succeeded(&logs).contains("connected as guarded")
    })
    .await
    .unwrap_or_else(|_| panic!("{}", host.output()));
    // The manifest's quotas hold for the host's workers as for any: a third connection is
    // refused.
    wait_until(Duration::from_secs(30), || async {
        succeeded(&as_admin(&["logs", "guarded"]).await).contains("third connection")
    })
    .await
    .unwrap_or_else(|_| panic!("{}", host.output()));
    let logs = succeeded(&as_admin(&["logs", "guarded"]).await);
    assert!(logs.contains("second connection let in"), "{logs}");
    assert!(logs.contains("third connection refused"), "{logs}");
    let audit = succeeded(&as_admin(&["audit", "--json"]).await);
    assert!(
        audit.contains(&format!("issued a secret of guarded to host {name}")),
        "{audit}"
    );
    let token_file = std::fs::read_dir(state.join(&name).join("instances"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "token"))
        .expect("the instance's secret file");
    let secret = std::fs::read_to_string(&token_file).unwrap();
    // Within the quota again once the worker closed its second connection.
    let url = server.url();
    wait_until(Duration::from_secs(30), || {
        logs_in(&url, "guarded", &secret)
    })
    .await
    .expect("the host's secret logs in");
    assert!(!logs_in(&server.url(), "guarded", "not-the-secret").await);

    // Stopped, the host takes its secret back: it no longer logs anyone in.
    host.terminate().await;
    assert!(
        host.wait(Duration::from_secs(30)).await.success(),
        "{}",
        host.output()
    );
    assert!(!token_file.exists());
    assert!(!logs_in(&server.url(), "guarded", &secret).await);
}

/// A worker that tries what a worker should not manage: leave its cgroups, raise its limits,
/// read the host's environment, write the host's trampoline; it says what worked.
const PROBING_WORKER: &str = r#"echo "uid $(id -u)"
for c in memory cpu pids; do
  if echo $$ > /sys/fs/cgroup/$c/cgroup.procs 2>/dev/null; then echo "escaped $c"; fi
done
own=$(grep ':memory:' /proc/self/cgroup | cut -d: -f3)
if echo 9999999999 > /sys/fs/cgroup/memory$own/memory.limit_in_bytes 2>/dev/null; then echo "raised memory"; fi
if grep -q must-not-leak /proc/$PPID/environ 2>/dev/null; then echo "read the host"; fi
if echo hijack > ../../../switchyard-enter 2>/dev/null; then echo "wrote the trampoline"; fi
echo done-probing
while true; do sleep 1; done
"#;

#[tokio::test]
async fn a_worker_runs_as_a_user_of_its_own_and_cannot_leave_its_confinement() {
    let server = TestServer::start().await;
    let root = tempfile::tempdir().unwrap();
    install(&server, root.path(), "prober", PROBING_WORKER, "").await;
    let h1 = host(&server, root.path(), "h1");
    wait_until(SETTLE, || async {
        succeeded(&switchyard(&server, &["logs", "prober"]).await).contains("done-probing")
    })
    .await
    .unwrap_or_else(|_| panic!("{}", h1.output()));
    let logs = succeeded(&switchyard(&server, &["logs", "prober"]).await);
    for broken in [
        "escaped",
        "raised memory",
        "read the host",
        "wrote the trampoline",
    ] {
        assert!(!logs.contains(broken), "the worker {broken}:\n{logs}");
    }
    if switchyard_host::run::runs_as_root() {
        // A user of the default range, not root.
        assert!(logs.contains("stdout: uid 19000"), "{logs}");
    }
    stop(h1).await;
}
