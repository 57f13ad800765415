//! The plugin: its manifest and its handlers, one per event type.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use switchyard_schemas::delivery::{ErrorCode, Outcome};
use switchyard_schemas::manifest::{toml, ManifestErrors, ManifestLoadError};
use switchyard_schemas::{ChannelName, Event, EventType, Manifest, Tenant, TypedEvent};

use crate::channels::{self, ChannelContext, Channels, ErasedChannelHandler, Link, Violations};
use crate::context::Context;
use crate::handler::{erase, run_caught, ErasedHandler, HandlerResult, NO_HANDLER};

/// The default bound on handlers running at once in one worker process.
pub const DEFAULT_MAX_CONCURRENCY: usize = 64;
/// How long a stopping worker waits for handlers under way, by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a plugin cannot run.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The manifest is invalid; every problem is listed.
    #[error("invalid plugin manifest:\n{0}")]
    Manifest(#[from] ManifestErrors),
    /// The manifest file cannot be read or is invalid.
    #[error(transparent)]
    ManifestFile(#[from] ManifestLoadError),
    /// The handlers do not fit the manifest; every problem is listed.
    #[error("the plugin's handlers do not fit its manifest:\n{}", .0.join("\n"))]
    Setup(Vec<String>),
    /// A setting from the environment is unusable (a token file that cannot be read, a
    /// token given twice).
    #[error("{variable}: {reason}")]
    Settings {
        /// The environment variable at fault.
        variable: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// NATS could not be reached or refused the worker.
    #[error("{action}: {reason}")]
    Nats {
        /// What was being done.
        action: &'static str,
        /// What happened.
        reason: String,
    },
}

/// A plugin: a manifest plus typed handlers. Build it, then [`run`](Plugin::run) it.
///
/// ```no_run
/// use switchyard_plugin_sdk::{Plugin, TypedEvent, Version};
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct OrderCreated { order_id: String }
///
/// impl TypedEvent for OrderCreated {
///     const TYPE: &'static str = "order.created";
///     const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
/// }
///
/// # async fn run() -> Result<(), switchyard_plugin_sdk::PluginError> {
/// Plugin::from_manifest_file("plugin.toml")?
///     .on(|order: OrderCreated, ctx| async move {
///         tracing::info!(order = %order.order_id, tenant = %ctx.tenant(), "seen");
///         Ok(())
///     })
///     .run()
///     .await
/// # }
/// ```
pub struct Plugin {
    pub(crate) manifest: Manifest,
    pub(crate) settings: Arc<crate::settings::LiveSettings>,
    handlers: BTreeMap<String, ErasedHandler>,
    fallback: Option<ErasedHandler>,
    problems: Vec<String>,
    pub(crate) max_concurrency: usize,
    pub(crate) drain_timeout: Duration,
    /// How long handlers ran (the worker's side of the delivery), by outcome.
    pub(crate) handle_duration: opentelemetry::metrics::Histogram<f64>,
    /// The plugin and subscription labels of each subscription's metrics, built once with
    /// reference-counted values, since they go into every recording.
    pub(crate) metric_labels: BTreeMap<String, [opentelemetry::KeyValue; 2]>,
    /// Channel handlers, by channel.
    pub(crate) channel_handlers: BTreeMap<ChannelName, ErasedChannelHandler>,
    /// Operation handlers, by operation.
    pub(crate) operation_handlers: BTreeMap<String, crate::operations::ErasedOperation>,
    /// The connection channels use, once serving.
    pub(crate) link: Option<Arc<Link>>,
    /// The refusals the server reported on the connection `run_with` made.
    pub(crate) violations: Option<Arc<Violations>>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.manifest.plugin.id)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .field("fallback", &self.fallback.is_some())
            .field(
                "channels",
                &self.channel_handlers.keys().collect::<Vec<_>>(),
            )
            .field(
                "operations",
                &self.operation_handlers.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// A plugin from the text of its `plugin.toml` (e.g. `include_str!("plugin.toml")`).
    ///
    /// # Errors
    /// [`PluginError::Manifest`] listing every problem of an invalid manifest.
    pub fn from_manifest_str(text: &str) -> Result<Self, PluginError> {
        Ok(Self::new(Manifest::from_toml_str(text)?))
    }

    /// A plugin from its `plugin.toml` file.
    ///
    /// # Errors
    /// [`PluginError::ManifestFile`] when the file cannot be read or is invalid.
    pub fn from_manifest_file(path: impl AsRef<Path>) -> Result<Self, PluginError> {
        Ok(Self::new(Manifest::from_path(path)?))
    }

    /// A plugin from a parsed manifest.
    pub fn new(manifest: Manifest) -> Self {
        let metric_labels = metric_labels(&manifest);
        Self {
            settings: Arc::new(crate::settings::LiveSettings::new(
                manifest.settings.clone(),
            )),
            metric_labels,
            manifest,
            handlers: BTreeMap::new(),
            fallback: None,
            problems: Vec::new(),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            handle_duration: handle_duration(),
            channel_handlers: BTreeMap::new(),
            operation_handlers: BTreeMap::new(),
            link: None,
            violations: None,
        }
    }

    /// Handles events of type `E::TYPE`, decoded into `E`.
    ///
    /// The type must be one a subscription of the manifest receives, in a schema version it
    /// accepts; a mismatch is reported (with every other one) when the plugin starts.
    #[must_use]
    pub fn on<E, F, Fut>(mut self, handler: F) -> Self
    where
        E: TypedEvent + Send + 'static,
        F: Fn(E, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.check_type::<E>();
        if self
            .handlers
            .insert(E::TYPE.to_owned(), erase(handler))
            .is_some()
        {
            self.problems
                .push(format!("two handlers for event type `{}`", E::TYPE));
        }
        self
    }

    /// Handles every event that no typed handler takes, undecoded (e.g. for a plugin that
    /// subscribes to `order.>` and treats all of them alike).
    #[must_use]
    pub fn on_any<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(Event, Context) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = Arc::new(handler);
        self.fallback = Some(Arc::new(move |event, context| {
            let handler = Arc::clone(&handler);
            // Called inside the caught future: a handler may panic before it returns one.
            Box::pin(async move { run_caught(async move { handler(event, context).await }).await })
        }));
        self
    }

    /// Handles messages on `channel`, decoded into `T`, for every tenant the plugin serves
    /// (see [`crate::channels`]). A request is answered with [`ChannelContext::reply`]; a
    /// handler that fails (or panics) on a request answers it with its reason.
    ///
    /// The manifest's `[channels] receive` must list the channel; whether the plugin really
    /// receives it is the operator's grant, which the broker enforces: a handler for a channel
    /// not granted is not subscribed, and the worker logs why.
    ///
    /// ```no_run
    /// # use switchyard_plugin_sdk::{Plugin, TypedEvent, Version};
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Quote { sku: String }
    /// impl TypedEvent for Quote {
    ///     const TYPE: &'static str = "quote.requested";
    ///     const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
    /// }
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Price { cents: u64 }
    /// impl TypedEvent for Price {
    ///     const TYPE: &'static str = "quote.price";
    ///     const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
    /// }
    /// # fn f(plugin: Plugin) -> Plugin {
    /// plugin.on_channel("quotes", |quote: Quote, ctx| async move {
    ///     ctx.reply(&Price { cents: 990 }).await?;
    ///     Ok(())
    /// })
    /// # }
    /// ```
    #[must_use]
    pub fn on_channel<T, F, Fut>(mut self, channel: &str, handler: F) -> Self
    where
        T: TypedEvent + Send + 'static,
        F: Fn(T, ChannelContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let name = match ChannelName::new(channel) {
            Ok(name) => name,
            Err(error) => {
                self.problems
                    .push(format!("a channel handler names a bad channel: {error}"));
                return self;
            }
        };
        if !self.manifest.channels.can_receive(&name) {
            self.problems.push(format!(
                "a handler receives channel `{name}`, but the manifest's [channels] receive does not list it"
            ));
        }
        if self
            .channel_handlers
            .insert(name.clone(), channels::erase(handler))
            .is_some()
        {
            self.problems
                .push(format!("two handlers for channel `{name}`"));
        }
        self
    }

    /// Answers calls of `operation`, one of the manifest's `[[operations]]`: the request
    /// decoded into `Req`, the handler's `Res` encoded as the request was. A
    /// [`HandlerError`](crate::HandlerError) reaches the caller with its code (a permanent one
    /// as the handler's failure; a retry as a failure the dispatcher may try again when the
    /// operation is idempotent and the caller asked). `Req` and `Res` must be the types and
    /// schema versions the manifest declares; a mismatch is reported when the plugin starts.
    ///
    /// ```no_run
    /// # use switchyard_plugin_sdk::{HandlerError, Plugin, TypedEvent, Version};
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct QuoteRequest { sku: String }
    /// impl TypedEvent for QuoteRequest {
    ///     const TYPE: &'static str = "quote.request";
    ///     const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
    /// }
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Quote { cents: u64 }
    /// impl TypedEvent for Quote {
    ///     const TYPE: &'static str = "quote.response";
    ///     const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
    /// }
    /// # fn f(plugin: Plugin) -> Plugin {
    /// plugin.operation("quote", |request: QuoteRequest, ctx| async move {
    ///     if request.sku.is_empty() {
    ///         return Err(HandlerError::permanent("quote.no-sku", "an empty sku"));
    ///     }
    ///     Ok(Quote { cents: 990 })
    /// })
    /// # }
    /// ```
    #[must_use]
    pub fn operation<Req, Res, F, Fut>(mut self, operation: &str, handler: F) -> Self
    where
        Req: TypedEvent + Send + 'static,
        Res: TypedEvent + Send + 'static,
        F: Fn(Req, crate::CallContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Res, crate::HandlerError>> + Send + 'static,
    {
        let problems = crate::operations::check_types::<Req, Res>(&self, operation);
        self.problems.extend(problems);
        if self
            .operation_handlers
            .insert(operation.to_owned(), crate::operations::erase(handler))
            .is_some()
        {
            self.problems
                .push(format!("two handlers for operation `{operation}`"));
        }
        self
    }

    /// The channels of `tenant` on the worker's connection, once serving.
    pub(crate) fn channels_for(&self, tenant: &Tenant) -> Option<Channels> {
        self.link.as_ref().map(|link| {
            Channels::new(
                Some(Arc::clone(link)),
                tenant.clone(),
                opentelemetry::Context::current(),
            )
        })
    }

    /// At most `n` handlers run at once in this worker (default 64). The dispatcher's
    /// `max_in_flight` bounds all workers of the plugin together; this bounds one process.
    ///
    /// A worker's delivery handlers run concurrently on one task, interleaved at their
    /// `.await`s: the replies of handlers that finish together then leave in one write. Put
    /// CPU-heavy or blocking work in [`tokio::task::spawn_blocking`] (or spawn it), and run
    /// more worker processes (they share the plugin's queue group) to use more cores.
    #[must_use]
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n.max(1);
        self
    }

    /// How long a stopping worker waits for handlers under way (default 30 s).
    #[must_use]
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Overrides one of the manifest's `[settings]` for this worker (e.g. from an environment
    /// variable, or a path that differs between machines). What an operator sets
    /// (`switchyard settings set`) still wins over it.
    #[must_use]
    pub fn with_setting(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        self.settings = Arc::new(self.settings.with_override(key, value.into()));
        self
    }

    /// A context for calling [`Plugin::handle`] in a unit test, like [`Context::for_test`] but
    /// with this plugin's settings (including [`Plugin::with_setting`] overrides).
    pub fn test_context(&self, event: &Event) -> crate::ContextBuilder {
        Context::for_test(event).settings((*self.settings.current()).clone())
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks that the handlers fit the manifest.
    ///
    /// # Errors
    /// [`PluginError::Setup`] listing every problem.
    pub fn check(&self) -> Result<(), PluginError> {
        let mut problems = self.problems.clone();
        if self.handlers.is_empty()
            && self.fallback.is_none()
            && self.channel_handlers.is_empty()
            && self.operation_handlers.is_empty()
        {
            problems.push(
                "no handler: add one with `.on(...)`, `.on_any(...)`, `.on_channel(...)` or \
                 `.operation(...)`"
                    .to_owned(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PluginError::Setup(problems))
        }
    }

    /// Runs the handler for `event` and returns the outcome a worker replies with. This is
    /// what a worker does with each delivery; unit tests call it directly:
    ///
    /// ```
    /// # use switchyard_plugin_sdk::{Context, Plugin, TypedEvent, Version, Outcome, Event, Tenant};
    /// # #[derive(serde::Serialize, serde::Deserialize)]
    /// # struct Ping { n: u32 }
    /// # impl TypedEvent for Ping {
    /// #     const TYPE: &'static str = "ping";
    /// #     const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let plugin = Plugin::from_manifest_str(r#"
    ///     [plugin]
    ///     id = "pinger"
    ///     version = "1.0.0"
    ///     core = "*"
    ///     [[subscriptions]]
    ///     name = "pings"
    ///     events = ["ping"]
    /// "#).unwrap()
    /// .on(|ping: Ping, _ctx| async move { Ok(()) });
    ///
    /// let event = Event::builder(Tenant::new("acme").unwrap(), "urn:test").build(&Ping { n: 1 }).unwrap();
    /// let outcome = plugin.handle(event.clone(), Context::for_test(&event).build()).await;
    /// assert_eq!(outcome, Outcome::Done);
    /// # }
    /// ```
    pub async fn handle(&self, event: Event, context: Context) -> Outcome {
        let handler = self
            .handlers
            .get(event.attributes.event_type.as_str())
            .or(self.fallback.as_ref());
        match handler {
            Some(handler) => {
                let span = context.span().clone();
                tracing::Instrument::instrument(handler(event, context), span).await
            }
            None => Outcome::Failed {
                code: ErrorCode::internal(NO_HANDLER),
                reason: format!(
                    "plugin `{}` has no handler for event type `{}`",
                    self.manifest.plugin.id, event.attributes.event_type
                ),
            },
        }
    }

    /// Records a problem when no subscription receives `E`.
    fn check_type<E: TypedEvent>(&mut self) {
        let event_type = match EventType::new(E::TYPE) {
            Ok(event_type) => event_type,
            Err(error) => {
                self.problems
                    .push(format!("handler type declares a bad event type: {error}"));
                return;
            }
        };
        let subscriptions: Vec<_> = self
            .manifest
            .subscriptions
            .iter()
            .filter(|s| s.events.iter().any(|p| p.matches(&event_type)))
            .collect();
        if subscriptions.is_empty() {
            self.problems.push(format!(
                "a handler takes `{}`, but no subscription in the manifest receives it",
                E::TYPE
            ));
        } else if !subscriptions
            .iter()
            .any(|s| s.versions.matches(&E::SCHEMA_VERSION))
        {
            self.problems.push(format!(
                "a handler takes `{}` version {}, outside every subscription's version range",
                E::TYPE,
                E::SCHEMA_VERSION
            ));
        }
    }
}

/// The worker's handler-duration histogram, from the global meter as it is when called: the
/// worker makes it again when it starts serving, after `run` installed the exporters.
pub(crate) fn handle_duration() -> opentelemetry::metrics::Histogram<f64> {
    opentelemetry::global::meter(switchyard_schemas::telemetry::SCOPE)
        .f64_histogram(switchyard_schemas::telemetry::metric::HANDLE_DURATION)
        .with_unit("s")
        .with_description("How long handlers ran, by outcome")
        .with_boundaries(switchyard_schemas::telemetry::DURATION_BOUNDARIES.to_vec())
        .build()
}

fn metric_labels(manifest: &Manifest) -> BTreeMap<String, [opentelemetry::KeyValue; 2]> {
    use switchyard_schemas::telemetry::attr;
    let plugin =
        opentelemetry::KeyValue::new(attr::PLUGIN, Arc::<str>::from(manifest.plugin.id.as_str()));
    manifest
        .subscriptions
        .iter()
        .map(|s| {
            let name = s.name.to_string();
            let subscription =
                opentelemetry::KeyValue::new(attr::SUBSCRIPTION, Arc::<str>::from(name.as_str()));
            (name, [plugin.clone(), subscription])
        })
        .collect()
}
