//! What an operator writes to turn broker-enforced rights on: the nats-server configuration
//! and the keys and logins it names.

use nkeys::KeyPair;

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

/// Everything the server configuration of a secured deployment names: the issuer key the
/// auth callout signs with, the account plugins are placed in, and the three trusted logins:
/// the dispatcher (and the auth callout service), an administrator (the CLI), and a
/// system-account user with which the control plane disconnects stale plugin connections.
#[derive(Debug, Clone)]
pub struct AuthSetup {
    /// The account key whose public half the server trusts for the callout's JWTs. Keep the
    /// seed secret: whoever holds it can grant any rights in the account.
    pub issuer: KeyPair,
    /// The account plugins, the dispatcher and the streams live in.
    pub account: String,
    /// The dispatcher's login (full rights in the account, bypasses the callout).
    pub dispatcher: Login,
    /// An operator's login for the CLI (full rights in the account, bypasses the callout).
    pub admin: Login,
    /// A system-account login, for listing and disconnecting connections.
    pub system: Login,
}

impl AuthSetup {
    /// A fresh setup: a new issuer key and random passwords.
    pub fn generate() -> Self {
        Self {
            issuer: KeyPair::new_account(),
            account: DEFAULT_ACCOUNT.to_owned(),
            dispatcher: Login::generate("dispatcher"),
            admin: Login::generate("admin"),
            system: Login::generate("system"),
        }
    }

    /// The issuer's seed, for the dispatcher (`--auth-issuer-seed-file`).
    ///
    /// # Panics
    /// Never: the issuer is generated or read from a seed, so it holds one.
    pub fn issuer_seed(&self) -> String {
        self.issuer.seed().expect("the issuer key holds its seed")
    }

    /// The nats-server configuration (non-operator mode): the account with JetStream, the
    /// trusted users, the system account, and the auth callout for everyone else. Include it
    /// from the server's main configuration file, or use it as that file.
    pub fn server_config(&self) -> String {
        let AuthSetup {
            account,
            dispatcher,
            admin,
            system,
            ..
        } = self;
        format!(
            r#"# Switchyard: broker-enforced plugin rights (docs/security.md).
# Plugins are authorized by the auth callout (`switchyard auth serve`); the users below
# bypass it and have full rights in their account. Keep this file readable by the server only.
accounts {{
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
authorization {{
  # Seconds a client has to authenticate, the callout's round trip included.
  timeout: 5
  auth_callout {{
    issuer: "{issuer}"
    account: {account}
    auth_users: [ "{du}", "{au}", "{su}" ]
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
        assert!(config.contains("auth_users: [ \"dispatcher\", \"admin\", \"system\" ]"));
        assert!(config.contains(&setup.dispatcher.password));
        assert!(setup.issuer_seed().starts_with("SA"));
        assert!(!format!("{:?}", setup.admin).contains(&setup.admin.password));
        assert_eq!(
            setup.admin.url("nats://127.0.0.1:4222"),
            format!("nats://admin:{}@127.0.0.1:4222", setup.admin.password)
        );
    }
}
