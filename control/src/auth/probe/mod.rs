//! A broker-proven check of plugin confinement, run against a live deployment.
//!
//! [`run`] registers three throwaway plugins (with throwaway tenants and channels), connects
//! them with raw NATS clients exactly as any plugin process could, and has them try every
//! subject class and every reply trick in the [matrix](cells): publishing and subscribing on
//! events, deliveries, channels, dead letters, control subjects, the JetStream, key-value,
//! object-store and system APIs, other clients' inboxes and reply spaces, and answering onto
//! subjects they chose themselves, alone and with a colluding plugin. A full-rights
//! observer (the login the probe runs with) proves each outcome: a refusal means the message
//! truly did not arrive, not that a client said so. Cells that must work (the plugin's own
//! grants) are checked the same way, so that a probe that cannot see anything fails.
//!
//! Nothing the probe publishes is stored: every message carries `Nats-Expected-Stream` naming
//! a stream that does not exist, so a stream capturing its subject refuses it. Its plugins,
//! credentials, tenants and channels are named `probe-{nonce}-…` and removed at the end.

mod cells;

use std::time::Duration;

use async_nats::{HeaderMap, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use switchyard_schemas::{ChannelName, Manifest, Namespace, OperationName, PluginId, Tenant};

use super::credentials::CredentialStore;
use crate::registry::{Registration, Registry, TenantScope};

pub use self::cells::{Action, Cell, Expect};

/// The header every probe message carries so that no stream stores it.
const NOT_STORED: (&str, &str) = ("Nats-Expected-Stream", "switchyard-probe-stores-nothing");

/// How a probe runs.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The deployment's namespace.
    pub namespace: Namespace,
    /// How plugin connections reach the server: its URL (no user in it), TLS, timeout.
    pub plugin_connect: switchyard_bus::ConnectOptions,
    /// How long one cell waits for its positive control before it counts as failed.
    pub wait: Duration,
    /// How long to keep watching after a control-plane answer arrived, for an answer another
    /// auth service instance sent elsewhere.
    pub grace: Duration,
}

impl ProbeOptions {
    /// Options for plugin connections to `url`, waiting up to 5 s per cell.
    pub fn new(url: &str) -> Self {
        Self {
            namespace: Namespace::default(),
            plugin_connect: switchyard_bus::ConnectOptions::new(url),
            wait: Duration::from_secs(5),
            grace: Duration::from_millis(200),
        }
    }
}

/// Why a probe could not run (as opposed to a cell that failed).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The throwaway plugins could not be registered or given credentials.
    #[error("cannot set up the probe's plugins: {0}")]
    Setup(String),
    /// A throwaway plugin could not connect: rights are not enforced here, or no auth service
    /// answers.
    #[error("probe plugin `{plugin}` cannot connect: {reason} (is `switchyard auth serve` running, and is this the deployment's server?)")]
    Connect {
        /// The plugin.
        plugin: String,
        /// What the server or client said.
        reason: String,
    },
    /// The observer's connection failed.
    #[error("the observer connection failed: {0}")]
    Observer(String),
}

/// The outcome of one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellResult {
    /// What was tried.
    pub cell: Cell,
    /// Whether the outcome was the expected one.
    pub passed: bool,
    /// What was seen, in words.
    pub seen: String,
}

/// Everything a probe found.
#[derive(Debug, Clone, Default)]
pub struct ProbeReport {
    /// Each cell, in the order tried.
    pub results: Vec<CellResult>,
}

impl ProbeReport {
    /// How many cells passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
    }

    /// How many cells failed.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// The failed cells.
    pub fn failures(&self) -> impl Iterator<Item = &CellResult> {
        self.results.iter().filter(|r| !r.passed)
    }
}

/// The names of one probe run's throwaway plugins, tenants and channels.
#[derive(Debug, Clone)]
pub struct Cast {
    /// The namespace.
    pub ns: Namespace,
    /// Tenant of `a` and `b`.
    pub t1: Tenant,
    /// Tenant of `c` only.
    pub t2: Tenant,
    /// Sent and received by `a`, received by `b`, sent and received by `c`.
    pub c1: ChannelName,
    /// Sent by `b`, received by `c`.
    pub c2: ChannelName,
    /// An operation of `a` that only `b` may call.
    pub op: OperationName,
    /// Sends and receives `c1`, for `t1`.
    pub a: PluginId,
    /// Receives `c1` and sends `c2`, for `t1`: `a`'s would-be accomplice.
    pub b: PluginId,
    /// Sends and receives `c1`, receives `c2`, for `t2`: the other tenant.
    pub c: PluginId,
    /// A token unique to this run, for subjects outside Switchyard's namespace.
    pub nonce: String,
}

