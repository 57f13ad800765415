//! The publisher keys a deployment trusts, in the JetStream key-value bucket
//! `{PREFIX}_TRUST` ([`bucket_name`]): one entry per key, the key itself as the entry's key and
//! a [`TrustEntry`] as JSON. Operators change it with `switchyard trust add|remove`; installing
//! reads it ([`TrustStore::trusted_keys`]) each time it decides.

use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use switchyard_bus::kv::{open_existing, open_or_create};
use switchyard_bus::stream_name;
use switchyard_schemas::Namespace;
use time::OffsetDateTime;

use super::error::PackageError;
use super::key::PublisherKey;
use super::verify::TrustedKeys;
use crate::audit::{Action, AuditError, Auditor};

/// The longest name a trusted key may be given, in bytes.
pub const MAX_TRUST_NAME_BYTES: usize = 128;

/// The name of the trust bucket for `namespace`: `{PREFIX}_TRUST`, e.g. `SWITCHYARD_TRUST`.
pub fn bucket_name(namespace: &Namespace) -> String {
    stream_name(namespace, "TRUST")
}

/// What the bucket holds per trusted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustEntry {
    /// The publisher's key.
    pub key: PublisherKey,
    /// Who it is, as the operator named it.
    pub name: String,
    /// When it was added (or last renamed).
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
}

/// Why the trust bucket could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// A request to JetStream failed.
    #[error("{action} (bucket {bucket}): {reason}")]
    Store {
        /// What was being done.
        action: &'static str,
        /// The bucket.
        bucket: String,
        /// Why it failed.
        reason: String,
    },
    /// A name that cannot be given to a key.
    #[error("bad name {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A key that is not a publisher key.
    #[error(transparent)]
    Key(#[from] PackageError),
    /// The change was made and its audit entry could not be stored
    /// ([`AuditError::NotRecorded`]).
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// The trusted publisher keys of one deployment. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TrustStore {
    store: kv::Store,
    bucket: String,
}

impl TrustStore {
    /// Opens the trust bucket of `namespace`, creating it with one replica when missing.
    ///
    /// # Errors
    /// [`TrustError::Store`] when it can be neither opened nor created.
    pub async fn open(js: &jetstream::Context, namespace: &Namespace) -> Result<Self, TrustError> {
        Self::open_with(js, namespace, 1).await
    }

