//! What an operator writes to turn broker-enforced rights on: the nats-server configuration
//! and the keys and logins it names.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use nkeys::{KeyPair, XKey};

/// The account Switchyard's streams, the dispatcher and the plugins live in, by default.
pub const DEFAULT_ACCOUNT: &str = "SWITCHYARD";
/// The system account's name in the generated configuration.
pub const SYSTEM_ACCOUNT: &str = "SYS";

/// A user name and password of a trusted user (one that bypasses the auth callout).
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Login {
    /// A login with a random 32-character password.
    pub fn generate(user: &str) -> Self {
        Self {
            user: user.to_owned(),
            password: data_encoding::BASE64URL_NOPAD.encode(&rand::random::<[u8; 24]>()),
        }
    }

    /// `nats://user:password@host:port` for a server URL `nats://host:port`.
    pub fn url(&self, server_url: &str) -> String {
        match server_url.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}:{}@{rest}", self.user, self.password),
            None => format!("nats://{}:{}@{server_url}", self.user, self.password),
        }
    }
}

/// Where nats-server listens for clients, and with which TLS: the `listen` and `tls` of the
/// generated configuration. By default `127.0.0.1:4222` without TLS: this machine only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// The host name or address to listen on (`127.0.0.1`, `0.0.0.0`, `::1`, `nats.internal`).
    pub host: String,
    /// The client port.
    pub port: u16,
    /// The server's certificate and key, if clients connect with TLS.
    pub tls: Option<TlsFiles>,
}

/// The files of the server's TLS configuration (`tls { cert_file key_file ca_file }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The certificate's private key (PEM).
    pub key: PathBuf,
    /// A CA (PEM) that client certificates chain to, if any.
    pub ca: Option<PathBuf>,
}

/// Why a listen address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    /// Not `HOST:PORT` (an IPv6 address in brackets: `[::1]:4222`).
    #[error("`{0}` is not HOST:PORT (an IPv6 address in brackets, e.g. `[::1]:4222`)")]
    Shape(String),
    /// The port is not a number from 1 to 65535.
    #[error("`{0}` does not end in a port from 1 to 65535")]
    Port(String),
    /// The host holds characters no host name or address has.
    #[error("`{0}` is not a host name or address")]
    Host(String),
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 4222,
            tls: None,
        }
    }
}

impl FromStr for Listen {
    type Err = ListenError;

    /// Reads `HOST:PORT`, or `[IPv6]:PORT`; no TLS.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let shape = || ListenError::Shape(text.to_owned());
        let (host, port) = match text.strip_prefix('[') {
            Some(rest) => {
                let (host, port) = rest.split_once("]:").ok_or_else(shape)?;
                host.parse::<std::net::Ipv6Addr>().map_err(|_| shape())?;
                (host, port)
            }
            None => text.rsplit_once(':').ok_or_else(shape)?,
        };
        if host.is_empty() || (!text.starts_with('[') && host.contains(':')) {
            return Err(shape());
        }
        let valid_host = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
        if !valid_host {
            return Err(ListenError::Host(text.to_owned()));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| ListenError::Port(text.to_owned()))?;
        Ok(Self {
            host: host.to_owned(),
            port,
            tls: None,
        })
    }
}

impl std::fmt::Display for Listen {
    /// `HOST:PORT`, an IPv6 address in brackets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Listen {
    /// Whether only this machine can connect: `localhost` or a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<IpAddr>()
                .is_ok_and(|address| address.is_loopback())
    }

    /// Whether passwords, plugin secrets and messages would cross a network in clear: the
    /// server listens beyond this machine, without TLS.
    pub fn is_clear_on_the_network(&self) -> bool {
        !self.is_loopback() && self.tls.is_none()
    }

    /// The URL a client on this machine connects to (`127.0.0.1` for an unspecified address
    /// such as `0.0.0.0`).
    pub fn client_url(&self) -> String {
        let unspecified = self
            .host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_unspecified());
        let host = if unspecified {
            Self {
                host: "127.0.0.1".to_owned(),
                ..self.clone()
            }
            .to_string()
        } else {
            self.to_string()
        };
        let scheme = if self.tls.is_some() { "tls" } else { "nats" };
        format!("{scheme}://{host}")
    }
}

/// `text` as a quoted string of the server's configuration.
fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Everything the server configuration of a secured deployment names: the issuer key the
/// auth callout signs with, the curve key its requests are sealed to, the account plugins are
/// placed in, the three trusted logins: the dispatcher (and the auth callout service), an
/// administrator (the CLI), and a system-account user with which the control plane
/// disconnects stale plugin connections; and where the server listens.
#[derive(Debug, Clone)]
pub struct AuthSetup {
    /// The account key whose public half the server trusts for the callout's JWTs. Keep the
    /// seed secret: whoever holds it can grant any rights in the account.
    pub issuer: KeyPair,
    /// The auth service's curve key: the server seals each authorization request (with the
    /// plugin's secret in it) to its public half, so only the auth service can read it. Keep
    /// the seed secret.
    pub xkey: XKey,
    /// The account plugins, the dispatcher and the streams live in.
    pub account: String,
    /// The dispatcher's login (full rights in the account, bypasses the callout).
    pub dispatcher: Login,
    /// An operator's login for the CLI (full rights in the account, bypasses the callout).
    pub admin: Login,
    /// A system-account login, for listing and disconnecting connections.
    pub system: Login,
    /// Where the server listens for clients.
    pub listen: Listen,
}

