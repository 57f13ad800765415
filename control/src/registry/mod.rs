//! The plugin registry: which plugins are registered, with which manifest, for which tenants.
//!
//! It lives in a JetStream key-value bucket, `{PREFIX}_REGISTRY` ([`bucket_name`]), one entry
//! per plugin: the key is the plugin id, the value a [`Registration`] as JSON. The bucket keeps
//! [`HISTORY`] revisions per plugin, so that an upgrade can be rolled back.
//!
//! The CLI writes it (`switchyard plugins add|remove|enable|disable`) through the audited
//! operations ([`Registry::put_recorded`], [`Registry::unregister`]), which record each change
//! in the audit log; [`Registry::put`] and [`Registry::remove`] record nothing.
//! The dispatcher [`watch`](Registry::watch)es it to start the consumers of every registered
//! plugin and to follow changes live. Several processes may open and use it at once; NATS
//! orders their writes.
//!
//! # Concurrent changes
//!
//! A lifecycle change reads the registry, checks the change against what it read (`requires`,
//! `conflicts`, ...) and writes. So that two operators cannot both pass their checks against
//! the same state (two conflicting plugins added at once), such a change takes a
//! [`Snapshot`] and writes through [`Registry::expecting`] its sequence: the write is stored
//! only if the registry has not changed since it was read, else it fails with
//! [`RegistryError::Conflict`] naming the change that came first, and the caller reads again,
//! checks again and tries again (a bounded number of times).
//!
//! # Examples
//!
//! ```no_run
//! use futures::StreamExt;
//! use switchyard_control::registry::{Registration, Registry, RegistryChange, TenantScope};
//! use switchyard_schemas::{Manifest, Namespace};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let registry = Registry::open(&async_nats::jetstream::new(client), &Namespace::default()).await?;
//!
//! let manifest = Manifest::from_path("plugin.toml")?;
//! registry.put(&Registration::new(manifest, TenantScope::All)).await?;
//!
//! let mut changes = registry.watch().await?;
//! while let Some(change) = changes.next().await {
//!     match change {
//!         RegistryChange::Put { registration, .. } => println!("start {}", registration.plugin_id()),
//!         RegistryChange::Removed { plugin, .. } => println!("stop {plugin}"),
//!         RegistryChange::Invalid { key, reason, .. } => eprintln!("bad entry {key}: {reason}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod audited;
mod error;
mod failed;
mod provenance;
mod registration;
mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_nats::jetstream::context::{GetStreamError, KeyValueError, PublishErrorKind};
use async_nats::jetstream::{self, kv};
use futures::{Stream, TryStreamExt};
use switchyard_bus::{stream_name, Streams};
use switchyard_schemas::{Namespace, PluginId};

pub use self::audited::Recorded;
pub use self::error::RegistryError;
pub use self::failed::{Failure, MarkedFailed};
pub use self::provenance::{InstalledFrom, Provenance};
pub use self::registration::{
    EmptyTenantScope, LifecycleState, PendingUpgrade, Registration, TenantScope,
};
pub use self::watch::RegistryChange;

/// One revision of a plugin's entry, as [`Registry::history`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    /// The bucket's revision number.
    pub revision: u64,
    /// When it was stored (the server's time).
    pub at: time::OffsetDateTime,
    /// The registration stored, or `None` for a removal.
    pub registration: Option<Registration>,
}

/// How many revisions the bucket keeps per plugin: the current one and nine before it.
pub const HISTORY: i64 = 10;

/// The name of the registry's bucket for `namespace`: `{PREFIX}_REGISTRY`, e.g.
/// `SWITCHYARD_REGISTRY`.
pub fn bucket_name(namespace: &Namespace) -> String {
    stream_name(namespace, "REGISTRY")
}

/// How the bucket is created when it does not exist yet. An existing bucket is opened as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryOptions {
    /// How many servers keep a copy (1, 3 or 5).
    pub replicas: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self { replicas: 1 }
    }
}

/// Every registration, and the registry's sequence when they were read: what a lifecycle
/// check reads, and what its write is made conditional on ([`Registry::expecting`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Every registration, sorted by plugin id.
    pub registrations: Vec<Registration>,
    /// The sequence of the registry's last change when they were read (0: none yet).
    pub sequence: u64,
}

