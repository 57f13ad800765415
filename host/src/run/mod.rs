//! `switchyard host`: registers this host, and runs the instances the placement gives it of
//! the enabled plugins installed from packages, until stopped.
//!
//! Every [`HostOptions::heartbeat`] (and at once on any registry change) it writes its record
//! ([`HostDirectory`]), reads the live hosts and the registry, works out the instances it
//! should run ([`desired`]), stops those it should no longer run (or that run another
//! version), starts the missing ones ([`instance`]), and reports each one's state and usage
//! ([`InstanceBoard`]).

mod desired;
mod instance;
mod lock;
mod prepare;
mod upgrade;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt as _;
use switchyard_control::auth::{CredentialStore, PluginSecret};
use switchyard_control::lifecycle::failure::FailureReporter;
use switchyard_control::package::{PackageStore, TrustStore, TrustedKeys};
use switchyard_control::registry::Registry;
use switchyard_schemas::{Namespace, PluginId};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use self::instance::{Role, Running};
use self::upgrade::Verdict;
use crate::confine::Confinement;
use crate::logs;
use crate::place::{HostDirectory, HostRecord, PlaceError, Slot};
use crate::report::{InstanceBoard, InstanceReport};
use crate::supervise::RestartPolicy;

/// How a host runs.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Its name: unique among the live hosts of the deployment; letters, digits, `-`, `_`.
    pub name: String,
    /// The deployment.
    pub namespace: Namespace,
    /// Where instances are unpacked (`<state_dir>/instances/<plugin>.<slot>`).
    pub state_dir: PathBuf,
    /// The `switchyard-enter` trampoline.
    pub enter: PathBuf,
    /// The NATS URL the workers connect to.
    pub worker_url: String,
    /// More environment for every worker (e.g. telemetry settings); nothing else of the
    /// host's environment reaches them.
    pub worker_env: Vec<(String, String)>,
    /// How often it writes its record, reads the registry and reports its instances.
    pub heartbeat: Duration,
    /// A host whose record is older than this is taken as gone, and its instances started
    /// elsewhere.
    pub host_timeout: Duration,
    /// The output kept in memory per instance, in bytes (the logs stream keeps more).
    pub output_bytes: usize,
    /// Restart pauses (the crash-loop threshold comes from each manifest).
    pub restarts: RestartPolicy,
    /// The user ids workers run as, one of its own per instance (the group id is the same
    /// number); `None`: as the host's user. Changing users needs a host running as root.
    pub worker_uids: Option<std::ops::RangeInclusive<u32>>,
}

/// Whether this process runs as root (then workers run as users of their own by default).
pub fn runs_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The user ids workers run as by default when the host runs as root: a range no account on
/// a usual system has, so that a worker owns nothing but its own directory.
pub const DEFAULT_WORKER_UIDS: std::ops::RangeInclusive<u32> = 1_900_000_000..=1_900_065_535;

impl HostOptions {
    /// A host named `name` with the default timings: a heartbeat every 2 s, gone after 10 s.
    pub fn new(
        name: impl Into<String>,
        namespace: Namespace,
        state_dir: PathBuf,
        enter: PathBuf,
        worker_url: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace,
            state_dir,
            enter,
            worker_url: worker_url.into(),
            worker_env: Vec::new(),
            heartbeat: Duration::from_secs(2),
            host_timeout: Duration::from_secs(10),
            output_bytes: 256 * 1024,
            restarts: RestartPolicy::default(),
            worker_uids: runs_as_root().then_some(DEFAULT_WORKER_UIDS),
        }
    }
}