impl AuthSetup {
    /// A fresh setup: a new issuer key, a new xkey, random passwords, listening on
    /// `127.0.0.1:4222`.
    pub fn generate() -> Self {
        Self {
            issuer: KeyPair::new_account(),
            xkey: XKey::new(),
            account: DEFAULT_ACCOUNT.to_owned(),
            dispatcher: Login::generate("dispatcher"),
            admin: Login::generate("admin"),
            system: Login::generate("system"),
            listen: Listen::default(),
        }
    }

    /// The three trusted logins: dispatcher, administrator, system.
    pub fn logins(&self) -> [&Login; 3] {
        [&self.dispatcher, &self.admin, &self.system]
    }

    /// The xkey's seed, for the auth service (`--xkey-seed-file`).
    ///
    /// # Panics
    /// Never: the xkey is generated or read from a seed, so it holds one.
    pub fn xkey_seed(&self) -> String {
        self.xkey.seed().expect("the xkey holds its seed")
    }

    /// The issuer's seed, for the dispatcher (`--auth-issuer-seed-file`).
    ///
    /// # Panics
    /// Never: the issuer is generated or read from a seed, so it holds one.
    pub fn issuer_seed(&self) -> String {
        self.issuer.seed().expect("the issuer key holds its seed")
    }

    /// The nats-server configuration (non-operator mode): where it listens (and its TLS), the
    /// account with JetStream, the trusted users, the system account, and the auth callout
    /// for everyone else, its requests sealed to the xkey. Include it from the server's main
    /// configuration file, or use it as that file.
    pub fn server_config(&self) -> String {
        let AuthSetup {
            account,
            dispatcher,
            admin,
            system,
            listen,
            ..
        } = self;
        let mut network = format!("listen: {}\n", quoted(&listen.to_string()));
        if let Some(tls) = &listen.tls {
            network.push_str("tls {\n");
            let _ = writeln!(
                network,
                "  cert_file: {}",
                quoted(&tls.cert.display().to_string())
            );
            let _ = writeln!(
                network,
                "  key_file: {}",
                quoted(&tls.key.display().to_string())
            );
            if let Some(ca) = &tls.ca {
                let _ = writeln!(
                    network,
                    "  # Client certificates chain to it; add `verify: true` to require one."
                );
                let _ = writeln!(network, "  ca_file: {}", quoted(&ca.display().to_string()));
            }
            network.push_str("}\n");
        } else if !listen.is_loopback() {
            network.push_str(
                "# No TLS: passwords, plugin secrets and messages cross the network in clear.\n",
            );
        }
        format!(
            r#"# Switchyard: broker-enforced plugin rights (docs/security.md).
# Plugins are authorized by the auth callout (`switchyard auth serve`); the users below
# bypass it and have full rights in their account. Keep this file readable by the server only.
{network}accounts {{
  {account} {{
    jetstream: enabled
    users: [
      {{ user: "{du}", password: "{dp}" }}
      {{ user: "{au}", password: "{ap}" }}
    ]
  }}
  {SYSTEM_ACCOUNT} {{
    users: [
      {{ user: "{su}", password: "{sp}" }}
    ]
  }}
}}
system_account: {SYSTEM_ACCOUNT}
# Durability (README, "Durability"): every JetStream write reaches the disk before it is
# acknowledged. nats-server's default syncs every 2 minutes, so a power loss could lose events
# a publisher was told are stored. Give the store a directory of its own (`store_dir` here or
# `-sd`): without one, nats-server uses the system's temporary directory.
jetstream {{
  sync_interval: always
}}
authorization {{
  # Seconds a client has to authenticate, the callout's round trip included.
  timeout: 5
  auth_callout {{
    issuer: "{issuer}"
    account: {account}
    auth_users: [ "{du}", "{au}", "{su}" ]
    # Requests (with plugin secrets in them) are sealed to this key; only the auth service
    # holds its seed.
    xkey: "{xkey}"
  }}
}}
"#,
            du = dispatcher.user,
            dp = dispatcher.password,
            au = admin.user,
            ap = admin.password,
            su = system.user,
            sp = system.password,
            issuer = self.issuer.public_key(),
            xkey = self.xkey.public_key(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_names_the_issuer_and_the_trusted_users() {
        let setup = AuthSetup::generate();
        let config = setup.server_config();
        assert!(config.contains(&format!("issuer: \"{}\"", setup.issuer.public_key())));
        assert!(config.contains(&format!("    xkey: \"{}\"\n", setup.xkey.public_key())));
        assert!(setup.xkey.public_key().starts_with('X'));
        assert!(setup.xkey_seed().starts_with("SX"));
        assert!(!config.contains(&setup.xkey_seed()));
        assert!(!config.contains(&setup.issuer_seed()));
        // No plugin may take a trusted login's user name.
        for login in setup.logins() {
            let id = switchyard_schemas::PluginId::new(login.user.as_str()).unwrap();
            assert!(id.is_reserved(), "{}", login.user);
        }
        assert!(config.contains("auth_users: [ \"dispatcher\", \"admin\", \"system\" ]"));
        // Acknowledged events are on disk (README, "Durability").
        assert!(config.contains("jetstream {\n  sync_interval: always\n}"));
        assert!(config.contains(&setup.dispatcher.password));
        assert!(setup.issuer_seed().starts_with("SA"));
        assert!(!format!("{:?}", setup.admin).contains(&setup.admin.password));
        assert_eq!(
            setup.admin.url("nats://127.0.0.1:4222"),
            format!("nats://admin:{}@127.0.0.1:4222", setup.admin.password)
        );
    }

    #[test]
    fn the_server_listens_on_this_machine_only_by_default() {
        let setup = AuthSetup::generate();
        assert_eq!(setup.listen, Listen::default());
        let config = setup.server_config();
        assert!(
            config.contains("\nlisten: \"127.0.0.1:4222\"\n"),
            "{config}"
        );
        assert!(!config.contains("tls"), "{config}");
        assert!(!config.contains("in clear"), "{config}");
        assert!(setup.listen.is_loopback());
        assert!(!setup.listen.is_clear_on_the_network());
        assert_eq!(setup.listen.client_url(), "nats://127.0.0.1:4222");
    }

    #[test]
    fn a_server_reachable_from_the_network_without_tls_says_so() {
        let mut setup = AuthSetup::generate();
        setup.listen = "0.0.0.0:4333".parse().unwrap();
        let config = setup.server_config();
        assert!(config.contains("\nlisten: \"0.0.0.0:4333\"\n# No TLS: passwords, plugin secrets and messages cross the network in clear.\n"), "{config}");
        assert!(setup.listen.is_clear_on_the_network());
        assert_eq!(setup.listen.client_url(), "nats://127.0.0.1:4333");
    }

    #[test]
    fn tls_files_make_a_tls_block() {
        let mut setup = AuthSetup::generate();
        setup.listen = Listen {
            tls: Some(TlsFiles {
                cert: "/etc/nats/server.pem".into(),
                key: "/etc/nats/server-key.pem".into(),
                ca: Some("/etc/nats/ca \"x\".pem".into()),
            }),
            ..Listen::from_str("nats.internal:4222").unwrap()
        };
        assert!(!setup.listen.is_clear_on_the_network());
        assert_eq!(setup.listen.client_url(), "tls://nats.internal:4222");
        let config = setup.server_config();
        let expected = r#"
listen: "nats.internal:4222"
tls {
  cert_file: "/etc/nats/server.pem"
  key_file: "/etc/nats/server-key.pem"
  # Client certificates chain to it; add `verify: true` to require one.
  ca_file: "/etc/nats/ca \"x\".pem"
}
accounts {
"#;
        assert!(config.contains(expected), "{config}");
        assert!(!config.contains("in clear"), "{config}");

        setup.listen.tls = Some(TlsFiles {
            cert: "c.pem".into(),
            key: "k.pem".into(),
            ca: None,
        });
        let config = setup.server_config();
        assert!(
            config.contains("tls {\n  cert_file: \"c.pem\"\n  key_file: \"k.pem\"\n}\n"),
            "{config}"
        );
        assert!(!config.contains("ca_file"), "{config}");
    }

    #[test]
    fn listen_addresses_are_read_and_checked() {
        let listen = |text: &str| text.parse::<Listen>();
        assert_eq!(listen("127.0.0.1:4222").unwrap(), Listen::default());
        let v6 = listen("[::1]:4223").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 4223));
        assert!(v6.is_loopback());
        assert_eq!(v6.to_string(), "[::1]:4223");
        assert!(listen("localhost:1").unwrap().is_loopback());
        assert!(listen("127.1.2.3:1").unwrap().is_loopback());
        for remote in [
            "0.0.0.0:4222",
            "[::]:4222",
            "10.0.0.5:4222",
            "nats.internal:4222",
        ] {
            assert!(!listen(remote).unwrap().is_loopback(), "{remote}");
        }
        for (bad, error) in [
            ("4222", ListenError::Shape("4222".into())),
            (":4222", ListenError::Shape(":4222".into())),
            ("::1:4222", ListenError::Shape("::1:4222".into())),
            ("[nope]:4222", ListenError::Shape("[nope]:4222".into())),
            ("[::1]4222", ListenError::Shape("[::1]4222".into())),
            ("host:0", ListenError::Port("host:0".into())),
            ("host:65536", ListenError::Port("host:65536".into())),
            ("host:", ListenError::Port("host:".into())),
            ("ho\"st:1", ListenError::Host("ho\"st:1".into())),
            ("a b:1", ListenError::Host("a b:1".into())),
        ] {
            assert_eq!(listen(bad), Err(error), "{bad}");
        }
    }
}