/// How many times a lifecycle change is checked and written again when another change to the
/// registry came first ([`RegistryError::Conflict`]).
pub const CONFLICT_ATTEMPTS: usize = failed::CONFLICT_ATTEMPTS;

/// The plugin registry of one deployment. Cheap to clone; clones share the connection.
#[derive(Debug, Clone)]
pub struct Registry {
    store: kv::Store,
    bucket: String,
    /// The stream whose next sequence stamps each new registration.
    events_stream: String,
    js: jetstream::Context,
    /// For a registry made by [`Registry::expecting`]: the sequence its next write expects
    /// the registry to be at, advanced by each of its own writes.
    expected: Option<Arc<AtomicU64>>,
}

impl Registry {
    /// Opens the registry of `namespace`, creating its bucket with the default
    /// [`RegistryOptions`] when it does not exist.
    ///
    /// # Errors
    /// See [`Registry::open_with`].
    pub async fn open(
        js: &jetstream::Context,
        namespace: &Namespace,
    ) -> Result<Self, RegistryError> {
        Self::open_with(js, namespace, &RegistryOptions::default()).await
    }

    /// Opens the registry of `namespace`, creating its bucket with `options` when it does not
    /// exist. Safe on every start and from several processes at once.
    ///
    /// # Errors
    /// [`RegistryError::Unavailable`] when JetStream is off; [`RegistryError::Request`] when the
    /// bucket can be neither opened nor created (timeout, refused settings).
    pub async fn open_with(
        js: &jetstream::Context,
        namespace: &Namespace,
        options: &RegistryOptions,
    ) -> Result<Self, RegistryError> {
        let bucket = bucket_name(namespace);
        let store = match js.get_key_value(&bucket).await {
            Ok(store) => store,
            Err(error) if is_missing(&error) => create(js, &bucket, options).await?,
            Err(error) if is_jetstream_off(&error) => {
                return Err(RegistryError::Unavailable {
                    reason: error.to_string(),
                })
            }
            Err(error) => return Err(request_error(&bucket, "open the bucket", error)),
        };
        Ok(Self {
            store,
            bucket,
            events_stream: Streams::defaults(namespace).events.name,
            js: js.clone(),
            expected: None,
        })
    }

    /// Every registration, with the registry's sequence read first: a write through
    /// [`expecting`](Self::expecting) that sequence fails if anything changed since.
    ///
    /// # Errors
    /// As [`list`](Self::list).
    pub async fn snapshot(&self) -> Result<Snapshot, RegistryError> {
        let sequence = self.last_sequence().await?;
        let registrations = self.list().await?;
        Ok(Snapshot {
            registrations,
            sequence,
        })
    }

    /// This registry, whose writes ([`put`](Self::put), [`remove`](Self::remove) and the
    /// audited ones) are stored only while the registry is still at `sequence` (a
    /// [`Snapshot`]'s): a write after another process's fails with
    /// [`RegistryError::Conflict`]. Each write it makes moves the expected sequence on, so
    /// that one change may write several entries.
    pub fn expecting(&self, sequence: u64) -> Self {
        Self {
            expected: Some(Arc::new(AtomicU64::new(sequence))),
            ..self.clone()
        }
    }

    /// The sequence of the registry's last change (0 when it has none).
    async fn last_sequence(&self) -> Result<u64, RegistryError> {
        let mut stream = self
            .js
            .get_stream(&self.store.stream_name)
            .await
            .map_err(|error| request_error(&self.bucket, "read its last change", error))?;
        let info = stream
            .info()
            .await
            .map_err(|error| request_error(&self.bucket, "read its last change", error))?;
        Ok(info.state.last_sequence)
    }