/// Why a host stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// Its directory, reports or logs could not be set up, or its name is taken.
    #[error(transparent)]
    Place(#[from] PlaceError),
    /// Another host of the same name runs on this machine.
    #[error("{0}")]
    NameTakenHere(String),
    /// The registry, package store or trusted keys could not be opened.
    #[error("cannot open {what}: {reason}")]
    Open {
        /// What.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// What every instance task of a host shares.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) namespace: Namespace,
    pub(crate) client: async_nats::Client,
    pub(crate) state_dir: PathBuf,
    pub(crate) enter: PathBuf,
    pub(crate) worker_url: String,
    pub(crate) worker_env: Vec<(String, String)>,
    pub(crate) output_bytes: usize,
    pub(crate) restarts: RestartPolicy,
    pub(crate) confinement: Confinement,
    pub(crate) store: PackageStore,
    /// The trusted keys as last read.
    pub(crate) trust: Mutex<TrustedKeys>,
    pub(crate) board: InstanceBoard,
    pub(crate) failures: FailureReporter,
    /// Where the broker enforces plugin rights: the credentials, from which this host issues
    /// itself a secret per plugin it runs.
    pub(crate) credentials: Option<CredentialStore>,
    /// The user ids in use by instances, and the range they come from.
    pub(crate) uids: Option<Mutex<UidPool>>,
    /// The secrets issued so far, per plugin (one per plugin for the host's life).
    pub(crate) secrets: tokio::sync::Mutex<std::collections::HashMap<PluginId, PluginSecret>>,
    /// When each instance (`{plugin}.{slot}@{version}`) was last heard from: its hellos and
    /// heartbeats.
    pub(crate) heard: Mutex<std::collections::HashMap<String, tokio::time::Instant>>,
}

/// The user ids of a host's workers: one of its own per instance, machine-wide (each id is
/// held with a lock every host of the machine respects).
pub(crate) struct UidPool {
    range: std::ops::RangeInclusive<u32>,
    held: std::collections::BTreeMap<u32, lock::MachineLock>,
}

impl Shared {
    /// A user id no other instance on this machine has, when workers change users; `Err`
    /// when the range is used up. Whatever still runs as that id (children of a worker whose
    /// host was killed) is killed first: they must not share the new instance's files.
    pub(crate) fn take_uid(&self) -> Result<Option<u32>, String> {
        let Some(pool) = &self.uids else {
            return Ok(None);
        };
        let mut pool = pool.lock().expect("never poisoned");
        let range = pool.range.clone();
        for uid in range.clone() {
            if pool.held.contains_key(&uid) {
                continue;
            }
            match lock::MachineLock::take_uid(uid) {
                Ok(Some(lock)) => {
                    kill_processes_of(uid);
                    pool.held.insert(uid, lock);
                    return Ok(Some(uid));
                }
                Ok(None) => continue,
                Err(error) => return Err(format!("cannot take a worker user id: {error}")),
            }
        }
        Err(format!(
            "every worker user id of {}-{} is in use on this machine",
            range.start(),
            range.end()
        ))
    }

    /// Gives back a user id from [`Shared::take_uid`].
    pub(crate) fn give_back_uid(&self, uid: u32) {
        if let Some(pool) = &self.uids {
            pool.lock().expect("never poisoned").held.remove(&uid);
        }
    }

    /// The trusted keys as last read.
    pub(crate) fn trust(&self) -> TrustedKeys {
        self.trust.lock().expect("never poisoned").clone()
    }

    /// Writes the instance's report; a failure is logged (the next heartbeat writes again).
    pub(crate) async fn put_report(&self, report: &Mutex<InstanceReport>) {
        let report = report.lock().expect("never poisoned").clone();
        if let Err(error) = self.board.put(&report).await {
            tracing::warn!(%error, "cannot report an instance");
        }
    }

    /// The secret `plugin`'s workers log in with, issued by this host the first time; `None`
    /// where the broker does not enforce plugin rights.
    ///
    /// # Errors
    /// Why none could be issued.
    pub(crate) async fn secret_of(
        &self,
        plugin: &PluginId,
    ) -> Result<Option<PluginSecret>, String> {
        let Some(credentials) = &self.credentials else {
            return Ok(None);
        };
        let mut secrets = self.secrets.lock().await;
        if let Some(secret) = secrets.get(plugin) {
            return Ok(Some(secret.clone()));
        }
        let auditor = self.failures.auditor().await.map_err(|e| e.to_string())?;
        let secret = credentials
            .issue_for_host(plugin, &self.name, &auditor)
            .await
            .map_err(|e| format!("cannot issue the plugin's secret: {e}"))?;
        secrets.insert(plugin.clone(), secret.clone());
        Ok(Some(secret))
    }

    /// Takes back the secrets this host issued itself (it stops).
    async fn forget_secrets(&self) {
        let Some(credentials) = &self.credentials else {
            return;
        };
        for plugin in self.secrets.lock().await.keys() {
            if let Err(error) = credentials.forget_host(plugin, &self.name).await {
                tracing::warn!(%plugin, %error, "cannot take back the host's secret");
            }
        }
    }

    /// Whether the instance named `name` was heard from since `since`.
    pub(crate) fn heard_since(&self, name: &str, since: tokio::time::Instant) -> bool {
        self.heard
            .lock()
            .expect("never poisoned")
            .get(name)
            .is_some_and(|last| *last >= since)
    }

    /// Removes the instance's report, if this host wrote it last.
    pub(crate) async fn forget(&self, plugin: &PluginId, slot: Slot) {
        if let Err(error) = self.board.remove(plugin.as_str(), slot, &self.name).await {
            tracing::warn!(%error, "cannot remove an instance's report");
        }
    }
}

/// Runs the host until `stop`: then stops every instance (each within its grace period),
/// removes its cgroups and its record.
///
/// # Errors
/// [`HostError`] when it cannot start; once running, failures are logged and retried on the
/// next heartbeat.
pub async fn run_host(
    client: async_nats::Client,
    options: HostOptions,
    confinement: Confinement,
    stop: CancellationToken,
) -> Result<(), HostError> {
    // First: whatever else runs under this name on this machine must not be touched.
    let _lock = lock::MachineLock::take(&options.name).map_err(HostError::NameTakenHere)?;
    let js = jetstream::new(client.clone());
    let namespace = options.namespace.clone();
    let open = |what| {
        move |e: &dyn std::fmt::Display| HostError::Open {
            what,
            reason: e.to_string(),
        }
    };
    let registry = Registry::open(&js, &namespace)
        .await
        .map_err(|e| open("the registry")(&e))?;
    let store = PackageStore::open(&js, &namespace)
        .await
        .map_err(|e| open("the package store")(&e))?;
    let trust_store = TrustStore::open(&js, &namespace)
        .await
        .map_err(|e| open("the trusted keys")(&e))?;
    // A deployment where the broker enforces plugin rights has a credentials bucket; its
    // workers then log in with a secret this host issues itself.
    let credentials = CredentialStore::open_existing(&js, &namespace)
        .await
        .map_err(|e| open("the plugin credentials")(&e))?;
    let directory = HostDirectory::open(&js, &namespace).await?;
    let board = InstanceBoard::open(&js, &namespace).await?;
    logs::provision(&js, &namespace).await?;
    let record = HostRecord {
        name: options.name.clone(),
        run: uuid::Uuid::now_v7().to_string(),
        machine: machine_name(),
        pid: std::process::id(),
        mechanism: confinement.mechanism().to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: OffsetDateTime::now_utc(),
    };
    directory.claim(&record, options.host_timeout).await?;
    prepare_state_dir(&options.state_dir.join(&options.name))?;
    let leftovers = confinement.remove_leftovers().await;
    if !leftovers.is_empty() {
        tracing::warn!(host = %options.name, ?leftovers, "killed and removed the instances an earlier run of this host left running");
    }
    tracing::info!(host = %options.name, mechanism = %confinement.mechanism(), "host started");

    let shared = Arc::new(Shared {
        name: options.name.clone(),
        namespace: namespace.clone(),
        client: client.clone(),
        // Apart from any other host's, even one given the same directory.
        state_dir: options.state_dir.join(&options.name),
        enter: options.enter.clone(),
        worker_url: options.worker_url.clone(),
        worker_env: options.worker_env.clone(),
        output_bytes: options.output_bytes,
        restarts: options.restarts,
        confinement: confinement.clone(),
        store,
        trust: Mutex::new(TrustedKeys::none()),
        board,
        failures: FailureReporter {
            registry: registry.clone(),
            client: client.clone(),
            namespace: namespace.clone(),
            component: format!("host {}", options.name),
        },
        credentials,
        uids: options.worker_uids.clone().map(|range| {
            Mutex::new(UidPool {
                range,
                held: std::collections::BTreeMap::new(),
            })
        }),
        secrets: tokio::sync::Mutex::default(),
        heard: Mutex::default(),
    });
    let hellos = client
        .subscribe(namespace.all_worker_hellos())
        .await
        .map_err(|e| open("the workers' hellos")(&e))?;
    let listening = tokio::spawn(listen(hellos, shared.clone()));
    let mut changes: std::pin::Pin<Box<dyn futures::Stream<Item = _> + Send>> = Box::pin(
        registry
            .watch()
            .await
            .map_err(|e| open("the registry's changes")(&e))?,
    );
    let mut instances = Instances::default();
    let mut ticker = tokio::time::interval(options.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            change = changes.next() => if change.is_none() {
                tracing::warn!("the registry watch ended; reading the registry every heartbeat");
                changes = Box::pin(futures::stream::pending());
            },
            () = stop.cancelled() => break,
        }
        if let Err(error) = directory.beat(&record).await {
            tracing::warn!(%error, "cannot write the host's heartbeat");
        }
        // The trusted keys may change at any time: read afresh for the instances started now.
        match trust_store.trusted_keys().await {
            Ok(trust) => *shared.trust.lock().expect("never poisoned") = trust,
            Err(error) => tracing::warn!(%error, "cannot read the trusted keys"),
        }
        reconcile(&shared, &directory, &registry, &options, &mut instances).await;
        kill_the_unresponsive(&shared, &instances);
        report_usage(&shared, &mut instances).await;
    }
    listening.abort();
    tracing::info!(host = %options.name, instances = instances.serving.len(), "host stopping");
    instances.stop_all().await;
    shared.forget_secrets().await;
    if let Err(error) = directory.leave(&options.name).await {
        tracing::warn!(%error, "cannot remove the host's record");
    }
    confinement.remove_host_cgroups();
    Ok(())
}

