//! Broker-enforced plugin rights: the control plane that tells nats-server who each plugin
//! connection is and what it may do.
//!
//! nats-server (2.10+) runs in *auth callout* mode (`docs/security.md`; [`AuthSetup`] writes
//! the configuration): the dispatcher and operators log in as trusted users that bypass the
//! callout, and every other connection is sent to [`AuthService`], which
//!
//! 1. checks the plugin's identity: its id as the user name, its secret ([`credentials`]) as
//!    the password, against the registry (unknown, removed and disabled plugins are refused);
//! 2. answers with a user JWT signed by the issuer key, whose permissions are exactly the
//!    plugin's rights ([`PluginRights::permissions`]): its delivery subject, its own inbox,
//!    replies, its hello and rights subjects, and the channels its approved manifest grants,
//!    for its tenants only; never JetStream. Its manifest's limits go into the JWT too,
//!    though nats-server does not apply a callout user's limits (`docs/security.md`);
//!    a plugin cooling down after exceeding a quota, or at its `max_connections`, is refused;
//! 3. answers workers asking for their rights (`{prefix}.control.rights.{plugin}`), so that the
//!    SDK subscribes to the channels it may receive on;
//! 4. follows the registry and the credentials, and disconnects (through the system account)
//!    every plugin connection whose rights changed, so that it reconnects with the new ones,
//!    or is refused. Nothing restarts.
//! 5. checks every plugin connection against its plugin's quotas every
//!    [`AuthConfig::quota_interval`], since nats-server does not (`docs/security.md`,
//!    Quotas), and disconnects those over one.
//!
//! The server enforces the permissions: a plugin using a raw NATS client instead of the SDK
//! is refused the same way.
//!
//! # Examples
//!
//! ```no_run
//! use switchyard_control::auth::{AuthConfig, AuthService};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let seed = std::fs::read_to_string("/etc/switchyard/issuer.nk")?;
//! let client = async_nats::connect("nats://dispatcher:secret@127.0.0.1:4222").await?;
//! let system = async_nats::connect("nats://system:secret@127.0.0.1:4222").await?;
//! let auth = AuthService::start(client, Some(system), AuthConfig::new(seed.trim())?).await?;
//! // ... run the dispatcher ...
//! auth.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod callout;
pub mod credentials;
mod jwt;
pub mod operators;
pub mod probe;
mod quota;
mod rights;
mod sealed;
pub mod services;
mod setup;
mod sweep;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
/// A curve key (xkey) that seals authorization requests and responses ([`AuthConfig::xkey`]).
pub use nkeys::XKey;
use nkeys::{KeyPair, KeyPairType};
use switchyard_schemas::{Namespace, PluginId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::callout::Refusal;
pub use self::credentials::{CredentialStore, HostSecret, PluginSecret, StoredCredential};
pub use self::quota::{
    QuotaExceeded, DEFAULT_QUOTA_COOLDOWN, DEFAULT_QUOTA_INTERVAL, MIN_QUOTA_INTERVAL,
};
pub use self::rights::{CallGrant, Permissions, PluginRights, ServiceRights};
pub use self::sealed::{SealError, SERVER_XKEY_HEADER};
pub use self::services::{ServiceLogin, ServiceStore};
pub use self::setup::{
    AuthSetup, Listen, ListenError, Login, TlsFiles, DEFAULT_ACCOUNT, SYSTEM_ACCOUNT,
};

use self::callout::Callout;
use self::quota::QuotaBook;
use self::sealed::Sealing;
use self::sweep::{Checked, Enforcer, Sweeper};
use crate::registry::Registry;

/// The subject nats-server sends authorization requests to, in the callout's account.
pub const CALLOUT_SUBJECT: &str = "$SYS.REQ.USER.AUTH";
/// Where nats-server expects authorization responses: its own response inboxes.
const SERVER_INBOX: &str = "$SYS._INBOX.";
/// The queue group of the callout and rights responders: with several dispatchers, one answers.
const QUEUE: &str = "switchyard-auth";

/// How long a plugin connection's rights last by default before it must reconnect (and be
/// authorized again): the bound on a revocation while no auth service runs.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// How an [`AuthService`] runs.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The deployment's namespace.
    pub namespace: Namespace,
    /// The issuer key (an account nkey with its seed) whose public key the server's
    /// `auth_callout { issuer }` names.
    pub issuer: Arc<KeyPair>,
    /// The account plugins are placed in: the one holding the streams (`auth_callout { account }`).
    pub account: String,
    /// How long a plugin's user JWT is valid at most (each gets between three quarters of it
    /// and all of it, so that connections made together do not all reconnect together). The
    /// server disconnects the connection when it expires, and the client reconnects with
    /// fresh rights, or is refused. This bounds how long a revoked right lasts when no auth
    /// service is running to disconnect it at once: revocation fails closed within `ttl`.
    pub ttl: Duration,
    /// How often every plugin's rights are read afresh even when no change was seen (a missed
    /// notification). The checks every [`quota_interval`](Self::quota_interval) in between
    /// look for stale connections with the rights last read, which catches a connection
    /// authorized at the very moment of a change.
    pub sweep_interval: Duration,
    /// How often plugin connections are checked against their quotas (with the rights last
    /// read): a plugin may exceed a quota for up to this long before it is disconnected, and a
    /// rate is measured over windows this long. [`DEFAULT_QUOTA_INTERVAL`] by default, at least
    /// [`MIN_QUOTA_INTERVAL`].
    pub quota_interval: Duration,
    /// How long a plugin disconnected for exceeding a quota is refused new logins
    /// ([`DEFAULT_QUOTA_COOLDOWN`] by default).
    pub quota_cooldown: Duration,
    /// The curve key whose public half the server's `auth_callout { xkey }` names: the server
    /// seals every authorization request (the plugin's secret is in it) to this key, and the
    /// responses are sealed back. With a key, plaintext requests are refused (the server is
    /// configured without it); without one, sealed requests cannot be read and are refused.
    pub xkey: Option<Arc<XKey>>,
}

