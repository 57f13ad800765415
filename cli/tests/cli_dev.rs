//! `switchyard dev`, the embedded default, as a newcomer runs it: it starts everything,
//! delivers the samples to the example plugins, summarises, and leaves nothing running.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[tokio::test]
async fn dev_delivers_the_samples_to_the_example_plugins_and_stops_everything() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let run = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["dev", "--events", "30", "--rate", "200", "--port"])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("dev finishes on its own")
        .expect("dev runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "dev failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The last frame of the live view: every plugin settled its share of the 30 samples.
    let last_row = |plugin: &str| -> Vec<String> {
        stdout
            .lines()
            .rfind(|l| l.starts_with(plugin))
            .unwrap_or_else(|| panic!("no row for {plugin} in:\n{stdout}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    // Columns: plugin, subscription, delivered, retried, dead-lettered, in flight, circuit.
    assert_eq!(last_row("audit-logger")[2], "30", "{stdout}");
    let notifier = last_row("flaky-notifier");
    assert_eq!(
        notifier[2], notifier[3],
        "each notification retried once: {stdout}"
    );
    let validator = last_row("order-validator");
    let delivered: u64 = validator[2].parse().unwrap();
    let dead: u64 = validator[4].parse().unwrap();
    assert!(dead > 0, "invalid orders are dead-lettered: {stdout}");
    assert_eq!(
        delivered + dead,
        18,
        "18 of 30 samples are new orders: {stdout}"
    );
    assert!(
        stdout.contains(&format!("order-validator: {dead} × order.invalid")),
        "{stdout}"
    );
    assert!(stdout.contains("nats-server stopped"), "{stdout}");

    // Nothing is left listening on the port.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nats-server still listens on {port}"
    );
    // The audit logger wrote one line per event it saw.
    let audit = std::fs::read_to_string(data.path().join("audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), 30);
}

/// `dev --watch`: the plugin in a directory is built, installed and run by a host inside
/// `dev`; an edit that breaks it is rolled back to the last good build, which kept running;
/// a build command that fails installs nothing; the next good edit runs.
#[tokio::test]
async fn dev_watch_rebuilds_a_plugin_and_keeps_the_last_good_build_on_failure() {
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncReadExt as _;

    let data = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    let dir = source.path();
    std::fs::write(
        dir.join("plugin.toml"),
        "[plugin]\nid = \"watched\"\nversion = \"0.3.0\"\ncore = \"^0.1\"\n\n\
         [[subscriptions]]\nname = \"orders\"\nevents = [\"order.*\"]\n\n\
         [run]\nhealth_grace = \"1s\"\n",
    )
    .unwrap();
    let good = |n: u32| format!("echo good {n}\nwhile true; do sleep 0.2; done\n");
    std::fs::write(dir.join("worker.sh"), good(1)).unwrap();
    std::fs::write(
        dir.join("package.toml"),
        "command = [\"sh\", \"worker.sh\"]\nfiles = [\"worker.sh\"]\n",
    )
    .unwrap();
    // The build command: fails while a file named `broken` is there.
    let port = free_port();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["dev", "--events", "3", "--port"])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data.path())
        .arg("--watch")
        .arg(dir)
        // The build writes a file into the directory: not an edit, no rebuild loop.
        .args(["--build", "test ! -e broken && date +%s%N > built.txt"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let printed = Arc::new(Mutex::new(String::new()));
    let mut stdout = dev.stdout.take().unwrap();
    let reader = tokio::spawn({
        let printed = printed.clone();
        async move {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                printed
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        }
    });
    let said = |text: &'static str, times: usize| {
        let printed = printed.clone();
        async move {
            switchyard_tests::wait_until(Duration::from_secs(90), || async {
                printed.lock().unwrap().matches(text).count() >= times
            })
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "never said {text:?} {times} times:\n{}",
                    printed.lock().unwrap()
                )
            });
        }
    };
    said(" runs\n", 1).await;

    // A build that exits at once: the host rolls it back to the one that runs.
    std::fs::write(dir.join("worker.sh"), "echo broken\nexit 4\n").unwrap();
    said("failed its health check; rolled back to 0.3.0-dev.", 1).await;

    // A build command that fails: nothing is installed.
    std::fs::write(dir.join("broken"), "").unwrap();
    said("the build failed", 1).await;

    // Fixed: the next build runs.
    std::fs::remove_file(dir.join("broken")).unwrap();
    std::fs::write(dir.join("worker.sh"), good(2)).unwrap();
    said(" runs\n", 2).await;
    let text = printed.lock().unwrap().clone();
    let waits = text.matches("waiting for changes").count();
    // Nothing rebuilds on its own: what the build wrote is not a change (a rebuild would be
    // seen well within this).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let later = printed.lock().unwrap().clone();
    assert_eq!(
        later.matches("waiting for changes").count(),
        waits,
        "{later}"
    );

    // Ctrl-C stops it all, the host's worker too.
    let pid = dev.id().unwrap();
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), dev.wait())
        .await
        .expect("dev stops on Ctrl-C")
        .unwrap();
    reader.await.unwrap();
    assert!(status.success(), "{}", printed.lock().unwrap());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nats-server still listens on {port}"
    );
}