    /// Opens the trust bucket of `namespace`, creating it with `replicas` copies when
    /// missing. An existing bucket is opened as it is.
    ///
    /// # Errors
    /// [`TrustError::Store`] when it can be neither opened nor created.
    pub async fn open_with(
        js: &jetstream::Context,
        namespace: &Namespace,
        replicas: usize,
    ) -> Result<Self, TrustError> {
        let bucket = bucket_name(namespace);
        let store = open_or_create(
            js,
            kv::Config {
                bucket: bucket.clone(),
                description: "Switchyard: the publisher keys whose packages are trusted".to_owned(),
                history: 5,
                num_replicas: replicas,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| store_error(&bucket, e.action, e.reason))?;
        Ok(Self { store, bucket })
    }

    /// Opens the trust bucket of `namespace` if it exists: a deployment where no key was ever
    /// trusted has none, and reading must not create it.
    ///
    /// # Errors
    /// [`TrustError::Store`] when it exists but cannot be opened.
    pub async fn open_existing(
        js: &jetstream::Context,
        namespace: &Namespace,
    ) -> Result<Option<Self>, TrustError> {
        let bucket = bucket_name(namespace);
        let store = open_existing(js, &bucket)
            .await
            .map_err(|e| store_error(&bucket, e.action, e.reason))?;
        Ok(store.map(|store| Self { store, bucket }))
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Trusts `key` under `name`, or renames it if it is trusted already. Returns whether it
    /// was new.
    ///
    /// # Errors
    /// [`TrustError::BadName`] for an empty name, one longer than [`MAX_TRUST_NAME_BYTES`] or
    /// holding control characters; [`TrustError::Store`] when the write fails.
    pub async fn add(&self, key: &PublisherKey, name: &str) -> Result<bool, TrustError> {
        check_name(name)?;
        let existed = self.get(key).await?.is_some();
        let entry = TrustEntry {
            key: key.clone(),
            name: name.to_owned(),
            added_at: OffsetDateTime::now_utc(),
        };
        let json = serde_json::to_vec(&entry)
            .map_err(|e| store_error(&self.bucket, "encode a trust entry", e))?;
        self.store
            .put(key.as_str(), json.into())
            .await
            .map_err(|e| store_error(&self.bucket, "store a trusted key", e))?;
        Ok(!existed)
    }

    /// Trusts `key` under `name` ([`add`](Self::add)) and records `trust_added` in the audit
    /// log by `auditor`'s actor: the key as the target, the entry before (`null` for a new
    /// key, the old name for a renaming) and after. Returns whether it was new.
    ///
    /// # Errors
    /// As [`add`](Self::add) (nothing changed, nothing recorded), and [`TrustError::Audit`]
    /// when the key was trusted and its entry could not be stored.
    pub async fn add_audited(
        &self,
        key: &PublisherKey,
        name: &str,
        auditor: &Auditor,
    ) -> Result<bool, TrustError> {
        let before = self.get(key).await?;
        let new = self.add(key, name).await?;
        let after = self.get(key).await?;
        let done = if new {
            format!("trusted {key} as {name:?}")
        } else {
            format!("renamed the trusted key {key} to {name:?}")
        };
        let entry = auditor
            .entry(Action::TrustAdded, key.as_str())
            .before(before.as_ref().map(entry_summary))
            .after(after.as_ref().map(entry_summary))
            .detail(done.clone());
        auditor.record(done, &entry).await?;
        Ok(new)
    }

    /// Stops trusting `key` ([`remove`](Self::remove)) and records `trust_removed` in the
    /// audit log by `auditor`'s actor, with the entry before; returns whether it was trusted
    /// (nothing is recorded when it was not).
    ///
    /// # Errors
    /// As [`remove`](Self::remove), and [`TrustError::Audit`] when the key was removed and
    /// its entry could not be stored.
    pub async fn remove_audited(
        &self,
        key: &PublisherKey,
        auditor: &Auditor,
    ) -> Result<bool, TrustError> {
        let Some(before) = self.get(key).await? else {
            return Ok(false);
        };
        if !self.remove(key).await? {
            return Ok(false);
        }
        let done = format!("stopped trusting {key} ({:?})", before.name);
        let entry = auditor
            .entry(Action::TrustRemoved, key.as_str())
            .before(Some(entry_summary(&before)))
            .detail(done.clone());
        auditor.record(done, &entry).await?;
        Ok(true)
    }

    /// Stops trusting `key`; returns whether it was trusted.
    ///
    /// # Errors
    /// [`TrustError::Store`] when the removal fails.
    pub async fn remove(&self, key: &PublisherKey) -> Result<bool, TrustError> {
        let existed = self.get(key).await?.is_some();
        if existed {
            self.store
                .purge(key.as_str())
                .await
                .map_err(|e| store_error(&self.bucket, "remove a trusted key", e))?;
        }
        Ok(existed)
    }

    /// The entry of `key`, if it is trusted.
    ///
    /// # Errors
    /// [`TrustError::Store`] when the read fails or the entry does not decode.
    pub async fn get(&self, key: &PublisherKey) -> Result<Option<TrustEntry>, TrustError> {
        let value = self
            .store
            .get(key.as_str())
            .await
            .map_err(|e| store_error(&self.bucket, "read a trusted key", e))?;
        value
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| store_error(&self.bucket, "decode a trust entry", e))
            })
            .transpose()
    }

    /// Every trusted key, sorted by key.
    ///
    /// # Errors
    /// [`TrustError::Store`] when the bucket cannot be read or an entry does not decode.
    pub async fn list(&self) -> Result<Vec<TrustEntry>, TrustError> {
        let mut keys: Vec<String> = self
            .store
            .keys()
            .await
            .map_err(|e| store_error(&self.bucket, "list the trusted keys", e))?
            .try_collect()
            .await
            .map_err(|e| store_error(&self.bucket, "list the trusted keys", e))?;
        keys.sort();
        let mut entries = Vec::with_capacity(keys.len());
        for key in keys {
            let Some(bytes) = self
                .store
                .get(&key)
                .await
                .map_err(|e| store_error(&self.bucket, "read a trusted key", e))?
            else {
                continue;
            };
            let entry: TrustEntry = serde_json::from_slice(&bytes).map_err(|e| {
                store_error(&self.bucket, "decode a trust entry", format!("{key}: {e}"))
            })?;
            if entry.key.as_str() != key {
                return Err(store_error(
                    &self.bucket,
                    "decode a trust entry",
                    format!("entry {key} names another key, {}", entry.key),
                ));
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    /// The trusted keys now, for [`verify_for_install`](super::verify_for_install).
    ///
    /// # Errors
    /// As [`TrustStore::list`].
    pub async fn trusted_keys(&self) -> Result<TrustedKeys, TrustError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .map(|entry| (entry.key, entry.name))
            .collect())
    }
}

/// A trust entry as the audit log records it: the key, its name and when it was added.
fn entry_summary(entry: &TrustEntry) -> serde_json::Value {
    serde_json::to_value(entry).unwrap_or(serde_json::Value::Null)
}

fn check_name(name: &str) -> Result<(), TrustError> {
    let bad = |reason: String| TrustError::BadName {
        name: name.to_owned(),
        reason,
    };
    if name.trim().is_empty() {
        return Err(bad("it is empty".into()));
    }
    if name.len() > MAX_TRUST_NAME_BYTES {
        return Err(bad(format!(
            "{} bytes; at most {MAX_TRUST_NAME_BYTES}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("it holds a control character".into()));
    }
    Ok(())
}

fn store_error(bucket: &str, action: &'static str, error: impl std::fmt::Display) -> TrustError {
    TrustError::Store {
        action,
        bucket: bucket.to_owned(),
        reason: error.to_string(),
    }
}
