//! A Switchyard whose broker enforces plugin rights: nats-server in auth-callout mode, the
//! streams, the registry, the credentials and the auth service (with its system-account
//! connection), optionally a dispatcher; plus raw plugin connections that record what the
//! server refused them. By default the server seals authorization requests to the auth
//! service's xkey, as `switchyard auth init` configures it ([`Sealing`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{ConnectError, Event as NatsEvent, ServerError};
use switchyard_bus::Bus;
use switchyard_control::auth::{
    AuthConfig, AuthService, AuthSetup, CredentialStore, PluginSecret, XKey,
};
use switchyard_control::registry::{Registration, Registry, TenantScope};
use switchyard_dispatcher::{Dispatcher, DispatcherConfig};
use switchyard_schemas::{Manifest, Namespace, PluginId};
use tokio::sync::Notify;

use crate::{wait_until, TestConfig, TestServer};

/// Whether authorization requests are sealed (nats-server's `auth_callout { xkey }`): whether
/// the server's configuration names the xkey, and whether the auth service holds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sealing {
    /// Both: the server seals, the auth service opens (what `switchyard auth init` sets up).
    #[default]
    Both,
    /// The server seals, but the auth service has no xkey: it can authorize no one.
    ServerOnly,
    /// The auth service has the xkey, but the server does not seal: the service refuses the
    /// plaintext requests, so it authorizes no one either.
    ServiceOnly,
    /// Neither: requests, plugin secrets in them, travel in plaintext.
    Neither,
}

impl Sealing {
    fn server_seals(self) -> bool {
        matches!(self, Sealing::Both | Sealing::ServerOnly)
    }

    fn service_opens(self) -> bool {
        matches!(self, Sealing::Both | Sealing::ServiceOnly)
    }
}

/// A nats-server in auth-callout mode with Switchyard's control plane running.
pub struct SecuredSwitchyard {
    /// The keys and logins the server's configuration names.
    pub setup: AuthSetup,
    /// A trusted (administrator) connection: full rights in the account, the observer that
    /// sees everything.
    pub admin: async_nats::Client,
    /// The bus, on the administrator's connection.
    pub bus: Bus,
    /// The registry.
    pub registry: Registry,
    /// The plugin credentials.
    pub credentials: CredentialStore,
    /// The auth callout service.
    pub auth: Option<AuthService>,
    /// The dispatcher, if started.
    pub dispatcher: Option<Dispatcher>,
    // Last, so that the clients above go before the server.
    server: TestServer,
}

impl SecuredSwitchyard {
    /// Starts the server with a freshly generated [`AuthSetup`], provisions the streams, and
    /// starts the auth service (sweeping every second, quotas checked every second with the
    /// default cool-down, JWTs of the default lifetime), requests sealed to its xkey. No
    /// dispatcher.
    ///
    /// # Panics
    /// When anything fails to start.
    pub async fn start() -> Self {
        Self::start_with(Sealing::Both).await
    }

    /// As [`start`](Self::start), with requests sealed or not as `sealing` says.
    ///
    /// # Panics
    /// When anything fails to start.
    pub async fn start_with(sealing: Sealing) -> Self {
        // Boxed: the whole start-up is a large future.
        Box::pin(Self::launch(sealing)).await
    }

    async fn launch(sealing: Sealing) -> Self {
        let setup = AuthSetup::generate();
        let config = if sealing.server_seals() {
            setup.server_config()
        } else {
            let xkey = format!("xkey: \"{}\"", setup.xkey.public_key());
            let config = setup.server_config();
            assert!(config.contains(&xkey), "the configuration names the xkey");
            config
                .lines()
                .filter(|line| !line.contains(&xkey))
                .map(|line| format!("{line}\n"))
                .collect()
        };
        let server = TestServer::with_config_refusing_anonymous(TestConfig::text(config)).await;
        let admin = connect_trusted(&setup.admin.url(&server.url())).await;
        let js = crate::jetstream_context(admin.clone());
        wait_until(Duration::from_secs(10), || {
            let js = js.clone();
            async move { js.query_account().await.is_ok() }
        })
        .await
        .expect("JetStream answers the administrator");
        let bus = Bus::from_client(admin.clone());
        bus.provision().await.expect("streams provision");
        let registry = Registry::open(bus.jetstream(), bus.namespace())
            .await
            .expect("registry opens");
        let credentials = CredentialStore::open(bus.jetstream(), bus.namespace())
            .await
            .expect("credentials open");
        let mut secured = Self {
            setup,
            admin,
            bus,
            registry,
            credentials,
            auth: None,
            dispatcher: None,
            server,
        };
        let xkey = sealing.service_opens().then(|| secured.setup.xkey.clone());
        secured.restart_auth(xkey).await;
        secured
    }

    /// Stops the auth service, if one runs, and starts a new one holding `xkey` (none: it
    /// cannot open sealed requests), on its own trusted and system connections.
    ///
    /// # Panics
    /// When it does not start.
    pub async fn restart_auth(&mut self, xkey: Option<XKey>) {
        self.restart_auth_configured(xkey, |_| {}).await;
    }