impl Cast {
    fn new(ns: &Namespace) -> Self {
        let nonce = format!("{:08x}", rand::random::<u32>());
        let name = |suffix: &str| format!("probe-{nonce}-{suffix}");
        Self {
            ns: ns.clone(),
            t1: Tenant::new(name("t1")).expect("a valid token"),
            t2: Tenant::new(name("t2")).expect("a valid token"),
            c1: ChannelName::new(name("c1")).expect("a valid token"),
            c2: ChannelName::new(name("c2")).expect("a valid token"),
            op: OperationName::new(name("op")).expect("a valid token"),
            a: PluginId::new(name("a")).expect("a valid token"),
            b: PluginId::new(name("b")).expect("a valid token"),
            c: PluginId::new(name("c")).expect("a valid token"),
            nonce,
        }
    }

    fn plugins(&self) -> [&PluginId; 3] {
        [&self.a, &self.b, &self.c]
    }

    fn registration(&self, plugin: &PluginId) -> Registration {
        let (tenant, send, receive): (&Tenant, Vec<&ChannelName>, Vec<&ChannelName>) =
            if *plugin == self.a {
                (&self.t1, vec![&self.c1], vec![&self.c1])
            } else if *plugin == self.b {
                (&self.t1, vec![&self.c2], vec![&self.c1])
            } else {
                (&self.t2, vec![&self.c1], vec![&self.c1, &self.c2])
            };
        let list = |names: Vec<&ChannelName>| {
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        // `a` offers an operation to `b` alone.
        let operations = if *plugin == self.a {
            format!(
                "[[operations]]\nname = \"{}\"\n\
                 request = {{ type = \"probe.request\", version = \"1.0.0\" }}\n\
                 response = {{ type = \"probe.response\", version = \"1.0.0\" }}\n\
                 callers = {{ operators = false, plugins = [\"{}\"] }}\n",
                self.op, self.b
            )
        } else {
            String::new()
        };
        let manifest = Manifest::from_toml_str(&format!(
            "[plugin]\nid = \"{plugin}\"\nversion = \"0.0.1\"\ncore = \"*\"\n\
             [[subscriptions]]\nname = \"probe\"\nevents = [\"probe.never\"]\n\
             [channels]\nsend = [{}]\nreceive = [{}]\n{operations}",
            list(send),
            list(receive)
        ))
        .expect("the probe's manifest is valid");
        Registration::new(
            manifest,
            TenantScope::only([tenant.clone()]).expect("one tenant"),
        )
    }
}

/// A raw connection of one throwaway plugin.
struct Actor {
    id: PluginId,
    client: async_nats::Client,
    /// Its own deliveries: the subject the observer publishes a control message to after a
    /// subscription cell.
    deliveries: tokio::sync::Mutex<Subscriber>,
}

/// Runs the whole matrix. `admin` is a trusted login with full rights in the deployment's
/// account: it registers the throwaway plugins and observes.
///
/// # Errors
/// A [`ProbeError`] when the probe cannot run at all; failed cells are in the report.
pub async fn run(
    admin: &async_nats::Client,
    options: &ProbeOptions,
) -> Result<ProbeReport, ProbeError> {
    let cast = Cast::new(&options.namespace);
    let js = async_nats::jetstream::new(admin.clone());
    let registry = Registry::open(&js, &cast.ns)
        .await
        .map_err(|e| ProbeError::Setup(e.to_string()))?;
    let credentials = CredentialStore::open(&js, &cast.ns)
        .await
        .map_err(|e| ProbeError::Setup(e.to_string()))?;
    let result = probe(admin, options, &cast, &registry, &credentials).await;
    for plugin in cast.plugins() {
        if let Err(error) = registry.remove(plugin).await {
            tracing::warn!(%plugin, %error, "cannot remove a probe plugin");
        }
        if let Err(error) = credentials.revoke(plugin).await {
            tracing::warn!(%plugin, %error, "cannot revoke a probe plugin's credential");
        }
    }
    result
}

async fn probe(
    admin: &async_nats::Client,
    options: &ProbeOptions,
    cast: &Cast,
    registry: &Registry,
    credentials: &CredentialStore,
) -> Result<ProbeReport, ProbeError> {
    let mut secrets = Vec::new();
    for plugin in cast.plugins() {
        registry
            .put(&cast.registration(plugin))
            .await
            .map_err(|e| ProbeError::Setup(e.to_string()))?;
        let secret = credentials
            .issue(plugin)
            .await
            .map_err(|e| ProbeError::Setup(e.to_string()))?;
        secrets.push(secret);
    }
    let mut report = ProbeReport::default();
    // Refused at connect: checked before the real connections, with the real secrets around.
    for cell in cells::connect_cells(cast) {
        let (user, password) = match &cell.action {
            Action::Connect { user, password } => (user.clone(), password.clone()),
            _ => unreachable!("connect cells only"),
        };
        let password = password.unwrap_or_else(|| "not-the-secret".to_owned());
        let refused = connect(options, &cast.ns, &user, &password).await.is_err();
        report.results.push(CellResult {
            passed: refused == (cell.expect == Expect::Refused),
            seen: if refused { "refused" } else { "connected" }.to_owned(),
            cell,
        });
    }
    let mut actors = Vec::new();
    for (plugin, secret) in cast.plugins().into_iter().zip(&secrets) {
        let client = connect(options, &cast.ns, plugin.as_str(), secret.expose())
            .await
            .map_err(|reason| ProbeError::Connect {
                plugin: plugin.to_string(),
                reason,
            })?;
        let deliveries = client
            .subscribe(cast.ns.delivery(plugin))
            .await
            .map_err(|e| ProbeError::Connect {
                plugin: plugin.to_string(),
                reason: e.to_string(),
            })?;
        actors.push(Actor {
            id: plugin.clone(),
            client,
            deliveries: tokio::sync::Mutex::new(deliveries),
        });
    }
    for actor in &actors {
        round_trip(&actor.client, options.wait)
            .await
            .map_err(|reason| ProbeError::Connect {
                plugin: actor.id.to_string(),
                reason,
            })?;
    }
    let observer = Observer {
        admin,
        ns: &cast.ns,
        wait: options.wait,
        grace: options.grace,
    };
    for cell in cells::matrix(cast) {
        let actor = |id: &PluginId| {
            actors
                .iter()
                .find(|a| a.id == *id)
                .expect("cells name the cast")
        };
        let outcome = observer.try_cell(&cell, actor(&cell.plugin), &actor).await;
        let (passed, seen) = match outcome {
            Ok(arrived) => (
                arrived == (cell.expect == Expect::Allowed),
                if arrived { "arrived" } else { "did not arrive" }.to_owned(),
            ),
            Err(problem) => (false, problem),
        };
        report.results.push(CellResult { cell, passed, seen });
    }
    for actor in actors {
        let _ = actor.client.drain().await;
    }
    Ok(report)
}

/// Connects as `user` with `password` the way any plugin process could: a raw client with the
/// plugin's own inbox prefix.
async fn connect(
    options: &ProbeOptions,
    ns: &Namespace,
    user: &str,
    password: &str,
) -> Result<async_nats::Client, String> {
    let base = &options.plugin_connect;
    let inbox = match PluginId::new(user) {
        Ok(id) => ns.plugin_inbox_prefix(&id),
        Err(_) => "_SY_INBOX.probe".to_owned(),
    };
    let mut connect =
        async_nats::ConnectOptions::with_user_and_password(user.to_owned(), password.to_owned())
            .name(format!("switchyard-probe-{user}"))
            .custom_inbox_prefix(inbox)
            .connection_timeout(base.connect_timeout)
            .require_tls(base.require_tls)
            .max_reconnects(Some(3));
    if let Some(ca) = &base.tls_root_certificates {
        connect = connect.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &base.tls_client_certificate {
        connect = connect.add_client_certificate(cert.clone(), key.clone());
    }
    let url = base.url.clone();
    match tokio::time::timeout(base.connect_timeout, connect.connect(url.as_str())).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {:?}", base.connect_timeout)),
    }
}

/// Waits until the server has processed everything `client` sent before: a message to
/// itself, in its own inbox, comes back.
async fn round_trip(client: &async_nats::Client, wait: Duration) -> Result<(), String> {
    let inbox = client.new_inbox();
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    client
        .publish(inbox, Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(wait, echo.next()).await {
        Ok(Some(_)) => Ok(()),
        _ => Err(format!("the server did not echo within {wait:?}")),
    }
}

/// Headers that keep a message out of every stream.
fn not_stored() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NOT_STORED.0, NOT_STORED.1);
    headers
}

