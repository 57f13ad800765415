//! The three streams Switchyard keeps in JetStream, their defaults, and idempotent provisioning.
//!
//! | setting | events stream | dead-letter stream | audit stream |
//! |---|---|---|---|
//! | name | `SWITCHYARD_EVENTS` | `SWITCHYARD_DLQ` | `SWITCHYARD_AUDIT` |
//! | subjects | `{prefix}.events.>`, `{prefix}.redrive.>` | `{prefix}.dlq.>` | `{prefix}.audit.>` |
//! | retention | limits (a log: kept until max age or max bytes) | limits | limits |
//! | max age | 7 days | 30 days | 365 days |
//! | max bytes | 4 GiB | 1 GiB | 1 GiB |
//! | when full | refuse new publishes (the publisher gets an error) | refuse new dead letters | refuse new entries |
//! | replicas | 1 (3 in a production cluster) | 1 | 1 |
//! | duplicate window | 2 minutes | 1 hour | 1 hour |
//! | storage | file | file | file |
//! | append-only | no | no (replays and purges delete) | yes: `deny_delete`, `deny_purge`, no rollups |
//!
//! "When full, refuse" is chosen over "drop the oldest" so that nothing is lost silently: a
//! publisher sees the refusal and can retry, and the dispatcher keeps an event un-acked while
//! its dead letter cannot be stored. A full audit stream makes the changes that need an entry
//! fail loudly instead of dropping old entries.
//!
//! The audit stream is append-only ([`StreamSettings::append_only`]): the server refuses to
//! delete one of its messages, to purge it and to roll it up, whoever asks, and refuses to
//! take those settings back once set. Entries leave it only by its limits (a year, 1 GiB);
//! see `docs/lifecycle.md` ("Audit").
//!
//! Two ways to provision: [`provision`] makes a stream match the settings (the operator's
//! `switchyard streams provision`); [`ensure`] creates what is missing and never changes what
//! exists (every dispatcher start), so a start cannot undo what an operator chose, such as
//! three replicas or a smaller size. It refuses, naming the problem, a stream that cannot work
//! (a subject missing, a retention that deletes acknowledged events, an audit stream that
//! allows deleting entries).

use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{Config, DiscardPolicy, RetentionPolicy, StorageType},
};
use switchyard_schemas::Namespace;

/// The settings of one stream that Switchyard manages. Override any of them with
/// `StreamSettings { replicas: 3, ..StreamSettings::events(&ns) }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// The stream's name.
    pub name: String,
    /// The subjects it stores.
    pub subjects: Vec<String>,
    /// How long a message is kept.
    pub max_age: Duration,
    /// The most bytes the stream keeps; past it, new messages are refused.
    pub max_bytes: i64,
    /// How many servers keep a copy (1, 3 or 5).
    pub replicas: usize,
    /// How long a message id is remembered for de-duplication.
    pub duplicate_window: Duration,
    /// File (durable) or memory storage.
    pub storage: StorageType,
    /// Whether messages can never be deleted, purged or rolled up by a client: the server
    /// refuses those requests (`deny_delete`, `deny_purge`, no `allow_rollup_hdrs`). Only
    /// the limits (max age, max bytes) remove messages. Once set on a stream, the server
    /// refuses to take it back.
    pub append_only: bool,
}

const GIB: i64 = 1024 * 1024 * 1024;

impl StreamSettings {
    /// The defaults of the events stream for `namespace`.
    pub fn events(namespace: &Namespace) -> Self {
        Self {
            name: stream_name(namespace, "EVENTS"),
            // Replays of dead letters are stored beside the events, on subjects that only the
            // failing plugin's consumer matches.
            subjects: vec![namespace.all_events(), namespace.all_redrives()],
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 4 * GIB,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            storage: StorageType::File,
            append_only: false,
        }
    }

    /// The defaults of the dead-letter stream for `namespace`.
    pub fn dead_letters(namespace: &Namespace) -> Self {
        Self {
            name: stream_name(namespace, "DLQ"),
            subjects: vec![namespace.dead_letter_filter(None)],
            max_age: Duration::from_secs(30 * 24 * 3600),
            max_bytes: GIB,
            replicas: 1,
            duplicate_window: Duration::from_secs(3600),
            storage: StorageType::File,
            append_only: false,
        }
    }

