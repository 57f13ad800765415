//! Answers to deliveries: each goes to a reply subject in the delivered plugin's own reply
//! space, `_SY_REPLY.{prefix}.{plugin}.{dispatcher instance}.{n}`, and one subscription per
//! dispatcher instance hands it to the attempt that waits for it.
//!
//! Why not the client's own inbox (`_INBOX.…`, which async-nats's `request` uses): a plugin's
//! permissions are static lists (no response permission; see `docs/security.md`), so it must
//! be granted the subjects it answers on. Granting it `_INBOX.>` would let it answer anything
//! the dispatcher asks, JetStream API calls included. In its own reply space it can answer
//! only deliveries made to itself, and an answer is taken only from the subject the request
//! named, so one plugin can never settle another plugin's delivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::{HeaderMap, Message, RequestError, RequestErrorKind, StatusCode, Subject};
use bytes::Bytes;
use dashmap::DashMap;
use futures::StreamExt;
use switchyard_schemas::{Namespace, PluginId};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The attempts waiting for an answer, by their number: the exact reply subject each expects,
/// and where to hand the answer.
type Pending = DashMap<u64, (Subject, oneshot::Sender<Message>)>;

/// The reply subscription of one dispatcher instance and the requests waiting on it.
#[derive(Debug)]
pub struct Replies {
    client: async_nats::Client,
    namespace: Namespace,
    instance: String,
    next: AtomicU64,
    pending: Arc<Pending>,
    router: JoinHandle<()>,
}

impl Replies {
    /// Subscribes to every answer to this instance's deliveries. `instance` is one subject
    /// token, unique among the dispatchers sharing the deployment (a fresh random one per
    /// start is right: requests do not outlive their dispatcher).
    ///
    /// # Errors
    /// The subscription's error.
    pub async fn start(
        client: async_nats::Client,
        namespace: Namespace,
        instance: String,
    ) -> Result<Self, async_nats::SubscribeError> {
        let mut answers = client
            .subscribe(namespace.delivery_reply_filter(&instance))
            .await?;
        let pending: Arc<Pending> = Arc::default();
        let waiting = Arc::clone(&pending);
        let router = tokio::spawn(async move {
            while let Some(answer) = answers.next().await {
                let Some(n) = answer
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                // Taken only from the very subject the request named: another plugin's answer
                // with this number comes from its own reply space, and is dropped.
                if let Some((_, (_, waiter))) =
                    waiting.remove_if(&n, |_, (expected, _)| *expected == answer.subject)
                {
                    let _ = waiter.send(answer);
                }
            }
        });
        Ok(Self {
            client,
            namespace,
            instance,
            next: AtomicU64::new(0),
            pending,
            router,
        })
    }

    /// The connection requests go out on.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Sends a request to `subject` (a delivery or a probe to `plugin`'s workers) and waits
    /// up to `timeout` for its answer.
    ///
    /// # Errors
    /// [`RequestErrorKind::NoResponders`] when no worker is subscribed,
    /// [`RequestErrorKind::TimedOut`] when no answer came in time, and
    /// [`RequestErrorKind::Other`] when the request could not be sent.
    ///
    /// # Cancel safety
    /// Dropping the future forgets the request; a late answer is then dropped.
    pub async fn request(
        &self,
        plugin: &PluginId,
        subject: Subject,
        headers: HeaderMap,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Message, RequestError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let reply = Subject::from(self.namespace.delivery_reply(
            plugin,
            &self.instance,
            &n.to_string(),
        ));
        let (sender, answer) = oneshot::channel();
        self.pending.insert(n, (reply.clone(), sender));
        let _forget = Forget {
            pending: &self.pending,
            n,
        };
        self.client
            .publish_with_reply_and_headers(subject, reply, headers, payload)
            .await
            .map_err(|e| {
                let kind = match e.kind() {
                    async_nats::client::PublishErrorKind::MaxPayloadExceeded => {
                        RequestErrorKind::MaxPayloadExceeded
                    }
                    _ => RequestErrorKind::Other,
                };
                RequestError::with_source(kind, e)
            })?;
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(RequestError::new(RequestErrorKind::TimedOut)),
            Ok(Err(_)) => Err(RequestError::with_source(
                RequestErrorKind::Other,
                "the reply subscription ended",
            )),
            Ok(Ok(answer)) if answer.status == Some(StatusCode::NO_RESPONDERS) => {
                Err(RequestError::new(RequestErrorKind::NoResponders))
            }
            Ok(Ok(answer)) => Ok(answer),
        }
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.router.abort();
    }
}

/// Removes a request from the waiting ones when its attempt ends, whichever way.
struct Forget<'a> {
    pending: &'a Pending,
    n: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.pending.remove(&self.n);
    }
}
