//! Provisioning a deployment: its events, dead-letter and audit streams with the operator's
//! limits, and every bucket and object store with the same number of replicas. Safe to
//! repeat; what `switchyard streams provision` and the management API do.

use std::time::Duration;

use switchyard_bus::{
    set_replicas, stream_name, Bus, ProvisionError, Provisioned, StreamSettings, Streams,
};
use switchyard_control::auth::CredentialStore;
use switchyard_control::package::{PackageStore, PackageStoreOptions, TrustStore};
use switchyard_control::registry::{Registry, RegistryOptions};
use switchyard_control::settings::{self, SettingsStore};
use switchyard_schemas::Namespace;

use crate::status::StatusBoard;

/// The most replicas a stream or bucket may have.
pub const MAX_REPLICAS: usize = 5;

/// The longest max age a stream may be given: a hundred years (JetStream counts in
/// nanoseconds; far longer ages would wrap around into short ones).
pub const MAX_AGE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The smallest byte limit a stream may be given (1 MB): far below it, the audit stream
/// could not hold the record of the change that set it, and every audited call would fail.
pub const MIN_MAX_BYTES: i64 = 1_000_000;

/// A limit that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct BadLimit {
    /// Which limit, e.g. `audit_max_bytes`.
    pub name: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// What the operator sets; what is not set keeps the default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Copies kept in a cluster (1 to [`MAX_REPLICAS`]), of every stream and bucket.
    pub replicas: usize,
    /// How long events are kept.
    pub events_max_age: Option<Duration>,
    /// The most bytes the events stream keeps.
    pub events_max_bytes: Option<i64>,
    /// How long dead letters are kept.
    pub dlq_max_age: Option<Duration>,
    /// The most bytes the dead-letter stream keeps.
    pub dlq_max_bytes: Option<i64>,
    /// How long audit entries are kept (zero: until the stream is full).
    pub audit_max_age: Option<Duration>,
    /// The most bytes the audit stream keeps.
    pub audit_max_bytes: Option<i64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            replicas: 1,
            events_max_age: None,
            events_max_bytes: None,
            dlq_max_age: None,
            dlq_max_bytes: None,
            audit_max_age: None,
            audit_max_bytes: None,
        }
    }
}

impl Limits {
    /// Checks every limit: replicas 1 to [`MAX_REPLICAS`], ages at most [`MAX_AGE`], byte
    /// limits at least [`MIN_MAX_BYTES`] (or -1: none).
    ///
    /// # Errors
    /// [`BadLimit`] naming the first limit at fault.
    pub fn check(&self) -> Result<(), BadLimit> {
        if self.replicas == 0 || self.replicas > MAX_REPLICAS {
            return Err(BadLimit {
                name: "replicas",
                problem: format!("{} is not 1 to {MAX_REPLICAS}", self.replicas),
            });
        }
        for (name, age) in [
            ("events_max_age", self.events_max_age),
            ("dlq_max_age", self.dlq_max_age),
            ("audit_max_age", self.audit_max_age),
        ] {
            if age.is_some_and(|age| age > MAX_AGE) {
                return Err(BadLimit {
                    name,
                    problem: format!(
                        "at most {} seconds (a hundred years); 0 keeps messages until the stream \
                         is full",
                        MAX_AGE.as_secs()
                    ),
                });
            }
        }
        for (name, bytes) in [
            ("events_max_bytes", self.events_max_bytes),
            ("dlq_max_bytes", self.dlq_max_bytes),
            ("audit_max_bytes", self.audit_max_bytes),
        ] {
            if bytes.is_some_and(|n| n != -1 && n < MIN_MAX_BYTES) {
                return Err(BadLimit {
                    name,
                    problem: format!("at least {MIN_MAX_BYTES} bytes, or -1 for no limit"),
                });
            }
        }
        Ok(())
    }