    /// The defaults of the audit stream for `namespace`: append-only, kept a year.
    ///
    /// A year is what audit rules commonly ask for, and entries are small (a few hundred
    /// bytes: a million fit in 1 GiB). An operator sets another max age with `switchyard
    /// streams provision --audit-max-age` (`0s`: kept until max bytes). The duplicate window
    /// (1 hour) covers an append retried after a timeout or a crash.
    pub fn audit(namespace: &Namespace) -> Self {
        Self {
            name: stream_name(namespace, "AUDIT"),
            subjects: vec![namespace.all_audit()],
            max_age: Duration::from_secs(365 * 24 * 3600),
            max_bytes: GIB,
            replicas: 1,
            duplicate_window: Duration::from_secs(3600),
            storage: StorageType::File,
            append_only: true,
        }
    }

    /// The JetStream configuration these settings stand for.
    pub fn to_config(&self) -> Config {
        Config {
            name: self.name.clone(),
            subjects: self.subjects.clone(),
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::New,
            max_age: self.max_age,
            max_bytes: self.max_bytes,
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            storage: self.storage,
            // Direct gets let operators read single messages (dead letters) cheaply.
            allow_direct: true,
            deny_delete: self.append_only,
            deny_purge: self.append_only,
            allow_rollup: false,
            ..Default::default()
        }
    }

    /// Whether an existing stream's configuration already matches these settings.
    fn matches(&self, existing: &Config) -> bool {
        let wanted = self.to_config();
        existing.subjects == wanted.subjects
            && existing.retention == wanted.retention
            && existing.discard == wanted.discard
            && existing.max_age == wanted.max_age
            && existing.max_bytes == wanted.max_bytes
            && existing.num_replicas == wanted.num_replicas
            && existing.duplicate_window == wanted.duplicate_window
            && existing.storage == wanted.storage
            && existing.allow_direct == wanted.allow_direct
            && existing.deny_delete == wanted.deny_delete
            && existing.deny_purge == wanted.deny_purge
            && existing.allow_rollup == wanted.allow_rollup
    }
}

/// The name of a JetStream object (stream, key-value bucket) of one deployment:
/// `{PREFIX}_{suffix}`, the prefix upper-cased with `-` as `_` (`SWITCHYARD_EVENTS`). Names
/// are upper case by convention; the prefix keeps deployments apart.
pub fn stream_name(namespace: &Namespace, suffix: &str) -> String {
    format!(
        "{}_{suffix}",
        namespace.prefix().to_ascii_uppercase().replace('-', "_")
    )
}

/// The settings of the three streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Streams {
    /// The events stream.
    pub events: StreamSettings,
    /// The dead-letter stream.
    pub dead_letters: StreamSettings,
    /// The audit stream (append-only).
    pub audit: StreamSettings,
}

impl Streams {
    /// The defaults for `namespace`.
    pub fn defaults(namespace: &Namespace) -> Self {
        Self {
            events: StreamSettings::events(namespace),
            dead_letters: StreamSettings::dead_letters(namespace),
            audit: StreamSettings::audit(namespace),
        }
    }
}

/// What provisioning did to one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioned {
    /// The stream did not exist and was created.
    Created,
    /// The stream existed with other settings and was updated.
    Updated,
    /// The stream existed with these settings; nothing was sent.
    Unchanged,
}

/// What [`ensure`] found of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// The stream did not exist and was created with the settings.
    Created,
    /// The stream exists and can serve; it was left as it is. `differences` names each setting
    /// that is not the one asked for (e.g. `replicas 3 (default 1)`), for the log.
    Kept {
        /// The settings that differ, as `name value (default value)`.
        differences: Vec<String>,
    },
}

/// Why a stream could not be provisioned.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The stream exists but cannot serve Switchyard as it is; nothing was changed.
    #[error("stream `{stream}` {problem}; change it with `switchyard streams provision`")]
    Incompatible {
        /// The stream.
        stream: String,
        /// What is wrong.
        problem: String,
    },
    /// The server has JetStream off, or this account may not use it.
    #[error("JetStream is not available on this server/account: {reason}")]
    JetStreamUnavailable {
        /// The server's message.
        reason: String,
    },
    /// The server refused the configuration (e.g. a change JetStream cannot make in place,
    /// such as the storage type, or more replicas than servers).
    #[error("stream `{stream}`: the server refused the configuration: {reason}")]
    Refused {
        /// The stream.
        stream: String,
        /// The server's message.
        reason: String,
    },
    /// The request did not complete (timeout, disconnect).
    #[error("stream `{stream}`: request failed: {reason}")]
    Request {
        /// The stream.
        stream: String,
        /// What happened.
        reason: String,
    },
}

