//! Answering nats-server's authorization requests: who may connect, with which rights.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nkeys::{KeyPair, KeyPairType};
use switchyard_schemas::{Namespace, PluginId, ServiceName};

use super::credentials::{CredentialStore, StoredCredential};
use super::jwt::{self, AuthorizationRequest, AuthorizationResponse, Claims, User};
use super::quota::{QuotaBook, QuotaExceeded};
use super::rights::{connection_name, service_connection_name, PluginRights, ServiceRights};
use super::services::{ServiceLogin, ServiceStore, SERVICE_USER_PREFIX};
use crate::registry::{LifecycleState, Registry};

/// Why a connection is refused. The server logs the reason; the client is told only
/// "Authorization Violation".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The client gave no user name (the plugin id).
    #[error("no plugin id given as the user name")]
    NoIdentity,
    /// The user name is not a plugin id.
    #[error("`{0}` is not a valid plugin id")]
    BadIdentity(String),
    /// The user name is a trusted login's (`dispatcher`, `admin`, `system`), which no plugin
    /// may have: the server sends such a login to the callout only when it is not among its
    /// `auth_users`, a misconfiguration.
    #[error("`{0}` is reserved for a trusted login, never a plugin")]
    Reserved(PluginId),
    /// No plugin with this id is registered (never, or removed since).
    #[error("plugin `{0}` is not registered")]
    Unknown(PluginId),
    /// The plugin is registered but disabled.
    #[error("plugin `{0}` is disabled")]
    Disabled(PluginId),
    /// The plugin is marked failed, until an operator enables it again.
    #[error("plugin `{0}` is failed (enable it again to let its workers in)")]
    Failed(PluginId),
    /// The plugin is installed but an operator has not approved it yet.
    #[error("plugin `{0}` is waiting for approval")]
    NotApproved(PluginId),
    /// No credential has been issued to the plugin (or it was revoked).
    #[error("plugin `{0}` has no credential")]
    NoCredential(PluginId),
    /// The secret does not match the plugin's credential.
    #[error("wrong secret for plugin `{0}`")]
    WrongSecret(PluginId),
    /// The plugin was disconnected for exceeding a quota a moment ago, and may not connect
    /// again until its cool-down ends.
    #[error(
        "plugin `{plugin}` exceeded a quota ({exceeded}): no new connection for {left_secs} s"
    )]
    CoolingDown {
        /// The plugin.
        plugin: PluginId,
        /// The quota it exceeded.
        exceeded: QuotaExceeded,
        /// Seconds of cool-down left, rounded up.
        left_secs: u64,
    },
    /// The connection would take the plugin over a quota (`max_connections`).
    #[error("plugin `{plugin}` would exceed a quota: {exceeded}")]
    OverQuota {
        /// The plugin.
        plugin: PluginId,
        /// The quota, and what the connection would make of it.
        exceeded: QuotaExceeded,
    },
    /// No service login of this name exists (never, or removed since).
    #[error("service `{0}` has no login")]
    UnknownService(String),
    /// The secret does not match the service's.
    #[error("wrong secret for service `{0}`")]
    WrongServiceSecret(String),
    /// The service logins or the registry could not be read.
    #[error("cannot check service `{service}`: {reason}")]
    ServiceUnavailable {
        /// The service.
        service: String,
        /// What failed.
        reason: String,
    },
    /// The registry or the credentials could not be read; the connection is refused rather
    /// than let in unchecked.
    #[error("cannot check plugin `{plugin}`: {reason}")]
    Unavailable {
        /// The plugin.
        plugin: PluginId,
        /// What failed.
        reason: String,
    },
}

/// Decides authorization requests against the registry and the credentials.
#[derive(Debug, Clone)]
pub(crate) struct Callout {
    pub(crate) registry: Registry,
    pub(crate) credentials: CredentialStore,
    pub(crate) issuer: Arc<KeyPair>,
    /// The account plugins are placed in.
    pub(crate) account: String,
    pub(crate) namespace: Namespace,
    /// How long a user JWT is valid.
    pub(crate) ttl: Duration,
    /// Cool-downs and connection counts, kept by the quota checks.
    pub(crate) quotas: Arc<QuotaBook>,
    /// The service logins.
    pub(crate) services: ServiceStore,
}

/// What is in force for one plugin right now.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub(crate) rights: PluginRights,
    pub(crate) credential: StoredCredential,
}

