//! Plugin credentials: one secret per plugin, issued by the control plane.
//!
//! A plugin's worker connects with its plugin id as user name and its secret as password. The
//! secret is 32 random bytes, shown once when issued; only its SHA-256 digest is stored, in the
//! key-value bucket `{PREFIX}_CREDENTIALS` ([`bucket_name`]), which only the trusted users of
//! the deployment's account can read (plugins have no JetStream rights at all). Issuing again
//! rotates: the old secret stops working for new connections at once, and the control plane
//! disconnects connections made with it.
//!
//! A plugin host issues itself a secret of its own for the workers of each plugin it runs
//! ([`CredentialStore::issue_for_host`]), kept beside the operator's under the same credential:
//! an operator's rotation keeps the hosts' secrets, a revocation takes them all.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, kv};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchyard_bus::kv::{open_existing, open_or_create};
use switchyard_bus::stream_name;
use switchyard_schemas::{Namespace, PluginId};
use time::OffsetDateTime;

use super::AuthError;
use crate::audit::{Action, Auditor};

/// The name of the credentials bucket for `namespace`: `{PREFIX}_CREDENTIALS`.
pub fn bucket_name(namespace: &Namespace) -> String {
    stream_name(namespace, "CREDENTIALS")
}

/// A plugin's secret, as handed to its operator. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PluginSecret(String);

impl PluginSecret {
    /// The secret, to hand to the plugin's workers (`SWITCHYARD_PLUGIN_TOKEN`).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn generate() -> Self {
        Self(data_encoding::BASE64URL_NOPAD.encode(&rand::random::<[u8; 32]>()))
    }
}

impl std::fmt::Debug for PluginSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginSecret(..)")
    }
}

/// What the bucket holds per plugin: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    /// An id of this issuance, so that connections made with an earlier secret can be told
    /// apart (it is part of their rights' fingerprint).
    pub id: String,
    /// The SHA-256 digest of the secret, in lower-case hex.
    pub sha256: String,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The secrets hosts issued themselves for the workers they start, by host name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, HostSecret>,
}

/// A secret a host issued itself for the workers of one plugin: its digest only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSecret {
    /// The SHA-256 digest of the secret, in lower-case hex.
    pub sha256: String,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
}

impl StoredCredential {
    /// Whether `secret` is the secret this credential was issued with, or one a host issued
    /// itself under it. Compares digests in constant time, every one of them. A plain SHA-256
    /// is enough: secrets are 256 random bits, not passwords that could be guessed.
    pub fn accepts(&self, secret: &str) -> bool {
        let digest = digest(secret);
        let hosts = self.hosts.values().map(|host| host.sha256.as_str());
        std::iter::once(self.sha256.as_str())
            .chain(hosts)
            .fold(false, |accepted, stored| accepted | same(&digest, stored))
    }
}

/// Whether two digests are equal, in time independent of where they differ.
fn same(digest: &str, stored: &str) -> bool {
    digest.len() == stored.len()
        && digest
            .bytes()
            .zip(stored.bytes())
            .fold(0_u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// How many times a credential is read and written again when it changed in between.
const CHANGE_ATTEMPTS: usize = 5;

/// A fresh credential id.
pub(crate) fn new_credential_id() -> String {
    data_encoding::HEXLOWER.encode(&rand::random::<[u8; 8]>())
}

pub(crate) fn digest(secret: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(secret.as_bytes()))
}

/// The credentials of one deployment. Cheap to clone.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    store: kv::Store,
    bucket: String,
}

impl CredentialStore {
    /// Opens the credentials bucket of `namespace`, creating it when missing.
    ///
    /// # Errors
    /// [`AuthError::Store`] when the bucket can be neither opened nor created.
    pub async fn open(js: &jetstream::Context, namespace: &Namespace) -> Result<Self, AuthError> {
        let bucket = bucket_name(namespace);
        let store = open_secret_bucket(
            js,
            &bucket,
            "Switchyard plugin credentials: a SHA-256 digest per plugin",
        )
        .await?;
        Ok(Self { store, bucket })
    }

