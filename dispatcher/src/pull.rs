//! A long-lived pull from one JetStream consumer, asking for exactly the free delivery slots.
//!
//! async-nats offers two pulls, and neither fits. `batch()` subscribes and unsubscribes a
//! fresh inbox for every pull, which cost a third of the throughput (docs/performance.md).
//! `stream()` fetches ahead of what can be delivered and re-pulls on its own timer, so
//! events would wait un-acknowledged in a client buffer; while a plugin's workers are
//! absent, their ack wait would run out and each would come back having lost an attempt
//! it never had.
//!
//! [`Pull`] keeps one inbox for its lifetime and sends a pull request for the slots that
//! are free. Every message that arrives was asked for with a slot, and comes with it, so it
//! is delivered (or held, its ack wait extended) at once; nothing waits in a buffer.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull::BatchConfig};
use async_nats::{StatusCode, Subject};
use futures::StreamExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// How long the server keeps one pull request open. An expired request's unfilled slots
/// come back with its `408` status.
pub const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// While a request waits, the server sends a heartbeat this often, so that a request lost
/// with its server (a node down, a consumer leader moved) is noticed in seconds.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// After this long without a message, a heartbeat or a status while requests are out, they
/// are presumed lost and their slots freed.
const LOST_AFTER: Duration = Duration::from_millis(2_500);
/// While slots are asked for, how often to look for a reconnect: a server that restarted
/// has forgotten every request, so their slots are freed and asked for again.
const RECONNECT_CHECK: Duration = Duration::from_secs(1);
/// The server's count of messages a request still had not sent when it ended.
const PENDING_MESSAGES: &str = "Nats-Pending-Messages";

/// Why a pull could not be set up or asked.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The inbox subscription failed.
    #[error("cannot subscribe the pull inbox: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// A pull request could not be sent.
    #[error("cannot send a pull request: {0}")]
    Request(#[from] async_nats::PublishError),
}

/// What [`Pull::next`] brings.
// Returned by value and taken apart at once; boxing the message would allocate per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Pulled {
    /// A message and the slot asked for it. `None` only for a message of a request that was
    /// presumed lost: it needs a slot of its own.
    Message(jetstream::Message, Option<OwnedSemaphorePermit>),
    /// Requests ended unfilled (expired, or lost) and their slots were freed.
    Released,
    /// The server refused a request at once (no consumer leader, no JetStream, the
    /// consumer gone...) and its slots were freed: asking again at once would repeat it.
    Refused(String),
}

/// A pull from one consumer through one inbox; see the module documentation.
#[derive(Debug)]
pub struct Pull {
    context: jetstream::Context,
    next_subject: Subject,
    inbox: Subject,
    replies: async_nats::Subscriber,
    /// One permit per message asked for and not arrived yet.
    requested: Option<OwnedSemaphorePermit>,
    /// When the last request was sent or the last reply came.
    last_heard: Instant,
    /// The connection's statistics, whose connect count tells of reconnects.
    statistics: Arc<async_nats::Statistics>,
    /// The connect count when requests were last known to be alive.
    connects: u64,
    /// When to look for a reconnect next, while nothing arrives.
    next_check: Instant,
}

impl Pull {
    /// Subscribes an inbox for pulling from `consumer` of `stream`, on the connection of
    /// `context`: requests go out on the same one, so the server knows the inbox before the
    /// first request reaches it.
    ///
    /// # Errors
    /// [`PullError::Subscribe`] when the subscription fails.
    pub async fn open(
        context: jetstream::Context,
        stream: &str,
        consumer: &str,
    ) -> Result<Self, PullError> {
        let client = context.client();
        let inbox = Subject::from(client.new_inbox());
        let replies = client.subscribe(inbox.clone()).await?;
        let statistics = client.statistics();
        Ok(Self {
            connects: statistics.connects.load(Ordering::Relaxed),
            statistics,
            next_check: Instant::now() + RECONNECT_CHECK,
            context,
            // The JetStream API's default prefix, as the bus's JetStream context uses.
            next_subject: Subject::from(format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}")),
            inbox,
            replies,
            requested: None,
            last_heard: Instant::now(),
        })
    }

    /// How many messages are asked for and not arrived yet.
    pub fn requested(&self) -> usize {
        self.requested.as_ref().map_or(0, |p| p.num_permits())
    }

