//! The audit log: who changed what in the control plane, and when, in an append-only
//! JetStream stream.
//!
//! Each change an operator makes (registering, replacing, approving, rejecting, rolling back,
//! removing, enabling or disabling a plugin; issuing, rotating or revoking its secret;
//! replaying or purging its dead letters) appends one [`AuditEntry`] to the stream
//! `{PREFIX}_AUDIT` (`SWITCHYARD_AUDIT`), on the subject `{prefix}.audit.{action}.{target}`.
//! The stream is append-only
//! ([`StreamSettings::audit`](switchyard_bus::StreamSettings::audit)): nats-server refuses to
//! delete, purge or roll up its messages whoever asks, and refuses to take those settings
//! back. Entries leave it only by its limits (a year, 1 GiB by default).
//!
//! # When an entry cannot be stored
//!
//! An audited change is made first and recorded after, so that the log never claims a change
//! that did not happen. Nothing is changed unrecorded without the operator knowing:
//!
//! 1. [`AuditLog::open`] comes first: when the audit stream cannot be used (missing and not
//!    creatable, or not append-only), the change is refused before anything is done.
//! 2. The append is retried while the server does not answer, under the same message id, so
//!    that a retried append is stored once.
//! 3. When it still fails (e.g. the stream is full), the operation fails with
//!    [`AuditError::NotRecorded`]: it names what was done, says that it stands unrecorded,
//!    and carries the entry as JSON, so that the operator has it and the command exits
//!    non-zero.
//!
//! # Examples
//!
//! ```no_run
//! use switchyard_control::audit::{Action, Actor, AuditEntry, AuditFilter, AuditLog, Auditor};
//! use switchyard_schemas::Namespace;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let js = async_nats::jetstream::new(client.clone());
//! let log = AuditLog::open(&js, &Namespace::default()).await?;
//! let auditor = Auditor::new(log.clone(), Actor::detect(&client, None, None).await);
//!
//! let entry = auditor.entry(Action::Approved, "billing").detail("approved by the on-call");
//! let sequence = auditor.append(&entry).await?;
//!
//! for stored in log.list(&AuditFilter { target: Some("billing".into()), ..Default::default() }).await? {
//!     println!("{} {} {} {}", stored.sequence, stored.entry.actor.name, stored.entry.action, stored.entry.target);
//! }
//! # Ok(())
//! # }
//! ```

mod actor;
mod entry;
mod error;
mod summary;

use std::time::Duration;

use async_nats::jetstream::{
    self,
    consumer::{pull, DeliverPolicy},
    context::PublishErrorKind,
};
use futures::StreamExt;
use switchyard_bus::{ensure, StreamSettings};
use switchyard_schemas::{header as ce, Namespace};

pub use self::actor::{url_user, Actor};
pub use self::entry::{Action, AuditEntry, AuditFilter, StoredEntry, UnknownAction};
pub use self::error::AuditError;
pub use self::summary::{registration_summary, sequence_ranges};

/// How many times an append is sent while the server does not acknowledge it.
const APPEND_ATTEMPTS: usize = 3;

/// How long reading the log may wait for the next entry before giving up.
const READ_IDLE: Duration = Duration::from_secs(10);

/// The audit log of one deployment. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    js: jetstream::Context,
    namespace: Namespace,
    stream: String,
}

impl AuditLog {
    /// Opens the audit log of `namespace`, creating its stream with the defaults when it is
    /// missing. An existing stream is never changed (as at every dispatcher start), but it
    /// must be append-only.
    ///
    /// # Errors
    /// [`AuditError::Stream`] when the stream cannot be created, or exists and is not
    /// append-only (`switchyard streams provision` makes it so).
    pub async fn open(js: &jetstream::Context, namespace: &Namespace) -> Result<Self, AuditError> {
        Self::open_with(js, namespace, &StreamSettings::audit(namespace)).await
    }

