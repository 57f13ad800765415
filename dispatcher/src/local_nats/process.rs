//! Run `nats-server` as a child process.
//!
//! [`LocalNatsServer::start`] runs
//! `nats-server -a 127.0.0.1 -p <port> -js -sd <store_dir> --ports_file_dir <store_dir> [...]` with its
//! output appended to a log file, reads the ports it really bound back from the ports file the server
//! writes (so a random port never races with another process), and waits until the server is ready.
//! Dropping the server kills the process, also while a test unwinds from a panic.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout, Instant};

use super::binary::{self, BinaryError};

/// The address every local server binds to: it is for this machine only.
const HOST: &str = "127.0.0.1";
/// How long one readiness probe may take before the next is tried.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause between readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// How much of the log an error quotes.
const LOG_TAIL_LINES: usize = 30;

/// A port to listen on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Port {
    /// A free port chosen by the server (`-1`); read back after start.
    #[default]
    Random,
    /// This port.
    Fixed(u16),
}

impl Port {
    fn arg(self) -> String {
        match self {
            Port::Random => "-1".to_owned(),
            Port::Fixed(port) => port.to_string(),
        }
    }
}

/// When [`LocalNatsServer::start`] considers the server ready.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Readiness {
    /// The client port accepts TCP connections. For cluster nodes, whose JetStream waits for the
    /// other nodes, and for configurations that refuse anonymous clients.
    Accepting,
    /// An anonymous client connects and JetStream answers an account info request.
    #[default]
    JetStream,
    /// The monitoring endpoint `/healthz` answers 200 (JetStream current with its cluster). Needs
    /// [`ServerOptions::monitoring_port`].
    Healthy,
}

/// Clustering for one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterOptions {
    /// The cluster name (`--cluster_name`); every node of a cluster uses the same.
    pub name: String,
    /// The port for routes from the other nodes (`--cluster nats://127.0.0.1:<port>`).
    pub port: Port,
    /// Route URLs of the other nodes, e.g. `nats://127.0.0.1:6222` (`--routes`). Listing the node
    /// itself is harmless, so every node can be given the same list.
    pub routes: Vec<String>,
}

/// How to run a [`LocalNatsServer`]. Every field but `store_dir` has a usable default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// The data directory: JetStream stores under `<store_dir>/jetstream`; the log and the ports file
    /// go here too unless said otherwise. Created if missing. Required.
    pub store_dir: PathBuf,
    /// The binary to run, as is (see [`binary::probe`] to check one). `None`: [`binary::resolve`].
    pub binary: Option<PathBuf>,
    /// The client port. Default: a random free one.
    pub port: Port,
    /// The server name (`--server_name`); cluster nodes need distinct ones.
    pub name: Option<String>,
    /// A configuration file (`-c`). The options above take precedence over it.
    pub config_file: Option<PathBuf>,
    /// The HTTP monitoring port (`-m`). Default: none.
    pub monitoring_port: Option<Port>,
    /// Clustering. Default: none.
    pub cluster: Option<ClusterOptions>,
    /// Where the server's output goes (appended). Default: `<store_dir>/nats-server.log`.
    pub log_file: Option<PathBuf>,
    /// When start returns.
    pub readiness: Readiness,
    /// How long start waits for readiness. Default: 10 s.
    pub ready_timeout: Duration,
    /// How long stop waits for a clean shutdown before killing. Default: 5 s.
    pub stop_timeout: Duration,
    /// Run the server in a process group of its own, so that a Ctrl-C at the terminal reaches
    /// only this program, which then stops the server itself (after it has used it to shut
    /// down cleanly). Default: false (Unix only).
    pub own_process_group: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            store_dir: PathBuf::new(),
            binary: None,
            port: Port::Random,
            name: None,
            config_file: None,
            monitoring_port: None,
            cluster: None,
            log_file: None,
            readiness: Readiness::JetStream,
            ready_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(5),
            own_process_group: false,
        }
    }
}