impl AuthConfig {
    /// A configuration with the issuer key read from its seed (`SA…`), the default
    /// namespace and account, a JWT lifetime of [`DEFAULT_TTL`], a 30 s sweep, quotas checked
    /// every [`DEFAULT_QUOTA_INTERVAL`] with a [`DEFAULT_QUOTA_COOLDOWN`], and no xkey (set
    /// [`xkey`](Self::xkey) with [`xkey_from_seed`]).
    ///
    /// # Errors
    /// [`AuthError::Issuer`] when the seed is not an account seed.
    pub fn new(issuer_seed: &str) -> Result<Self, AuthError> {
        Ok(Self {
            namespace: Namespace::default(),
            issuer: Arc::new(issuer_from_seed(issuer_seed)?),
            account: DEFAULT_ACCOUNT.to_owned(),
            ttl: DEFAULT_TTL,
            sweep_interval: Duration::from_secs(30),
            quota_interval: DEFAULT_QUOTA_INTERVAL,
            quota_cooldown: DEFAULT_QUOTA_COOLDOWN,
            xkey: None,
        })
    }
}

/// Reads the auth service's xkey (curve key) from its seed (`SX…`, `xkey.nk` of
/// `switchyard auth init`).
///
/// # Errors
/// [`AuthError::Xkey`] when the seed does not decode or is not a curve seed.
pub fn xkey_from_seed(seed: &str) -> Result<XKey, AuthError> {
    sealed::xkey_from_seed(seed).map_err(AuthError::Xkey)
}

/// Reads an issuer key from its seed.
///
/// # Errors
/// [`AuthError::Issuer`] when the seed does not decode or is not an account key.
pub fn issuer_from_seed(seed: &str) -> Result<KeyPair, AuthError> {
    let key = KeyPair::from_seed(seed.trim()).map_err(|e| AuthError::Issuer(e.to_string()))?;
    if key.key_pair_type() == KeyPairType::Account {
        Ok(key)
    } else {
        Err(AuthError::Issuer(format!(
            "the issuer must be an account key (a seed starting with `SA`), not a {:?} key",
            key.key_pair_type()
        )))
    }
}

