//! One instance this host runs: prepared, confined, supervised, its output published, its
//! state reported; a crash loop marks its plugin failed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_schemas::{worker_env, PluginId};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::desired::Wanted;
use super::prepare::{prepare, WORKER_PATH};
use super::shared::Shared;
use crate::confine::{Launch, Limits, Meter};
use crate::logs;
use crate::place::Slot;
use crate::report::{InstanceReport, InstanceState};
use crate::supervise::{supervise, InstanceEvent, OutputLog, RestartPolicy, Supervision};

/// Lines waiting to be published per instance; past it, lines are dropped (and counted).
const LOG_QUEUE: usize = 1024;

/// What an instance is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// It serves: it reports itself, and its crash loop marks the plugin failed.
    Serving,
    /// It is a new version on trial during an upgrade: silent until promoted, and its ends
    /// fail the upgrade rather than the plugin.
    Candidate,
}

/// An instance under way on this host.
pub(crate) struct Running {
    /// The version it runs.
    pub(crate) version: String,
    /// The name its worker is given (`SWITCHYARD_INSTANCE`: `{plugin}.{slot}@{version}`), by
    /// which its heartbeats are known.
    pub(crate) name: String,
    /// When it was started.
    pub(crate) since: tokio::time::Instant,
    /// Whether it writes its reports (a candidate not yet promoted does not).
    reporting: Arc<AtomicBool>,
    /// What it reports.
    pub(crate) report: Arc<Mutex<InstanceReport>>,
    /// Reads its usage, once it is confined.
    pub(crate) meter: Arc<Mutex<Option<Meter>>>,
    /// CPU time at the last report, and when, for the report's rate.
    pub(crate) last_cpu: Option<(u64, tokio::time::Instant)>,
    /// When its worker last started, and its process id.
    pub(crate) started: Arc<Mutex<Option<(tokio::time::Instant, u32)>>>,
    /// Why the host killed its worker, said when it ends.
    pub(crate) killed_because: Arc<Mutex<Option<String>>>,
    /// How many lines its workers wrote that were not published.
    pub(crate) lines_lost: Arc<std::sync::atomic::AtomicU64>,
    /// How long its heartbeats may stop.
    pub(crate) heartbeat_timeout: Duration,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Running {
    /// Starts `plugin`'s instance `slot` as `wanted` says, in `role`.
    pub(crate) fn start(
        shared: &Arc<Shared>,
        plugin: PluginId,
        slot: Slot,
        wanted: Wanted,
        role: Role,
    ) -> Self {
        let name = format!("{plugin}.{slot}@{}", wanted.version);
        let reporting = Arc::new(AtomicBool::new(role == Role::Serving));
        let report = Arc::new(Mutex::new(InstanceReport {
            plugin: plugin.to_string(),
            slot,
            host: shared.name.clone(),
            version: wanted.version.clone(),
            state: InstanceState::Preparing,
            pid: None,
            started_at: None,
            restarts: 0,
            memory_bytes: None,
            cpu_millicores: None,
            last_end: None,
            upgrading_to: None,
            lines_lost: 0,
            reported_at: OffsetDateTime::now_utc(),
        }));
        let meter = Arc::new(Mutex::new(None));
        let started = Arc::new(Mutex::new(None));
        let killed_because = Arc::new(Mutex::new(None));
        let heartbeat_timeout = wanted.run.heartbeat_timeout;
        let (lines_tx, lines_rx) = mpsc::channel(LOG_QUEUE);
        let output = OutputLog::new(shared.output_bytes).forwarding(lines_tx);
        let stop = CancellationToken::new();
        let version = wanted.version.clone();
        let task = tokio::spawn(run(
            shared.clone(),
            plugin,
            slot,
            wanted,
            Watched {
                report: report.clone(),
                meter: meter.clone(),
                started: started.clone(),
                killed_because: killed_because.clone(),
                reporting: reporting.clone(),
                name: name.clone(),
                output: output.clone(),
                lines: lines_rx,
            },
            stop.clone(),
        ));
        Self {
            version,
            name,
            since: tokio::time::Instant::now(),
            reporting,
            report,
            meter,
            last_cpu: None,
            started,
            killed_because,
            lines_lost: output.unforwarded_lines(),
            heartbeat_timeout,
            stop,
            task,
        }
    }

    /// Whether it has ended by itself (a crash loop, or it could not start).
    pub(crate) fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops it: its worker gets SIGTERM and the grace period, then its cage and its report
    /// are removed.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// A candidate becomes the instance that serves: it reports itself from now on.
    pub(crate) fn promote(&self) {
        self.reporting.store(true, Ordering::Relaxed);
    }

    /// Whether it writes its reports.
    pub(crate) fn is_reporting(&self) -> bool {
        self.reporting.load(Ordering::Relaxed)
    }

    /// Asks it to stop without waiting.
    pub(crate) fn cancel(&self) {
        self.stop.cancel();
    }

    /// Kills its worker's process group (the supervisor starts it again), saying `why` when
    /// the end is reported.
    pub(crate) fn kill(&self, why: String) {
        let Some((_, pid)) = *self.started.lock().expect("never poisoned") else {
            return;
        };
        *self.killed_because.lock().expect("never poisoned") = Some(why);
        crate::supervise::signal_group(pid, rustix::process::Signal::KILL);
    }
}

/// What the host watches of an instance while it runs.
struct Watched {
    report: Arc<Mutex<InstanceReport>>,
    meter: Arc<Mutex<Option<Meter>>>,
    started: Arc<Mutex<Option<(tokio::time::Instant, u32)>>>,
    killed_because: Arc<Mutex<Option<String>>>,
    reporting: Arc<AtomicBool>,
    name: String,
    output: OutputLog,
    lines: mpsc::Receiver<crate::supervise::Line>,
}

/// The whole life of one instance.
async fn run(
    shared: Arc<Shared>,
    plugin: PluginId,
    slot: Slot,
    wanted: Wanted,
    watched: Watched,
    stop: CancellationToken,
) {
    let Watched {
        report,
        meter,
        started,
        killed_because,
        reporting,
        name: instance_name,
        output,
        lines: lines_rx,
    } = watched;
    let reports = Reports {
        shared: &shared,
        report: &report,
        reporting: &reporting,
        plugin: &plugin,
        slot,
    };
    // Its cage and directory: apart from another version's of the same slot during an upgrade.
    let name = format!("{plugin}.{slot}-{}", fit_for_a_name(&wanted.version));
    reports.put().await;
    let dir = shared.state_dir.join("instances").join(&name);
    let trust = shared.trust();
    let prepared = tokio::select! {
        prepared = prepare(&shared.store, &trust, &plugin, &wanted, &dir) => prepared,
        () = stop.cancelled() => return reports.forget().await,
    };
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return cannot_start(&reports, error.to_string(), &stop).await,
    };
    // A user of its own (when the host is root): it owns its directory and nothing else.
    let uid = match shared.take_uid() {
        Ok(uid) => uid,
        Err(reason) => return cannot_start(&reports, reason, &stop).await,
    };
    let _uid = uid.map(|uid| GiveBack(&shared, uid));
    if let Some(uid) = uid {
        if let Err(error) = chown_all(&prepared.dir, uid) {
            return cannot_start(&reports, error, &stop).await;
        }
    }
    let token_file = match write_secret(&shared, &plugin, &dir, uid).await {
        Ok(file) => file,
        Err(reason) => return cannot_start(&reports, reason, &stop).await,
    };
    let limits = Limits {
        memory_bytes: Some(wanted.run.memory_bytes),
        cpu_millicores: Some(wanted.run.cpu_millicores.get()),
        max_processes: Some(wanted.run.max_processes.get()),
        open_files: Some(u64::from(wanted.run.open_files.get())),
    };
    let cage = match shared.confinement.cage(&name, &limits) {
        Ok(cage) => cage,
        Err(error) => return cannot_start(&reports, error.to_string(), &stop).await,
    };
    *meter.lock().expect("never poisoned") = Some(cage.meter());
    let publishing = tokio::spawn(publish_lines(
        shared.clone(),
        plugin.to_string(),
        slot,
        lines_rx,
    ));
    let mut launch = Launch::new(prepared.program, &prepared.dir)
        .args(prepared.args)
        .limits(limits)
        .env("PATH", WORKER_PATH)
        .env("HOME", &prepared.dir)
        .env(worker_env::URL, &shared.worker_url)
        .env(worker_env::PREFIX, shared.namespace.prefix())
        .env(worker_env::INSTANCE, &instance_name);
    if let Some(uid) = uid {
        launch = launch.user(uid, uid);
    }
    if token_file.is_some() {
        // Relative to its working directory: a worker of another user may not be able to
        // reach the absolute path (a parent directory private to the host's user).
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        launch = launch.env(worker_env::TOKEN_FILE, format!("../{name}.token"));
    }
    for (key, value) in &shared.worker_env {
        launch = launch.env(key, value);
    }
    let supervision = Supervision {
        launch,
        enter: shared.enter.clone(),
        restarts: RestartPolicy {
            crash_loop_ends: wanted.run.crash_loop_ends.get(),
            window: wanted.run.crash_loop_window,
            ..shared.restarts
        },
        grace: wanted.run.stop_grace,
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let supervisor = tokio::spawn(supervise(
        supervision,
        shared.confinement.clone(),
        cage,
        output,
        events_tx,
        stop.clone(),
    ));
    while let Some(event) = events.recv().await {
        let mut crash_loop = None;
        {
            let mut report = report.lock().expect("never poisoned");
            match &event {
                InstanceEvent::Started { pid, restarts: n } => {
                    *started.lock().expect("never poisoned") =
                        Some((tokio::time::Instant::now(), *pid));
                    report.state = InstanceState::Running;
                    report.pid = Some(*pid);
                    report.started_at = Some(OffsetDateTime::now_utc());
                    report.restarts = u32::try_from(*n).unwrap_or(u32::MAX);
                }
                InstanceEvent::SpawnFailed { reason } => {
                    report.state = InstanceState::CannotStart;
                    report.pid = None;
                    report.last_end = Some(reason.clone());
                }
                InstanceEvent::Ended { ended, uptime, .. } => {
                    *started.lock().expect("never poisoned") = None;
                    report.state = InstanceState::Restarting;
                    report.pid = None;
                    let ended = match killed_because.lock().expect("never poisoned").take() {
                        Some(why) => format!("killed by the host: {why}"),
                        None => ended.to_string(),
                    };
                    report.last_end = Some(format!("{ended} after {}", humantime_secs(*uptime)));
                }
                InstanceEvent::CrashLoop { ends } => {
                    report.state = InstanceState::CrashLoop;
                    crash_loop = Some(format!(
                        "instance {slot} on host {} ended {ends} times within {} \
                         (crash_loop_ends = {}); last: {}",
                        shared.name,
                        humantime_secs(wanted.run.crash_loop_window),
                        wanted.run.crash_loop_ends,
                        report.last_end.as_deref().unwrap_or("-")
                    ));
                }
                InstanceEvent::Stopped { .. } => {}
            }
            report.reported_at = OffsetDateTime::now_utc();
        }
        tracing::info!(plugin = %plugin, slot, ?event, "instance");
        reports.put().await;
        // A candidate's ends fail the upgrade (judged by the host), not the plugin.
        if let Some(reason) = crash_loop.filter(|_| reporting.load(Ordering::Relaxed)) {
            shared.failures.mark_failed(&plugin, &reason).await;
        }
    }
    let cage = supervisor.await;
    *meter.lock().expect("never poisoned") = None;
    if let Ok(cage) = cage {
        if let Err(error) = cage.remove().await {
            tracing::warn!(plugin = %plugin, slot, %error, "cannot remove the instance's cgroup");
        }
    }
    let _ = publishing.await;
    // A crash loop keeps its report (the plugin is failed; an operator reads why) until the
    // host stops it; a stopped instance's report goes.
    let state = report.lock().expect("never poisoned").state;
    if matches!(state, InstanceState::CrashLoop | InstanceState::CannotStart) {
        stop.cancelled().await;
    }
    if let Some(file) = &token_file {
        let _ = std::fs::remove_file(file);
    }
    let _ = std::fs::remove_dir_all(&dir);
    reports.forget().await;
}

/// Writes the plugin's secret for the instance in `dir` into `<dir>.token` (mode 0600, beside
/// its directory rather than in it: the package may not hold that file), where
/// the broker enforces plugin rights; its path.
async fn write_secret(
    shared: &Shared,
    plugin: &PluginId,
    dir: &std::path::Path,
    uid: Option<u32>,
) -> Result<Option<std::path::PathBuf>, String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let Some(secret) = shared.secret_of(plugin).await? else {
        return Ok(None);
    };
    let mut file = dir.as_os_str().to_owned();
    file.push(".token");
    let file = std::path::PathBuf::from(file);
    let _ = std::fs::remove_file(&file);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .and_then(|mut f| f.write_all(secret.expose().as_bytes()))
        .map_err(|e| {
            format!(
                "cannot write the plugin's secret to {}: {e}",
                file.display()
            )
        })?;
    if let Some(uid) = uid {
        std::os::unix::fs::chown(&file, Some(uid), Some(uid))
            .map_err(|e| format!("cannot give {} to user {uid}: {e}", file.display()))?;
    }
    Ok(Some(file))
}

