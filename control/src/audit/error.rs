//! How the audit log fails.

/// Why opening, appending to or reading the audit log failed. Match on the variant; the
/// strings are for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The audit stream cannot be used: JetStream is off, it cannot be created, or it exists
    /// but is not append-only. An audited change is refused before anything is done.
    #[error("audit log: {reason}")]
    Stream {
        /// What is wrong, naming the stream.
        reason: String,
    },
    /// An entry could not be stored (the server refused it, e.g. a full stream, or did not
    /// acknowledge it after retries).
    #[error("audit log `{stream}`: cannot store entry {id}: {reason}")]
    Append {
        /// The stream.
        stream: String,
        /// The entry's id.
        id: String,
        /// What happened.
        reason: String,
    },
    /// The stream could not be read.
    #[error("audit log `{stream}`: cannot {action}: {reason}")]
    Read {
        /// The stream.
        stream: String,
        /// What was being done.
        action: &'static str,
        /// What happened.
        reason: String,
    },
    /// An entry could not be encoded as JSON.
    #[error("cannot encode audit entry {id}: {reason}")]
    Encode {
        /// The entry's id.
        id: String,
        /// The encoder's message.
        reason: String,
    },
    /// A change was made, and its entry could not be stored: the change stands, unrecorded.
    /// The message says what was done and carries the entry, so that it is not lost.
    #[error(
        "{done}, but its audit entry could not be stored ({reason}); the change stands, \
         unrecorded. The entry: {entry}"
    )]
    NotRecorded {
        /// What was done, e.g. "disabled billing".
        done: String,
        /// Why the entry could not be stored.
        reason: String,
        /// The entry, as JSON.
        entry: String,
    },
}
