//! `switchyard host`: registers this host, and runs the instances the placement gives it of
//! the enabled plugins installed from packages, until stopped.
//!
//! Every [`HostOptions::heartbeat`] (and at once on any registry change) it writes its record
//! ([`HostDirectory`]), reads the live hosts and the registry, works out the instances it
//! should run ([`desired`]), stops those it should no longer run, starts the missing ones
//! ([`instance`]), moves upgrades on ([`upgrade`]) — all in [`reconcile`] —, kills the workers
//! that stopped answering ([`health`]), and reports each one's state and usage
//! ([`InstanceBoard`]). What the instances share is in [`shared`].

mod desired;
mod health;
mod instance;
mod lock;
mod prepare;
mod reconcile;
mod shared;
mod upgrade;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt as _;
use switchyard_control::auth::CredentialStore;
use switchyard_control::lifecycle::failure::FailureReporter;
use switchyard_control::package::{PackageStore, TrustStore, TrustedKeys};
use switchyard_control::registry::Registry;
use switchyard_schemas::Namespace;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use self::health::{kill_the_unresponsive, listen};
use self::reconcile::{reconcile, report_usage, Instances};
use self::shared::{Shared, UidPool};
use crate::confine::Confinement;
use crate::logs;
use crate::place::{HostDirectory, HostRecord, PlaceError};
use crate::report::InstanceBoard;
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
    tracing::info!(host = %options.name, instances = instances.serving_count(), "host stopping");
    instances.stop_all().await;
    shared.forget_secrets().await;
    if let Err(error) = directory.leave(&options.name).await {
        tracing::warn!(%error, "cannot remove the host's record");
    }
    confinement.remove_host_cgroups();
    Ok(())
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

/// This machine's name, for the host's record (`unknown` when it cannot be read).
pub fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