/// The instances of this host, by plugin and slot.
type Key = (PluginId, Slot);

/// What this host runs: the serving instances, the candidates of an upgrade under way, and
/// the versions whose upgrade failed here (not tried again while they are wanted).
#[derive(Default)]
struct Instances {
    serving: BTreeMap<Key, Running>,
    candidates: BTreeMap<Key, Running>,
    refused: std::collections::BTreeSet<(PluginId, String)>,
}

impl Instances {
    fn all(&self) -> impl Iterator<Item = (&Key, &Running)> {
        self.serving.iter().chain(self.candidates.iter())
    }

    /// Stops every instance, candidates first.
    async fn stop_all(&mut self) {
        let stopping: Vec<Running> = std::mem::take(&mut self.candidates)
            .into_values()
            .chain(std::mem::take(&mut self.serving).into_values())
            .collect();
        stop_together(stopping).await;
    }
}

/// Stops `instances`, all at once (each within its own grace period).
async fn stop_together(instances: Vec<Running>) {
    for instance in &instances {
        instance.cancel();
    }
    futures::future::join_all(instances.into_iter().map(Running::stop)).await;
}

/// One round: stop what this host should no longer run, start what it should, and move
/// upgrades on ([`upgrade`]).
async fn reconcile(
    shared: &Arc<Shared>,
    directory: &HostDirectory,
    registry: &Registry,
    options: &HostOptions,
    instances: &mut Instances,
) {
    let live = match directory.live(options.host_timeout).await {
        Ok(live) => live,
        Err(error) => return tracing::warn!(%error, "cannot read the live hosts"),
    };
    let mut names: Vec<&str> = live.iter().map(|h| h.record.name.as_str()).collect();
    // This host runs whatever its own record says, even if it read the directory a moment
    // before its first heartbeat landed.
    if !names.contains(&options.name.as_str()) {
        names.push(&options.name);
    }
    let registrations = match registry.list().await {
        Ok(registrations) => registrations,
        Err(error) => return tracing::warn!(%error, "cannot read the registry"),
    };
    let (wanted, unrunnable) = desired::desired(&registrations, &names, &options.name);
    for plugin in unrunnable {
        tracing::debug!(%plugin, "enabled, but installed from a manifest: no package to run");
    }
    // A refused version no longer wanted may be tried again later.
    instances.refused.retain(|(plugin, version)| {
        wanted
            .iter()
            .any(|((p, _), w)| p == plugin && &w.version == version)
    });

    // Not wanted here any more (or a candidate of a version no longer wanted): stopped.
    let gone: Vec<Key> = instances
        .serving
        .keys()
        .filter(|key| !wanted.contains_key(*key))
        .cloned()
        .collect();
    let mut stopping: Vec<Running> = gone
        .iter()
        .filter_map(|key| instances.serving.remove(key))
        .collect();
    let stale: Vec<Key> = instances
        .candidates
        .iter()
        .filter(|(key, c)| wanted.get(*key).is_none_or(|w| w.version != c.version))
        .map(|(key, _)| key.clone())
        .collect();
    stopping.extend(
        stale
            .iter()
            .filter_map(|key| instances.candidates.remove(key)),
    );
    stop_together(stopping).await;

    for ((plugin, slot), wanted) in wanted {
        let key = (plugin.clone(), slot);
        let Some(serving) = instances.serving.get(&key) else {
            let started = Running::start(shared, plugin, slot, wanted, Role::Serving);
            instances.serving.insert(key, started);
            continue;
        };
        if serving.version == wanted.version
            || instances
                .refused
                .contains(&(plugin.clone(), wanted.version.clone()))
        {
            continue;
        }
        match instances.candidates.get(&key) {
            Some(candidate) => {
                let heard = shared.heard_since(&candidate.name, candidate.since);
                let old_beats = shared.heard_since(&serving.name, serving.since);
                match upgrade::judge(candidate, wanted.run.health_grace, old_beats, heard) {
                    Verdict::Pending => {}
                    Verdict::Healthy => {
                        let candidate = instances.candidates.remove(&key).expect("judged");
                        let old = instances.serving.remove(&key).expect("judged");
                        tracing::info!(%plugin, slot, from = %old.version, to = %candidate.version, "upgraded an instance");
                        old.stop().await;
                        candidate.promote();
                        instances.serving.insert(key, candidate);
                    }
                    Verdict::Failed(why) => {
                        let candidate = instances.candidates.remove(&key).expect("judged");
                        tracing::warn!(%plugin, slot, version = %wanted.version, %why, "an upgrade failed its health check");
                        candidate.stop().await;
                        serving.report.lock().expect("never poisoned").upgrading_to = None;
                        instances
                            .refused
                            .insert((plugin.clone(), wanted.version.clone()));
                        upgrade::roll_back(shared, &plugin, &wanted.version, &why).await;
                    }
                }
            }
            // Instance by instance: one candidate of a plugin at a time on this host.
            None if !instances.candidates.keys().any(|(p, _)| *p == plugin) => {
                tracing::info!(%plugin, slot, from = %serving.version, to = %wanted.version, "upgrading an instance");
                serving.report.lock().expect("never poisoned").upgrading_to =
                    Some(wanted.version.clone());
                let candidate = Running::start(shared, plugin, slot, wanted, Role::Candidate);
                instances.candidates.insert(key, candidate);
            }
            None => {}
        }
    }
}

