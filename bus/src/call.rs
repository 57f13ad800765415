//! Calling a plugin's operation and waiting for its answer (`docs/operations.md`).
//!
//! A call is a NATS request to `{prefix}.op.{tenant}.{plugin}.{operation}.{kind}.{caller}`; a
//! dispatcher checks it, forwards it to one of the plugin's workers and answers. The answer
//! comes back into the connection's own inbox, so the connection must use the caller's inbox
//! prefix: a plugin's ([`Namespace::plugin_inbox_prefix`]), a service's
//! ([`Namespace::service_inbox_prefix`]), or any for an operator. A dispatcher does not answer a
//! call whose reply subject lies elsewhere.
//!
//! ```no_run
//! # use switchyard_bus::Calls;
//! # use switchyard_schemas::{call::Caller, Namespace, PluginId, ServiceName, Tenant, TypedEvent};
//! # use switchyard_schemas::semver::Version;
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct QuoteRequest { sku: String }
//! impl TypedEvent for QuoteRequest {
//!     const TYPE: &'static str = "quote.request";
//!     const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
//! }
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Quote { cents: u64 }
//! impl TypedEvent for Quote {
//!     const TYPE: &'static str = "quote.response";
//!     const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
//! }
//! # async fn f(client: async_nats::Client) -> Result<(), Box<dyn std::error::Error>> {
//! let caller = Caller::Service(ServiceName::new("shop")?);
//! let calls = Calls::new(client, Namespace::default(), caller);
//! let quote: Quote = calls
//!     .call(&Tenant::new("acme")?, &PluginId::new("pricing")?, "quote", &QuoteRequest { sku: "a-1".into() })
//!     .await?;
//! # Ok(()) }
//! ```

use std::time::{Duration, Instant};

use async_nats::{HeaderMap, RequestErrorKind};
use bytes::Bytes;
use switchyard_schemas::call::{
    header as call_header, CallError, CallErrorKind, CallOptions, Caller,
};
use switchyard_schemas::{ContentType, Namespace, OperationName, PluginId, Tenant, TypedEvent};

use crate::wire::header;

/// How long a caller waits when it does not say (the operations' default timeout).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than the time it gave the dispatcher a caller waits, so that the
/// dispatcher's own `call.timed-out` answer arrives first.
const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// Which operation a call is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallTarget {
    /// The tenant it is for.
    pub tenant: Tenant,
    /// The plugin that answers it.
    pub plugin: PluginId,
    /// The operation.
    pub operation: OperationName,
}

/// An operation's answer, as it came.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReply {
    /// The response, encoded as `content_type` says.
    pub body: Bytes,
    /// Its content type (the request's, unless the plugin said otherwise).
    pub content_type: ContentType,
    /// How many attempts the dispatcher made.
    pub attempts: u32,
    /// How long the dispatcher waited for the plugin, all attempts together.
    pub handled_in: Duration,
    /// How long the call took, seen from here.
    pub elapsed: Duration,
}

/// Calls operations as one caller, over one connection.
#[derive(Debug, Clone)]
pub struct Calls {
    client: async_nats::Client,
    namespace: Namespace,
    caller: Caller,
}

impl Calls {
    /// Calls as `caller` over `client`, whose inbox prefix must be the caller's (see the
    /// module's documentation).
    pub fn new(client: async_nats::Client, namespace: Namespace, caller: Caller) -> Self {
        Self {
            client,
            namespace,
            caller,
        }
    }

    /// Who calls.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// Calls `operation` of `plugin` for `tenant` with a typed request, and decodes the typed
    /// answer. Sends MessagePack and the request type's schema version; one attempt, the
    /// [`DEFAULT_CALL_TIMEOUT`].
    ///
    /// # Errors
    /// A [`CallError`]: the dispatcher's (`call.refused`, `call.no-worker`, `call.timed-out`,
    /// the handler's code, …), `call.unavailable` when no dispatcher serves the operation,
    /// `call.timed-out` when no answer came, `call.bad-request` for a name or request that
    /// cannot be sent, `protocol.bad-reply` for an answer that does not decode.
    pub async fn call<Req: TypedEvent, Res: TypedEvent>(
        &self,
        tenant: &Tenant,
        plugin: &PluginId,
        operation: &str,
        request: &Req,
    ) -> Result<Res, CallError> {
        self.call_with(
            tenant,
            plugin,
            operation,
            request,
            CallOptions::default(),
            HeaderMap::new(),
        )
        .await
    }

