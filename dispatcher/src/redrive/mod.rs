//! Operating on dead letters: list, show, replay and purge.
//!
//! A replay sends a dead letter's original event back to the one plugin that failed it, not
//! to every subscriber: it is published to
//! `{prefix}.redrive.{plugin}.{subscription}.{tenant}.{type}`, which the events stream stores
//! and only that subscription's consumer matches. The worker sees a new message (attempt 1)
//! carrying the same event.
//!
//! Nothing is lost between the two steps of a replay: the dead letter is removed only after
//! the events stream has acknowledged the replay. The replay's `Nats-Msg-Id` is
//! `redrive:{original stream sequence}:{dead-letter sequence}`, so running a replay again after a crash between the two
//! steps is de-duplicated by the events stream (within its duplicate window, 2 minutes by
//! default) instead of delivering the event twice.
//!
//! Replays and purges are recorded in the audit log (`dlq_replayed`, `dlq_purged`: which
//! plugin, which dead letters, which replays), once they are done; see
//! [`switchyard_control::audit`] for what happens when an entry cannot be stored.
//!
//! # Examples
//!
//! ```no_run
//! use switchyard_bus::{Bus, ConnectOptions};
//! use switchyard_control::audit::{Actor, AuditLog, Auditor};
//! use switchyard_dispatcher::redrive::{DeadLetterFilter, DeadLetters, Selection};
//! use switchyard_schemas::PluginId;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = Bus::connect(&ConnectOptions::new("nats://127.0.0.1:4222")).await?;
//! let auditor = Auditor::new(
//!     AuditLog::open(bus.jetstream(), bus.namespace()).await?,
//!     Actor::detect(bus.client(), None, None).await,
//! );
//! let dead_letters = DeadLetters::new(bus.jetstream().clone(), bus.namespace().clone(), bus.streams());
//! let audit = PluginId::new("audit")?;
//! let filter = DeadLetterFilter { plugin: Some(audit.clone()), ..Default::default() };
//! for letter in dead_letters.list(&filter).await? {
//!     println!("{} {} {}", letter.sequence, letter.failure.code, letter.failure.reason);
//! }
//! // The plugin is fixed: send its dead letters back to it.
//! let report = dead_letters.replay(&Selection::all(audit), &auditor).await?;
//! println!("replayed {}", report.count());
//! # Ok(())
//! # }
//! ```

mod error;
pub mod json;
mod record;
mod selection;

use std::collections::BTreeSet;

use std::time::Duration;

use async_nats::jetstream::{
    self, consumer::pull, message::StreamMessage, stream::RawMessageErrorKind,
};
use futures::StreamExt;
use serde_json::json;
use switchyard_bus::Streams;
use switchyard_control::audit::{sequence_ranges, Action, Auditor};
use switchyard_schemas::{header as ce, Namespace, PluginId, SubscriptionName};

pub use error::RedriveError;
pub use record::{DeadLetterRecord, DeadLetterSubject, DeadLetterSummary, OriginalForm};
pub use selection::{DeadLetterFilter, Scope, Selection};

pub(crate) use record::has_prefix;
use record::StoredMessage;

/// How long listing a plugin's dead letters may wait for the next one.
const LIST_IDLE: Duration = Duration::from_secs(10);

/// JetStream's error code for a message that does not exist (deleting one that is gone).
const NO_MESSAGE_FOUND: jetstream::ErrorCode = jetstream::ErrorCode::NO_MESSAGE_FOUND;

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// The dead letters replayed and removed, in order.
    pub replayed: Vec<Replayed>,
    /// Selected dead letters that were gone when their turn came (replayed or purged by
    /// someone else meanwhile, or expired).
    pub gone: Vec<u64>,
    /// Dead letters of the plugin that could not be read as dead letters and were left in
    /// place (only when replaying all; a selection by sequence refuses them instead).
    pub skipped: Vec<u64>,
}

/// One replayed dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Its sequence in the dead-letter stream (now removed).
    pub dead_letter: u64,
    /// The replay's sequence in the events stream.
    pub event_sequence: u64,
    /// The events stream already held this replay (an earlier run stored it and stopped before
    /// removing the dead letter); the plugin receives it once.
    pub duplicate: bool,
}

