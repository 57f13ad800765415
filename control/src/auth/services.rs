//! Service logins: clients of a secured deployment that are neither plugins nor trusted
//! logins. A service publishes events for its tenants and calls the operations that allow
//! services, and nothing else; the broker enforces it like a plugin's rights.
//!
//! A service connects with the user name `service:{name}` and its secret as password, and
//! uses the inbox prefix `_SY_SERVICE.{prefix}.{name}`. The bucket `{PREFIX}_SERVICES`
//! ([`bucket_name`]) holds each service's tenants and the SHA-256 digest of its secret; only
//! trusted logins can read it.

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use switchyard_bus::stream_name;
use switchyard_schemas::{Namespace, ServiceName};
use time::OffsetDateTime;

use super::credentials::{
    digest, new_credential_id, open_secret_bucket, public_part, store_error, PluginSecret,
    StoredCredential,
};
use super::AuthError;
use crate::audit::{Action, Auditor};
use crate::registry::TenantScope;

/// The user name prefix of service logins: `service:{name}`. No plugin id holds a `:`.
pub const SERVICE_USER_PREFIX: &str = "service:";

/// The name of the services bucket for `namespace`: `{PREFIX}_SERVICES`.
pub fn bucket_name(namespace: &Namespace) -> String {
    stream_name(namespace, "SERVICES")
}

/// One service login as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLogin {
    /// Its name.
    pub name: ServiceName,
    /// The tenants it publishes events for and calls operations in.
    pub tenants: TenantScope,
    /// Its secret's digest, and which issue it is.
    pub credential: StoredCredential,
}

/// The service logins of one deployment. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ServiceStore {
    store: kv::Store,
    bucket: String,
}

impl ServiceStore {
    /// Opens the services bucket of `namespace`, creating it when missing.
    ///
    /// # Errors
    /// [`AuthError::Store`] when the bucket can be neither opened nor created.
    pub async fn open(js: &jetstream::Context, namespace: &Namespace) -> Result<Self, AuthError> {
        let bucket = bucket_name(namespace);
        let store = open_secret_bucket(
            js,
            &bucket,
            "Switchyard service logins: tenants and a secret's SHA-256 digest",
        )
        .await?;
        Ok(Self { store, bucket })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Adds the service `name` for `tenants` with a new secret, or gives an existing one these
    /// tenants and a new secret (the earlier secret stops working); records `service_added`
    /// with what it was before and after (tenants, credential id, never the secret).
    ///
    /// # Errors
    /// [`AuthError::Store`] when it cannot be stored; [`AuthError::IssuedNotRecorded`],
    /// holding the secret, when it was stored and its audit entry could not be.
    pub async fn add(
        &self,
        name: &ServiceName,
        tenants: TenantScope,
        auditor: &Auditor,
    ) -> Result<PluginSecret, AuthError> {
        let previous = self.get(name).await?;
        let secret = PluginSecret::generate();
        let login = ServiceLogin {
            name: name.clone(),
            tenants,
            credential: StoredCredential {
                id: new_credential_id(),
                sha256: digest(secret.expose()),
                issued_at: OffsetDateTime::now_utc(),
                hosts: Default::default(),
            },
        };
        let body = serde_json::to_vec(&login).expect("a login serializes");
        self.store
            .put(name.as_str(), body.into())
            .await
            .map_err(|e| store_error(&self.bucket, "store a service login", e))?;
        let done = match &previous {
            Some(_) => format!(
                "gave service {name} tenants {} and a new secret",
                login.tenants
            ),
            None => format!("added service {name} for {}", login.tenants),
        };
        let entry = auditor
            .entry(Action::ServiceAdded, format!("{SERVICE_USER_PREFIX}{name}"))
            .before(previous.as_ref().map(public_login))
            .after(Some(public_login(&login)))
            .detail(done.clone());
        match auditor.record(done, &entry).await {
            Ok(_) => Ok(secret),
            Err(audit) => Err(AuthError::IssuedNotRecorded { secret, audit }),
        }
    }

    /// The service `name`, if it exists.
    ///
    /// # Errors
    /// [`AuthError::Store`] when the read fails or the entry does not decode.
    pub async fn get(&self, name: &ServiceName) -> Result<Option<ServiceLogin>, AuthError> {
        let value = self
            .store
            .get(name.as_str())
            .await
            .map_err(|e| store_error(&self.bucket, "read a service login", e))?;
        value
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| store_error(&self.bucket, "decode a service login", e))
            })
            .transpose()
    }

    /// Every service login, by name.
    ///
    /// # Errors
    /// [`AuthError::Store`] when the bucket cannot be read.
    pub async fn list(&self) -> Result<Vec<ServiceLogin>, AuthError> {
        let mut names: Vec<String> = match self.store.keys().await {
            Ok(keys) => keys.filter_map(|k| async move { k.ok() }).collect().await,
            Err(error) => return Err(store_error(&self.bucket, "list the service logins", error)),
        };
        names.sort();
        let mut logins = Vec::with_capacity(names.len());
        for name in names {
            let Ok(name) = ServiceName::new(name) else {
                continue;
            };
            if let Some(login) = self.get(&name).await? {
                logins.push(login);
            }
        }
        Ok(logins)
    }

    /// A notification (the service's name) for every change: added, new secret, removed.
    ///
    /// # Errors
    /// [`AuthError::Store`] when the watch cannot be started.
    pub async fn changes(
        &self,
    ) -> Result<impl futures::Stream<Item = String> + Send + Unpin + 'static, AuthError> {
        super::credentials::watch_keys(&self.store, &self.bucket).await
    }

    /// Removes the service `name` (its secret stops working) and records `service_removed`;
    /// returns whether it existed (nothing is recorded when it did not).
    ///
    /// # Errors
    /// [`AuthError::Store`] when the removal fails, [`AuthError::Audit`] when it was made and
    /// its entry could not be stored.
    pub async fn remove(&self, name: &ServiceName, auditor: &Auditor) -> Result<bool, AuthError> {
        let Some(existing) = self.get(name).await? else {
            return Ok(false);
        };
        self.store
            .purge(name.as_str())
            .await
            .map_err(|e| store_error(&self.bucket, "remove a service login", e))?;
        let done = format!("removed service {name}");
        let entry = auditor
            .entry(
                Action::ServiceRemoved,
                format!("{SERVICE_USER_PREFIX}{name}"),
            )
            .before(Some(public_login(&existing)))
            .detail(done.clone());
        auditor.record(done, &entry).await?;
        Ok(true)
    }
}

/// What the audit log keeps of a login: its tenants and credential id, never the digest.
fn public_login(login: &ServiceLogin) -> serde_json::Value {
    let mut value = public_part(&login.credential);
    value["tenants"] = serde_json::Value::String(login.tenants.to_string());
    value
}