    /// [`Calls::call`] with options, and extra headers (trace context) to send.
    ///
    /// # Errors
    /// As [`Calls::call`].
    pub async fn call_with<Req: TypedEvent, Res: TypedEvent>(
        &self,
        tenant: &Tenant,
        plugin: &PluginId,
        operation: &str,
        request: &Req,
        mut options: CallOptions,
        headers: HeaderMap,
    ) -> Result<Res, CallError> {
        let operation = OperationName::new(operation)
            .map_err(|error| CallError::new(CallErrorKind::BadRequest, error.to_string()))?;
        let body = ContentType::MessagePack
            .encode(request)
            .map_err(|error| CallError::new(CallErrorKind::BadRequest, error))?;
        options.version.get_or_insert(Req::SCHEMA_VERSION);
        let target = CallTarget {
            tenant: tenant.clone(),
            plugin: plugin.clone(),
            operation,
        };
        let reply = self
            .call_raw(
                &target,
                ContentType::MessagePack,
                body.into(),
                &options,
                headers,
            )
            .await?;
        // Checked before decoding (well-formed, at most 100 levels deep), so that a hostile
        // plugin's answer cannot overflow the caller's stack.
        reply
            .content_type
            .check(&reply.body)
            .map_err(|error| error.to_string())
            .and_then(|()| reply.content_type.decode(&reply.body))
            .map_err(|error| {
                CallError::new(
                    CallErrorKind::BadReply,
                    format!("the answer is not a {}: {error}", Res::TYPE),
                )
            })
    }

    /// Calls with a request already encoded, and returns the answer as it came.
    ///
    /// # Errors
    /// As [`Calls::call`], except decoding.
    pub async fn call_raw(
        &self,
        target: &CallTarget,
        content_type: ContentType,
        body: Bytes,
        options: &CallOptions,
        mut headers: HeaderMap,
    ) -> Result<CallReply, CallError> {
        let mut options = options.clone();
        let timeout = *options.timeout.get_or_insert(DEFAULT_CALL_TIMEOUT);
        headers.insert(call_header::CALL, options.header_value());
        headers.insert("content-type", content_type.media_type());
        let subject = self.namespace.operation_call(
            &target.tenant,
            &target.plugin,
            &target.operation,
            &self.caller,
        );
        let started = Instant::now();
        let request = async_nats::Request::new()
            .headers(headers)
            .payload(body)
            .timeout(Some(timeout + ANSWER_MARGIN));
        let answer =
            self.client
                .send_request(subject, request)
                .await
                .map_err(|error| match error.kind() {
                    RequestErrorKind::NoResponders => CallError::new(
                        CallErrorKind::Unavailable,
                        format!(
                        "no dispatcher serves operation `{}` of plugin `{}`: the plugin is not \
                         registered, not enabled, or does not declare it, or no dispatcher runs",
                        target.operation, target.plugin
                    ),
                    ),
                    RequestErrorKind::TimedOut => CallError::new(
                        CallErrorKind::TimedOut,
                        format!(
                            "no answer from operation `{}` of plugin `{}` within {:?}",
                            target.operation,
                            target.plugin,
                            timeout + ANSWER_MARGIN
                        ),
                    ),
                    _ => CallError::new(
                        CallErrorKind::Unavailable,
                        format!("the call failed: {error}"),
                    ),
                })?;
        let elapsed = started.elapsed();
        let found = answer.headers.as_ref();
        let get = |name: &str| found.and_then(|h| header(h, name));
        if let Some(error) = CallError::from_headers(get) {
            return Err(error);
        }
        let content_type = match get("content-type") {
            None => content_type,
            Some(raw) => ContentType::parse(raw).ok_or_else(|| {
                CallError::new(
                    CallErrorKind::BadReply,
                    format!("the answer's content-type `{raw}` is not one Switchyard reads"),
                )
            })?,
        };
        Ok(CallReply {
            body: answer.payload,
            content_type,
            attempts: get(call_header::ATTEMPTS)
                .and_then(|n| n.parse().ok())
                .unwrap_or(1),
            handled_in: get(call_header::DURATION_US)
                .and_then(|us| us.parse().ok())
                .map(Duration::from_micros)
                .unwrap_or_default(),
            elapsed,
        })
    }
}