/// Why the auth service could not start, or a credential operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The issuer seed is not a usable account key.
    #[error("invalid issuer key: {0}")]
    Issuer(String),
    /// The xkey seed is not a usable curve key.
    #[error("invalid xkey: {0}")]
    Xkey(String),
    /// A subscription or request on the deployment's account failed.
    #[error("{action}: {reason}")]
    Nats {
        /// What was being done.
        action: &'static str,
        /// What happened.
        reason: String,
    },
    /// A request to the system account failed.
    #[error("system account: cannot {action}: {reason}")]
    System {
        /// What was being done.
        action: &'static str,
        /// What happened.
        reason: String,
    },
    /// The credentials bucket failed.
    #[error("credentials `{bucket}`: cannot {action}: {reason}")]
    Store {
        /// The bucket.
        bucket: String,
        /// What was being done.
        action: String,
        /// What happened.
        reason: String,
    },
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The audit log could not be opened (nothing was changed), or a change (a revocation)
    /// was made and its entry could not be stored.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A secret was issued (and any earlier one no longer works), and its audit entry could
    /// not be stored. The secret is here so that it still reaches the plugin's workers; the
    /// message does not show it.
    #[error("{audit}")]
    IssuedNotRecorded {
        /// The new secret.
        secret: PluginSecret,
        /// The audit failure ([`AuditError::NotRecorded`](crate::audit::AuditError::NotRecorded)).
        audit: crate::audit::AuditError,
    },
}

/// The running auth callout, rights responder and sweeper. Stop it with
/// [`shutdown`](Self::shutdown); dropping it stops it too.
#[derive(Debug)]
pub struct AuthService {
    stop: CancellationToken,
    tasks: TaskTracker,
    sweeps: Arc<Notify>,
}

impl AuthService {
    /// Starts answering authorization requests and rights requests on `client` (a trusted
    /// user of the plugins' account, e.g. the dispatcher's login), and, when `system` (a
    /// system-account connection) is given, disconnecting plugin connections whose rights
    /// changed. Without `system`, changes reach existing connections when their JWT expires
    /// ([`AuthConfig::ttl`]).
    ///
    /// # Errors
    /// An [`AuthError`] when the registry, the credentials or the subscriptions cannot be set
    /// up.
    pub async fn start(
        client: async_nats::Client,
        system: Option<async_nats::Client>,
        config: AuthConfig,
    ) -> Result<Self, AuthError> {
        let js = async_nats::jetstream::new(client.clone());
        let registry = Box::pin(Registry::open(&js, &config.namespace)).await?;
        let credentials = Box::pin(CredentialStore::open(&js, &config.namespace)).await?;
        // Boxed: opening a bucket is a large future, and every caller's future holds this one.
        let services = Box::pin(ServiceStore::open(&js, &config.namespace)).await?;
        let callout = Callout {
            services,
            registry: registry.clone(),
            credentials: credentials.clone(),
            issuer: Arc::clone(&config.issuer),
            account: config.account.clone(),
            namespace: config.namespace.clone(),
            ttl: config.ttl,
            quotas: Arc::new(QuotaBook::new(config.quota_cooldown)),
        };
        let nats = |action| {
            move |e: async_nats::SubscribeError| AuthError::Nats {
                action,
                reason: e.to_string(),
            }
        };
        let requests = client
            .queue_subscribe(CALLOUT_SUBJECT, QUEUE.to_owned())
            .await
            .map_err(nats("subscribe to authorization requests"))?;
        let rights = client
            .queue_subscribe(config.namespace.all_plugin_rights(), QUEUE.to_owned())
            .await
            .map_err(nats("subscribe to rights requests"))?;

        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let sweeps = Arc::new(Notify::new());
        tasks.spawn(answer_callouts(
            client.clone(),
            requests,
            callout.clone(),
            Sealing::new(config.xkey.clone()),
            tasks.clone(),
            stop.clone(),
        ));
        tasks.spawn(answer_rights(
            client.clone(),
            rights,
            callout.clone(),
            stop.clone(),
        ));
        match system {
            Some(system) => {
                let changes = Box::pin(registry.watch()).await?;
                // A service's login changes its connections' rights as a credential does.
                let credential_changes = futures::stream::select(
                    Box::pin(credentials.changes()).await?,
                    Box::pin(callout.services.changes()).await?,
                );
                let quotas = Arc::clone(&callout.quotas);
                let quota_interval = config.quota_interval.max(MIN_QUOTA_INTERVAL);
                let enforcer = Enforcer::new(Sweeper { system, callout }, quotas, quota_interval);
                tasks.spawn(sweep_on_changes(
                    enforcer,
                    changes.map(drop).fuse().boxed(),
                    credential_changes.map(drop).fuse().boxed(),
                    Arc::clone(&sweeps),
                    Intervals {
                        sweep: config.sweep_interval,
                        quota: quota_interval,
                    },
                    stop.clone(),
                ));
            }
            None => tracing::warn!(
                ttl = ?config.ttl,
                "no system-account connection: a plugin whose rights change keeps its old rights until its JWT expires, \
                 and plugins' quotas are not enforced"
            ),
        }
        let xkey = config.xkey.as_ref().map(|key| key.public_key());
        tracing::info!(account = %config.account, issuer = %config.issuer.public_key(),
            xkey = xkey.as_deref().unwrap_or("none: requests are not sealed"), "auth callout running");
        Ok(Self {
            stop,
            tasks,
            sweeps,
        })
    }

