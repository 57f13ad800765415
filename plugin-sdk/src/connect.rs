//! How a worker connects: where NATS is, and who the worker is.

use std::future::Future;
use std::path::PathBuf;
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
            .field("url", &self.url)
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
    /// `SWITCHYARD_NATS_CREDS`, `SWITCHYARD_PLUGIN_TOKEN` and `SWITCHYARD_PREFIX`.
    ///
    /// # Errors
    /// [`PluginError::Nats`] when `SWITCHYARD_PREFIX` is not a valid prefix.
    pub fn from_env() -> Result<Self, PluginError> {
        let namespace = match std::env::var(env::PREFIX) {
            Ok(prefix) => Namespace::new(prefix).map_err(|e| PluginError::Nats {
                action: "read SWITCHYARD_PREFIX",
                reason: e.to_string(),
            })?,
            Err(_) => Namespace::default(),
        };
        Ok(Self {
            url: std::env::var(env::URL).unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned()),
            creds: std::env::var_os(env::CREDS).map(PathBuf::from),
            token: std::env::var(env::TOKEN).ok().filter(|t| !t.is_empty()),
            namespace,
        })
    }
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
        tracing::info!(%plugin, url = %settings.url, "connecting");
        let client =
            options
                .connect(settings.url.as_str())
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
