//! How a worker connects: where NATS is, and who the worker is.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use switchyard_schemas::Namespace;
use tokio::sync::mpsc;

use crate::channels::Violations;
use crate::plugin::{Plugin, PluginError};
use crate::worker::env;

/// Where a worker connects and as whom. [`WorkerSettings::from_env`] reads them as
/// [`Plugin::run`] does.
#[derive(Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// The NATS server URL(s), comma-separated.
    pub url: String,
    /// A NATS credentials file, if the server needs one (operator-mode deployments).
    pub creds: Option<PathBuf>,
    /// The plugin's secret, issued by the control plane (`switchyard plugins credentials`):
    /// the worker logs in with its plugin id as user name and this as password. Needed when
    /// the broker enforces rights (`docs/security.md`).
    pub token: Option<String>,
    /// The deployment's namespace.
    pub namespace: Namespace,
}

impl std::fmt::Debug for WorkerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSettings")
            .field("url", &without_passwords(&self.url))
            .field("creds", &self.creds)
            .field("token", &self.token.as_ref().map(|_| ".."))
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl WorkerSettings {
    /// Settings for the server at `url`, default namespace, no credentials.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            creds: None,
            token: None,
            namespace: Namespace::default(),
        }
    }

    /// Reads `SWITCHYARD_NATS_URL` (default `nats://127.0.0.1:4222`),
    /// `SWITCHYARD_NATS_CREDS`, `SWITCHYARD_PLUGIN_TOKEN` or `SWITCHYARD_PLUGIN_TOKEN_FILE` (a
    /// file holding the token), and `SWITCHYARD_PREFIX`.
    ///
    /// # Errors
    /// [`PluginError::Nats`] when `SWITCHYARD_PREFIX` is not a valid prefix;
    /// [`PluginError::Settings`] when both token variables are set, or the token file cannot be
    /// read or is empty.
    pub fn from_env() -> Result<Self, PluginError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables `lookup` gives.
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, PluginError> {
        let namespace = match lookup(env::PREFIX) {
            Some(prefix) => Namespace::new(prefix).map_err(|e| PluginError::Nats {
                action: "read SWITCHYARD_PREFIX",
                reason: e.to_string(),
            })?,
            None => Namespace::default(),
        };
        let set = |name| lookup(name).filter(|value| !value.is_empty());
        let token = match (set(env::TOKEN), set(env::TOKEN_FILE)) {
            (Some(_), Some(_)) => {
                return Err(PluginError::Settings {
                    variable: env::TOKEN_FILE,
                    reason: format!("{} is set too; set one of them", env::TOKEN),
                })
            }
            (Some(token), None) => Some(token),
            (None, Some(path)) => Some(read_token_file(Path::new(&path))?),
            (None, None) => None,
        };
        Ok(Self {
            url: lookup(env::URL).unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned()),
            creds: lookup(env::CREDS).map(PathBuf::from),
            token,
            namespace,
        })
    }
}

/// The token in `path`, without surrounding whitespace.
fn read_token_file(path: &Path) -> Result<String, PluginError> {
    let error = |reason: String| PluginError::Settings {
        variable: env::TOKEN_FILE,
        reason: format!("`{}`: {reason}", path.display()),
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read: {e}")))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(error("the file is empty".to_owned()));
    }
    Ok(token.to_owned())
}

