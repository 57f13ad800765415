//! Disconnecting plugin connections whose rights are no longer current, or that exceed their
//! plugin's quotas.
//!
//! nats-server fixes a connection's permissions when it connects. When a plugin's rights change
//! (a grant, a revocation, a tenant change, disabling, removal, a rotated credential), its
//! existing connections must go: the control plane finds them through the system account
//! (`$SYS.REQ.SERVER.PING.CONNZ`, nats-server 2.2+) and disconnects them
//! (`$SYS.REQ.SERVER.<id>.KICK`, added during the 2.10 series). Clients reconnect by themselves, and the
//! callout then issues the rights in force, or refuses them.
//!
//! A plugin connection's name carries the fingerprint of the rights it was issued
//! (`plugin:{id}:{fingerprint}`), so a sweep disconnects exactly the stale ones: several
//! dispatchers may sweep at once without disconnecting each other's fresh connections.
//!
//! The same listing shows each connection's subscriptions and the bytes it sent, which is how
//! the [`Enforcer`] holds plugins to the quotas nats-server does not apply to them
//! ([`super::quota`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use switchyard_schemas::{PluginId, ServiceName};
use time::OffsetDateTime;
use tokio::time::{timeout, Instant};

use super::callout::{Callout, Refusal};
use super::quota::{self, Listing, Meter, PluginConnection, QuotaBook, Standing, Verdict};
use super::rights::{parse_connection_name, parse_service_connection_name};
use super::AuthError;

/// How long to wait for the first server's answer to a PING.
const FIRST_ANSWER: Duration = Duration::from_secs(3);
/// After an answer, how long to wait for more servers' answers (in a cluster, every server
/// answers a PING).
const MORE_ANSWERS: Duration = Duration::from_millis(150);
/// Connections asked for per page.
const PAGE: usize = 1024;

/// A server's answer to a system request.
#[derive(Debug, Deserialize)]
struct ServerAnswer<T> {
    server: ServerInfo,
    #[serde(default = "Option::default")]
    data: Option<T>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Debug, Deserialize)]
struct ServerInfo {
    id: String,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
struct Connz {
    /// The server's clock when it answered.
    #[serde(with = "time::serde::rfc3339")]
    now: OffsetDateTime,
    #[serde(default)]
    total: usize,
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    connections: Vec<ConnInfo>,
}

#[derive(Debug, Deserialize)]
struct ConnInfo {
    cid: u64,
    #[serde(default)]
    authorized_user: String,
    /// How many subscriptions it holds (a count; the list is not asked for).
    #[serde(default)]
    subscriptions: u32,
    /// Message bytes the server received from it.
    #[serde(default)]
    in_bytes: u64,
    /// When the server accepted it.
    #[serde(with = "time::serde::rfc3339")]
    start: OffsetDateTime,
}

/// Lists and disconnects plugin connections through a system-account connection.
#[derive(Debug, Clone)]
pub(crate) struct Sweeper {
    pub(crate) system: async_nats::Client,
    pub(crate) callout: Callout,
}

/// What one check did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checked {
    /// Connections disconnected because their rights changed.
    pub(crate) stale: usize,
    /// Connections disconnected for exceeding a quota.
    pub(crate) over_quota: usize,
}

/// Checks plugin connections, again and again: their rights and their quotas.
#[derive(Debug)]
pub(crate) struct Enforcer {
    sweeper: Sweeper,
    quotas: Arc<QuotaBook>,
    /// How often checks run, the shortest window a rate is measured over.
    interval: Duration,
    /// What each plugin seen is held to, read once per plugin until [`forget_rights`]: so
    /// that a check every second does not read the registry for every plugin every second.
    ///
    /// [`forget_rights`]: Enforcer::forget_rights
    standing: HashMap<PluginId, Standing>,
    /// The fingerprint each service seen is held to (`None`: refused now), read once per
    /// service until [`forget_rights`](Enforcer::forget_rights).
    service_standing: HashMap<ServiceName, Option<String>>,
    meter: Meter,
}