impl ReplayReport {
    /// How many dead letters were replayed.
    pub fn count(&self) -> usize {
        self.replayed.len()
    }

    /// The replays' sequences in the events stream.
    pub fn event_sequences(&self) -> Vec<u64> {
        self.replayed.iter().map(|r| r.event_sequence).collect()
    }
}

/// The dead letters of one deployment: the dead-letter stream, and the events stream that
/// replays go to.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    js: jetstream::Context,
    namespace: Namespace,
    dead_letter_stream: String,
    events_stream: String,
}

/// A dead letter about to be replayed: checked, but read again when its turn comes, so that a
/// replay of many holds one body in memory at a time.
struct Planned {
    sequence: u64,
    subscription: SubscriptionName,
}

impl DeadLetters {
    /// Works on `streams.dead_letters` of `namespace`, replaying into `streams.events`. Sends
    /// nothing until an operation is called. Each request is bounded by `js`'s timeout.
    pub fn new(js: jetstream::Context, namespace: Namespace, streams: &Streams) -> Self {
        Self {
            js,
            namespace,
            dead_letter_stream: streams.dead_letters.name.clone(),
            events_stream: streams.events.name.clone(),
        }
    }

    /// The dead letters that pass `filter`, oldest first.
    ///
    /// Messages of the dead-letter stream that are not readable dead letters are left out
    /// (with a warning in the log); [`DeadLetters::show`] names what is wrong with one.
    ///
    /// # Errors
    /// [`RedriveError::StreamMissing`] when the dead-letter stream does not exist;
    /// [`RedriveError::Request`] when reading it fails.
    pub async fn list(
        &self,
        filter: &DeadLetterFilter,
    ) -> Result<Vec<DeadLetterSummary>, RedriveError> {
        let stream = self.stream(&self.dead_letter_stream).await?;
        let subject = self.namespace.dead_letter_filter(filter.plugin.as_ref());
        let limit = filter.limit.unwrap_or(usize::MAX);
        let mut found = Vec::new();
        let mut next = Some(1);
        while let Some(from) = next.filter(|_| found.len() < limit) {
            let Some(message) = next_message(&stream, &subject, from).await? else {
                break;
            };
            next = message.sequence.checked_add(1);
            match StoredMessage::new(&self.namespace, message).and_then(StoredMessage::into_record)
            {
                Ok(record) if filter.matches(&record.summary) => found.push(record.summary),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "not listed"),
            }
        }
        Ok(found)
    }

    /// The dead letter with this sequence, in full.
    ///
    /// # Errors
    /// [`RedriveError::NotFound`] when there is none; [`RedriveError::Malformed`] when the
    /// message is not a readable dead letter; [`RedriveError::StreamMissing`] and
    /// [`RedriveError::Request`] as for [`DeadLetters::list`].
    pub async fn show(&self, sequence: u64) -> Result<DeadLetterRecord, RedriveError> {
        let stream = self.stream(&self.dead_letter_stream).await?;
        let message = get_message(&stream, sequence)
            .await?
            .ok_or(RedriveError::NotFound { sequence })?;
        StoredMessage::new(&self.namespace, message)?.into_record()
    }

    /// Sends the selected dead letters' events back to the plugin that failed them, oldest
    /// first, and removes each dead letter once the events stream has stored its replay.
    /// Records `dlq_replayed` (the plugin, the dead letters replayed, their replays'
    /// sequences) when at least one was replayed, also when the replay stopped partway.
    ///
    /// A selection by sequence is checked in full before anything is replayed: every sequence
    /// must exist, be a readable dead letter and belong to the selected plugin. In every case
    /// the plugin's subscriptions named by the dead letters must have their consumer, so that
    /// a replay never lands where nobody reads it.
    ///
    /// # Errors
    /// Before anything is replayed: [`RedriveError::NotFound`],
    /// [`RedriveError::WrongPlugin`], [`RedriveError::Malformed`] (for a selected sequence),
    /// [`RedriveError::NoConsumer`], [`RedriveError::StreamMissing`] or
    /// [`RedriveError::Request`]. Once replaying has begun, [`RedriveError::Interrupted`] says
    /// how many were done and which dead letter failed; the rest are still dead letters.
    /// [`RedriveError::Audit`] when dead letters were replayed and the entry could not be
    /// stored.
    ///
    /// # Cancel safety
    /// Dropping the future between the two steps of one dead letter leaves its replay stored
    /// and the dead letter in place; replaying it again within the events stream's duplicate
    /// window stores nothing new. Dropping it before the entry is stored leaves the replays
    /// unrecorded.
    pub async fn replay(
        &self,
        selection: &Selection,
        auditor: &Auditor,
    ) -> Result<ReplayReport, RedriveError> {
        let stream = self.stream(&self.dead_letter_stream).await?;
        let mut report = ReplayReport::default();
        let plan = self.plan_replay(&stream, selection, &mut report).await?;
        let subscriptions: BTreeSet<&SubscriptionName> =
            plan.iter().map(|p| &p.subscription).collect();
        self.check_consumers(&selection.plugin, subscriptions)
            .await?;
        let mut stopped = None;
        for planned in &plan {
            match self.replay_one(&stream, &selection.plugin, planned).await {
                Ok(Some(replayed)) => report.replayed.push(replayed),
                Ok(None) => report.gone.push(planned.sequence),
                Err(source) => {
                    stopped = Some(RedriveError::Interrupted {
                        action: "replay",
                        completed: report.replayed.len(),
                        sequence: planned.sequence,
                        source: Box::new(source),
                    });
                    break;
                }
            }
        }
        record_replay(&selection.plugin, &report, stopped.as_ref(), auditor).await?;
        match stopped {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    /// Deletes the selected dead letters; returns how many were deleted. Records
    /// `dlq_purged` (the plugin, the dead letters deleted) when at least one was, also when
    /// the purge stopped partway.
    ///
    /// [`Scope::All`] removes every message under the plugin's dead-letter subjects stored
    /// when the purge starts, malformed ones included, at once. A selection by sequence is
    /// checked in full first: every sequence must exist and be under the plugin's subjects.
    ///
    /// # Errors
    /// [`RedriveError::NotFound`] or [`RedriveError::WrongPlugin`] (nothing deleted);
    /// [`RedriveError::StreamMissing`] or [`RedriveError::Request`]; once deleting has begun,
    /// [`RedriveError::Interrupted`]; [`RedriveError::Audit`] when dead letters were deleted
    /// and the entry could not be stored.
    pub async fn purge(
        &self,
        selection: &Selection,
        auditor: &Auditor,
    ) -> Result<usize, RedriveError> {
        let mut stream = self.stream(&self.dead_letter_stream).await?;
        let sequences = match &selection.scope {
            Scope::All => {
                let subject = self.namespace.dead_letter_filter(Some(&selection.plugin));
                let last = stream
                    .info()
                    .await
                    .map_err(|e| RedriveError::request("read the dead-letter stream", e))?
                    .state
                    .last_sequence;
                let listed = sequences_under(&stream, &subject, last).await?;
                if listed.is_empty() {
                    return Ok(0);
                }
                // Up to the last one listed, so that the entry names what was deleted.
                let response = stream
                    .purge()
                    .filter(subject)
                    .sequence(last + 1)
                    .await
                    .map_err(|e| RedriveError::request("purge dead letters", e))?;
                let purged = usize::try_from(response.purged).unwrap_or(usize::MAX);
                record_purge(&selection.plugin, &listed, purged, None, auditor).await?;
                return Ok(purged);
            }
            Scope::Sequences(sequences) => sequences,
        };
        for &sequence in sequences {
            let message = get_message(&stream, sequence)
                .await?
                .ok_or(RedriveError::NotFound { sequence })?;
            let stored = StoredMessage::new(&self.namespace, message)?;
            check_plugin(&stored, &selection.plugin)?;
        }
        let mut purged = Vec::new();
        let mut stopped = None;
        for &sequence in sequences {
            match delete_message(&stream, sequence).await {
                Ok(true) => purged.push(sequence),
                Ok(false) => {}
                Err(source) => {
                    stopped = Some(RedriveError::Interrupted {
                        action: "purge",
                        completed: purged.len(),
                        sequence,
                        source: Box::new(source),
                    });
                    break;
                }
            }
        }
        record_purge(
            &selection.plugin,
            &purged,
            purged.len(),
            stopped.as_ref(),
            auditor,
        )
        .await?;
        match stopped {
            Some(error) => Err(error),
            None => Ok(purged.len()),
        }
    }

    /// Which dead letters a replay handles, checked.
    async fn plan_replay(
        &self,
        stream: &jetstream::stream::Stream,
        selection: &Selection,
        report: &mut ReplayReport,
    ) -> Result<Vec<Planned>, RedriveError> {
        let mut plan = Vec::new();
        match &selection.scope {
            Scope::Sequences(sequences) => {
                for &sequence in sequences {
                    let message = get_message(stream, sequence)
                        .await?
                        .ok_or(RedriveError::NotFound { sequence })?;
                    let stored = StoredMessage::new(&self.namespace, message)?;
                    check_plugin(&stored, &selection.plugin)?;
                    plan.push(planned(stored)?);
                }
            }
            Scope::All => {
                let subject = self.namespace.dead_letter_filter(Some(&selection.plugin));
                let mut next = Some(1);
                while let Some(from) = next {
                    let Some(message) = next_message(stream, &subject, from).await? else {
                        break;
                    };
                    next = message.sequence.checked_add(1);
                    let sequence = message.sequence;
                    match StoredMessage::new(&self.namespace, message).and_then(planned) {
                        Ok(planned) => plan.push(planned),
                        Err(error) => {
                            tracing::warn!(%error, "left in place");
                            report.skipped.push(sequence);
                        }
                    }
                }
            }
        }
        Ok(plan)
    }

    /// Every subscription must have its consumer, matching its replays.
    async fn check_consumers(
        &self,
        plugin: &PluginId,
        subscriptions: BTreeSet<&SubscriptionName>,
    ) -> Result<(), RedriveError> {
        if subscriptions.is_empty() {
            return Ok(());
        }
        let events = self.stream(&self.events_stream).await?;
        for subscription in subscriptions {
            let name = crate::consumer::consumer_name(plugin, subscription.as_str());
            let no_consumer = || RedriveError::NoConsumer {
                plugin: plugin.clone(),
                subscription: subscription.to_string(),
            };
            let info = match events.consumer_info(&name).await {
                Ok(info) => info,
                Err(error) if is_consumer_not_found(&error) => return Err(no_consumer()),
                Err(error) => return Err(RedriveError::request("look up the consumer", error)),
            };
            let replays = self.namespace.redrive_filter(plugin, subscription.as_str());
            let config = &info.config;
            if config.filter_subject != replays && !config.filter_subjects.contains(&replays) {
                return Err(no_consumer());
            }
        }
        Ok(())
    }

    /// Replays one dead letter, then removes it; `None` when it is gone already.
    async fn replay_one(
        &self,
        stream: &jetstream::stream::Stream,
        plugin: &PluginId,
        planned: &Planned,
    ) -> Result<Option<Replayed>, RedriveError> {
        let sequence = planned.sequence;
        let Some(message) = get_message(stream, sequence).await? else {
            return Ok(None);
        };
        let record = StoredMessage::new(&self.namespace, message)?.into_record()?;
        let why = match &record.form {
            OriginalForm::Copy => None,
            OriginalForm::Raw { .. } => {
                Some("it keeps the event's raw bytes (its header block could not be read or copied); inspect it with `dlq show`".to_owned())
            }
            OriginalForm::Omitted { why } => Some(why.clone()),
        };
        if let Some(why) = why {
            return Err(RedriveError::NotReplayable { sequence, why });
        }
        let subject = self.namespace.redrive(
            plugin,
            planned.subscription.as_str(),
            &record.summary.tenant,
            &record.summary.event_type,
        );
        let mut headers = record.headers;
        // The dead letter's own sequence repeats if the dead-letter stream is ever recreated;
        // with the original event's sequence the id stays unique to this dead letter.
        let replay_id = format!(
            "redrive:{}:{sequence}",
            record.summary.failure.stream_sequence
        );
        headers.insert(ce::NATS_MSG_ID, replay_id.as_str());
        let ack = self
            .js
            .publish_with_headers(subject.clone(), headers, record.body)
            .await
            .map_err(|e| RedriveError::request("publish the replay", e))?
            .await
            .map_err(|e| RedriveError::request("store the replay", e))?;
        if ack.stream != self.events_stream {
            // Stored, but where the plugin's consumer does not look: keep the dead letter.
            return Err(RedriveError::Request {
                action: "store the replay",
                reason: format!(
                    "stored in stream `{}` (sequence {}), not in `{}`; the dead letter is kept",
                    ack.stream, ack.sequence, self.events_stream
                ),
            });
        }
        if ack.duplicate {
            // The id is predictable: a message someone else published with it would make the
            // stream drop the replay. Only an earlier run of this replay counts as stored.
            let events = self.stream(&self.events_stream).await?;
            let stored = get_message(&events, ack.sequence).await?;
            if stored.as_ref().map(|m| m.subject.as_str()) != Some(subject.as_str()) {
                return Err(RedriveError::NotReplayable {
                    sequence,
                    why: format!(
                        "the events stream holds another message with the replay's id \
                         `{replay_id}` (sequence {}), so the replay was not stored; the dead \
                         letter is kept (replay it after the stream's duplicate window)",
                        ack.sequence
                    ),
                });
            }
        }
        // Only now is the dead letter redundant. If this delete fails, the replay is stored
        // and the dead letter stays; a new replay of it is de-duplicated.
        delete_message(stream, sequence)
            .await
            .map_err(|e| match e {
                RedriveError::Request { action, reason } => RedriveError::Request {
                    action,
                    reason: format!(
                        "{reason} (its replay is stored as event sequence {}; replaying it again \
                     within the duplicate window only removes it)",
                        ack.sequence
                    ),
                },
                other => other,
            })?;
        Ok(Some(Replayed {
            dead_letter: sequence,
            event_sequence: ack.sequence,
            duplicate: ack.duplicate,
        }))
    }

    async fn stream(&self, name: &str) -> Result<jetstream::stream::Stream, RedriveError> {
        use jetstream::context::GetStreamErrorKind as K;
        self.js
            .get_stream(name)
            .await
            .map_err(|error| match error.kind() {
                K::JetStream(e) if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND => {
                    RedriveError::StreamMissing {
                        stream: name.to_owned(),
                    }
                }
                _ => RedriveError::request("look up the stream", format!("{name}: {error}")),
            })
    }
}

/// Records a replay that replayed at least one dead letter.
async fn record_replay(
    plugin: &PluginId,
    report: &ReplayReport,
    stopped: Option<&RedriveError>,
    auditor: &Auditor,
) -> Result<(), RedriveError> {
    if report.replayed.is_empty() {
        return Ok(());
    }
    let dead_letters: Vec<u64> = report.replayed.iter().map(|r| r.dead_letter).collect();
    let count = dead_letters.len();
    let mut done = format!(
        "replayed {count} dead letters of {plugin} (sequences {})",
        sequence_ranges(&dead_letters)
    );
    if let Some(stopped) = stopped {
        done.push_str(&format!(" before it {}", describe_stop(stopped)));
    }
    let mut detail = done.clone();
    if !report.gone.is_empty() {
        detail.push_str(&format!(
            "; gone already: {}",
            sequence_ranges(&report.gone)
        ));
    }
    if !report.skipped.is_empty() {
        detail.push_str(&format!(
            "; left in place, unreadable: {}",
            sequence_ranges(&report.skipped)
        ));
    }
    let entry = auditor
        .entry(Action::DlqReplayed, plugin.as_str())
        .before(Some(json!({
            "dead_letters": sequence_ranges(&dead_letters),
            "count": count,
        })))
        .after(Some(json!({
            "event_sequences": sequence_ranges(&report.event_sequences()),
            "count": count,
        })))
        .detail(detail);
    auditor.record(done, &entry).await?;
    Ok(())
}

/// Records a purge that deleted at least one dead letter: `sequences` are the ones deleted
/// (for a purge of all, the ones listed before; `count` is what the server deleted).
async fn record_purge(
    plugin: &PluginId,
    sequences: &[u64],
    count: usize,
    stopped: Option<&RedriveError>,
    auditor: &Auditor,
) -> Result<(), RedriveError> {
    if count == 0 {
        return Ok(());
    }
    let mut done = format!(
        "purged {count} dead letters of {plugin} (sequences {})",
        sequence_ranges(sequences)
    );
    if let Some(stopped) = stopped {
        done.push_str(&format!(" before it {}", describe_stop(stopped)));
    }
    let entry = auditor
        .entry(Action::DlqPurged, plugin.as_str())
        .before(Some(json!({
            "dead_letters": sequence_ranges(sequences),
            "count": count,
        })))
        .detail(done.clone());
    auditor.record(done, &entry).await?;
    Ok(())
}

/// "stopped at dead letter N: why", for an entry.
fn describe_stop(stopped: &RedriveError) -> String {
    match stopped {
        RedriveError::Interrupted {
            sequence, source, ..
        } => format!("stopped at dead letter {sequence}: {source}"),
        other => format!("stopped: {other}"),
    }
}

/// The sequences of the messages under `subject` up to `last`, read as headers only.
async fn sequences_under(
    stream: &jetstream::stream::Stream,
    subject: &str,
    last: u64,
) -> Result<Vec<u64>, RedriveError> {
    let failed = |e: &dyn std::fmt::Display| RedriveError::request("list the dead letters", e);
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            headers_only: true,
            ..Default::default()
        })
        .await
        .map_err(|e| failed(&e))?;
    let mut sequences = Vec::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(sequences);
    }
    let mut messages = consumer.messages().await.map_err(|e| failed(&e))?;
    loop {
        let message = match tokio::time::timeout(LIST_IDLE, messages.next()).await {
            Err(_) => return Err(failed(&"no dead letter came for 10 s")),
            Ok(None) => break,
            Ok(Some(message)) => message.map_err(|e| failed(&e))?,
        };
        let info = message.info().map_err(|e| failed(&e))?;
        if info.stream_sequence > last {
            break;
        }
        sequences.push(info.stream_sequence);
        if info.pending == 0 || info.stream_sequence >= last {
            break;
        }
    }
    Ok(sequences)
}

