//! Why listing, showing, replaying or purging dead letters failed.

use switchyard_schemas::PluginId;

/// Everything the operations of [`DeadLetters`](super::DeadLetters) can fail with. Match on
/// the variant: each names what it concerns.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// The dead-letter stream holds no message with this sequence (never written, purged,
    /// replayed, or expired).
    #[error("no dead letter has sequence {sequence}")]
    NotFound {
        /// The sequence asked for.
        sequence: u64,
    },
    /// A selected dead letter belongs to another plugin than the one named. Nothing was
    /// replayed or purged.
    #[error(
        "dead letter {sequence} belongs to plugin `{plugin}`, not `{expected}`; nothing was done"
    )]
    WrongPlugin {
        /// The dead letter.
        sequence: u64,
        /// The plugin it belongs to.
        plugin: PluginId,
        /// The plugin the selection named.
        expected: PluginId,
    },
    /// A message in the dead-letter stream that is not a readable dead letter: a subject
    /// outside `{prefix}.dlq.{plugin}.{tenant}.{type}`, or failure metadata missing or
    /// malformed. It was not written by a dispatcher; `purge` can still remove it.
    #[error("dead letter {sequence} is malformed: {problem}")]
    Malformed {
        /// The message's sequence.
        sequence: u64,
        /// What is wrong (the header or the subject).
        problem: String,
    },
    /// The plugin's subscription has no consumer in the events stream (the plugin was removed,
    /// or the subscription renamed), so a replay would be stored where nobody reads it.
    /// Nothing was replayed.
    #[error(
        "plugin `{plugin}` has no consumer for subscription `{subscription}` (is it registered?); nothing was replayed"
    )]
    NoConsumer {
        /// The plugin.
        plugin: PluginId,
        /// The subscription its dead letters name.
        subscription: String,
    },
    /// The dead letter does not hold the event in a form that can be published again: its
    /// header block could not be read, or the event did not fit. Nothing was replayed; `show`
    /// displays what it keeps.
    #[error("dead letter {sequence} cannot be replayed: {why}")]
    NotReplayable {
        /// The dead letter.
        sequence: u64,
        /// Why.
        why: String,
    },
    /// A stream Switchyard needs does not exist.
    #[error("stream `{stream}` does not exist (run `switchyard streams provision`)")]
    StreamMissing {
        /// The stream.
        stream: String,
    },
    /// A JetStream request failed (timeout, disconnect, an error from the server).
    #[error("{action}: {reason}")]
    Request {
        /// What was being done.
        action: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// A replay or purge stopped partway. The first `completed` dead letters of the selection
    /// were handled (replayed and removed, or purged); `sequence` and those after it are still
    /// dead letters, so running the same command again finishes the work.
    #[error("{action} stopped at dead letter {sequence} after {completed} done")]
    Interrupted {
        /// `replay` or `purge`.
        action: &'static str,
        /// How many were handled before the failure.
        completed: usize,
        /// The dead letter whose handling failed.
        sequence: u64,
        /// Why.
        #[source]
        source: Box<RedriveError>,
    },
    /// The audit log could not be opened, or dead letters were replayed or purged and the
    /// entry could not be stored
    /// ([`AuditError::NotRecorded`](switchyard_control::audit::AuditError::NotRecorded)).
    #[error(transparent)]
    Audit(#[from] switchyard_control::audit::AuditError),
}

impl RedriveError {
    /// A failed request, described by what was being done.
    pub(crate) fn request(action: &'static str, error: impl std::fmt::Display) -> Self {
        RedriveError::Request {
            action,
            reason: error.to_string(),
        }
    }
}
