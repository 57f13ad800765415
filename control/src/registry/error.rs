//! How the registry fails.

use switchyard_schemas::PluginId;

use crate::audit::AuditError;

/// Why a registry operation failed. Match on the variant; the strings are for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// JetStream is off on the server, or this account may not use it.
    #[error("JetStream is not available on this server/account: {reason}")]
    Unavailable {
        /// The server's or client's message.
        reason: String,
    },
    /// A request to the bucket did not succeed (timeout, disconnect, refusal).
    #[error("plugin registry `{bucket}`: cannot {action}: {reason}")]
    Request {
        /// The bucket.
        bucket: String,
        /// What was being done, e.g. "store the registration of `audit-log`".
        action: String,
        /// What happened.
        reason: String,
    },
    /// An entry in the bucket does not hold a valid registration (someone wrote it by hand,
    /// or a newer, incompatible Switchyard did). Removing or re-adding the plugin repairs it.
    #[error("plugin registry `{bucket}`: entry `{key}` is not a valid registration: {reason}")]
    Corrupt {
        /// The bucket.
        bucket: String,
        /// The key of the entry.
        key: String,
        /// Why it does not decode.
        reason: String,
    },
    /// A write conditional on the registry as read ([`Registry::expecting`](super::Registry::expecting))
    /// was refused: another change to the registry came first. Read it again, check again,
    /// and try again.
    #[error(
        "plugin registry `{bucket}`: did not {action}: the registry changed since it was read \
         (a concurrent change to {changed} came first)"
    )]
    Conflict {
        /// The bucket.
        bucket: String,
        /// What was being done.
        action: String,
        /// The change that came first: the entry written, and its revision.
        changed: String,
    },
    /// A registration could not be encoded as JSON.
    #[error("cannot encode the registration of `{plugin}`: {reason}")]
    Encode {
        /// The plugin whose registration it is.
        plugin: PluginId,
        /// The encoder's message.
        reason: String,
    },
    /// The audit log could not be opened (nothing was changed), or a change was made and
    /// its entry could not be stored ([`AuditError::NotRecorded`]).
    #[error(transparent)]
    Audit(#[from] AuditError),
}
