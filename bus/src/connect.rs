//! Connecting to NATS: URL, credentials and TLS, passed through to async-nats, with a bound
//! on how long a connect may take.

use std::path::PathBuf;
use std::time::Duration;

/// How to reach the NATS server. Build it with [`ConnectOptions::new`] and the setters, or as a
/// struct literal with `..Default::default()`.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Server URL(s), comma-separated (`nats://127.0.0.1:4222,nats://10.0.0.2:4222`).
    pub url: String,
    /// A `.creds` file (user JWT and nkey seed), as issued by an operator.
    pub credentials_file: Option<PathBuf>,
    /// CA certificate(s) that the server's certificate must chain to (PEM).
    pub tls_root_certificates: Option<PathBuf>,
    /// Client certificate and key for mutual TLS (PEM).
    pub tls_client_certificate: Option<(PathBuf, PathBuf)>,
    /// Refuse to connect without TLS.
    pub require_tls: bool,
    /// How long the whole connect (TCP, TLS, handshake) may take before it fails.
    pub connect_timeout: Duration,
    /// The connection name the server shows in its monitoring.
    pub name: Option<String>,
    /// The prefix of the connection's inboxes (its requests' reply subjects), when it must be
    /// other than `_INBOX`: a service calling operations uses its own
    /// ([`Namespace::service_inbox_prefix`](switchyard_schemas::Namespace::service_inbox_prefix)).
    pub inbox_prefix: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            credentials_file: None,
            tls_root_certificates: None,
            tls_client_certificate: None,
            require_tls: false,
            connect_timeout: Duration::from_secs(5),
            name: None,
            inbox_prefix: None,
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No server answered at the URL within the timeout, or the connection was refused.
    #[error("NATS server at `{url}` is unreachable: {reason}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// What happened (refused, timed out after N, DNS...).
        reason: String,
    },
    /// The server refused the credentials.
    #[error("NATS server at `{url}` refused the credentials: {reason}")]
    Unauthorized {
        /// The URL tried.
        url: String,
        /// The server's or client's message.
        reason: String,
    },
    /// The credentials file could not be read.
    #[error("cannot read credentials file `{path}`: {source}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// The I/O or parse error.
        source: std::io::Error,
    },
    /// TLS could not be set up or negotiated.
    #[error("TLS with `{url}` failed: {reason}")]
    Tls {
        /// The URL tried.
        url: String,
        /// The TLS error.
        reason: String,
    },
    /// The URL is not a valid server address.
    #[error("`{url}` is not a valid NATS server address: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// The parser's message.
        reason: String,
    },
}