    /// Asks for a sweep of stale plugin connections now, with every plugin's rights read afresh
    /// (it also happens on every change and every [`AuthConfig::sweep_interval`]). Does nothing
    /// without a system connection.
    pub fn sweep_soon(&self) {
        self.sweeps.notify_one();
    }

    /// Stops answering; authorization requests from then on time out (and are refused) unless
    /// another instance answers them.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The next request that expects an answer, or `None` once stopped or unsubscribed. Messages
/// without a reply subject are skipped: nobody waits for them.
async fn next_request(
    requests: &mut async_nats::Subscriber,
    stop: &CancellationToken,
) -> Option<(async_nats::Message, async_nats::Subject)> {
    loop {
        let request = tokio::select! {
            () = stop.cancelled() => return None,
            request = requests.next() => request?,
        };
        if let Some(reply) = request.reply.clone() {
            return Some((request, reply));
        }
    }
}

async fn answer_callouts(
    client: async_nats::Client,
    mut requests: async_nats::Subscriber,
    callout: Callout,
    sealing: Sealing,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    while let Some((request, reply)) = next_request(&mut requests, &stop).await {
        // nats-server asks from its own response inboxes; answer nowhere else (only trusted
        // users may publish here, but a trusted component never publishes to a subject that
        // someone else chose without checking it).
        if !reply.starts_with(SERVER_INBOX) {
            tracing::warn!(reply = %reply, "authorization request with a reply subject outside the server's inboxes: not answered");
            continue;
        }
        let server_xkey = request
            .headers
            .as_ref()
            .and_then(|headers| headers.get(SERVER_XKEY_HEADER))
            .map(|key| key.as_str().to_owned());
        // Not answered: the server refuses the connection at its auth timeout.
        let opened = match sealing.open(server_xkey.as_deref(), &request.payload) {
            Ok(opened) => opened,
            Err(error) => {
                tracing::error!(%error, "authorization request not answered: misconfigured");
                continue;
            }
        };
        let (client, callout) = (client.clone(), callout.clone());
        // Each request on its own task: a slow registry read delays one connection only.
        tasks.spawn(async move {
            let sealed_by = opened.server_xkey();
            let Some(response) = callout.answer(&opened.request, sealed_by.as_deref()).await else {
                return;
            };
            let response = match opened.seal(response) {
                Ok(response) => response,
                Err(error) => {
                    tracing::error!(%error, "authorization response not sent");
                    return;
                }
            };
            if let Err(error) = client.publish(reply, response.into()).await {
                tracing::warn!(%error, "authorization response not sent");
            }
        });
    }
}

/// The answer to a rights request: the plugin's rights, or why it has none.
#[derive(Debug, serde::Serialize)]
#[serde(untagged)]
enum RightsAnswer {
    Rights(PluginRights),
    Refused { error: String },
}

async fn answer_rights(
    client: async_nats::Client,
    mut requests: async_nats::Subscriber,
    callout: Callout,
    stop: CancellationToken,
) {
    while let Some((request, reply)) = next_request(&mut requests, &stop).await {
        // Only the plugin itself (and trusted users) may publish to its rights subject, so the
        // subject names who asks.
        let Some(plugin) = request
            .subject
            .rsplit('.')
            .next()
            .and_then(|p| PluginId::new(p).ok())
        else {
            continue;
        };
        // The reply subject is the asker's choice. The answer goes only into the asking
        // plugin's own inbox, never to a subject someone else listens on (another plugin's
        // deliveries or channels, the streams, the buckets).
        if !is_own_inbox(&callout.namespace, &plugin, &reply) {
            tracing::warn!(%plugin, reply = %reply,
                "rights request with a reply subject outside the plugin's own inbox: not answered");
            continue;
        }
        let answer = match callout.current(&plugin).await {
            Ok(current) => RightsAnswer::Rights(current.rights),
            Err(refusal) => RightsAnswer::Refused {
                error: refusal.to_string(),
            },
        };
        let body = serde_json::to_vec(&answer).unwrap_or_default();
        if let Err(error) = client.publish(reply, body.into()).await {
            tracing::debug!(%error, "rights answer not sent");
        }
    }
}

/// Whether `reply` lies in `plugin`'s own inbox (`_SY_INBOX.{prefix}.{plugin}.…`), with no
/// wildcard in it.
fn is_own_inbox(namespace: &Namespace, plugin: &PluginId, reply: &str) -> bool {
    namespace.is_plugin_inbox(plugin, reply)
}

/// How often the enforcer reads every plugin's rights afresh, and how often it checks.
#[derive(Debug, Clone, Copy)]
struct Intervals {
    sweep: Duration,
    quota: Duration,
}

async fn sweep_on_changes(
    mut enforcer: Enforcer,
    mut registry_changes: futures::stream::BoxStream<'static, ()>,
    mut credential_changes: futures::stream::BoxStream<'static, ()>,
    sweeps: Arc<Notify>,
    intervals: Intervals,
    stop: CancellationToken,
) {
    let ticks = |period| {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    };
    let (mut sweep_ticks, mut quota_ticks) = (ticks(intervals.sweep), ticks(intervals.quota));
    let trigger = Arc::clone(&sweeps);
    let watch = async move {
        loop {
            tokio::select! {
                Some(()) = registry_changes.next() => trigger.notify_one(),
                Some(()) = credential_changes.next() => trigger.notify_one(),
                else => break,
            }
        }
    };
    let sweeping = async {
        loop {
            // A change, or the periodic sweep, makes the check read the rights afresh; the
            // quota checks in between use the rights last read.
            let fresh = tokio::select! {
                () = sweeps.notified() => true,
                _ = sweep_ticks.tick() => true,
                _ = quota_ticks.tick() => false,
            };
            if fresh {
                enforcer.forget_rights();
            }
            match enforcer.check().await {
                Ok(checked) if checked == Checked::default() => {}
                Ok(checked) => tracing::debug!(
                    stale = checked.stale,
                    over_quota = checked.over_quota,
                    "plugin connections disconnected"
                ),
                Err(error) => tracing::warn!(%error, "cannot check plugin connections"),
            }
        }
    };
    tokio::pin!(watch, sweeping);
    let mut watching = true;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = &mut watch, if watching => {
                tracing::error!("the registry or credentials watch ended; sweeping on the interval only");
                watching = false;
            }
            () = &mut sweeping => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_are_answered_into_the_asking_plugins_own_inbox_only() {
        let ns = Namespace::default();
        let plugin = PluginId::new("audit").unwrap();
        assert!(is_own_inbox(
            &ns,
            &plugin,
            "_SY_INBOX.switchyard.audit.abc.1"
        ));
        for other in [
            "_SY_INBOX.switchyard.audit",
            "_SY_INBOX.switchyard.audit.",
            "_SY_INBOX.switchyard.auditor.abc",
            "_SY_INBOX.switchyard.other.abc",
            "_SY_INBOX.switchyard.audit.*",
            "_SY_INBOX.switchyard.audit.a..b",
            "switchyard.deliver.other",
            "$KV.SWITCHYARD_CREDENTIALS.other",
            "switchyard.channel.acme.alerts.audit",
        ] {
            assert!(!is_own_inbox(&ns, &plugin, other), "{other}");
        }
    }
}