/// Gives a user id back when the instance ends.
struct GiveBack<'a>(&'a Shared, u32);

impl Drop for GiveBack<'_> {
    fn drop(&mut self) {
        self.0.give_back_uid(self.1);
    }
}

/// Gives `dir` and everything in it to the user (and group) `uid`; links are not followed.
fn chown_all(dir: &std::path::Path, uid: u32) -> Result<(), String> {
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        std::os::unix::fs::lchown(&path, Some(uid), Some(uid))
            .map_err(|e| format!("cannot give {} to user {uid}: {e}", path.display()))?;
        let metadata = std::fs::symlink_metadata(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if metadata.is_dir() {
            let entries = std::fs::read_dir(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            pending.extend(entries.flatten().map(|entry| entry.path()));
        }
    }
    Ok(())
}

/// Writes and removes one instance's report, while it is reporting.
struct Reports<'a> {
    shared: &'a Shared,
    report: &'a Mutex<InstanceReport>,
    reporting: &'a AtomicBool,
    plugin: &'a PluginId,
    slot: Slot,
}

impl Reports<'_> {
    async fn put(&self) {
        if self.reporting.load(Ordering::Relaxed) {
            self.shared.put_report(self.report).await;
        }
    }

    async fn forget(&self) {
        if self.reporting.load(Ordering::Relaxed) {
            self.shared.forget(self.plugin, self.slot).await;
        }
    }
}