    /// Opens the credentials bucket of `namespace` if it exists (a deployment that never
    /// issued a credential has none).
    ///
    /// # Errors
    /// [`AuthError::Store`] when the bucket exists but cannot be opened.
    pub async fn open_existing(
        js: &jetstream::Context,
        namespace: &Namespace,
    ) -> Result<Option<Self>, AuthError> {
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

    /// Issues a new secret for `plugin`, replacing (rotating) any earlier one. The secret is
    /// returned once and not stored. Records nothing: operators' issues go through
    /// [`issue_audited`](Self::issue_audited).
    ///
    /// # Errors
    /// [`AuthError::Store`] when it cannot be stored.
    pub async fn issue(&self, plugin: &PluginId) -> Result<PluginSecret, AuthError> {
        Ok(self.store_new(plugin).await?.0)
    }

    /// Issues a new secret for `plugin`, replacing any earlier one, and records
    /// `credentials_issued` (the plugin had none) or `credentials_rotated`, with the
    /// credential's id and time of issue before and after: never the secret, nor its digest.
    ///
    /// # Errors
    /// [`AuthError::Store`] when it cannot be stored (nothing changed, nothing recorded);
    /// [`AuthError::IssuedNotRecorded`], holding the new secret, when it was stored and its
    /// entry could not be.
    pub async fn issue_audited(
        &self,
        plugin: &PluginId,
        auditor: &Auditor,
    ) -> Result<PluginSecret, AuthError> {
        let previous = self.get(plugin).await?;
        let (secret, credential) = self.store_new(plugin).await?;
        let (action, done) = match previous {
            Some(_) => (
                Action::CredentialsRotated,
                format!("issued a new secret for {plugin} (the earlier one no longer works)"),
            ),
            None => (
                Action::CredentialsIssued,
                format!("issued a secret for {plugin}"),
            ),
        };
        let entry = auditor
            .entry(action, plugin.as_str())
            .before(previous.as_ref().map(public_part))
            .after(Some(public_part(&credential)))
            .detail(done.clone());
        match auditor.record(done, &entry).await {
            Ok(_) => Ok(secret),
            Err(audit) => Err(AuthError::IssuedNotRecorded { secret, audit }),
        }
    }

    /// Stores a new credential for `plugin`, keeping the hosts' secrets; returns its secret
    /// and what was stored.
    async fn store_new(
        &self,
        plugin: &PluginId,
    ) -> Result<(PluginSecret, StoredCredential), AuthError> {
        let secret = PluginSecret::generate();
        let credential = self
            .change(plugin, |existing| {
                Some(StoredCredential {
                    id: new_credential_id(),
                    sha256: digest(secret.expose()),
                    issued_at: OffsetDateTime::now_utc(),
                    hosts: existing.map(|e| e.hosts).unwrap_or_default(),
                })
            })
            .await?
            .expect("always written");
        Ok((secret, credential))
    }

    /// Issues a secret of `host`'s own for the workers of `plugin` it starts (replacing the
    /// one it issued before), beside the operator's: it logs in as the plugin, with the same
    /// rights. A plugin without a credential gets one nobody holds the secret of, so that only
    /// hosts' workers can log in. Recorded as `credentials_issued`, naming the host.
    ///
    /// # Errors
    /// [`AuthError::Store`]; [`AuthError::IssuedNotRecorded`] when the entry could not be
    /// recorded.
    pub async fn issue_for_host(
        &self,
        plugin: &PluginId,
        host: &str,
        auditor: &Auditor,
    ) -> Result<PluginSecret, AuthError> {
        let secret = PluginSecret::generate();
        let host_secret = HostSecret {
            sha256: digest(secret.expose()),
            issued_at: OffsetDateTime::now_utc(),
        };
        let credential = self
            .change(plugin, |existing| {
                let mut credential = existing.unwrap_or_else(|| StoredCredential {
                    id: new_credential_id(),
                    sha256: digest(PluginSecret::generate().expose()),
                    issued_at: OffsetDateTime::now_utc(),
                    hosts: BTreeMap::new(),
                });
                credential
                    .hosts
                    .insert(host.to_owned(), host_secret.clone());
                Some(credential)
            })
            .await?
            .expect("always written");
        let done = format!("issued a secret of {plugin} to host {host} for the workers it starts");
        let entry = auditor
            .entry(Action::CredentialsIssued, plugin.as_str())
            .after(Some(serde_json::json!({
                "credential_id": credential.id,
                "host": host,
            })))
            .detail(done.clone());
        match auditor.record(done, &entry).await {
            Ok(_) => Ok(secret),
            Err(audit) => Err(AuthError::IssuedNotRecorded { secret, audit }),
        }
    }

    /// Takes back the secret `host` issued itself for `plugin`'s workers; returns whether it
    /// had one.
    ///
    /// # Errors
    /// [`AuthError::Store`].
    pub async fn forget_host(&self, plugin: &PluginId, host: &str) -> Result<bool, AuthError> {
        let changed = self
            .change(plugin, |existing| {
                let mut credential = existing?;
                credential.hosts.remove(host)?;
                Some(credential)
            })
            .await?;
        Ok(changed.is_some())
    }

    /// Writes what `update` makes of `plugin`'s credential (nothing when it makes nothing),
    /// only if nothing changed it since it was read (tried again, at most [`CHANGE_ATTEMPTS`]
    /// times): an operator's rotation and hosts issuing their secrets do not undo one another.
    async fn change(
        &self,
        plugin: &PluginId,
        mut update: impl FnMut(Option<StoredCredential>) -> Option<StoredCredential>,
    ) -> Result<Option<StoredCredential>, AuthError> {
        let mut last_error = String::new();
        for _ in 0..CHANGE_ATTEMPTS {
            let entry = self
                .store
                .entry(plugin.as_str())
                .await
                .map_err(|e| store_error(&self.bucket, "read a credential", e))?;
            let (existing, revision) = match entry {
                Some(entry) if entry.operation == kv::Operation::Put => {
                    let credential: StoredCredential = serde_json::from_slice(&entry.value)
                        .map_err(|e| store_error(&self.bucket, "decode a credential", e))?;
                    (Some(credential), Some(entry.revision))
                }
                _ => (None, None),
            };
            let Some(credential) = update(existing) else {
                return Ok(None);
            };
            let json = serde_json::to_vec(&credential)
                .map_err(|e| store_error(&self.bucket, "encode a credential", e))?;
            let written = match revision {
                Some(revision) => self
                    .store
                    .update(plugin.as_str(), json.into(), revision)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
                None => self
                    .store
                    .create(plugin.as_str(), json.into())
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
            };
            match written {
                Ok(()) => return Ok(Some(credential)),
                Err(error) => last_error = error,
            }
        }
        Err(store_error(
            &self.bucket,
            "store a credential",
            format!("it kept changing ({last_error})"),
        ))
    }

    /// The credential of `plugin`, if one is issued.
    ///
    /// # Errors
    /// [`AuthError::Store`] when the read fails or the entry does not decode.
    pub async fn get(&self, plugin: &PluginId) -> Result<Option<StoredCredential>, AuthError> {
        let value = self
            .store
            .get(plugin.as_str())
            .await
            .map_err(|e| store_error(&self.bucket, "read a credential", e))?;
        value
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| store_error(&self.bucket, "decode a credential", e))
            })
            .transpose()
    }

    /// Revokes the credential of `plugin`; returns whether there was one. Records nothing:
    /// operators' revocations go through [`revoke_audited`](Self::revoke_audited).
    ///
    /// # Errors
    /// [`AuthError::Store`] when the removal fails.
    pub async fn revoke(&self, plugin: &PluginId) -> Result<bool, AuthError> {
        Ok(self.revoke_returning(plugin).await?.is_some())
    }

    /// Revokes the credential of `plugin` and records `credentials_revoked` with the
    /// credential's id and time of issue before; `why` completes the entry's detail (e.g.
    /// "with the plugin's removal"). Returns whether there was one (nothing is recorded when
    /// there was none).
    ///
    /// # Errors
    /// [`AuthError::Store`] when the removal fails, [`AuthError::Audit`] when it was made and
    /// its entry could not be stored.
    pub async fn revoke_audited(
        &self,
        plugin: &PluginId,
        why: Option<&str>,
        auditor: &Auditor,
    ) -> Result<bool, AuthError> {
        let Some(revoked) = self.revoke_returning(plugin).await? else {
            return Ok(false);
        };
        let done = format!("revoked the credential of {plugin}");
        let entry = auditor
            .entry(Action::CredentialsRevoked, plugin.as_str())
            .before(Some(public_part(&revoked)))
            .detail(match why {
                Some(why) => format!("{done} {why}"),
                None => done.clone(),
            });
        auditor.record(done, &entry).await?;
        Ok(true)
    }

    async fn revoke_returning(
        &self,
        plugin: &PluginId,
    ) -> Result<Option<StoredCredential>, AuthError> {
        let existing = self.get(plugin).await?;
        if existing.is_some() {
            self.store
                .purge(plugin.as_str())
                .await
                .map_err(|e| store_error(&self.bucket, "revoke a credential", e))?;
        }
        Ok(existing)
    }

    /// A notification for every change (issue, rotation, revocation), with the plugin's id.
    ///
    /// # Errors
    /// [`AuthError::Store`] when the watch cannot be started.
    pub async fn changes(
        &self,
    ) -> Result<impl Stream<Item = String> + Send + Unpin + 'static, AuthError> {
        watch_keys(&self.store, &self.bucket).await
    }
}