/// The full-rights observer: it watches each cell's target and decides whether anything
/// arrived there.
struct Observer<'a> {
    admin: &'a async_nats::Client,
    ns: &'a Namespace,
    wait: Duration,
    grace: Duration,
}

impl<'a> Observer<'a> {
    /// Subscribes to `subject` and makes sure the server registered it before anyone publishes.
    async fn watch(&self, subject: &str) -> Result<Subscriber, String> {
        let watch = self
            .admin
            .subscribe(subject.to_owned())
            .await
            .map_err(|e| format!("the observer cannot subscribe to {subject}: {e}"))?;
        round_trip(self.admin, self.wait).await?;
        Ok(watch)
    }

    /// Whether the cell's message arrived where it must (or must not).
    async fn try_cell(
        &self,
        cell: &Cell,
        actor: &Actor,
        others: &dyn Fn(&PluginId) -> &'a Actor,
    ) -> Result<bool, String>
    where
        Self: 'a,
    {
        match &cell.action {
            Action::Publish { subject } => self.publish(actor, subject, None).await,
            Action::Subscribe { subject, sample } => self.subscribe(actor, subject, sample).await,
            Action::ReplyTrick { via, target } => {
                self.reply_trick(actor, via, target, others).await
            }
            Action::RightsAnswerTo { reply } => self.rights_answer(actor, reply).await,
            Action::Connect { .. } => Err("not a matrix cell".to_owned()),
        }
    }