/// The URLs with any `user:password@` replaced by `***@`, for logs.
fn without_passwords(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let (scheme, rest) = url.split_once("://").map_or(("", url), |(s, r)| (s, r));
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let host = authority
                .rsplit_once('@')
                .map_or(authority.to_owned(), |(_, host)| format!("***@{host}"));
            let scheme = if scheme.is_empty() {
                String::new()
            } else {
                format!("{scheme}://")
            };
            format!("{scheme}{host}{path}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Plugin {
    /// Connects as `settings` say and serves deliveries and channel messages until `shutdown`
    /// completes, then drains (see [`Plugin::run`], which is this with the environment's
    /// settings and SIGTERM/Ctrl-C).
    ///
    /// The connection uses the plugin's own inbox prefix, and reports every permission the
    /// server refuses: in the log, and as [`ChannelError::PermissionDenied`] from the channel
    /// send that caused it. A plugin refused at connect (unknown, removed, disabled, wrong
    /// secret) keeps trying, and says so in the log.
    ///
    /// [`ChannelError::PermissionDenied`]: crate::ChannelError::PermissionDenied
    ///
    /// # Errors
    /// [`PluginError::Setup`] when the handlers do not fit the manifest (checked before
    /// connecting), [`PluginError::Nats`] when the credentials file cannot be read or NATS
    /// refuses the subscriptions.
    pub async fn run_with(
        mut self,
        settings: WorkerSettings,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), PluginError> {
        self.check()?;
        let plugin = self.manifest.plugin.id.clone();
        let violations = Arc::new(Violations::default());
        let (reconnected, reconnects) = mpsc::unbounded_channel();
        let observed = Arc::clone(&violations);
        let who = plugin.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("switchyard-plugin-{plugin}"))
            .custom_inbox_prefix(settings.namespace.plugin_inbox_prefix(&plugin))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                // Recorded here, not in the future: by the time a send checks, it is there.
                observed.observe(&who, &event);
                if is_refused_login(&event) {
                    tracing::warn!(plugin = %who, %event,
                        "NATS refused this worker: is the plugin registered and enabled, and its token current?");
                }
                let reconnected = reconnected.clone();
                async move {
                    if matches!(event, async_nats::Event::Connected) {
                        let _ = reconnected.send(());
                    }
                }
            });
        if let Some(creds) = &settings.creds {
            options = options
                .credentials_file(creds)
                .await
                .map_err(|e| PluginError::Nats {
                    action: "read the credentials file",
                    reason: format!("{}: {e}", creds.display()),
                })?;
        }
        if let Some(token) = &settings.token {
            options = options.user_and_password(plugin.to_string(), token.clone());
        }
        // Each entry parsed on its own, so that a list of servers works and a bad entry is
        // named (async-nats would read the whole string as one address).
        let servers =
            switchyard_bus::server_addrs(&settings.url).map_err(|e| PluginError::Nats {
                action: "read the NATS server URL(s)",
                reason: e.to_string(),
            })?;
        tracing::info!(%plugin, url = %without_passwords(&settings.url), "connecting");
        let client = options
            .connect(servers)
            .await
            .map_err(|e| PluginError::Nats {
                action: "connect",
                reason: e.to_string(),
            })?;
        self.violations = Some(violations);
        self.serve(client, settings.namespace, shutdown, Some(reconnects), None)
            .await
    }
}

fn is_refused_login(event: &async_nats::Event) -> bool {
    match event {
        async_nats::Event::ServerError(async_nats::ServerError::AuthorizationViolation) => true,
        async_nats::Event::ClientError(error) => error
            .to_string()
            .to_lowercase()
            .contains("authorization violation"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<WorkerSettings, PluginError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        WorkerSettings::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_token_comes_from_the_variable_or_from_a_file() {
        assert_eq!(settings(&[]).unwrap().token, None);
        assert_eq!(
            settings(&[(env::TOKEN, "s3cret")])
                .unwrap()
                .token
                .as_deref(),
            Some("s3cret")
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        let path = file.to_str().unwrap();
        assert_eq!(
            settings(&[(env::TOKEN_FILE, path)])
                .unwrap()
                .token
                .as_deref(),
            Some("s3cret")
        );
        // An empty variable counts as unset.
        assert_eq!(
            settings(&[(env::TOKEN, ""), (env::TOKEN_FILE, path)])
                .unwrap()
                .token
                .as_deref(),
            Some("s3cret")
        );
    }

    #[test]
    fn a_token_given_twice_or_an_unusable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret").unwrap();
        let path = file.to_str().unwrap();
        let both = settings(&[(env::TOKEN, "other"), (env::TOKEN_FILE, path)]).unwrap_err();
        assert!(matches!(both, PluginError::Settings { .. }), "{both}");
        assert!(!both.to_string().contains("s3cret"), "{both}");

        let missing = dir.path().join("missing");
        let error = settings(&[(env::TOKEN_FILE, missing.to_str().unwrap())]).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("SWITCHYARD_PLUGIN_TOKEN_FILE"), "{text}");
        assert!(text.contains(&missing.display().to_string()), "{text}");

        std::fs::write(&file, " \n").unwrap();
        let error = settings(&[(env::TOKEN_FILE, path)]).unwrap_err();
        assert!(error.to_string().contains("empty"), "{error}");
    }

    #[test]
    fn urls_are_logged_without_passwords() {
        assert_eq!(
            without_passwords("nats://u:p@h:4222,tls://h2:1,nats://u@h3:2/x"),
            "nats://***@h:4222,tls://h2:1,nats://***@h3:2/x"
        );
        assert_eq!(without_passwords("h:4222"), "h:4222");
        let debug = format!(
            "{:?}",
            WorkerSettings {
                token: Some("s3cret".into()),
                ..WorkerSettings::new("nats://u:pw@h:1")
            }
        );
        assert!(
            !debug.contains("s3cret") && !debug.contains("pw"),
            "{debug}"
        );
    }
}