/// What an audit entry may say of a credential: its id and when it was issued, never the
/// secret nor its digest.
pub(crate) fn public_part(credential: &StoredCredential) -> serde_json::Value {
    serde_json::json!({
        "credential_id": credential.id,
        "issued_at": credential
            .issued_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    })
}

/// The key of every change to `store` (a put, a delete, a purge), as it happens.
pub(crate) async fn watch_keys(
    store: &kv::Store,
    bucket: &str,
) -> Result<impl Stream<Item = String> + Send + Unpin + 'static, AuthError> {
    let watch = store
        .watch(">")
        .await
        .map_err(|e| store_error(bucket, "watch the bucket", e))?;
    Ok(watch
        .filter_map(|entry| async move { entry.ok().map(|entry| entry.key) })
        .boxed())
}

/// Opens (or creates) a bucket of secrets' digests: one revision per key, on file. Only
/// trusted logins can read any bucket.
pub(crate) async fn open_secret_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
) -> Result<kv::Store, AuthError> {
    open_or_create(
        js,
        kv::Config {
            bucket: bucket.to_owned(),
            description: description.to_owned(),
            history: 1,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| store_error(bucket, e.action, e.reason))
}

pub(crate) fn store_error(bucket: &str, action: &str, error: impl std::fmt::Display) -> AuthError {
    AuthError::Store {
        bucket: bucket.to_owned(),
        action: action.to_owned(),
        reason: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_accepts_its_secret_only() {
        let secret = PluginSecret::generate();
        assert_eq!(secret.expose().len(), 43);
        let mut credential = StoredCredential {
            id: "c1".to_owned(),
            sha256: digest(secret.expose()),
            issued_at: OffsetDateTime::UNIX_EPOCH,
            hosts: BTreeMap::new(),
        };
        assert!(credential.accepts(secret.expose()));
        assert!(!credential.accepts(PluginSecret::generate().expose()));
        let hosted = PluginSecret::generate();
        credential.hosts.insert(
            "h1".to_owned(),
            HostSecret {
                sha256: digest(hosted.expose()),
                issued_at: OffsetDateTime::UNIX_EPOCH,
            },
        );
        assert!(credential.accepts(hosted.expose()));
        assert!(credential.accepts(secret.expose()));
        assert!(!credential.accepts(""));
        assert_eq!(format!("{secret:?}"), "PluginSecret(..)");
    }
}