/// Notes when each instance of this host is heard from. A hello counts for the instance it
/// names only when it came on that plugin's own subject, which only the plugin may publish on.
async fn listen(mut hellos: async_nats::Subscriber, shared: Arc<Shared>) {
    while let Some(message) = hellos.next().await {
        let Some(plugin) = message.subject.rsplit('.').next() else {
            continue;
        };
        let hello = switchyard_schemas::delivery::Hello::read(&message.payload);
        let Some(instance) = hello.instance.as_deref().and_then(|i| i.split(' ').next()) else {
            continue;
        };
        // `{plugin}.{slot}@{version}`
        let named_plugin = instance
            .split_once('@')
            .and_then(|(slot, _)| slot.rsplit_once('.'))
            .map(|(p, _)| p);
        if named_plugin == Some(plugin) {
            let mut heard = shared.heard.lock().expect("never poisoned");
            if heard.len() < 100_000 || heard.contains_key(instance) {
                heard.insert(instance.to_owned(), tokio::time::Instant::now());
            }
        }
    }
}

/// Kills each worker that was heard from since it started and then not for its
/// `heartbeat_timeout`: it is hung (or its connection is), and its supervisor starts it again.
fn kill_the_unresponsive(shared: &Shared, instances: &Instances) {
    let now = tokio::time::Instant::now();
    let mut heard = shared.heard.lock().expect("never poisoned");
    // Forget what no instance here is.
    heard.retain(|name, _| instances.all().any(|(_, i)| i.name == *name));
    for ((plugin, slot), instance) in instances.all() {
        let Some((started, _)) = *instance.started.lock().expect("never poisoned") else {
            continue;
        };
        let Some(last) = heard.get(&instance.name).copied() else {
            continue;
        };
        if last < started {
            continue;
        }
        let silent = now.duration_since(last);
        if silent > instance.heartbeat_timeout {
            tracing::warn!(%plugin, slot, ?silent, "a worker stopped sending heartbeats; killing it");
            instance.kill(format!(
                "stopped answering (no heartbeat for {} s, heartbeat_timeout = {} s)",
                silent.as_secs(),
                instance.heartbeat_timeout.as_secs()
            ));
            heard.remove(&instance.name);
        }
    }
}