/// Creates the stream, or updates it when its settings differ; does nothing when they match.
///
/// Safe to run from many processes at once and on every start.
///
/// # Errors
/// A [`ProvisionError`] when JetStream is unavailable, the server refuses the configuration,
/// or a request fails.
pub async fn provision(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<Provisioned, ProvisionError> {
    let stream = settings.name.clone();
    match js.get_stream(&settings.name).await {
        Ok(mut existing) => {
            let info = existing.info().await.map_err(|e| ProvisionError::Request {
                stream: stream.clone(),
                reason: e.to_string(),
            })?;
            if settings.matches(&info.config) {
                return Ok(Provisioned::Unchanged);
            }
            js.update_stream(settings.to_config())
                .await
                .map_err(|e| ProvisionError::Refused {
                    stream,
                    reason: e.to_string(),
                })?;
            Ok(Provisioned::Updated)
        }
        Err(err) if is_not_found(&err) => match js.create_stream(settings.to_config()).await {
            Ok(_) => Ok(Provisioned::Created),
            Err(err) => Err(classify_create(stream, err)),
        },
        Err(err) if is_jetstream_off(&err) => Err(ProvisionError::JetStreamUnavailable {
            reason: err.to_string(),
        }),
        Err(err) => Err(ProvisionError::Request {
            stream,
            reason: err.to_string(),
        }),
    }
}

/// Creates the stream when it is missing; otherwise leaves it exactly as it is, after checking
/// that it can serve: it stores every subject of the settings and keeps messages by limits
/// (not until acknowledged or until no consumer is interested, which would delete events that
/// other plugins have not had).
///
/// # Errors
/// [`ProvisionError::Incompatible`] when the stream exists but cannot serve, and the errors of
/// [`provision`].
pub async fn ensure(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<Ensured, ProvisionError> {
    let stream = settings.name.clone();
    match js.get_stream(&settings.name).await {
        Ok(existing) => keep(settings, existing).await,
        Err(err) if is_not_found(&err) => match js.create_stream(settings.to_config()).await {
            Ok(_) => Ok(Ensured::Created),
            // Another process created it in between: check theirs instead.
            Err(create) => match js.get_stream(&settings.name).await {
                Ok(existing) => keep(settings, existing).await,
                Err(_) => Err(classify_create(stream, create)),
            },
        },
        Err(err) if is_jetstream_off(&err) => Err(ProvisionError::JetStreamUnavailable {
            reason: err.to_string(),
        }),
        Err(err) => Err(ProvisionError::Request {
            stream,
            reason: err.to_string(),
        }),
    }
}

/// Checks that an existing stream can serve, and says how it differs from `settings`.
async fn keep(
    settings: &StreamSettings,
    mut existing: jetstream::stream::Stream,
) -> Result<Ensured, ProvisionError> {
    let info = existing.info().await.map_err(|e| ProvisionError::Request {
        stream: settings.name.clone(),
        reason: e.to_string(),
    })?;
    check_serves(settings, &info.config)?;
    Ok(Ensured::Kept {
        differences: differences(settings, &info.config),
    })
}

/// Whether an existing stream can serve as the one `settings` describe.
fn check_serves(settings: &StreamSettings, existing: &Config) -> Result<(), ProvisionError> {
    let incompatible = |problem: String| ProvisionError::Incompatible {
        stream: settings.name.clone(),
        problem,
    };
    if let Some(missing) = settings
        .subjects
        .iter()
        .find(|s| !existing.subjects.contains(s))
    {
        return Err(incompatible(format!(
            "does not store `{missing}` (it stores {:?})",
            existing.subjects
        )));
    }
    if existing.retention != RetentionPolicy::Limits {
        return Err(incompatible(format!(
            "has retention {:?}: it would delete events some plugins have not had (limits is needed)",
            existing.retention
        )));
    }
    if settings.append_only {
        let mut allows = Vec::new();
        if !existing.deny_delete {
            allows.push("deleting messages");
        }
        if !existing.deny_purge {
            allows.push("purging");
        }
        if existing.allow_rollup {
            allows.push("rollups");
        }
        if !allows.is_empty() {
            return Err(incompatible(format!(
                "allows {}: it must be append-only",
                allows.join(", ")
            )));
        }
    }
    Ok(())
}

/// The settings of `existing` that are not those of `settings`, for the log.
fn differences(settings: &StreamSettings, existing: &Config) -> Vec<String> {
    let wanted = settings.to_config();
    let mut out = Vec::new();
    let mut differs = |name: &str, have: String, want: String| {
        if have != want {
            out.push(format!("{name} {have} (default {want})"));
        }
    };
    differs(
        "replicas",
        existing.num_replicas.to_string(),
        wanted.num_replicas.to_string(),
    );
    differs(
        "max_bytes",
        existing.max_bytes.to_string(),
        wanted.max_bytes.to_string(),
    );
    differs(
        "max_age",
        format!("{:?}", existing.max_age),
        format!("{:?}", wanted.max_age),
    );
    differs(
        "duplicate_window",
        format!("{:?}", existing.duplicate_window),
        format!("{:?}", wanted.duplicate_window),
    );
    differs(
        "discard",
        format!("{:?}", existing.discard),
        format!("{:?}", wanted.discard),
    );
    differs(
        "storage",
        format!("{:?}", existing.storage),
        format!("{:?}", wanted.storage),
    );
    if existing.subjects.len() > wanted.subjects.len() {
        differs(
            "subjects",
            format!("{:?}", existing.subjects),
            format!("{:?}", wanted.subjects),
        );
    }
    out
}

/// Sets how many servers keep a copy of an existing stream (a key-value bucket's, too),
/// changing nothing else; does nothing when it already has that many.
///
/// # Errors
/// [`ProvisionError::Request`] when the stream cannot be read (missing included), and
/// [`ProvisionError::Refused`] when the server refuses the change (e.g. more replicas than
/// servers).
pub async fn set_replicas(
    js: &jetstream::Context,
    stream: &str,
    replicas: usize,
) -> Result<Provisioned, ProvisionError> {
    let mut existing = js
        .get_stream(stream)
        .await
        .map_err(|e| ProvisionError::Request {
            stream: stream.to_owned(),
            reason: e.to_string(),
        })?;
    let info = existing.info().await.map_err(|e| ProvisionError::Request {
        stream: stream.to_owned(),
        reason: e.to_string(),
    })?;
    if info.config.num_replicas == replicas {
        return Ok(Provisioned::Unchanged);
    }
    let config = Config {
        num_replicas: replicas,
        ..info.config.clone()
    };
    js.update_stream(config)
        .await
        .map_err(|e| ProvisionError::Refused {
            stream: stream.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(Provisioned::Updated)
}

/// JetStream answers nothing when it is off server-wide, and an error code when it is off
/// for the account.
fn is_jetstream_off(err: &jetstream::context::GetStreamError) -> bool {
    use jetstream::context::{GetStreamErrorKind as K, RequestError, RequestErrorKind};
    use jetstream::ErrorCode;
    match err.kind() {
        K::JetStream(e) => matches!(
            e.error_code(),
            ErrorCode::JETSTREAM_NOT_ENABLED | ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
        ),
        K::Request => std::error::Error::source(err)
            .and_then(|s| s.downcast_ref::<RequestError>())
            .is_some_and(|e| e.kind() == RequestErrorKind::NoResponders),
        _ => false,
    }
}

fn is_not_found(err: &jetstream::context::GetStreamError) -> bool {
    use jetstream::context::GetStreamErrorKind as K;
    matches!(err.kind(), K::JetStream(e) if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

fn classify_create(stream: String, err: jetstream::context::CreateStreamError) -> ProvisionError {
    use jetstream::context::CreateStreamErrorKind as K;
    let reason = err.to_string();
    match err.kind() {
        K::JetStreamUnavailable => ProvisionError::JetStreamUnavailable { reason },
        K::TimedOut | K::Response => ProvisionError::Request { stream, reason },
        _ => ProvisionError::Refused { stream, reason },
    }
}
