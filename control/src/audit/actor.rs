//! Who did something: the NATS user the server authenticated, the OS user and host of the
//! process, and a name the operator gave.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long [`Actor::detect`] waits for the server to say who the connection is.
const USER_INFO_WAIT: Duration = Duration::from_secs(2);

/// Who made an audit entry.
///
/// `name` is the one-line form shown by `switchyard audit`: `admin via alice@build-1` (NATS
/// user, OS user, host), `alice@build-1` with no NATS user (a server without logins), or the
/// declared name first, `release-bot (admin via alice@build-1)`.
///
/// The NATS user is the server's answer when it gives one (nats-server 2.10+ tells a client
/// its own user, `$SYS.REQ.USER.INFO`), else the user of the URL. The OS user is what the
/// process's environment says (`USER`, `LOGNAME`): anyone can set it, so it tells operators
/// sharing one login apart, and proves nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The one-line form.
    pub name: String,
    /// The NATS user the change was made as, if known.
    pub nats_user: Option<String>,
    /// The OS user of the process, as its environment names it.
    pub os_user: Option<String>,
    /// The host the process ran on.
    pub host: Option<String>,
    /// A name the operator gave (`--actor`).
    pub declared: Option<String>,
}

impl Actor {
    /// An actor of these parts; `name` is derived from them.
    pub fn new(
        nats_user: Option<String>,
        os_user: Option<String>,
        host: Option<String>,
        declared: Option<String>,
    ) -> Self {
        let non_empty = |part: Option<String>| part.filter(|p| !p.trim().is_empty());
        let (nats_user, os_user, host, declared) = (
            non_empty(nats_user),
            non_empty(os_user),
            non_empty(host),
            non_empty(declared),
        );
        let local = match (&os_user, &host) {
            (Some(user), Some(host)) => Some(format!("{user}@{host}")),
            (Some(user), None) => Some(user.clone()),
            (None, Some(host)) => Some(format!("someone@{host}")),
            (None, None) => None,
        };
        let seen = match (&nats_user, local) {
            (Some(nats), Some(local)) => Some(format!("{nats} via {local}")),
            (Some(nats), None) => Some(nats.clone()),
            (None, local) => local,
        };
        let name = match (&declared, seen) {
            (Some(declared), Some(seen)) => format!("{declared} ({seen})"),
            (Some(declared), None) => declared.clone(),
            (None, Some(seen)) => seen,
            (None, None) => "unknown".to_owned(),
        };
        Self {
            name,
            nats_user,
            os_user,
            host,
            declared,
        }
    }

    /// An actor known only by a name it gives, e.g. a test or an automated job.
    pub fn declared(name: impl Into<String>) -> Self {
        Self::new(None, None, None, Some(name.into()))
    }

    /// This process as the actor: its OS user and host, with `nats_user` and `declared`.
    pub fn this_process(nats_user: Option<String>, declared: Option<String>) -> Self {
        Self::new(nats_user, os_user(), host_name(), declared)
    }

    /// This process as the actor, with the NATS user `client` is logged in as: the server's
    /// answer, or when it gives none (an older server, or no logins) the user of `url` (the
    /// URL the client connected with; a URL holding a token and no user names nobody).
    pub async fn detect(
        client: &async_nats::Client,
        url: Option<&str>,
        declared: Option<String>,
    ) -> Self {
        let nats_user = match server_user(client).await {
            Some(user) => Some(user),
            None => url.and_then(url_user),
        };
        Self::this_process(nats_user, declared)
    }

    /// Whether `who` names this actor: its full name, its NATS user, its OS user alone or
    /// as `user@host`, or its declared name.
    pub fn is(&self, who: &str) -> bool {
        let local = self
            .os_user
            .as_deref()
            .zip(self.host.as_deref())
            .map(|(user, host)| format!("{user}@{host}"));
        self.name == who
            || self.nats_user.as_deref() == Some(who)
            || self.os_user.as_deref() == Some(who)
            || local.as_deref() == Some(who)
            || self.declared.as_deref() == Some(who)
    }
}

/// What the server says this connection's user is; `None` when it does not say (no answer,
/// or no logins: an empty user).
async fn server_user(client: &async_nats::Client) -> Option<String> {
    let request = client.request("$SYS.REQ.USER.INFO", bytes::Bytes::new());
    let reply = tokio::time::timeout(USER_INFO_WAIT, request)
        .await
        .ok()?
        .ok()?;
    let info: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
    info.pointer("/data/user")
        .and_then(serde_json::Value::as_str)
        .filter(|user| !user.is_empty())
        .map(str::to_owned)
}

/// The user of the first `user:password@` in a (comma-separated) URL; never a token.
pub fn url_user(url: &str) -> Option<String> {
    url.split(',').find_map(|entry| {
        let rest = entry
            .trim()
            .split_once("://")
            .map_or(entry.trim(), |(_, r)| r);
        let authority = rest.split('/').next()?;
        let (userinfo, _host) = authority.rsplit_once('@')?;
        // `nats://token@host` carries a secret where a user would be: no user is named.
        let (user, _password) = userinfo.split_once(':')?;
        (!user.is_empty()).then(|| user.to_owned())
    })
}

fn os_user() -> Option<String> {
    ["USER", "LOGNAME", "USERNAME"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
}

fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .into_iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn the_name_says_who_through_what() {
        let full = Actor::new(some("admin"), some("alice"), some("h1"), None);
        assert_eq!(full.name, "admin via alice@h1");
        assert_eq!(
            Actor::new(None, some("alice"), some("h1"), None).name,
            "alice@h1"
        );
        assert_eq!(Actor::new(some("admin"), None, None, None).name, "admin");
        assert_eq!(
            Actor::new(some("admin"), some("alice"), some("h1"), some("release")).name,
            "release (admin via alice@h1)"
        );
        assert_eq!(Actor::declared("ci").name, "ci");
        assert_eq!(Actor::new(None, None, None, some(" ")).name, "unknown");
        for who in ["admin via alice@h1", "admin", "alice", "alice@h1"] {
            assert!(full.is(who), "{who}");
        }
        assert!(!full.is("bob"));
        assert!(!full.is("h1"));
    }

    #[test]
    fn a_url_names_its_user_but_never_a_token() {
        assert_eq!(url_user("nats://admin:pw@127.0.0.1:4222"), some("admin"));
        assert_eq!(
            url_user("nats://a:4222, tls://ops:secret@b:4222"),
            some("ops")
        );
        assert_eq!(url_user("nats://s3cr3t-token@127.0.0.1:4222"), None);
        assert_eq!(url_user("nats://127.0.0.1:4222"), None);
        assert_eq!(url_user("admin:pw@host:4222"), some("admin"));
    }
}
