//! What a handler knows about the delivery it is handling.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use switchyard_schemas::delivery::DeliveryInfo;
use switchyard_schemas::manifest::toml;
use switchyard_schemas::{Attributes, Event, EventId, PluginId, Tenant};
use tokio::time::Instant;

use crate::channels::Channels;

/// The per-delivery context handed to a handler with the event's data. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    delivery: DeliveryInfo,
    attributes: Attributes,
    settings: Arc<toml::Table>,
    deadline: Deadline,
    span: tracing::Span,
    /// The worker's channels, in the event's tenant; `None` in a unit-test context.
    channels: Option<Channels>,
}

/// The plugin's `[settings]` do not fit the type asked for.
#[derive(Debug, thiserror::Error)]
#[error("the plugin's [settings] do not fit the type asked for: {0}")]
pub struct SettingsError(String);

/// A handler's deadline on tokio's clock, so that it can be awaited (and paused in tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Instant);

impl Deadline {
    /// The deadline `at` (wall clock), as far from now on tokio's clock.
    pub(crate) fn at(at: SystemTime) -> Self {
        let left = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Self(Instant::now() + left)
    }

    /// How long until it (zero once it has passed).
    pub(crate) fn time_left(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Completes at it.
    pub(crate) async fn reached(self) {
        tokio::time::sleep_until(self.0).await;
    }

    /// Whether it has passed.
    pub(crate) fn has_passed(self) -> bool {
        Instant::now() >= self.0
    }
}

/// The plugin's settings `table`, read into a type of the plugin's own.
pub(crate) fn settings_as<T: DeserializeOwned>(table: &toml::Table) -> Result<T, SettingsError> {
    T::deserialize(toml::Value::Table(table.clone())).map_err(|e| SettingsError(e.to_string()))
}

impl Context {
    pub(crate) fn new(
        delivery: DeliveryInfo,
        attributes: Attributes,
        settings: Arc<toml::Table>,
    ) -> Self {
        let span = tracing::info_span!(
            "handle",
            plugin = %delivery.plugin,
            subscription = %delivery.subscription,
            event.id = %attributes.id,
            event.type = %attributes.event_type,
            tenant = %attributes.tenant,
            attempt = delivery.attempt,
            // Filled in by the worker when the delivery is traced.
            trace_id = tracing::field::Empty,
        );
        Self {
            inner: Arc::new(Inner {
                deadline: Deadline::at(delivery.deadline),
                delivery,
                attributes,
                settings,
                span,
                channels: None,
            }),
        }
    }

    /// The same context with the worker's channels.
    pub(crate) fn with_channels(mut self, channels: Option<Channels>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.channels = channels;
        }
        self
    }

    /// A context for calling a handler directly in a unit test: attempt 1 of 5, a 30 s
    /// deadline from now, no settings. Adjust with [`ContextBuilder`]'s setters.
    pub fn for_test(event: &Event) -> ContextBuilder {
        ContextBuilder {
            attributes: event.attributes.clone(),
            attempt: 1,
            max_attempts: 5,
            timeout: Duration::from_secs(30),
            settings: toml::Table::new(),
            plugin: PluginId::new("test-plugin").expect("a valid id"),
            subscription: "test".to_owned(),
        }
    }

    /// The attempt number: 1 for the first delivery of this event to this plugin.
    pub fn attempt(&self) -> u32 {
        self.inner.delivery.attempt
    }

    /// The most attempts the plugin's policy allows.
    pub fn max_attempts(&self) -> u32 {
        self.inner.delivery.max_attempts
    }

