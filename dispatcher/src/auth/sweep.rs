//! Disconnecting plugin connections whose rights are no longer current.
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

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use switchyard_schemas::PluginId;
use tokio::time::{timeout, Instant};

use super::callout::{Callout, Refusal};
use super::rights::parse_connection_name;
use super::AuthError;

/// How long to wait for the first server's answer to a PING.
const FIRST_ANSWER: Duration = Duration::from_secs(3);
/// After an answer, how long to wait for more servers' answers (in a cluster, every server
/// answers a PING).
const MORE_ANSWERS: Duration = Duration::from_millis(150);
/// Connections asked for per page.
const PAGE: usize = 1024;

/// One plugin connection on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PluginConnection {
    pub(crate) server: String,
    pub(crate) cid: u64,
    pub(crate) plugin: PluginId,
    pub(crate) fingerprint: String,
}

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
}

/// Lists and disconnects plugin connections through a system-account connection.
#[derive(Debug, Clone)]
pub(crate) struct Sweeper {
    pub(crate) system: async_nats::Client,
    pub(crate) callout: Callout,
}

impl Sweeper {
    /// Disconnects every plugin connection whose rights are not the ones in force; returns how
    /// many. A plugin whose rights cannot be read right now is left alone until the next sweep.
    ///
    /// # Errors
    /// [`AuthError::System`] when the connections cannot be listed.
    pub(crate) async fn sweep(&self) -> Result<usize, AuthError> {
        let connections = self.connections().await?;
        let mut wanted: HashMap<PluginId, Option<Option<String>>> = HashMap::new();
        let mut kicked = 0;
        for connection in connections {
            if !wanted.contains_key(&connection.plugin) {
                let fingerprint = match self.callout.current(&connection.plugin).await {
                    Ok(current) => Some(Some(current.fingerprint(&self.callout.namespace))),
                    Err(Refusal::Unavailable { reason, .. }) => {
                        tracing::warn!(plugin = %connection.plugin, %reason, "cannot check a plugin's connections now");
                        None
                    }
                    Err(_) => Some(None),
                };
                wanted.insert(connection.plugin.clone(), fingerprint);
            }
            let stale = match &wanted[&connection.plugin] {
                None => false,
                Some(current) => current.as_deref() != Some(connection.fingerprint.as_str()),
            };
            if stale {
                match self.kick(&connection.server, connection.cid).await {
                    Ok(()) => {
                        kicked += 1;
                        tracing::info!(plugin = %connection.plugin, cid = connection.cid,
                            "disconnected a plugin connection whose rights changed");
                    }
                    Err(error) => {
                        tracing::warn!(plugin = %connection.plugin, cid = connection.cid, %error,
                            "cannot disconnect a stale plugin connection");
                    }
                }
            }
        }
        Ok(kicked)
    }

    /// Every plugin connection in the plugins' account, on every server that answers.
    async fn connections(&self) -> Result<Vec<PluginConnection>, AuthError> {
        let mut found = Vec::new();
        for (server, mut connz) in self.ping_connz().await? {
            loop {
                let page = connz.connections.len();
                found.extend(connz.connections.iter().filter_map(|c| {
                    let (plugin, fingerprint) = parse_connection_name(&c.authorized_user)?;
                    Some(PluginConnection {
                        server: server.clone(),
                        cid: c.cid,
                        plugin,
                        fingerprint: fingerprint.to_owned(),
                    })
                }));
                let next = connz.offset + page;
                if page == 0 || next >= connz.total {
                    break;
                }
                connz = self.server_connz(&server, next).await?;
            }
        }
        Ok(found)
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