impl ConnectOptions {
    /// Options for the server(s) at `url`, with default timeout and no credentials or TLS.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// Connects.
    ///
    /// The client reconnects by itself after a connection that once worked is lost; only the
    /// first connect fails fast.
    ///
    /// # Errors
    /// A [`ConnectError`] saying whether the server was unreachable (within
    /// `connect_timeout`), refused the credentials, TLS failed, or the URL or credentials
    /// file was bad.
    ///
    /// # Cancel safety
    /// Dropping the future abandons the attempt; nothing is left connected.
    pub async fn connect(&self) -> Result<async_nats::Client, ConnectError> {
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(self.connect_timeout)
            .require_tls(self.require_tls);
        if let Some(path) = &self.credentials_file {
            options = options.credentials_file(path).await.map_err(|source| {
                ConnectError::Credentials {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        if let Some(ca) = &self.tls_root_certificates {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls_client_certificate {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        if let Some(name) = &self.name {
            options = options.name(name);
        }
        if let Some(prefix) = &self.inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        // `nats://user:password@host:4222`: async-nats parses but does not send URL
        // credentials, so they are passed explicitly (as the Go client and `nats` CLI do).
        if let Some((user, password)) = url_credentials(&self.url) {
            options = options.user_and_password(user, password);
        }
        // Parsed here, one entry at a time: async-nats reads a string as one address, so a
        // list would fail as a whole with a message ("invalid port number") naming none.
        let servers = server_addrs(&self.url)?;
        // The client's own timeout covers each step; this one bounds the whole attempt,
        // DNS and a server that accepts TCP but never speaks included.
        let attempt = options.connect(servers);
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(err)) => Err(self.classify(err)),
            Err(_) => Err(ConnectError::Unreachable {
                url: redact_password(&self.url),
                reason: format!("no answer within {:?}", self.connect_timeout),
            }),
        }
    }

    fn classify(&self, err: async_nats::ConnectError) -> ConnectError {
        use async_nats::ConnectErrorKind as K;
        let url = redact_password(&self.url);
        let reason = err.to_string();
        match err.kind() {
            K::Authentication | K::AuthorizationViolation => {
                ConnectError::Unauthorized { url, reason }
            }
            K::Tls => ConnectError::Tls { url, reason },
            K::ServerParse => ConnectError::BadUrl { url, reason },
            K::Dns | K::TimedOut | K::Io | K::MaxReconnects => {
                ConnectError::Unreachable { url, reason }
            }
        }
    }
}

/// Each server of a comma-separated list (`nats://a:4222,nats://b:4222`; spaces around the
/// commas are allowed), in order. A bare `host:port` means `nats://host:port`.
///
/// # Errors
/// [`ConnectError::BadUrl`] naming the first entry that is not a server address (its password
/// redacted), or saying that the list is empty.
pub fn server_addrs(urls: &str) -> Result<Vec<async_nats::ServerAddr>, ConnectError> {
    let entries: Vec<&str> = urls.split(',').map(str::trim).collect();
    if entries.iter().all(|entry| entry.is_empty()) {
        return Err(ConnectError::BadUrl {
            url: urls.to_owned(),
            reason: "no server URL given".to_owned(),
        });
    }
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let bad = |reason: String| ConnectError::BadUrl {
                url: redact_password(entry),
                reason: format!(
                    "entry {} of `{}`: {reason}",
                    index + 1,
                    redact_password(urls)
                ),
            };
            if entry.is_empty() {
                return Err(bad("empty (two commas in a row?)".to_owned()));
            }
            entry
                .parse::<async_nats::ServerAddr>()
                .map_err(|e| bad(e.to_string()))
        })
        .collect()
}

/// The user name and password of the first URL that has them in its authority
/// (`scheme://user:password@host`): one login serves the whole list, as in other NATS clients.
fn url_credentials(urls: &str) -> Option<(String, String)> {
    urls.split(',').map(str::trim).find_map(|url| {
        let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = authority.split('/').next()?;
        let (userinfo, _host) = authority.rsplit_once('@')?;
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        (!user.is_empty()).then(|| (user.to_owned(), password.to_owned()))
    })
}

/// The URLs without user and password, for clients that log in otherwise (a plugin's worker
/// started by a host, a probe's plugins): the login of the process that read them stays its
/// own.
pub fn without_userinfo(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            if scheme.is_empty() {
                rest.to_owned()
            } else {
                format!("{scheme}://{rest}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The URLs with every password replaced by `***`, for messages.
pub fn redact_password(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            let (authority, path) = rest
                .split_once('/')
                .map_or((rest, None), |(a, p)| (a, Some(p)));
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) if userinfo.contains(':') => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                    format!("{user}:***@{host}")
                }
                _ => authority.to_owned(),
            };
            let scheme = if scheme.is_empty() {
                String::new()
            } else {
                format!("{scheme}://")
            };
            match path {
                Some(path) => format!("{scheme}{authority}/{path}"),
                None => format!("{scheme}{authority}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `server.address` and `server.port` of the server `client` is connected to, as the server
/// announces itself, for telemetry.
pub fn server_attributes(client: &async_nats::Client) -> [opentelemetry::KeyValue; 2] {
    use switchyard_schemas::telemetry::attr;
    let info = client.server_info();
    [
        opentelemetry::KeyValue::new(attr::SERVER_ADDRESS, info.host),
        opentelemetry::KeyValue::new(attr::SERVER_PORT, i64::from(info.port)),
    ]
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn url_credentials_are_read_and_redacted() {
        assert_eq!(
            url_credentials("nats://admin:s3cret@127.0.0.1:4222,nats://other:4222"),
            Some(("admin".to_owned(), "s3cret".to_owned()))
        );
        assert_eq!(url_credentials("nats://127.0.0.1:4222"), None);
        assert_eq!(
            redact_password("nats://admin:s3cret@127.0.0.1:4222,tls://h:1"),
            "nats://admin:***@127.0.0.1:4222,tls://h:1"
        );
        assert_eq!(redact_password("127.0.0.1:4222"), "127.0.0.1:4222");
    }

    #[test]
    fn userinfo_is_dropped_from_every_url() {
        assert_eq!(
            without_userinfo("nats://admin:s3cret@host:4222"),
            "nats://host:4222"
        );
        assert_eq!(
            without_userinfo("nats://a:b@h1:4222, tls://u:p@h2:4222"),
            "nats://h1:4222,tls://h2:4222"
        );
        assert_eq!(without_userinfo("h:4222"), "h:4222");
    }

    #[test]
    fn a_list_of_servers_is_parsed_entry_by_entry() {
        let servers = server_addrs("nats://a:4222, nats://b:4223,c:4224").unwrap();
        let hosts: Vec<(&str, u16)> = servers.iter().map(|s| (s.host(), s.port())).collect();
        assert_eq!(hosts, [("a", 4222), ("b", 4223), ("c", 4224)]);
        assert_eq!(
            url_credentials("nats://a:4222,nats://u:pw@b:4222"),
            Some(("u".to_owned(), "pw".to_owned()))
        );
    }

    #[test]
    fn a_bad_entry_is_named_without_its_password() {
        let error = server_addrs("nats://a:4222,nats://u:s3cret@b:99999").unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, ConnectError::BadUrl { .. }), "{text}");
        assert!(text.contains("nats://u:***@b:99999"), "{text}");
        assert!(text.contains("entry 2"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let empty = server_addrs("nats://a:4222,,nats://b:4222").unwrap_err();
        assert!(empty.to_string().contains("entry 2"), "{empty}");
        assert!(server_addrs(" ").is_err());
    }
}
