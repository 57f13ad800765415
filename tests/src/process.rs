//! The `switchyard run` process, as an operator runs it: the built binary as a child process,
//! its output collected, stopped with a signal or killed.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::wait::wait_until;

/// How long a start may take.
const DEADLINE: Duration = Duration::from_secs(15);

/// A running `switchyard run`, killed when dropped (also while a failing test unwinds), with
/// what it printed so far.
pub struct RunningDispatcher {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// The tasks copying the two outputs; they end when the child closes its pipes.
    readers: Vec<JoinHandle<()>>,
}

impl RunningDispatcher {
    /// Starts `<binary> run --url <url> <args>` and waits until it says it is running.
    ///
    /// # Panics
    /// When it does not start, or does not say it runs within 15 s.
    pub async fn start(binary: &str, url: &str, args: &[&str]) -> Self {
        Self::start_with_env(binary, url, args, &[]).await
    }

    /// [`start`](Self::start) with these environment variables set.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub async fn start_with_env(
        binary: &str,
        url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let running = Self::spawn(binary, url, args, env);
        if wait_until(DEADLINE, || async {
            running.stdout().contains("running on")
        })
        .await
        .is_err()
        {
            panic!(
                "switchyard run did not start:
{}",
                running.output()
            );
        }
        running
    }

    /// Starts `<binary> run --url <url> <args>` with `env` and returns at once, whether or
    /// not it will run. Logs at the default level unless `env` sets `RUST_LOG`.
    ///
    /// # Panics
    /// When the process cannot be started.
    pub fn spawn(binary: &str, url: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_command(binary, "run", url, args, env)
    }

    /// Starts `<binary> <subcommand> --url <url> <args>` with `env` (another long-running
    /// command, such as `host`) and returns at once.
    ///
    /// # Panics
    /// When the process cannot be started.
    pub fn spawn_command(
        binary: &str,
        subcommand: &str,
        url: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(binary);
        command
            .arg(subcommand)
            .args(["--url", url])
            .args(args)
            .env_remove("SWITCHYARD_PREFIX")
            .env_remove("SWITCHYARD_NATS_CREDS")
            .env_remove("RUST_LOG");
        for name in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_SERVICE_NAME",
            "OTEL_RESOURCE_ATTRIBUTES",
        ] {
            command.env_remove(name);
        }
        command.envs(env.iter().copied());
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("switchyard {subcommand} does not start: {e}"));
        let (stdout, stdout_reader) = collect(child.stdout.take().expect("piped stdout"));
        let (stderr, stderr_reader) = collect(child.stderr.take().expect("piped stderr"));
        Self {
            child,
            stdout,
            stderr,
            readers: vec![stdout_reader, stderr_reader],
        }
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// What it printed on stderr (its logs) so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Both outputs, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr.lock().unwrap()
        )
    }

    /// Sends SIGTERM, as a service manager stopping it would.
    pub async fn terminate(&self) {
        self.signal("-TERM").await;
    }

    /// Sends a signal with `kill`, e.g. `-STOP` to freeze it and `-CONT` to thaw it.
    pub async fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("still running");
        let status = Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .await
            .expect("running kill");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGKILL: a crash, with no chance to finish anything.
    pub async fn crash(&mut self) {
        self.child.kill().await.expect("SIGKILL the dispatcher");
    }

    /// Waits for the process to exit and for its last output lines to be read: the exit can
    /// be seen before the reader tasks have copied what was written just before it.
    pub async fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let exited = async {
            let status = self.child.wait().await.expect("waiting for switchyard run");
            for reader in self.readers.drain(..) {
                reader.await.expect("output reader task");
            }
            status
        };
        match tokio::time::timeout(timeout, exited).await {
            Ok(status) => status,
            Err(_) => panic!(
                "switchyard run did not exit and close its output within {timeout:?}:\n{}",
                self.output()
            ),
        }
    }
}

impl Drop for RunningDispatcher {
    fn drop(&mut self) {
        // Already gone when the test waited for it; otherwise this kills it.
        let _ = self.child.start_kill();
    }
}

/// Reads `from` line by line into a shared string until it closes; the task ends then.
fn collect(from: impl AsyncRead + Unpin + Send + 'static) -> (Arc<Mutex<String>>, JoinHandle<()>) {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(from).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    (text, reader)
}