/// A service login's connection, as listed.
#[derive(Debug, Clone)]
pub(crate) struct ServiceConnection {
    server: String,
    cid: u64,
    service: ServiceName,
    fingerprint: String,
}

impl Enforcer {
    /// An enforcer checking every `interval`, recording what it finds in `quotas`.
    pub(crate) fn new(sweeper: Sweeper, quotas: Arc<QuotaBook>, interval: Duration) -> Self {
        Self {
            sweeper,
            quotas,
            interval,
            standing: HashMap::new(),
            service_standing: HashMap::new(),
            meter: Meter::default(),
        }
    }

    /// Makes the next check read every plugin's rights afresh: call it on every change of the
    /// registry or the credentials (and now and then, in case a change was missed).
    pub(crate) fn forget_rights(&mut self) {
        self.standing.clear();
        self.service_standing.clear();
    }

    /// Lists every plugin connection, and disconnects those whose rights are not the ones in
    /// force, and those over a quota (their plugin is then refused new logins for the
    /// cool-down). A plugin whose rights cannot be read right now is left alone until the next
    /// check.
    ///
    /// # Errors
    /// [`AuthError::System`] when the connections cannot be listed.
    pub(crate) async fn check(&mut self) -> Result<Checked, AuthError> {
        let (listing, services) = self.sweeper.listing().await?;
        let mut checked = Checked::default();
        checked.stale += self.check_services(&services).await;
        for connection in &listing.connections {
            if !self.standing.contains_key(&connection.plugin) {
                if let Some(standing) = self.sweeper.standing(&connection.plugin).await {
                    self.standing.insert(connection.plugin.clone(), standing);
                }
            }
        }
        let rates = self.meter.rates(&listing, self.interval);
        let mut judgement = quota::judge(&listing, &self.standing, &rates);
        for (index, verdict) in judgement.kicks {
            let connection = &listing.connections[index];
            let (plugin, cid) = (&connection.plugin, connection.cid);
            if let Verdict::Over(exceeded) = verdict {
                // Before the disconnect: the reconnect that follows is refused.
                self.quotas.cool_down(plugin, exceeded);
                tracing::warn!(%plugin, cid, server = %connection.server,
                    quota = exceeded.quota(), limit = exceeded.limit(), observed = exceeded.observed(),
                    "disconnecting a plugin connection over a quota; the plugin cools down");
            }
            match self.sweeper.kick(&connection.server, cid).await {
                Ok(()) => match verdict {
                    Verdict::Stale => {
                        checked.stale += 1;
                        tracing::info!(%plugin, cid,
                            "disconnected a plugin connection whose rights changed");
                    }
                    Verdict::Over(_) => checked.over_quota += 1,
                },
                Err(error) => {
                    // Still open: counted against its plugin's connections.
                    *judgement.open.entry(plugin.clone()).or_default() += 1;
                    tracing::warn!(%plugin, cid, %error, "cannot disconnect a plugin connection");
                }
            }
        }
        self.quotas.counted(judgement.open, listing.asked);
        Ok(checked)
    }
}