impl Current {
    /// The fingerprint its connections carry in their name.
    pub(crate) fn fingerprint(&self, namespace: &Namespace) -> String {
        self.rights
            .permissions(namespace)
            .fingerprint(&self.credential.id)
    }
}

impl Callout {
    /// The response JWT to one authorization request (`$SYS.REQ.USER.AUTH`), or `None` when
    /// the request is not a valid one signed by a server: then nothing is answered, and the
    /// server refuses the connection when its auth timeout passes. `sealed_by` is the server
    /// key a sealed request was opened with: the request's signed claims must name the same.
    pub(crate) async fn answer(&self, payload: &[u8], sealed_by: Option<&str>) -> Option<String> {
        let now = unix_now();
        let request = std::str::from_utf8(payload)
            .map_err(|e| e.to_string())
            .and_then(|token| {
                jwt::decode::<AuthorizationRequest>(token, KeyPairType::Server, now)
                    .map_err(|e| e.to_string())
            });
        let request = match request {
            Ok(request) if request.nats.kind == jwt::AUTHORIZATION_REQUEST => request.nats,
            Ok(request) => {
                tracing::warn!(kind = %request.nats.kind, "ignoring a callout message that is not an authorization request");
                return None;
            }
            Err(reason) => {
                tracing::warn!(%reason, "ignoring an authorization request that does not verify");
                return None;
            }
        };
        if sealed_by.is_some_and(|key| key != request.server_id.xkey) {
            tracing::warn!(server = %request.server_id.name,
                "ignoring an authorization request sealed with another key than its server's");
            return None;
        }
        let response = match self.authorize(&request, now).await {
            Ok((who, user_jwt)) => {
                tracing::debug!(%who, host = %request.client_info.host, "connection authorized");
                AuthorizationResponse::granted(user_jwt)
            }
            Err(refusal) => {
                tracing::warn!(%refusal, host = %request.client_info.host,
                    cid = request.client_info.id, server = %request.server_id.name,
                    client = request.connect_opts.name.as_deref().unwrap_or(""),
                    "connection refused");
                AuthorizationResponse::refused(refusal.to_string())
            }
        };
        let claims = Claims {
            jti: String::new(),
            iat: now,
            iss: String::new(),
            name: String::new(),
            sub: request.user_nkey.clone(),
            aud: request.server_id.id.clone(),
            exp: None,
            nats: response,
        };
        match jwt::encode(claims, &self.issuer) {
            Ok(token) => Some(token),
            Err(error) => {
                tracing::error!(%error, "cannot sign an authorization response");
                None
            }
        }
    }

    /// Checks the identity and secret (a plugin's, or a service's for `service:{name}`), and
    /// issues its user JWT; returns who it is and the JWT.
    async fn authorize(
        &self,
        request: &AuthorizationRequest,
        now: i64,
    ) -> Result<(String, String), Refusal> {
        let user = request
            .connect_opts
            .user
            .as_deref()
            .filter(|user| !user.is_empty())
            .ok_or(Refusal::NoIdentity)?;
        let secret = request.connect_opts.pass.as_deref().unwrap_or("");
        if let Some(service) = user.strip_prefix(SERVICE_USER_PREFIX) {
            return self.authorize_service(service, secret, request, now).await;
        }
        let plugin = PluginId::new(user).map_err(|_| Refusal::BadIdentity(user.to_owned()))?;
        if plugin.is_reserved() {
            return Err(Refusal::Reserved(plugin));
        }
        let current = self.current(&plugin).await?;
        if !current.credential.accepts(secret) {
            return Err(Refusal::WrongSecret(plugin));
        }
        // Last, so that only a login that is otherwise let in is counted.
        self.quotas.admit(&plugin, &current.rights.limits)?;
        let permissions = current.rights.permissions(&self.namespace);
        let name = connection_name(&plugin, &permissions.fingerprint(&current.credential.id));
        let token = self
            .user_jwt(request, now, name, permissions)
            .map_err(|reason| Refusal::Unavailable {
                plugin: plugin.clone(),
                reason,
            })?;
        Ok((plugin.to_string(), token))
    }