/// Writes each running instance's report with its usage now.
async fn report_usage(shared: &Shared, instances: &mut Instances) {
    for instance in instances.serving.values_mut() {
        if instance.is_finished() || !instance.is_reporting() {
            continue;
        }
        let meter = instance.meter.lock().expect("never poisoned").clone();
        let usage = meter.map(|m| m.usage()).unwrap_or_default();
        let now = tokio::time::Instant::now();
        let cpu_millicores = match (usage.cpu_micros, instance.last_cpu) {
            (Some(cpu), Some((before, at))) if now > at => {
                let elapsed = now.duration_since(at).as_micros().max(1) as u64;
                Some(cpu.saturating_sub(before).saturating_mul(1000) / elapsed)
            }
            _ => None,
        };
        instance.last_cpu = usage.cpu_micros.map(|cpu| (cpu, now));
        {
            let mut report = instance.report.lock().expect("never poisoned");
            report.memory_bytes = usage.memory_bytes;
            report.cpu_millicores = cpu_millicores;
            report.lines_lost = instance
                .lines_lost
                .load(std::sync::atomic::Ordering::Relaxed);
            report.reported_at = OffsetDateTime::now_utc();
        }
        shared.put_report(&instance.report).await;
    }
}

/// Makes `<dir>` and `<dir>/instances` traversable but not listable by others (workers reach
/// their own directory and secret file, never the list of the others'), and removes what an
/// earlier run of this host left in `instances` (this host holds its name's lock).
fn prepare_state_dir(dir: &std::path::Path) -> Result<(), HostError> {
    use std::os::unix::fs::PermissionsExt as _;

    let failed = |action: &'static str, e: std::io::Error| HostError::Open {
        what: action,
        reason: format!("{}: {e}", dir.display()),
    };
    let instances = dir.join("instances");
    if instances.exists() {
        std::fs::remove_dir_all(&instances).map_err(|e| {
            failed(
                "the state directory (removing an earlier run's instances)",
                e,
            )
        })?;
    }
    std::fs::create_dir_all(&instances).map_err(|e| failed("the state directory", e))?;
    for path in [dir, &instances] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| failed("the state directory (setting its mode)", e))?;
    }
    Ok(())
}

/// Kills every process running as `uid` (found in `/proc`).
fn kill_processes_of(uid: u32) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        // `Uid:	real	effective	saved	filesystem`
        let runs_as = status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .is_some_and(|ids| ids.split_whitespace().any(|id| id == uid.to_string()));
        if runs_as {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                tracing::warn!(
                    uid,
                    pid = pid.as_raw_nonzero().get(),
                    "killing a leftover process of a worker user id"
                );
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// This machine's name, for the host's record.
fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