/// `text` with every character a cgroup or directory name may not hold as `_`.
fn fit_for_a_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Reports that the instance cannot start, and waits to be stopped (it is not retried: what
/// would change is the registration, and that brings a new instance).
async fn cannot_start(reports: &Reports<'_>, reason: String, stop: &CancellationToken) {
    tracing::warn!(plugin = %reports.plugin, slot = reports.slot, %reason, "an instance cannot start");
    {
        let mut report = reports.report.lock().expect("never poisoned");
        report.state = InstanceState::CannotStart;
        report.last_end = Some(reason);
        report.reported_at = OffsetDateTime::now_utc();
    }
    reports.put().await;
    stop.cancelled().await;
    reports.forget().await;
}

/// Publishes the instance's lines on its logs subject until its output ends.
async fn publish_lines(
    shared: Arc<Shared>,
    plugin: String,
    slot: Slot,
    mut lines: mpsc::Receiver<crate::supervise::Line>,
) {
    let subject = logs::subject(&shared.namespace, &plugin, slot);
    while let Some(line) = lines.recv().await {
        let headers = logs::headers(&line, &shared.name);
        if let Err(error) = shared
            .client
            .publish_with_headers(subject.clone(), headers, line.text.into())
            .await
        {
            tracing::debug!(%error, "a worker's output line was not published");
        }
    }
}

/// A duration in whole seconds, for people.
fn humantime_secs(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs < 1 {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{secs} s")
    }
}