    /// A service login: its name, its secret, and the rights of its tenants and of every
    /// registration (the operations that allow services), read fresh.
    async fn authorize_service(
        &self,
        name: &str,
        secret: &str,
        request: &AuthorizationRequest,
        now: i64,
    ) -> Result<(String, String), Refusal> {
        let who = format!("{SERVICE_USER_PREFIX}{name}");
        let service = ServiceName::new(name).map_err(|_| Refusal::BadIdentity(who.clone()))?;
        let (login, permissions) = self.service_current(&service).await?;
        if !login.credential.accepts(secret) {
            return Err(Refusal::WrongServiceSecret(name.to_owned()));
        }
        let connection =
            service_connection_name(&service, &permissions.fingerprint(&login.credential.id));
        let unavailable = |reason: String| Refusal::ServiceUnavailable {
            service: name.to_owned(),
            reason,
        };
        let token = self
            .user_jwt(request, now, connection, permissions)
            .map_err(unavailable)?;
        Ok((who, token))
    }

    /// The login of `service` and the permissions in force for it, read fresh.
    ///
    /// # Errors
    /// The [`Refusal`] a connection of this service would get now.
    pub(crate) async fn service_current(
        &self,
        service: &ServiceName,
    ) -> Result<(ServiceLogin, super::rights::Permissions), Refusal> {
        let unavailable = |reason: String| Refusal::ServiceUnavailable {
            service: service.to_string(),
            reason,
        };
        let login = self
            .services
            .get(service)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .ok_or_else(|| Refusal::UnknownService(service.to_string()))?;
        let registrations = self
            .registry
            .list()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let rights = ServiceRights::of(service.clone(), login.tenants.clone(), &registrations);
        let permissions = rights.permissions(&self.namespace);
        Ok((login, permissions))
    }

    /// A user JWT named `name` with `permissions`, for the requesting connection.
    fn user_jwt(
        &self,
        request: &AuthorizationRequest,
        now: i64,
        name: String,
        permissions: super::rights::Permissions,
    ) -> Result<String, String> {
        let ttl = i64::try_from(jittered(self.ttl).as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            jti: String::new(),
            iat: now,
            iss: String::new(),
            name,
            sub: request.user_nkey.clone(),
            // Outside operator mode, the audience names the account the user is placed in.
            aud: self.account.clone(),
            exp: Some(now.saturating_add(ttl)),
            nats: User {
                publish: permissions.publish,
                subscribe: permissions.subscribe,
                subs: i64::from(permissions.limits.max_subscriptions.get()),
                data: -1,
                payload: i64::from(permissions.limits.max_payload.get()),
                kind: "user".to_owned(),
                version: 2,
            },
        };
        jwt::encode(claims, &self.issuer).map_err(|e| e.to_string())
    }

    /// The rights and credential in force for `plugin`, read fresh from the buckets (not from a
    /// cache, so that a change is in force for every connection made after it was written).
    ///
    /// # Errors
    /// The [`Refusal`] a connection of this plugin would get now.
    pub(crate) async fn current(&self, plugin: &PluginId) -> Result<Current, Refusal> {
        let unavailable = |reason: String| Refusal::Unavailable {
            plugin: plugin.clone(),
            reason,
        };
        let registration = self
            .registry
            .get(plugin)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .ok_or_else(|| Refusal::Unknown(plugin.clone()))?;
        match registration.state() {
            LifecycleState::Enabled => {}
            LifecycleState::Disabled => return Err(Refusal::Disabled(plugin.clone())),
            LifecycleState::Failed => return Err(Refusal::Failed(plugin.clone())),
            LifecycleState::PendingApproval => return Err(Refusal::NotApproved(plugin.clone())),
        }
        let credential = self
            .credentials
            .get(plugin)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .ok_or_else(|| Refusal::NoCredential(plugin.clone()))?;
        // The operations it may call are granted by the other plugins' registrations.
        let registrations = self
            .registry
            .list()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        Ok(Current {
            rights: PluginRights::of(&registration).with_calls(&registrations),
            credential,
        })
    }
}

/// Between three quarters of `ttl` and all of it, and at least a second: connections made
/// at one moment (a restart of many workers) then expire, and reconnect, spread out.
fn jittered(ttl: Duration) -> Duration {
    let spread = ttl / 4;
    let cut = spread.mul_f64(rand::random::<f64>());
    (ttl - cut).max(Duration::from_secs(1))
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_spread_within_the_last_quarter_and_never_zero() {
        let ttl = Duration::from_secs(60);
        for _ in 0..1000 {
            let given = jittered(ttl);
            assert!(
                given <= ttl && given >= Duration::from_secs(45),
                "{given:?}"
            );
        }
        assert_eq!(jittered(Duration::ZERO), Duration::from_secs(1));
    }
}
