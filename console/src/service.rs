//! The management API as a NATS micro service: `switchyard-management`, one endpoint per verb
//! on `{prefix}.manage.{verb}`, in the queue group `{prefix}.consoles`.
//!
//! Answers go only to reply subjects under `_INBOX.`: the console holds a trusted login, and a
//! caller must not be able to make it publish anywhere else.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::service::ServiceExt;
use async_nats::HeaderMap;
use futures::StreamExt;
use switchyard_schemas::Namespace;
use tokio::task::JoinSet;

use crate::management::{Management, Transport};
use crate::request::Request;
use crate::token::bearer;

/// The service's name, as `$SRV.PING` and `nats micro ls` show it.
pub const SERVICE_NAME: &str = "switchyard-management";

/// The only reply subjects answered.
pub const REPLY_PREFIX: &str = "_INBOX.";

/// The largest request body read; a larger one is refused.
pub const MAX_BODY: usize = 64 * 1024;

/// The subject of `verb`: `{prefix}.manage.{verb}`.
pub fn subject(namespace: &Namespace, verb: &str) -> String {
    format!("{}.manage.{verb}", namespace.prefix())
}

/// Serves `management` on `client` until the returned set is dropped or aborted.
///
/// # Errors
/// When the service or an endpoint cannot be started.
pub async fn serve(
    client: &async_nats::Client,
    namespace: &Namespace,
    management: Management,
) -> Result<JoinSet<()>, async_nats::Error> {
    let service = client
        .service_builder()
        .description("Switchyard management API (docs/management-api.md)")
        .metadata(HashMap::from([(
            "switchyard.prefix".to_owned(),
            namespace.prefix().to_owned(),
        )]))
        .queue_group(format!("{}.consoles", namespace.prefix()))
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await?;
    let service = Arc::new(service);
    let mut tasks = JoinSet::new();
    for verb in Request::VERBS.iter().filter(|verb| **verb != "live") {
        let mut endpoint = service
            .endpoint_builder()
            .name(verb.replace('.', "-"))
            .add(subject(namespace, verb))
            .await?;
        let management = management.clone();
        let service = Arc::clone(&service);
        tasks.spawn(async move {
            // Holds the service: its stats and info subscriptions live as long as this.
            let _service = service;
            while let Some(request) = endpoint.next().await {
                let management = management.clone();
                tokio::spawn(answer(management, verb, request));
            }
        });
    }
    Ok(tasks)
}

/// Whether a reply subject may be answered: under `_INBOX.`, with no wildcard and nothing a
/// subject cannot hold.
pub fn answerable(reply: &str) -> bool {
    reply.starts_with(REPLY_PREFIX)
        && reply.len() <= 256
        && reply
            .split('.')
            .all(|token| !token.is_empty() && token != "*" && token != ">")
        && !reply.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Answers one request, or drops it when its reply subject is not an inbox.
async fn answer(management: Management, verb: &'static str, request: async_nats::service::Request) {
    let Some(reply) = request.message.reply.as_ref() else {
        return;
    };
    if !answerable(reply.as_str()) {
        tracing::debug!(
            verb,
            "a management request with a reply subject outside _INBOX. is not answered"
        );
        return;
    }
    let token = request
        .message
        .headers
        .as_ref()
        .and_then(|headers| headers.get("Authorization"))
        .and_then(|value| bearer(value.as_str()));
    let result = async {
        // A package's bytes are the body of `packages.publish`: the server's own payload limit
        // bounds them.
        if verb != "packages.publish" && request.message.payload.len() > MAX_BODY {
            return Err(crate::ApiError::bad_request(format!(
                "the body is {} bytes; at most {MAX_BODY} are read",
                request.message.payload.len()
            )));
        }
        let identity = management
            .authenticate(token.as_deref(), Transport::Nats, verb)
            .await?;
        match Request::parse(verb, &request.message.payload) {
            Ok(parsed) => management.call(&identity, Transport::Nats, parsed).await,
            Err(error) => Err(management
                .failed(&identity, Transport::Nats, verb, error)
                .await),
        }
    }
    .await;
    let (body, headers) = match result {
        Ok(answer) => (answer, HeaderMap::new()),
        Err(error) => {
            let mut headers = HeaderMap::new();
            headers.insert(
                "Nats-Service-Error-Code",
                error.kind.status().to_string().as_str(),
            );
            headers.insert(
                "Nats-Service-Error",
                error.message.replace(['\r', '\n'], " ").as_str(),
            );
            (error.body(), headers)
        }
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    if let Err(error) = request.respond_with_headers(Ok(body.into()), headers).await {
        tracing::debug!(%error, verb, "a management answer was not sent");
    }
}