    /// Writes `value` (a registration, or with `headers` a removal marker) under `key` only
    /// while the registry is at the expected sequence; returns the new revision.
    async fn write_expecting(
        &self,
        expected: &AtomicU64,
        key: &str,
        headers: async_nats::HeaderMap,
        value: bytes::Bytes,
        action: String,
    ) -> Result<u64, RegistryError> {
        let sequence = expected.load(Ordering::SeqCst);
        let subject = format!(
            "{}{key}",
            self.store.put_prefix.as_ref().unwrap_or(&self.store.prefix)
        );
        let publish = jetstream::message::PublishMessage::build()
            .payload(value)
            .headers(headers)
            .expected_last_sequence(sequence);
        let acknowledged = match self.js.send_publish(subject, publish).await {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        match acknowledged {
            Ok(ack) => {
                expected.store(ack.sequence, Ordering::SeqCst);
                Ok(ack.sequence)
            }
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => {
                Err(self.conflict(sequence, action).await)
            }
            Err(error) => Err(request_error(&self.bucket, action, error)),
        }
    }

    /// The conflict of a write that expected the registry at `sequence`, naming the change
    /// that came first (the first one after `sequence`).
    async fn conflict(&self, sequence: u64, action: String) -> RegistryError {
        let changed = match self.js.get_stream(&self.store.stream_name).await {
            Ok(stream) => stream
                .get_raw_message(sequence + 1)
                .await
                .ok()
                .map(|message| {
                    let key = message
                        .subject
                        .strip_prefix(self.store.prefix.as_str())
                        .unwrap_or(&message.subject)
                        .to_owned();
                    format!("`{key}` (revision {})", message.sequence)
                }),
            Err(_) => None,
        };
        RegistryError::Conflict {
            bucket: self.bucket.clone(),
            action,
            changed: changed.unwrap_or_else(|| "another entry".to_owned()),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Stores `registration` under its plugin id, replacing the one there (an upgrade).
    /// Returns the new revision.
    ///
    /// # Errors
    /// [`RegistryError::Encode`] when it cannot be encoded (a [`TenantScope::Only`] with no
    /// tenant), [`RegistryError::Request`] when the write is not acknowledged.
    pub async fn put(&self, registration: &Registration) -> Result<u64, RegistryError> {
        let plugin = registration.plugin_id();
        let mut registration = registration.clone();
        if registration.start_sequence.is_none() {
            registration.start_sequence = Some(self.next_event_sequence().await?);
        }
        let json = serde_json::to_vec(&registration).map_err(|error| RegistryError::Encode {
            plugin: plugin.clone(),
            reason: error.to_string(),
        })?;
        if let Some(expected) = &self.expected {
            return self
                .write_expecting(
                    expected,
                    plugin.as_str(),
                    async_nats::HeaderMap::new(),
                    json.into(),
                    format!("store the registration of `{plugin}`"),
                )
                .await;
        }
        self.store
            .put(plugin.as_str(), json.into())
            .await
            .map_err(|error| {
                request_error(
                    &self.bucket,
                    format!("store the registration of `{plugin}`"),
                    error,
                )
            })
    }

    /// The sequence the next event stored will have: 1 when the events stream does not
    /// exist yet (every event it will hold comes after this registration).
    async fn next_event_sequence(&self) -> Result<u64, RegistryError> {
        use jetstream::context::GetStreamErrorKind as K;
        match self.js.get_stream(&self.events_stream).await {
            Ok(mut stream) => {
                let info = stream.info().await.map_err(|error| {
                    request_error(
                        &self.bucket,
                        "read the events stream's last sequence",
                        error,
                    )
                })?;
                Ok(info.state.last_sequence + 1)
            }
            Err(error) if matches!(error.kind(), K::JetStream(e) if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) => {
                Ok(1)
            }
            Err(error) => Err(request_error(
                &self.bucket,
                "read the events stream's last sequence",
                error,
            )),
        }
    }

    /// The registration of `plugin`, if it is registered.
    ///
    /// # Errors
    /// [`RegistryError::Corrupt`] when its entry does not decode, [`RegistryError::Request`]
    /// when the read fails.
    pub async fn get(&self, plugin: &PluginId) -> Result<Option<Registration>, RegistryError> {
        let value = self.store.get(plugin.as_str()).await.map_err(|error| {
            request_error(&self.bucket, format!("read the entry of `{plugin}`"), error)
        })?;
        value
            .map(|value| self.decode(plugin.as_str(), &value))
            .transpose()
    }

    /// The revisions the bucket keeps of `plugin` (at most [`HISTORY`]), oldest first:
    /// each registration stored, and each removal (`registration: None`). An entry that does
    /// not decode is left out.
    ///
    /// # Errors
    /// [`RegistryError::Request`] when the history cannot be read.
    pub async fn history(&self, plugin: &PluginId) -> Result<Vec<Revision>, RegistryError> {
        use futures::TryStreamExt;
        let read = |error: &dyn std::fmt::Display| {
            request_error(
                &self.bucket,
                format!("read the history of `{plugin}`"),
                error.to_string(),
            )
        };
        let entries: Vec<kv::Entry> = match self.store.history(plugin.as_str()).await {
            Ok(entries) => entries.try_collect().await.map_err(|e| read(&e))?,
            Err(error) if error.kind() == kv::WatchErrorKind::TimedOut => Vec::new(),
            Err(error) => return Err(read(&error)),
        };
        Ok(entries
            .into_iter()
            .filter_map(|entry| {
                let registration = match entry.operation {
                    kv::Operation::Put => Some(self.decode(plugin.as_str(), &entry.value).ok()?),
                    kv::Operation::Delete | kv::Operation::Purge => None,
                };
                Some(Revision {
                    revision: entry.revision,
                    at: entry.created,
                    registration,
                })
            })
            .collect())
    }

    /// Removes `plugin`; returns whether it was registered. Its earlier revisions stay in the
    /// bucket's history, but [`get`](Self::get), [`list`](Self::list) and watches no longer
    /// show it. The entry is not decoded, so a corrupt one can be removed too.
    ///
    /// # Errors
    /// [`RegistryError::Request`] when a read or the removal fails.
    pub async fn remove(&self, plugin: &PluginId) -> Result<bool, RegistryError> {
        Ok(self.remove_entry(plugin).await?.is_some())
    }

    /// Removes `plugin`; returns what was removed (`None`: it was not registered): the
    /// registration, or why the entry does not decode.
    async fn remove_entry(
        &self,
        plugin: &PluginId,
    ) -> Result<Option<Result<Registration, String>>, RegistryError> {
        let key = plugin.as_str();
        loop {
            let entry = self.store.entry(key).await.map_err(|error| {
                request_error(&self.bucket, format!("read the entry of `{plugin}`"), error)
            })?;
            let Some(entry) = entry.filter(|entry| entry.operation == kv::Operation::Put) else {
                return Ok(None);
            };
            if let Some(expected) = &self.expected {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("KV-Operation", "DEL");
                self.write_expecting(
                    expected,
                    key,
                    headers,
                    bytes::Bytes::new(),
                    format!("remove `{plugin}`"),
                )
                .await?;
                return Ok(Some(decode(&self.bucket, key, &entry.value)));
            }
            // Delete only the revision just read, so that "existed" is exact even when another
            // process upgrades or removes the plugin at the same moment.
            match self
                .store
                .delete_expect_revision(key, Some(entry.revision))
                .await
            {
                Ok(()) => return Ok(Some(decode(&self.bucket, key, &entry.value))),
                Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(error) => {
                    return Err(request_error(
                        &self.bucket,
                        format!("remove `{plugin}`"),
                        error,
                    ))
                }
            }
        }
    }

    /// Every registration, sorted by plugin id.
    ///
    /// # Errors
    /// [`RegistryError::Corrupt`] naming the first entry that does not decode (remove it, or
    /// add the plugin again, to repair it); [`RegistryError::Request`] when a read fails.
    pub async fn list(&self) -> Result<Vec<Registration>, RegistryError> {
        let listing_failed =
            |error: &dyn std::fmt::Display| request_error(&self.bucket, "list the plugins", error);
        let mut keys: Vec<String> = self
            .store
            .keys()
            .await
            .map_err(|error| listing_failed(&error))?
            .try_collect()
            .await
            .map_err(|error| listing_failed(&error))?;
        keys.sort();
        let mut registrations = Vec::with_capacity(keys.len());
        for key in keys {
            let value = self.store.get(key.as_str()).await.map_err(|error| {
                request_error(&self.bucket, format!("read the entry of `{key}`"), error)
            })?;
            // `None`: removed since the keys were listed.
            if let Some(value) = value {
                registrations.push(self.decode(&key, &value)?);
            }
        }
        Ok(registrations)
    }

    /// Follows the registry: first a [`RegistryChange::Put`] for every plugin registered now
    /// (and a [`RegistryChange::Removed`] for each removal still in the bucket's history), then
    /// every change as it happens, also when the bucket starts empty. An entry that does not
    /// decode becomes [`RegistryChange::Invalid`] and the watch goes on.
    ///
    /// The stream does not end while the connection lives: after a disconnect or a server
    /// restart it resumes where it was. It ends when the connection is closed for good.
    ///
    /// # Cancel safety
    /// Dropping the stream stops the watch (its ephemeral consumer is removed by the server).
    ///
    /// # Errors
    /// [`RegistryError::Request`] when the watch cannot be started.
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = RegistryChange> + Send + Unpin + 'static, RegistryError> {
        let watch = self
            .store
            .watch_with_history(">")
            .await
            .map_err(|error| request_error(&self.bucket, "start watching", error))?;
        Ok(watch::changes(watch, self.bucket.clone()))
    }

    fn decode(&self, key: &str, value: &[u8]) -> Result<Registration, RegistryError> {
        decode(&self.bucket, key, value).map_err(|reason| RegistryError::Corrupt {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            reason,
        })
    }
}

/// Decodes the entry `key`; the error is why it is not a valid registration.
fn decode(bucket: &str, key: &str, value: &[u8]) -> Result<Registration, String> {
    let registration: Registration =
        serde_json::from_slice(value).map_err(|error| error.to_string())?;
    let id = registration.plugin_id();
    if id.as_str() == key {
        Ok(registration)
    } else {
        Err(format!(
            "it holds the registration of `{id}`, not of `{key}` (in `{bucket}`)"
        ))
    }
}

/// Creates the bucket; when another process created it first, opens theirs.
async fn create(
    js: &jetstream::Context,
    bucket: &str,
    options: &RegistryOptions,
) -> Result<kv::Store, RegistryError> {
    let config = kv::Config {
        bucket: bucket.to_owned(),
        description: "Switchyard plugin registry: one registration per plugin id".to_owned(),
        history: HISTORY,
        storage: jetstream::stream::StorageType::File,
        num_replicas: options.replicas,
        ..Default::default()
    };
    match js.create_key_value(config).await {
        Ok(store) => Ok(store),
        // Two processes starting together both see no bucket and both create it; the server
        // accepts the first and refuses the second if the settings differ. Whoever lost opens
        // the winner's bucket, and fails with its own reason only if there is none.
        Err(create_error) => js
            .get_key_value(bucket)
            .await
            .map_err(|_| request_error(bucket, "create the bucket", create_error)),
    }
}

fn request_error(
    bucket: &str,
    action: impl Into<String>,
    error: impl std::fmt::Display,
) -> RegistryError {
    RegistryError::Request {
        bucket: bucket.to_owned(),
        action: action.into(),
        reason: error.to_string(),
    }
}

/// The `GetStreamError` under a failed `get_key_value`, if that was the cause.
fn stream_lookup_error(error: &KeyValueError) -> Option<&GetStreamError> {
    std::error::Error::source(error)?.downcast_ref()
}

fn is_missing(error: &KeyValueError) -> bool {
    use jetstream::context::GetStreamErrorKind as K;
    stream_lookup_error(error).is_some_and(|lookup| {
        matches!(lookup.kind(), K::JetStream(e) if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
    })
}

/// JetStream answers nothing when it is off server-wide, and an error code when it is off for
/// the account.
fn is_jetstream_off(error: &KeyValueError) -> bool {
    use jetstream::context::{GetStreamErrorKind as K, RequestError, RequestErrorKind};
    use jetstream::ErrorCode;
    stream_lookup_error(error).is_some_and(|lookup| match lookup.kind() {
        K::JetStream(e) => matches!(
            e.error_code(),
            ErrorCode::JETSTREAM_NOT_ENABLED | ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT
        ),
        K::Request => std::error::Error::source(lookup)
            .and_then(|source| source.downcast_ref::<RequestError>())
            .is_some_and(|request| request.kind() == RequestErrorKind::NoResponders),
        _ => false,
    })
}