/// `switchyard call` against `switchyard dev`: the example tax-rates plugin answers, and its
/// refusal comes back with its code.
#[tokio::test]
async fn call_answers_an_operation_of_the_dev_examples() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["dev", "--events", "1", "--keep-running", "--port"])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let call = |region: &'static str, json: bool| {
        let url = url.clone();
        async move {
            let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
            command
                .args([
                    "call",
                    "tax-rates",
                    "rate",
                    "--tenant",
                    "acme",
                    "--url",
                    &url,
                ])
                .arg("--data")
                .arg(format!("{{\"region\":\"{region}\",\"total_cents\":1000}}"));
            if json {
                command.arg("--json");
            }
            command.output().await.unwrap()
        }
    };
    // Until dev's server, dispatcher and workers are up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let output = loop {
        let output = call("eu", false).await;
        if output.status.success() {
            break output;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never answered: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let response: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(response["tax_cents"], 200);
    assert_eq!(response["rate_percent"], 20);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("answered in") && stderr.contains("1 attempt"),
        "{stderr}"
    );

    let json = call("us", true).await;
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["response"]["tax_cents"], 70);
    assert!(report["took_ms"].as_f64().unwrap() > 0.0);

    let refused_json = call("mars", true).await;
    assert!(!refused_json.status.success());
    let report: serde_json::Value = serde_json::from_slice(&refused_json.stdout).unwrap();
    assert_eq!(report["error"]["code"], "tax.unknown-region");
    assert_eq!(report["error"]["status"], 500);

    let refused = call("mars", false).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("tax.unknown-region") && stderr.contains("mars"),
        "{stderr}"
    );

    let pid = dev.id().unwrap();
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), dev.wait())
        .await
        .expect("dev stops on Ctrl-C")
        .unwrap();
    assert!(status.success());
}

/// `switchyard dev` serves the web console and prints its URL with a token that signs in: a
/// raw HTTP client (no API client of ours) reads the page and the plugins with it. SIGTERM
/// stops it all, the nats-server it started too.
#[tokio::test]
async fn dev_serves_the_console_at_the_url_it_prints() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut dev = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "dev",
            "--events",
            "1",
            "--keep-running",
            "--console",
            "127.0.0.1:0",
        ])
        .arg("--port")
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(dev.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("console: ") {
                return rest.split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("dev ended without printing the console's URL");
    })
    .await
    .expect("dev prints the console's URL");
    // Keep reading, so that dev never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let (base, token) = url.split_once("#token=").expect("a token in the URL");
    let address = base
        .strip_prefix("http://")
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let get = |path: &str, token: Option<&str>| {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n{}\r\n",
            token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"))
        );
        let address = address.clone();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        }
    };
    let page = get("/", None).await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("/assets/app.js"), "{page}");
    let refused = get("/api/v1/plugins", None).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let plugins = get("/api/v1/plugins", Some(token)).await;
    assert!(plugins.starts_with("HTTP/1.1 200"), "{plugins}");
    for example in [
        "audit-logger",
        "flaky-notifier",
        "order-validator",
        "tax-rates",
    ] {
        assert!(plugins.contains(example), "{example} missing: {plugins}");
    }
    let who = get("/api/v1/whoami", Some(token)).await;
    assert!(who.contains(r#""role":"admin""#), "{who}");

    let pid = dev.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), dev.wait())
        .await
        .expect("dev stops on SIGTERM")
        .unwrap();
    assert!(status.success());
    assert!(
        tokio::net::TcpStream::connect(&address).await.is_err(),
        "the console still listens after dev stopped"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nats-server outlived dev's SIGTERM"
    );
}
