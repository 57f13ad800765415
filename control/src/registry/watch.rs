//! Following the registry: every current registration, then each change as it happens.

use async_nats::jetstream::consumer::push::{OrderedError, OrderedErrorKind};
use async_nats::jetstream::kv::{Entry, Operation, Watch, WatcherError, WatcherErrorKind};
use futures::{Stream, StreamExt};
use switchyard_schemas::PluginId;

use super::{decode, Registration};

/// What a registry watch yields.
// A change is rare and handled at once, so the size of `Put` costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryChange {
    /// A plugin is registered: when the watch began, or added or replaced since.
    Put {
        /// The registration now in force.
        registration: Registration,
        /// Its revision in the bucket.
        revision: u64,
    },
    /// A plugin was removed. Removals still in the bucket's history are replayed when the
    /// watch begins, so that a dispatcher that was down at the time can clean up after them.
    Removed {
        /// The plugin.
        plugin: PluginId,
        /// The revision of the removal.
        revision: u64,
    },
    /// An entry that does not hold a valid registration (written by hand into the bucket, or
    /// by an incompatible version). The watch goes on; keep the plugin as it was.
    Invalid {
        /// The entry's key.
        key: String,
        /// Why it does not decode.
        reason: String,
    },
}

/// Turns the raw KV watch (last value of every key, then live changes) into registry changes.
pub(super) fn changes(
    watch: Watch,
    bucket: String,
) -> impl Stream<Item = RegistryChange> + Send + Unpin + 'static {
    futures::stream::unfold((watch, bucket), |(mut watch, bucket)| async move {
        let change = next_change(&mut watch, &bucket).await?;
        Some((change, (watch, bucket)))
    })
    .boxed()
}

/// The next change, or `None` when the watch has ended for good.
async fn next_change(watch: &mut Watch, bucket: &str) -> Option<RegistryChange> {
    loop {
        match watch.next().await? {
            Ok(entry) => return Some(change(bucket, entry)),
            Err(error) if is_terminal(&error) => {
                tracing::error!(bucket, %error, "registry watch ended");
                return None;
            }
            // The ordered consumer under the watch recreates itself from the last revision it
            // delivered, so nothing is lost: note it and go on.
            Err(error) => {
                tracing::warn!(bucket, %error, "registry watch interrupted; resuming");
            }
        }
    }
}

fn change(bucket: &str, entry: Entry) -> RegistryChange {
    let decoded = match entry.operation {
        Operation::Put => {
            decode(bucket, &entry.key, &entry.value).map(|registration| RegistryChange::Put {
                registration,
                revision: entry.revision,
            })
        }
        Operation::Delete | Operation::Purge => PluginId::new(entry.key.as_str())
            .map(|plugin| RegistryChange::Removed {
                plugin,
                revision: entry.revision,
            })
            .map_err(|error| format!("removed entry whose key is not a plugin id: {error}")),
    };
    decoded.unwrap_or_else(|reason| {
        tracing::warn!(bucket, key = %entry.key, revision = entry.revision, %reason,
            "invalid registry entry");
        RegistryChange::Invalid {
            key: entry.key,
            reason,
        }
    })
}

/// Whether the watch cannot go on: its connection is closed for good. Every other error is
/// one that the ordered consumer recovers from by itself.
fn is_terminal(error: &WatcherError) -> bool {
    error.kind() == WatcherErrorKind::Consumer
        && std::error::Error::source(error)
            .and_then(|source| source.downcast_ref::<OrderedError>())
            .is_some_and(|ordered| {
                matches!(
                    ordered.kind(),
                    OrderedErrorKind::Other | OrderedErrorKind::Recreate
                )
            })
}