    /// `actor` publishes to `subject`, then a marker to its hello subject (always allowed):
    /// once the observer has the marker, the message would have arrived before it.
    async fn publish(
        &self,
        actor: &Actor,
        subject: &str,
        reply: Option<&str>,
    ) -> Result<bool, String> {
        let mut target = self.watch(subject).await?;
        self.marked(actor, &mut target, |client| async move {
            let headers = not_stored();
            let _ = match reply {
                Some(reply) => {
                    client
                        .publish_with_reply_and_headers(
                            subject.to_owned(),
                            reply.to_owned(),
                            headers,
                            Bytes::from_static(b"probe"),
                        )
                        .await
                }
                None => {
                    client
                        .publish_with_headers(
                            subject.to_owned(),
                            headers,
                            Bytes::from_static(b"probe"),
                        )
                        .await
                }
            };
        })
        .await
    }

    /// Runs `act` on `actor`'s connection, then sends a marker on the same connection and
    /// waits for it; then tells whether `target` received anything. (The server handles one
    /// connection's messages in order and delivers them to the observer in order, and the
    /// client hands an earlier message to its subscription before it reads the next.)
    async fn marked<F, Fut>(
        &self,
        actor: &Actor,
        target: &mut Subscriber,
        act: F,
    ) -> Result<bool, String>
    where
        F: FnOnce(async_nats::Client) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        // Its own hello subject: a plugin may always publish there.
        let marker_subject = self.ns.worker_hello(&actor.id);
        let mut markers = self.watch(&marker_subject).await?;
        act(actor.client.clone()).await;
        let _ = actor
            .client
            .publish(marker_subject.clone(), Bytes::from_static(b"marker"))
            .await;
        let _ = actor.client.flush().await;
        match tokio::time::timeout(self.wait, markers.next()).await {
            Ok(Some(_)) => {}
            _ => {
                return Err(format!(
                    "inconclusive: the marker on {marker_subject} did not arrive within {:?}",
                    self.wait
                ))
            }
        }
        Ok(futures::FutureExt::now_or_never(target.next())
            .flatten()
            .is_some())
    }

    /// `actor` subscribes to `subject`; the observer publishes `sample` (a subject it
    /// matches), then a control message to the actor's deliveries, which it may receive.
    async fn subscribe(&self, actor: &Actor, subject: &str, sample: &str) -> Result<bool, String> {
        let mut sniffer = actor
            .client
            .subscribe(subject.to_owned())
            .await
            .map_err(|e| format!("the client refused to subscribe: {e}"))?;
        round_trip(&actor.client, self.wait).await?;
        let mut deliveries = actor.deliveries.lock().await;
        let control = format!("control-{}", rand::random::<u64>());
        let send = |subject: String, body: String| async move {
            self.admin
                .publish_with_headers(subject, not_stored(), body.into())
                .await
                .map_err(|e| format!("the observer cannot publish: {e}"))
        };
        send(sample.to_owned(), "probe".to_owned()).await?;
        let delivery_subject = self.ns.delivery(&actor.id);
        send(delivery_subject, control.clone()).await?;
        let deadline = tokio::time::Instant::now() + self.wait;
        loop {
            match tokio::time::timeout_at(deadline, deliveries.next()).await {
                Ok(Some(message)) if message.payload == control.as_bytes() => break,
                Ok(Some(_)) => {}
                _ => {
                    return Err(format!(
                        "inconclusive: the control message did not reach the plugin within {:?}",
                        self.wait
                    ))
                }
            }
        }
        let arrived = futures::FutureExt::now_or_never(sniffer.next())
            .flatten()
            .is_some();
        drop(sniffer);
        Ok(arrived)
    }

    /// `actor` makes a message with reply subject `target` come to itself (or to an
    /// accomplice), which then answers it: the answer must not reach `target`.
    async fn reply_trick(
        &self,
        actor: &Actor,
        via: &cells::Via,
        target: &str,
        others: &dyn Fn(&PluginId) -> &'a Actor,
    ) -> Result<bool, String>
    where
        Self: 'a,
    {
        let (send_on, answerer) = match via {
            cells::Via::OwnInbox => (format!("{}.trick", actor.client.new_inbox()), actor),
            cells::Via::Channel { subject, receiver } => (subject.clone(), others(receiver)),
        };
        let receive_on = match via {
            cells::Via::OwnInbox => send_on.clone(),
            cells::Via::Channel { subject, .. } => {
                // Any sender: the channel's filter, which the answerer may subscribe to.
                let (head, _) = subject.rsplit_once('.').unwrap_or((subject, ""));
                format!("{head}.*")
            }
        };
        let mut incoming = answerer
            .client
            .subscribe(receive_on)
            .await
            .map_err(|e| format!("the answerer cannot subscribe: {e}"))?;
        round_trip(&answerer.client, self.wait).await?;
        let mut watched = self.watch(target).await?;
        actor
            .client
            .publish_with_reply_and_headers(
                send_on.clone(),
                target.to_owned(),
                not_stored(),
                Bytes::from_static(b"ask"),
            )
            .await
            .map_err(|e| e.to_string())?;
        let request = match tokio::time::timeout(self.wait, incoming.next()).await {
            Ok(Some(request)) => request,
            _ => {
                return Err(format!(
                    "inconclusive: the trick's request on {send_on} did not reach its answerer"
                ))
            }
        };
        let Some(reply) = request.reply.clone() else {
            return Err("inconclusive: the request lost its reply subject".to_owned());
        };
        self.marked(answerer, &mut watched, |client| async move {
            let _ = client
                .publish_with_headers(reply, not_stored(), Bytes::from_static(b"answer"))
                .await;
        })
        .await
    }

    /// `actor` asks the control plane for its rights with the reply subject `reply`; then
    /// asks again into its own inbox (the positive control). The first answer must not
    /// reach `reply`.
    async fn rights_answer(&self, actor: &Actor, reply: &str) -> Result<bool, String> {
        let ns = self.ns;
        let mut watched = self.watch(reply).await?;
        let own = actor.client.new_inbox();
        let mut answered = self.watch(&own).await?;
        let rights = ns.plugin_rights(&actor.id);
        actor
            .client
            .publish_with_reply(rights.clone(), reply.to_owned(), Bytes::new())
            .await
            .map_err(|e| e.to_string())?;
        actor
            .client
            .publish_with_reply(rights, own.clone(), Bytes::new())
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(self.wait, answered.next()).await {
            Ok(Some(_)) => {}
            _ => {
                return Err(format!(
                    "inconclusive: no control plane answered into {own} within {:?}",
                    self.wait
                ))
            }
        }
        // Another auth service instance may have taken the first request: give it a moment.
        tokio::time::sleep(self.grace).await;
        Ok(futures::FutureExt::now_or_never(watched.next())
            .flatten()
            .is_some())
    }
}