impl Enforcer {
    /// Disconnects the service connections whose rights or secret are not the ones in force
    /// (or whose service is gone); returns how many. Services have no quotas.
    async fn check_services(&mut self, connections: &[ServiceConnection]) -> usize {
        let mut stale = 0;
        for connection in connections {
            if !self.service_standing.contains_key(&connection.service) {
                match self
                    .sweeper
                    .callout
                    .service_current(&connection.service)
                    .await
                {
                    Ok((login, permissions)) => {
                        let fingerprint = permissions.fingerprint(&login.credential.id);
                        self.service_standing
                            .insert(connection.service.clone(), Some(fingerprint));
                    }
                    Err(Refusal::ServiceUnavailable { reason, .. }) => {
                        tracing::warn!(service = %connection.service, %reason,
                            "cannot check a service's connections now");
                        continue;
                    }
                    Err(_) => {
                        self.service_standing
                            .insert(connection.service.clone(), None);
                    }
                }
            }
            let current = self.service_standing.get(&connection.service);
            if current.is_some_and(|fp| fp.as_deref() == Some(connection.fingerprint.as_str())) {
                continue;
            }
            let (service, cid) = (&connection.service, connection.cid);
            match self.sweeper.kick(&connection.server, cid).await {
                Ok(()) => {
                    stale += 1;
                    tracing::info!(%service, cid,
                        "disconnected a service connection whose rights changed");
                }
                Err(error) => {
                    tracing::warn!(%service, cid, %error, "cannot disconnect a service connection");
                }
            }
        }
        stale
    }
}

impl Sweeper {
    /// What `plugin`'s connections are held to now, or `None` when its rights cannot be read.
    async fn standing(&self, plugin: &PluginId) -> Option<Standing> {
        match self.callout.current(plugin).await {
            Ok(current) => Some(Standing::Current {
                fingerprint: current.fingerprint(&self.callout.namespace),
                limits: current.rights.limits,
            }),
            Err(Refusal::Unavailable { reason, .. }) => {
                tracing::warn!(%plugin, %reason, "cannot check a plugin's connections now");
                None
            }
            Err(_) => Some(Standing::Refused),
        }
    }

    /// Every plugin connection in the plugins' account, on every server that answers, and
    /// every service connection.
    async fn listing(&self) -> Result<(Listing, Vec<ServiceConnection>), AuthError> {
        let asked = Instant::now();
        let mut connections = Vec::new();
        let mut services = Vec::new();
        let mut servers = HashMap::new();
        for (server, mut connz) in self.ping_connz().await? {
            servers.insert(server.clone(), connz.now);
            loop {
                let page = connz.connections.len();
                services.extend(connz.connections.iter().filter_map(|c| {
                    let (service, fingerprint) = parse_service_connection_name(&c.authorized_user)?;
                    Some(ServiceConnection {
                        server: server.clone(),
                        cid: c.cid,
                        service,
                        fingerprint: fingerprint.to_owned(),
                    })
                }));
                connections.extend(connz.connections.iter().filter_map(|c| {
                    let (plugin, fingerprint) = parse_connection_name(&c.authorized_user)?;
                    Some(PluginConnection {
                        server: server.clone(),
                        cid: c.cid,
                        plugin,
                        fingerprint: fingerprint.to_owned(),
                        subscriptions: c.subscriptions,
                        in_bytes: c.in_bytes,
                        start: c.start,
                    })
                }));
                let next = connz.offset + page;
                if page == 0 || next >= connz.total {
                    break;
                }
                connz = self.server_connz(&server, next).await?;
            }
        }
        Ok((
            Listing {
                asked,
                at: Instant::now(),
                servers,
                connections,
            },
            services,
        ))
    }

    fn connz_options(&self, offset: usize) -> bytes::Bytes {
        serde_json::json!({
            "acc": self.callout.account,
            "auth": true,
            "offset": offset,
            "limit": PAGE,
        })
        .to_string()
        .into()
    }