/// Why a [`LocalNatsServer`] could not be started, stopped or signalled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The options cannot work.
    #[error("invalid nats-server options: {0}")]
    InvalidOptions(&'static str),
    /// No binary could be had.
    #[error(transparent)]
    Binary(#[from] BinaryError),
    /// The binary could not be started.
    #[error("could not start {binary}: {source}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file or process operation failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The server exited before it was ready (a taken port, a bad config file, ...).
    #[error("nats-server exited during startup ({status}); the end of {log_file}:\n{log_tail}")]
    Exited {
        /// How it exited.
        status: ExitStatus,
        /// Its log.
        log_file: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// The server was not ready in time; it has been killed.
    #[error("nats-server was not ready within {timeout:?} ({waiting_for}); the end of {log_file}:\n{log_tail}")]
    NotReady {
        /// The deadline that passed.
        timeout: Duration,
        /// What was still missing.
        waiting_for: String,
        /// Its log.
        log_file: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// `nats-server --signal` failed.
    #[error("could not signal nats-server (pid {pid}) to {signal}: {detail}")]
    Signal {
        /// The signal's name for `nats-server --signal`.
        signal: &'static str,
        /// The server's process id.
        pid: u32,
        /// What went wrong.
        detail: String,
    },
    /// The server is not running.
    #[error("nats-server is not running")]
    NotRunning,
}

/// A `nats-server` child process.
///
/// The ports it bound on its first start are kept for [`restart`](Self::restart), so clients and
/// routes find it again. Dropping it kills the process (without a clean JetStream shutdown: call
/// [`stop`](Self::stop) for that); the store directory is left alone.
#[derive(Debug)]
pub struct LocalNatsServer {
    /// With every [`Port::Random`] replaced by the port actually bound, once started.
    options: ServerOptions,
    binary: PathBuf,
    log_file: PathBuf,
    child: Option<Child>,
    ports_file: Option<PathBuf>,
    port: u16,
    monitoring_port: Option<u16>,
    cluster_port: Option<u16>,
}

impl LocalNatsServer {
    /// Starts a server and waits until it is ready as `options.readiness` says.
    ///
    /// # Errors
    ///
    /// [`ServerError::InvalidOptions`] without a store directory (or [`Readiness::Healthy`] without a
    /// monitoring port), [`ServerError::Binary`] when no binary can be had, [`ServerError::Exited`] or
    /// [`ServerError::NotReady`] (both quoting the server's log) when it does not come up, and
    /// [`ServerError::Spawn`] or [`ServerError::Io`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a cancelled start kills the half-started process.
    pub async fn start(options: ServerOptions) -> Result<Self, ServerError> {
        if options.store_dir.as_os_str().is_empty() {
            return Err(ServerError::InvalidOptions("store_dir is required"));
        }
        if options.readiness == Readiness::Healthy && options.monitoring_port.is_none() {
            return Err(ServerError::InvalidOptions(
                "Readiness::Healthy needs a monitoring_port",
            ));
        }
        fs::create_dir_all(&options.store_dir).map_err(|source| ServerError::Io {
            action: "create the store directory",
            path: options.store_dir.clone(),
            source,
        })?;
        let binary = match &options.binary {
            Some(path) => path.clone(),
            None => binary::resolve().await?.path,
        };
        let log_file = options
            .log_file
            .clone()
            .unwrap_or_else(|| options.store_dir.join("nats-server.log"));
        let mut server = Self {
            options,
            binary,
            log_file,
            child: None,
            ports_file: None,
            port: 0,
            monitoring_port: None,
            cluster_port: None,
        };
        server.launch().await?;
        Ok(server)
    }

    /// Stops the server cleanly (SIGINT through `nats-server --signal`, so JetStream flushes its
    /// stores), killing it if it has not exited within [`ServerOptions::stop_timeout`]. Does nothing
    /// when it is not running.
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] when the process cannot be waited for or killed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the process stays owned by `self`, and dropping `self` still kills it.
    pub async fn stop(&mut self) -> Result<(), ServerError> {
        if let Some(pid) = self.running_pid()? {
            let asked = self.signal("quit", pid).await.is_ok();
            let deadline = Instant::now() + self.options.stop_timeout;
            while asked && Instant::now() < deadline && self.running_pid()?.is_some() {
                sleep(POLL_INTERVAL).await;
            }
        }
        self.kill()
    }

    /// Kills the server at once (SIGKILL) and waits for it to exit, as a crash would. Does nothing
    /// when it is not running.
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] when the process cannot be killed or waited for.
    pub fn kill(&mut self) -> Result<(), ServerError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        let result = child.kill().and_then(|()| child.wait().map(drop));
        self.child = None;
        // A killed server leaves its ports file behind.
        if let Some(ports_file) = self.ports_file.take() {
            let _ = fs::remove_file(ports_file);
        }
        result.map_err(|source| ServerError::Io {
            action: "kill nats-server",
            path: self.binary.clone(),
            source,
        })
    }

    /// Stops the server (see [`stop`](Self::stop)) and starts it again with the same ports, store and
    /// options, waiting for readiness as [`start`](Self::start) does.
    ///
    /// # Errors
    ///
    /// As [`stop`](Self::stop) and [`start`](Self::start).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe in that no process is leaked; a cancelled restart may leave the server stopped.
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.stop().await?;
        self.launch().await
    }

    /// Makes the server reload its configuration file (SIGHUP through `nats-server --signal`), e.g.
    /// after its authorization section changed. Returns once the signal is sent; the reload is
    /// logged by the server.
    ///
    /// # Errors
    ///
    /// [`ServerError::NotRunning`], or [`ServerError::Signal`] when the signal could not be sent.
    pub async fn reload(&mut self) -> Result<(), ServerError> {
        let pid = self.running_pid()?.ok_or(ServerError::NotRunning)?;
        self.signal("reload", pid).await
    }

    /// Whether `/healthz` on the monitoring port answers 200: the server is up and its JetStream is
    /// current with its cluster. `false` without a monitoring port.
    pub async fn is_healthy(&self) -> bool {
        match self.monitoring_port {
            Some(port) => timeout(PROBE_TIMEOUT, http_status(port, "/healthz"))
                .await
                .is_ok_and(|status| matches!(status, Ok(200))),
            None => false,
        }
    }

    /// Whether the process is still running (it may have exited on its own).
    pub fn is_running(&mut self) -> bool {
        matches!(self.running_pid(), Ok(Some(_)))
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://{HOST}:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The monitoring port, if enabled.
    pub fn monitoring_port(&self) -> Option<u16> {
        self.monitoring_port
    }

    /// The monitoring URL, `http://127.0.0.1:<port>`, if enabled.
    pub fn monitoring_url(&self) -> Option<String> {
        self.monitoring_port
            .map(|port| format!("http://{HOST}:{port}"))
    }

    /// The route port, if clustered.
    pub fn cluster_port(&self) -> Option<u16> {
        self.cluster_port
    }

    /// The route URL other nodes use, `nats://127.0.0.1:<port>`, if clustered.
    pub fn cluster_url(&self) -> Option<String> {
        self.cluster_port
            .map(|port| format!("nats://{HOST}:{port}"))
    }

    /// The store (data) directory.
    pub fn store_dir(&self) -> &Path {
        &self.options.store_dir
    }

    /// The file the server's output is appended to.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The binary that runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The options, with the ports actually bound in place of [`Port::Random`].
    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines of the log file, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_file)
    }

    /// Spawns the process with the current options and waits for readiness.
    async fn launch(&mut self) -> Result<(), ServerError> {
        let pid = self.spawn()?;
        let deadline = Instant::now() + self.options.ready_timeout;
        // Kill the process unless readiness is reached; also covers a cancelled start.
        let mut guard = KillUnlessReady {
            server: self,
            ready: false,
        };
        guard.server.wait_for_ports(pid, deadline).await?;
        guard.server.wait_for_readiness(deadline).await?;
        guard.ready = true;
        let server = &mut *guard.server;
        // Restarts bind the same ports, so that clients and other nodes find the server again.
        server.options.port = Port::Fixed(server.port);
        if let Some(port) = server.monitoring_port {
            server.options.monitoring_port = Some(Port::Fixed(port));
        }
        if let (Some(cluster), Some(port)) = (server.options.cluster.as_mut(), server.cluster_port)
        {
            cluster.port = Port::Fixed(port);
        }
        tracing::debug!(url = %server.url(), pid, store_dir = %server.options.store_dir.display(), "nats-server ready");
        Ok(())
    }

    fn spawn(&mut self) -> Result<u32, ServerError> {
        let options = &self.options;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(|source| ServerError::Io {
                action: "open the log file",
                path: self.log_file.clone(),
                source,
            })?;
        let log_for_stdout = log.try_clone().map_err(|source| ServerError::Io {
            action: "open the log file",
            path: self.log_file.clone(),
            source,
        })?;

        let mut command = Command::new(&self.binary);
        command
            .args(["-a", HOST, "-p", &options.port.arg(), "-js", "-sd"])
            .arg(&options.store_dir)
            .arg("--ports_file_dir")
            .arg(&options.store_dir);
        if let Some(config_file) = &options.config_file {
            command.arg("-c").arg(config_file);
        }
        if let Some(name) = &options.name {
            command.args(["--server_name", name]);
        }
        if let Some(port) = options.monitoring_port {
            command.args(["-m", &port.arg()]);
        }
        if let Some(cluster) = &options.cluster {
            command
                .arg("--cluster")
                .arg(format!("nats://{HOST}:{}", cluster.port.arg()))
                .args(["--cluster_name", &cluster.name]);
            if !cluster.routes.is_empty() {
                command.args(["--routes", &cluster.routes.join(",")]);
            }
        }
        // By default the child stays in our process group: a Ctrl-C that kills a test run
        // without unwinding reaches the servers too. A program that handles Ctrl-C itself and
        // still needs the server while it shuts down asks for a group of the server's own.
        #[cfg(unix)]
        if options.own_process_group {
            use std::os::unix::process::CommandExt;
            command.process_group(0);
        }
        command
            .stdin(Stdio::null())
            .stdout(log_for_stdout)
            .stderr(log);

        let child = command.spawn().map_err(|source| ServerError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        let pid = child.id();
        self.child = Some(child);
        tracing::debug!(pid, binary = %self.binary.display(), log_file = %self.log_file.display(), "started nats-server");
        Ok(pid)
    }

    /// Waits for `<store_dir>/<binary name>_<pid>.ports`, which the server writes once it listens,
    /// and takes the real ports from it.
    async fn wait_for_ports(&mut self, pid: u32, deadline: Instant) -> Result<(), ServerError> {
        let suffix = format!("_{pid}.ports");
        loop {
            self.check_alive()?;
            // The server may be caught mid-write: an unreadable file is read again next time.
            if let Some((path, ports)) = find_ports_file(&self.options.store_dir, &suffix) {
                if let Some(port) = ports.nats.first().and_then(|url| port_of(url)) {
                    self.port = port;
                    self.monitoring_port = ports.monitoring.first().and_then(|url| port_of(url));
                    self.cluster_port = ports.cluster.first().and_then(|url| port_of(url));
                    self.ports_file = Some(path);
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready("the ports file".to_owned()));
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    async fn wait_for_readiness(&mut self, deadline: Instant) -> Result<(), ServerError> {
        let mut client: Option<async_nats::Client> = None;
        loop {
            self.check_alive()?;
            let probe = match self.options.readiness {
                Readiness::Accepting => timeout(
                    PROBE_TIMEOUT,
                    tokio::net::TcpStream::connect((HOST, self.port)),
                )
                .await
                .map_err(|_| "a TCP connection: timed out".to_owned())
                .and_then(|result| {
                    result
                        .map(drop)
                        .map_err(|error| format!("a TCP connection: {error}"))
                }),
                Readiness::JetStream => self.probe_jetstream(&mut client).await,
                Readiness::Healthy => {
                    if self.is_healthy().await {
                        Ok(())
                    } else {
                        Err("/healthz to answer 200".to_owned())
                    }
                }
            };
            match probe {
                Ok(()) => return Ok(()),
                Err(waiting_for) if Instant::now() >= deadline => {
                    return Err(self.not_ready(waiting_for))
                }
                Err(_) => sleep(POLL_INTERVAL).await,
            }
        }
    }

    /// Connects (once) and asks JetStream for the account's info.
    async fn probe_jetstream(&self, client: &mut Option<async_nats::Client>) -> Result<(), String> {
        let connected = match client {
            Some(client) => client.clone(),
            None => {
                let connecting = async_nats::ConnectOptions::new()
                    .connection_timeout(PROBE_TIMEOUT)
                    .connect(self.url());
                let connected = timeout(PROBE_TIMEOUT, connecting)
                    .await
                    .map_err(|_| "a client connection: timed out".to_owned())?
                    .map_err(|error| format!("a client connection: {error}"))?;
                client.insert(connected).clone()
            }
        };
        let mut jetstream = async_nats::jetstream::new(connected);
        jetstream.set_timeout(PROBE_TIMEOUT);
        jetstream
            .query_account()
            .await
            .map(drop)
            .map_err(|error| format!("JetStream account info: {error}"))
    }

    /// `Ok(Some(pid))` while the child runs, `Ok(None)` when there is none or it has exited.
    fn running_pid(&mut self) -> Result<Option<u32>, ServerError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        match child.try_wait() {
            Ok(None) => Ok(Some(child.id())),
            Ok(Some(_)) => Ok(None),
            Err(source) => Err(ServerError::Io {
                action: "check on nats-server",
                path: self.binary.clone(),
                source,
            }),
        }
    }

    fn check_alive(&mut self) -> Result<(), ServerError> {
        let exited = match self.child.as_mut() {
            Some(child) => child.try_wait().map_err(|source| ServerError::Io {
                action: "check on nats-server",
                path: self.binary.clone(),
                source,
            })?,
            None => return Err(ServerError::NotRunning),
        };
        match exited {
            None => Ok(()),
            Some(status) => {
                self.child = None;
                Err(ServerError::Exited {
                    status,
                    log_file: self.log_file.clone(),
                    log_tail: self.log_tail(),
                })
            }
        }
    }

    fn not_ready(&self, waiting_for: String) -> ServerError {
        ServerError::NotReady {
            timeout: self.options.ready_timeout,
            waiting_for,
            log_file: self.log_file.clone(),
            log_tail: self.log_tail(),
        }
    }

    /// Sends a signal the portable way nats-server offers: `nats-server --signal <name>=<pid>`.
    async fn signal(&self, signal: &'static str, pid: u32) -> Result<(), ServerError> {
        let output = tokio::process::Command::new(&self.binary)
            .arg("--signal")
            .arg(format!("{signal}={pid}"))
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|error| ServerError::Signal {
                signal,
                pid,
                detail: error.to_string(),
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(ServerError::Signal {
                signal,
                pid,
                detail: format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            })
        }
    }
}

impl Drop for LocalNatsServer {
    fn drop(&mut self) {
        // Blocks for as long as the kernel takes to end the process: milliseconds.
        if let Err(error) = self.kill() {
            tracing::warn!(%error, "could not kill nats-server");
        }
    }
}

/// Kills the server when dropped before it is marked ready.
struct KillUnlessReady<'a> {
    server: &'a mut LocalNatsServer,
    ready: bool,
}

impl Drop for KillUnlessReady<'_> {
    fn drop(&mut self) {
        if !self.ready {
            let _ = self.server.kill();
        }
    }
}