    /// Whether a retry would be dead-lettered instead of delivered again.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt() >= self.max_attempts()
    }

    /// When the dispatcher stops waiting for this delivery's outcome.
    pub fn deadline(&self) -> SystemTime {
        self.inner.delivery.deadline
    }

    /// How long until the deadline (zero once it has passed).
    pub fn time_left(&self) -> Duration {
        self.inner.deadline.time_left()
    }

    /// Completes at the deadline: past it, the dispatcher counts the attempt as timed out, so
    /// a handler can stop work that no longer matters.
    ///
    /// # Cancel safety
    /// Cancel-safe.
    pub async fn cancelled(&self) {
        self.inner.deadline.reached().await;
    }

    /// Whether the deadline has passed.
    pub fn is_cancelled(&self) -> bool {
        self.inner.deadline.has_passed()
    }

    /// The event's id: the same on every attempt and replay, so key side effects on it.
    pub fn event_id(&self) -> &EventId {
        &self.inner.attributes.id
    }

    /// The event's tenant.
    pub fn tenant(&self) -> &Tenant {
        &self.inner.attributes.tenant
    }

    /// All the event's attributes (source, type, schema version, time, subject, ...).
    pub fn attributes(&self) -> &Attributes {
        &self.inner.attributes
    }

    /// The plugin this worker serves.
    pub fn plugin(&self) -> &PluginId {
        &self.inner.delivery.plugin
    }

    /// The subscription the event matched.
    pub fn subscription(&self) -> &str {
        &self.inner.delivery.subscription
    }

    /// The event's sequence in the events stream.
    pub fn stream_sequence(&self) -> u64 {
        self.inner.delivery.stream_sequence
    }

    /// The plugin's settings, read into a type of the plugin's own: the manifest's
    /// `[settings]` defaults, with what the operator set (`switchyard settings`) over them,
    /// as they were when this delivery started. A change reaches the next delivery without a
    /// restart.
    ///
    /// # Errors
    /// A [`SettingsError`] naming what does not fit.
    pub fn settings<T: DeserializeOwned>(&self) -> Result<T, SettingsError> {
        settings_as(&self.inner.settings)
    }

    /// The plugin's `[settings]` as they are.
    pub fn raw_settings(&self) -> &toml::Table {
        &self.inner.settings
    }

    /// Channels in the event's tenant, continuing the handler's trace: send or request on
    /// the channels the plugin is granted (see [`crate::channels`]). In a unit-test context
    /// every operation fails with [`ChannelError::NotConnected`](crate::ChannelError::NotConnected).
    pub fn channels(&self) -> Channels {
        match &self.inner.channels {
            Some(channels) => channels.with_parent(opentelemetry::Context::current()),
            None => Channels::new(
                None,
                self.tenant().clone(),
                opentelemetry::Context::current(),
            ),
        }
    }

    /// Calls another plugin's operation in the event's tenant, continuing the handler's trace
    /// (see [`crate::operations`]). In a unit-test context it fails with `call.unavailable`.
    ///
    /// # Errors
    /// As [`CallContext::call`](crate::CallContext::call).
    pub async fn call<Req: switchyard_schemas::TypedEvent, Res: switchyard_schemas::TypedEvent>(
        &self,
        plugin: &str,
        operation: &str,
        request: &Req,
    ) -> Result<Res, switchyard_schemas::call::CallError> {
        crate::operations::call(
            self.inner.channels.as_ref().and_then(Channels::link_handle),
            self.tenant(),
            plugin,
            operation,
            request,
            Default::default(),
        )
        .await
    }

    /// The tracing span of this delivery (plugin, subscription, event id and type, tenant,
    /// attempt); the handler runs inside it.
    pub fn span(&self) -> &tracing::Span {
        &self.inner.span
    }
}

/// Builds a [`Context`] for unit tests; see [`Context::for_test`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ContextBuilder {
    attributes: Attributes,
    attempt: u32,
    max_attempts: u32,
    timeout: Duration,
    settings: toml::Table,
    plugin: PluginId,
    subscription: String,
}

impl ContextBuilder {
    /// The attempt number.
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// The most attempts.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The time from now to the deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The plugin's settings.
    pub fn settings(mut self, settings: toml::Table) -> Self {
        self.settings = settings;
        self
    }

    /// Finishes the context.
    pub fn build(self) -> Context {
        Context::new(
            DeliveryInfo {
                attempt: self.attempt,
                max_attempts: self.max_attempts,
                deadline: SystemTime::now() + self.timeout,
                timeout: self.timeout,
                plugin: self.plugin,
                subscription: self.subscription,
                stream_sequence: 1,
            },
            self.attributes,
            Arc::new(self.settings),
        )
    }
}