    /// As [`start`](Self::start), with plugin JWTs valid for `ttl`.
    ///
    /// # Panics
    /// When anything fails to start.
    pub async fn with_ttl(ttl: Duration) -> Self {
        // Boxed: the whole start-up is a large future.
        Box::pin(async move {
            let mut secured = Self::start().await;
            let xkey = Some(secured.setup.xkey.clone());
            secured
                .restart_auth_configured(xkey, |config| config.ttl = ttl)
                .await;
            secured
        })
        .await
    }

    /// As [`restart_auth`](Self::restart_auth), with the configuration changed by
    /// `configure` last.
    ///
    /// # Panics
    /// When it does not start.
    pub async fn restart_auth_configured(
        &mut self,
        xkey: Option<XKey>,
        configure: impl FnOnce(&mut AuthConfig),
    ) {
        self.launch_auth(xkey, true, configure).await;
    }

    /// As [`restart_auth`](Self::restart_auth), but without a system-account connection: the
    /// auth service authorizes plugins, but neither disconnects stale connections nor checks
    /// quotas, which shows what nats-server does by itself.
    ///
    /// # Panics
    /// When it does not start.
    pub async fn restart_auth_without_system(&mut self, xkey: Option<XKey>) {
        self.launch_auth(xkey, false, |_| {}).await;
    }

    async fn launch_auth(
        &mut self,
        xkey: Option<XKey>,
        with_system: bool,
        configure: impl FnOnce(&mut AuthConfig),
    ) {
        if let Some(auth) = self.auth.take() {
            auth.shutdown().await;
        }
        let dispatcher_client =
            connect_trusted(&self.setup.dispatcher.url(&self.server.url())).await;
        let system = if with_system {
            Some(connect_trusted(&self.setup.system.url(&self.server.url())).await)
        } else {
            None
        };
        let mut config = AuthConfig::new(&self.setup.issuer_seed()).expect("issuer seed");
        config.sweep_interval = Duration::from_secs(1);
        config.xkey = xkey.map(Arc::new);
        configure(&mut config);
        // Boxed: starting the auth service is a large future.
        let auth = Box::pin(AuthService::start(dispatcher_client, system, config))
            .await
            .expect("auth service starts");
        self.auth = Some(auth);
    }

    /// Starts a dispatcher on its own trusted connection.
    ///
    /// # Panics
    /// When it does not start.
    pub async fn start_dispatcher(&mut self) {
        let client = connect_trusted(&self.setup.dispatcher.url(&self.server.url())).await;
        let dispatcher = Dispatcher::start(client, DispatcherConfig::default())
            .await
            .expect("dispatcher starts");
        self.dispatcher = Some(dispatcher);
    }

    /// The server's URL (no credentials in it).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The server, e.g. for its log.
    pub fn server(&self) -> &TestServer {
        &self.server
    }

    /// The namespace.
    pub fn namespace(&self) -> &Namespace {
        self.bus.namespace()
    }

    /// Registers `manifest` for `tenants` and issues the plugin's credential.
    ///
    /// # Panics
    /// When either write fails.
    pub async fn register(&self, manifest: Manifest, tenants: TenantScope) -> PluginSecret {
        let plugin = manifest.plugin.id.clone();
        self.registry
            .put(&Registration::new(manifest, tenants))
            .await
            .expect("registration stored");
        self.credentials
            .issue(&plugin)
            .await
            .expect("credential issued")
    }

    /// Replaces a registration (a grant, a revocation, disabling), keeping the credential.
    ///
    /// # Panics
    /// When the write fails.
    pub async fn update(&self, registration: &Registration) {
        self.registry
            .put(registration)
            .await
            .expect("registration stored");
    }

    /// The current registration of `plugin`.
    ///
    /// # Panics
    /// When it is not registered.
    pub async fn registration(&self, plugin: &str) -> Registration {
        self.registry
            .get(&PluginId::new(plugin).expect("plugin id"))
            .await
            .expect("registry read")
            .expect("plugin registered")
    }

    /// Connects a *raw* async-nats client as `plugin` with `secret`, the way any plugin
    /// process could (no SDK): its inbox prefix is the plugin's own, and every error the
    /// server sends it is recorded.
    ///
    /// # Errors
    /// The connect error when the server refuses it.
    pub async fn connect_plugin(
        &self,
        plugin: &str,
        secret: &str,
    ) -> Result<RawPlugin, ConnectError> {
        let inbox = self
            .namespace()
            .plugin_inbox_prefix(&PluginId::new(plugin).expect("plugin id"));
        self.connect_raw(plugin, secret, inbox, format!("raw-{plugin}"))
            .await
    }