/// What nats-server writes to its ports file.
#[derive(Debug, Default, serde::Deserialize)]
struct PortsFile {
    #[serde(default)]
    nats: Vec<String>,
    #[serde(default)]
    monitoring: Vec<String>,
    #[serde(default)]
    cluster: Vec<String>,
}

fn find_ports_file(dir: &Path, suffix: &str) -> Option<(PathBuf, PortsFile)> {
    // Scanned rather than named: the file is named after the binary as it was invoked.
    let path = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.ends_with(suffix))
        })?;
    let ports = serde_json::from_slice(&fs::read(&path).ok()?).ok()?;
    Some((path, ports))
}

/// The port of a URL such as `nats://127.0.0.1:4222`.
fn port_of(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

/// The last [`LOG_TAIL_LINES`] lines of a log file, or a note saying why there are none.
fn log_tail(path: &Path) -> String {
    const MAX_BYTES: u64 = 16 * 1024;
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(error) => format!("(log unreadable: {error})"),
    }
}

/// The status code of `GET <path>` on the local HTTP port; enough HTTP for `/healthz`.
async fn http_status(port: u16, path: &str) -> io::Result<u16> {
    let mut stream = tokio::net::TcpStream::connect((HOST, port)).await?;
    // HTTP/1.0: the server closes the connection after its answer.
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .await?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).await?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an HTTP status line"))
}