    /// Asks every server for its connections in the account (first page).
    async fn ping_connz(&self) -> Result<Vec<(String, Connz)>, AuthError> {
        let inbox = self.system.new_inbox();
        let mut answers = self
            .system
            .subscribe(inbox.clone())
            .await
            .map_err(|e| system_error("subscribe for CONNZ answers", e))?;
        self.system
            .publish_with_reply("$SYS.REQ.SERVER.PING.CONNZ", inbox, self.connz_options(0))
            .await
            .map_err(|e| system_error("ask the servers for their connections", e))?;
        let deadline = Instant::now() + FIRST_ANSWER;
        let mut servers = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = if servers.is_empty() {
                left
            } else {
                left.min(MORE_ANSWERS)
            };
            let Ok(Some(message)) = timeout(wait, answers.next()).await else {
                break;
            };
            let answer: ServerAnswer<Connz> = serde_json::from_slice(&message.payload)
                .map_err(|e| system_error("read a CONNZ answer", e))?;
            servers.push(into_result(answer, "list connections")?);
        }
        if servers.is_empty() {
            return Err(system_error(
                "list connections",
                "no server answered (is this a system-account connection?)",
            ));
        }
        Ok(servers)
    }

    /// One page of one server's connections.
    async fn server_connz(&self, server: &str, offset: usize) -> Result<Connz, AuthError> {
        let message = self
            .system
            .request(
                format!("$SYS.REQ.SERVER.{server}.CONNZ"),
                self.connz_options(offset),
            )
            .await
            .map_err(|e| system_error("list connections", e))?;
        let answer: ServerAnswer<Connz> = serde_json::from_slice(&message.payload)
            .map_err(|e| system_error("read a CONNZ answer", e))?;
        Ok(into_result(answer, "list connections")?.1)
    }

    /// Disconnects one connection.
    async fn kick(&self, server: &str, cid: u64) -> Result<(), AuthError> {
        let message = self
            .system
            .request(
                format!("$SYS.REQ.SERVER.{server}.KICK"),
                serde_json::json!({ "cid": cid }).to_string().into(),
            )
            .await
            .map_err(|e| system_error("disconnect a connection", e))?;
        let answer: ServerAnswer<serde_json::Value> = serde_json::from_slice(&message.payload)
            .map_err(|e| system_error("read a KICK answer", e))?;
        into_result(answer, "disconnect a connection").map(drop)
    }
}

fn into_result<T>(answer: ServerAnswer<T>, action: &'static str) -> Result<(String, T), AuthError> {
    if let Some(error) = answer.error {
        return Err(system_error(
            action,
            format!("{} (code {})", error.description, error.code),
        ));
    }
    let data = answer
        .data
        .ok_or_else(|| system_error(action, "an answer without data"))?;
    Ok((answer.server.id, data))
}

fn system_error(action: &'static str, reason: impl std::fmt::Display) -> AuthError {
    AuthError::System {
        action,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connz_answer_reads_with_nanosecond_times() {
        // Abridged from nats-server 2.15; Go writes times in RFC 3339 with nanoseconds, trailing
        // zeros cut, in the server's time zone.
        let answer = r#"{"server": {"name": "n1", "id": "NSRV"}, "data": {
            "server_id": "NSRV", "now": "2026-03-01T10:00:02.5+01:00", "num_connections": 1,
            "total": 1, "offset": 0, "limit": 1024, "connections": [{
                "cid": 12, "kind": "Client", "type": "nats", "ip": "127.0.0.1", "port": 50000,
                "start": "2026-03-01T09:00:01.123456789Z", "last_activity": "2026-03-01T09:00:02Z",
                "rtt": "1ms", "uptime": "1s", "idle": "0s", "pending_bytes": 0, "in_msgs": 3,
                "out_msgs": 0, "in_bytes": 4096, "out_bytes": 0, "subscriptions": 7,
                "name": "raw-p", "lang": "rust", "version": "0.51.0",
                "authorized_user": "plugin:p:0123456789ab", "account": "SWITCHYARD"}]}}"#;
        let answer: ServerAnswer<Connz> = serde_json::from_str(answer).unwrap();
        let (server, connz) = into_result(answer, "list connections").unwrap();
        assert_eq!(server, "NSRV");
        let connection = &connz.connections[0];
        assert_eq!(
            (
                connection.cid,
                connection.subscriptions,
                connection.in_bytes
            ),
            (12, 7, 4096)
        );
        assert_eq!(connection.authorized_user, "plugin:p:0123456789ab");
        assert_eq!(
            connz.now - connection.start,
            time::Duration::new(1, 376_543_211)
        );
    }
}