    /// A raw client logged in as `user` with `secret`, inboxes under `inbox`, recording every
    /// error and connection event the server sends it.
    async fn connect_raw(
        &self,
        user: &str,
        secret: &str,
        inbox: String,
        name: String,
    ) -> Result<RawPlugin, ConnectError> {
        let events = ServerErrors::default();
        let recorder = events.clone();
        let client =
            async_nats::ConnectOptions::with_user_and_password(user.to_owned(), secret.to_owned())
                .name(name)
                .custom_inbox_prefix(inbox)
                .event_callback(move |event| {
                    recorder.record(&event);
                    async {}
                })
                .connect(self.url())
                .await?;
        Ok(RawPlugin { client, events })
    }
}

impl SecuredSwitchyard {
    /// Connects a *raw* async-nats client as the service login `service` with `secret`: user
    /// `service:{service}`, the service's own inbox prefix, every server error recorded.
    ///
    /// # Errors
    /// The connect error when the server refuses it.
    pub async fn connect_service(
        &self,
        service: &str,
        secret: &str,
    ) -> Result<RawPlugin, ConnectError> {
        let inbox = self
            .namespace()
            .service_inbox_prefix(&switchyard_schemas::ServiceName::new(service).expect("name"));
        self.connect_raw(
            &format!("service:{service}"),
            secret,
            inbox,
            format!("raw-service-{service}"),
        )
        .await
    }
}

/// A raw plugin (or service) connection and what the server told it.
pub struct RawPlugin {
    /// The connection.
    pub client: async_nats::Client,
    /// The errors and connection events the server sent it.
    pub events: ServerErrors,
}

/// Server errors and connection events seen by a client, in order.
#[derive(Clone, Default)]
pub struct ServerErrors {
    seen: Arc<Mutex<Vec<String>>>,
    changed: Arc<Notify>,
}

impl ServerErrors {
    fn record(&self, event: &NatsEvent) {
        let text = match event {
            NatsEvent::ServerError(ServerError::Other(text)) => text.clone(),
            NatsEvent::Disconnected => "disconnected".to_owned(),
            NatsEvent::Connected => "connected".to_owned(),
            // Refused at connect, or at a reconnect (a client error then).
            other
                if other
                    .to_string()
                    .to_lowercase()
                    .contains("authorization violation") =>
            {
                "Authorization Violation".to_owned()
            }
            other => other.to_string(),
        };
        self.seen.lock().expect("not poisoned").push(text);
        self.changed.notify_waiters();
    }

    /// Everything seen so far.
    pub fn all(&self) -> Vec<String> {
        self.seen.lock().expect("not poisoned").clone()
    }

    /// Whether a permissions violation naming `subject` was seen.
    pub fn violated(&self, subject: &str) -> bool {
        self.violations(subject) > 0
    }

    /// How many permissions violations naming `subject` were seen.
    pub fn violations(&self, subject: &str) -> usize {
        let quoted = format!("\"{subject}\"");
        self.all()
            .iter()
            .filter(|e| e.starts_with("Permissions Violation") && e.contains(&quoted))
            .count()
    }

    /// How many times `text` was seen.
    pub fn count(&self, text: &str) -> usize {
        self.all().iter().filter(|e| *e == text).count()
    }

    /// Waits until a permissions violation naming `subject` is seen.
    ///
    /// # Errors
    /// [`crate::TimedOut`] when none is seen in time.
    pub async fn wait_for_violation(
        &self,
        subject: &str,
        timeout: Duration,
    ) -> Result<(), crate::TimedOut> {
        wait_until(timeout, || async { self.violated(subject) }).await
    }
}

/// Waits until the server has processed everything sent before on `client`: it sends a
/// message to itself (in its own inbox) and waits for it. (async-nats's `flush` only waits
/// until the bytes are written to the socket, so it cannot order one connection's commands
/// against another's.)
///
/// # Panics
/// When the message does not come back within 10 s.
pub async fn round_trip(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .expect("subscribe to the inbox");
    client
        .publish(inbox, bytes::Bytes::new())
        .await
        .expect("publish to the inbox");
    tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut echo))
        .await
        .expect("the server echoes within 10 s")
        .expect("the subscription is open");
}

async fn connect_trusted(url: &str) -> async_nats::Client {
    switchyard_bus::ConnectOptions::new(url)
        .connect()
        .await
        .unwrap_or_else(|error| panic!("a trusted user connects: {error}"))
}

/// A plugin manifest subscribed to `order.*`, granted to send on `send` and receive from
/// `receive`.
///
/// # Panics
/// When the names do not make a valid manifest.
pub fn channel_manifest(plugin: &str, send: &[&str], receive: &[&str]) -> Manifest {
    let list = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Manifest::from_toml_str(&format!(
        "[plugin]\nid = \"{plugin}\"\nversion = \"1.0.0\"\ncore = \"*\"\n\
         [[subscriptions]]\nname = \"orders\"\nevents = [\"order.*\"]\n\
         [channels]\nsend = [{}]\nreceive = [{}]\n",
        list(send),
        list(receive)
    ))
    .expect("valid manifest")
}
