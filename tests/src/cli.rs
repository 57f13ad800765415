//! Running the `switchyard` binary in tests, as an operator would. The binary's path comes
//! from the test (`env!("CARGO_BIN_EXE_switchyard")`, known only to tests of its own package).

use std::process::Output;

/// Runs `binary <args>` against the server at `url`, or against nothing listening (`None`:
/// port 1, so a command that connects fails at once). Ignores the caller's
/// `SWITCHYARD_PREFIX`, `SWITCHYARD_NATS_CREDS` and `RUST_LOG`.
///
/// # Panics
/// When the binary cannot be started.
pub async fn run_switchyard(binary: &str, url: Option<&str>, args: &[&str]) -> Output {
    tokio::process::Command::new(binary)
        .args(args)
        .env_remove("SWITCHYARD_PREFIX")
        .env_remove("SWITCHYARD_NATS_CREDS")
        .env_remove("RUST_LOG")
        .env("SWITCHYARD_NATS_URL", url.unwrap_or("nats://127.0.0.1:1"))
        .output()
        .await
        .expect("running switchyard")
}

/// Standard output as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that the command succeeded, and returns its standard output.
///
/// # Panics
/// When it failed, quoting both outputs.
pub fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Asserts that the command failed, and returns its standard error.
///
/// # Panics
/// When it succeeded.
pub fn failed(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure; stdout:\n{}",
        stdout(output)
    );
    stderr(output)
}