    /// The streams' settings: the defaults of `namespace` with these limits. An audit max
    /// age shorter than the duplicate window shortens the window (JetStream requires it).
    pub fn streams(&self, namespace: &Namespace) -> Streams {
        let defaults = Streams::defaults(namespace);
        let audit_age = self.audit_max_age.unwrap_or(defaults.audit.max_age);
        let audit_window = if audit_age.is_zero() {
            defaults.audit.duplicate_window
        } else {
            defaults.audit.duplicate_window.min(audit_age)
        };
        Streams {
            events: StreamSettings {
                replicas: self.replicas,
                max_age: self.events_max_age.unwrap_or(defaults.events.max_age),
                max_bytes: self.events_max_bytes.unwrap_or(defaults.events.max_bytes),
                ..defaults.events
            },
            dead_letters: StreamSettings {
                replicas: self.replicas,
                max_age: self.dlq_max_age.unwrap_or(defaults.dead_letters.max_age),
                max_bytes: self
                    .dlq_max_bytes
                    .unwrap_or(defaults.dead_letters.max_bytes),
                ..defaults.dead_letters
            },
            audit: StreamSettings {
                replicas: self.replicas,
                max_age: audit_age,
                max_bytes: self.audit_max_bytes.unwrap_or(defaults.audit.max_bytes),
                duplicate_window: audit_window,
                ..defaults.audit
            },
        }
    }
}

/// What was done with one stream, bucket or object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// Its name.
    pub name: String,
    /// `stream`, `bucket` or `object store`.
    pub kind: &'static str,
    /// Created, updated or left as it was.
    pub outcome: Provisioned,
}

/// Why provisioning stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionAllError {
    /// A limit cannot be applied; nothing was changed.
    #[error(transparent)]
    BadLimit(#[from] BadLimit),
    /// A stream could not be created or updated.
    #[error(transparent)]
    Stream(#[from] ProvisionError),
    /// A bucket or the object store could not be opened.
    #[error("the {what} could not be opened: {reason}")]
    Open {
        /// Which.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// What a provisioning did, in the words `streams provision` prints.
pub fn describe(outcome: Provisioned) -> &'static str {
    match outcome {
        Provisioned::Created => "created",
        Provisioned::Updated => "updated to the requested settings",
        Provisioned::Unchanged => "already as requested",
    }
}

/// Creates or updates the streams of `bus`'s namespace with `limits`, then gives the
/// registry, status, credentials, trust, settings and secrets buckets and the packages object
/// store the same number of replicas, creating the ones that do not exist yet: losing a node
/// must not lose the plugins' registrations, credentials, trusted keys, settings or packages
/// either.
///
/// # Errors
/// [`ProvisionAllError`]; what was done before it stays done (repeating is safe).
pub async fn provision(bus: &Bus, limits: &Limits) -> Result<Vec<Done>, ProvisionAllError> {
    limits.check()?;
    let ns = bus.namespace().clone();
    let bus = bus.clone().with_streams(limits.streams(&ns));
    let report = bus.provision().await?;
    let streams = bus.streams();
    let mut done = vec![
        stream(&streams.events.name, report.events),
        stream(&streams.dead_letters.name, report.dead_letters),
        stream(&streams.audit.name, report.audit),
    ];
    let js = bus.jetstream();
    let replicas = limits.replicas;
    let open = |what: &'static str| {
        move |e: &dyn std::fmt::Display| ProvisionAllError::Open {
            what,
            reason: e.to_string(),
        }
    };
    let registry = Registry::open_with(js, &ns, &RegistryOptions { replicas })
        .await
        .map_err(|e| open("registry")(&e))?;
    StatusBoard::open(js, &ns)
        .await
        .map_err(|e| open("status bucket")(&e))?;
    let credentials = CredentialStore::open(js, &ns)
        .await
        .map_err(|e| open("credentials bucket")(&e))?;
    let trust = TrustStore::open_with(js, &ns, replicas)
        .await
        .map_err(|e| open("trust bucket")(&e))?;
    Box::pin(SettingsStore::open(js, &ns, replicas))
        .await
        .map_err(|e| open("settings buckets")(&e))?;
    for bucket in [
        registry.bucket().to_owned(),
        stream_name(&ns, "STATUS"),
        credentials.bucket().to_owned(),
        trust.bucket().to_owned(),
        settings::values_bucket(&ns),
        settings::secrets_bucket(&ns),
    ] {
        let outcome = set_replicas(js, &format!("KV_{bucket}"), replicas).await?;
        done.push(Done {
            name: bucket,
            kind: "bucket",
            outcome,
        });
    }
    let packages = PackageStore::open_with(js, &ns, &PackageStoreOptions { replicas })
        .await
        .map_err(|e| open("packages object store")(&e))?;
    let outcome = set_replicas(js, &format!("OBJ_{}", packages.bucket()), replicas).await?;
    done.push(Done {
        name: packages.bucket().to_owned(),
        kind: "object store",
        outcome,
    });
    Ok(done)
}

fn stream(name: &str, outcome: Provisioned) -> Done {
    Done {
        name: name.to_owned(),
        kind: "stream",
        outcome,
    }
}