    /// Asks for one message per permit in `slots`; each arrives with one of them.
    ///
    /// # Errors
    /// [`PullError::Request`] when the request cannot be sent; the slots are freed.
    pub async fn request(&mut self, slots: OwnedSemaphorePermit) -> Result<(), PullError> {
        let config = BatchConfig {
            batch: slots.num_permits(),
            expires: Some(PULL_EXPIRES),
            idle_heartbeat: HEARTBEAT,
            ..BatchConfig::default()
        };
        let body = serde_json::to_vec(&config).expect("a pull request serializes");
        self.context
            .client()
            .publish_with_reply(self.next_subject.clone(), self.inbox.clone(), body.into())
            .await?;
        match &mut self.requested {
            Some(requested) => requested.merge(slots),
            None => self.requested = Some(slots),
        }
        self.last_heard = Instant::now();
        Ok(())
    }

    /// The next message, or news that slots were freed. Pending forever while nothing is
    /// asked for; ends (`None`) only if the subscription does.
    ///
    /// # Cancel safety
    /// Cancel-safe: nothing is taken or freed until it returns.
    pub async fn next(&mut self) -> Option<Pulled> {
        loop {
            if self.requested() > 0 && self.reconnected() {
                return Some(self.release_all("the connection was re-established"));
            }
            let check_at = (self.requested() > 0).then_some(self.next_check);
            let reply = tokio::select! {
                // Replies first: after the task waited long to be polled (a busy runtime), a
                // reply already queued must count before the silence is judged.
                biased;
                reply = self.replies.next() => reply?,
                () = sleep_until(check_at) => {
                    // Replies keep `last_heard` fresh, so a request can only be lost without
                    // its `408` while nothing arrives: checked here, not per message.
                    let now = Instant::now();
                    self.next_check = now + RECONNECT_CHECK;
                    if now >= self.last_heard + LOST_AFTER {
                        return Some(self.release_all("no heartbeat from the server"));
                    }
                    continue;
                }
            };
            self.last_heard = Instant::now();
            // A stored message always comes with its acknowledgement subject, a status from
            // the server never does: a status line a publisher wrote into an event must not
            // be taken for the server's (the screen dead-letters it).
            let stored = reply.reply.is_some();
            match reply.status {
                _ if stored => {
                    let slot = self.requested.as_mut().and_then(|p| p.split(1));
                    let message = jetstream::Message {
                        message: reply,
                        context: self.context.clone(),
                    };
                    return Some(Pulled::Message(message, slot));
                }
                None | Some(StatusCode::OK) => {
                    tracing::warn!(subject = %reply.subject, "a message without an acknowledgement subject on the pull inbox; ignored");
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                Some(status) => {
                    // A request ended (expired, or terminated by the server). Its unfilled
                    // count comes as a header; without one, nothing asked for can be
                    // counted on any more.
                    let unfilled = reply
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(PENDING_MESSAGES))
                        .and_then(|v| v.as_str().parse::<usize>().ok());
                    match unfilled {
                        Some(n) if n < self.requested() => {
                            drop(self.requested.as_mut().and_then(|p| p.split(n)));
                        }
                        _ => self.requested = None,
                    }
                    // 408 is an expiry, and 409 with pending counts a request the server
                    // ended in order (e.g. a leader change); anything else is a refusal.
                    if status == StatusCode::TIMEOUT
                        || (status == StatusCode::REQUEST_TERMINATED && unfilled.is_some())
                    {
                        return Some(Pulled::Released);
                    }
                    let description = reply.description.as_deref().unwrap_or("");
                    return Some(Pulled::Refused(format!("{status} {description}")));
                }
            }
        }
    }

    /// Whether the connection was re-established since the last look: a server that
    /// restarted has forgotten every request.
    fn reconnected(&mut self) -> bool {
        let connects = self.statistics.connects.load(Ordering::Relaxed);
        std::mem::replace(&mut self.connects, connects) != connects
    }

    /// Frees every slot asked for: the requests can no longer be answered.
    fn release_all(&mut self, why: &'static str) -> Pulled {
        tracing::warn!(
            slots = self.requested(),
            why,
            "pull requests lost; asking again"
        );
        self.requested = None;
        Pulled::Released
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