fn planned(stored: StoredMessage) -> Result<Planned, RedriveError> {
    let sequence = stored.sequence;
    let record = stored.into_record()?;
    let subscription = SubscriptionName::new(record.summary.failure.subscription).map_err(|e| {
        RedriveError::Malformed {
            sequence,
            problem: format!("subscription: {e}"),
        }
    })?;
    Ok(Planned {
        sequence,
        subscription,
    })
}

fn check_plugin(stored: &StoredMessage, expected: &PluginId) -> Result<(), RedriveError> {
    if stored.subject.plugin == *expected {
        Ok(())
    } else {
        Err(RedriveError::WrongPlugin {
            sequence: stored.sequence,
            plugin: stored.subject.plugin.clone(),
            expected: expected.clone(),
        })
    }
}

/// The message with this sequence; `None` when there is none (never written or deleted).
/// Read from the stream's leader, so a dead letter just written or deleted is seen as such.
async fn get_message(
    stream: &jetstream::stream::Stream,
    sequence: u64,
) -> Result<Option<StreamMessage>, RedriveError> {
    match stream.get_raw_message(sequence).await {
        Ok(message) => Ok(Some(message)),
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(RedriveError::request("read a dead letter", e)),
    }
}

/// The first message at or after `from` under `subject`; `None` past the last one. Deleted
/// sequences are skipped by the server.
async fn next_message(
    stream: &jetstream::stream::Stream,
    subject: &str,
    from: u64,
) -> Result<Option<StreamMessage>, RedriveError> {
    let next = stream
        .raw_message_builder()
        .next_by_subject(subject)
        .sequence(from)
        .send()
        .await;
    match next {
        Ok(message) => Ok(Some(message)),
        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(RedriveError::request("read the dead letters", e)),
    }
}

/// Deletes one message; `false` when it was gone already.
async fn delete_message(
    stream: &jetstream::stream::Stream,
    sequence: u64,
) -> Result<bool, RedriveError> {
    use jetstream::stream::DeleteMessageErrorKind as K;
    match stream.delete_message(sequence).await {
        Ok(deleted) => Ok(deleted),
        Err(e) if matches!(e.kind(), K::JetStream(j) if j.error_code() == NO_MESSAGE_FOUND) => {
            Ok(false)
        }
        Err(e) => Err(RedriveError::request("remove the dead letter", e)),
    }
}

fn is_consumer_not_found(error: &jetstream::context::ConsumerInfoError) -> bool {
    error.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound
}
