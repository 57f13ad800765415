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