    /// Opens the audit log kept in the stream `settings` describe (created with them when
    /// missing).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn open_with(
        js: &jetstream::Context,
        namespace: &Namespace,
        settings: &StreamSettings,
    ) -> Result<Self, AuditError> {
        // Boxed: the checks' future would otherwise make every caller's future large.
        Box::pin(ensure(js, settings))
            .await
            .map_err(|error| AuditError::Stream {
                reason: error.to_string(),
            })?;
        Ok(Self {
            js: js.clone(),
            namespace: namespace.clone(),
            stream: settings.name.clone(),
        })
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Stores `entry` and returns its sequence in the stream. The entry's id is its
    /// `Nats-Msg-Id`: appending the same entry again within the stream's duplicate window (an
    /// hour by default) stores nothing new and returns the first sequence.
    ///
    /// # Errors
    /// [`AuditError::Append`] when the server refuses the entry or does not acknowledge it
    /// after three tries; [`AuditError::Encode`] when it cannot be encoded.
    pub async fn append(&self, entry: &AuditEntry) -> Result<u64, AuditError> {
        let body = serde_json::to_vec(entry).map_err(|error| AuditError::Encode {
            id: entry.id.clone(),
            reason: error.to_string(),
        })?;
        let subject = self.namespace.audit(entry.action.as_str(), &entry.target);
        let failed = |reason: String| AuditError::Append {
            stream: self.stream.clone(),
            id: entry.id.clone(),
            reason,
        };
        let mut last_error = String::new();
        for _ in 0..APPEND_ATTEMPTS {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(ce::NATS_MSG_ID, entry.id.as_str());
            headers.insert("Content-Type", "application/json");
            let sent = self
                .js
                .publish_with_headers(subject.clone(), headers, body.clone().into())
                .await;
            let acknowledged = match sent {
                Ok(ack) => ack.await,
                Err(error) => Err(error),
            };
            match acknowledged {
                Ok(ack) if ack.stream == self.stream => return Ok(ack.sequence),
                Ok(ack) => {
                    return Err(failed(format!(
                        "stored in stream `{}`, not in the audit stream",
                        ack.stream
                    )))
                }
                Err(error) if retryable(error.kind()) => last_error = error.to_string(),
                Err(error) => return Err(failed(error.to_string())),
            }
        }
        Err(failed(format!(
            "no acknowledgement after {APPEND_ATTEMPTS} tries: {last_error}"
        )))
    }

    /// The entries that pass `filter`, oldest first.
    ///
    /// The action and target narrow the search on the server (they are in the subject); the
    /// other conditions are checked here. Messages of the stream that are not readable
    /// entries are left out, with a warning in the log naming their sequence.
    ///
    /// # Errors
    /// [`AuditError::Read`] when the stream cannot be read.
    pub async fn list(&self, filter: &AuditFilter) -> Result<Vec<StoredEntry>, AuditError> {
        let read = |action: &'static str| {
            let stream = self.stream.clone();
            move |error: &dyn std::fmt::Display| AuditError::Read {
                stream,
                action,
                reason: error.to_string(),
            }
        };
        let limit = filter.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| read("open the stream")(&e))?;
        let last = stream
            .info()
            .await
            .map_err(|e| read("read the stream's state")(&e))?
            .state
            .last_sequence;
        if last == 0 {
            return Ok(Vec::new());
        }
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self
                    .namespace
                    .audit_filter(filter.action.map(Action::as_str), filter.target.as_deref()),
                deliver_policy: match filter.since {
                    Some(start_time) => DeliverPolicy::ByStartTime { start_time },
                    None => DeliverPolicy::All,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| read("read the entries")(&e))?;
        if consumer.cached_info().num_pending == 0 {
            return Ok(Vec::new());
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| read("read the entries")(&e))?;
        let mut found = Vec::new();
        loop {
            let message = match tokio::time::timeout(READ_IDLE, messages.next()).await {
                Err(_) => return Err(read("read the entries")(&"no entry came for 10 s")),
                Ok(None) => break,
                Ok(Some(message)) => message.map_err(|e| read("read the entries")(&e))?,
            };
            let info = message.info().map_err(|e| read("read the entries")(&e))?;
            let (sequence, stored, pending) = (info.stream_sequence, info.published, info.pending);
            match serde_json::from_slice::<AuditEntry>(&message.payload) {
                Ok(entry) => {
                    let stored = StoredEntry {
                        sequence,
                        stored,
                        entry,
                    };
                    if filter.matches(&stored) {
                        found.push(stored);
                    }
                }
                Err(error) => tracing::warn!(
                    stream = %self.stream,
                    sequence,
                    %error,
                    "not a readable audit entry (written by hand, or by a newer Switchyard?)"
                ),
            }
            if pending == 0 || sequence >= last || found.len() >= limit {
                break;
            }
        }
        Ok(found)
    }
}

/// Whether a failed publish may be sent again: the server did not answer (the entry may or
/// may not be stored; the message id makes a second copy a duplicate).
fn retryable(kind: PublishErrorKind) -> bool {
    matches!(
        kind,
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe
    )
}

/// An audit log and who is acting: what an audited operation needs.
#[derive(Debug, Clone)]
pub struct Auditor {
    log: AuditLog,
    actor: Actor,
}

impl Auditor {
    /// `actor` acting, recorded in `log`.
    pub fn new(log: AuditLog, actor: Actor) -> Self {
        Self { log, actor }
    }

    /// The log.
    pub fn log(&self) -> &AuditLog {
        &self.log
    }

    /// Who is acting.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// A new entry by this actor, made now.
    pub fn entry(&self, action: Action, target: impl Into<String>) -> AuditEntry {
        AuditEntry::new(self.actor.clone(), action, target)
    }

    /// Stores `entry`; see [`AuditLog::append`].
    ///
    /// # Errors
    /// As [`AuditLog::append`].
    pub async fn append(&self, entry: &AuditEntry) -> Result<u64, AuditError> {
        self.log.append(entry).await
    }

    /// Stores the entry of a change that has been made; `done` says what it was ("disabled
    /// billing"). Call it after the change, never before.
    ///
    /// # Errors
    /// [`AuditError::NotRecorded`], naming `done` and carrying the entry, when the entry
    /// cannot be stored.
    pub async fn record(
        &self,
        done: impl Into<String>,
        entry: &AuditEntry,
    ) -> Result<u64, AuditError> {
        self.log
            .append(entry)
            .await
            .map_err(|error| AuditError::NotRecorded {
                done: done.into(),
                reason: error.to_string(),
                entry: serde_json::to_string(entry).unwrap_or_else(|e| e.to_string()),
            })
    }
}
