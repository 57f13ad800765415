//! Where an event is, for each plugin subscribed to its type, and why: not matched (tenant,
//! type, registered after it), pending, under way, waiting for a retry, done or
//! dead-lettered. What `switchyard explain <event-id>` prints.
//!
//! Pieced together from what each part knows: the events stream (the event, found by its
//! id), the registry (who subscribes to what, from which sequence), each subscription's
//! consumer (how far delivery has come), the dead letters, and the running dispatchers
//! (which delivered events they still hold, see [`held`]).

pub mod held;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull, DeliverPolicy};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use switchyard_bus::{decode_event, header, Bus};
use switchyard_schemas::manifest::Subscription;
use switchyard_schemas::semver::Version;
use switchyard_schemas::{header as ce, EventType, Namespace, PluginId, Tenant};
use time::OffsetDateTime;

use self::held::{HeldAnswer, HeldEvent, HeldQuery};
use crate::consumer::consumer_name;
use crate::pipeline::decision::codes;
use crate::pipeline::in_hand::{HeldState, LastFailure};
use crate::redrive::{DeadLetterFilter, DeadLetters};
use crate::status::StatusBoard;
use switchyard_control::registry::{Registration, Registry};

/// The most stored copies of one id that are explained (the event and its replays).
pub const MAX_COPIES: usize = 16;
/// How long a search waits for the next stored event before it gives up.
const SCAN_IDLE: Duration = Duration::from_secs(5);
/// How long the running dispatchers have to answer.
const ANSWER_WAIT: Duration = Duration::from_secs(2);

/// Where to look for the event in the events stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SearchFrom {
    /// From the oldest event the stream holds.
    #[default]
    Start,
    /// From this stream sequence.
    Sequence(u64),
    /// From the events stored at or after this time.
    Time(OffsetDateTime),
}

/// What is known about an event id.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The id asked about.
    pub event_id: String,
    /// Every stored copy of it (the event as published, and replays of its dead letters),
    /// oldest first.
    pub copies: Vec<Copy>,
    /// The running dispatchers that answered.
    pub dispatchers_answered: Vec<String>,
    /// The running dispatchers that did not answer in time (their held events are unknown).
    pub dispatchers_silent: Vec<String>,
}

/// One stored copy of the event.
#[derive(Debug, Clone, Serialize)]
pub struct Copy {
    /// Its sequence in the events stream.
    pub sequence: u64,
    /// The subject it is stored on.
    pub subject: String,
    /// When the stream stored it.
    #[serde(with = "time::serde::rfc3339")]
    pub stored_at: OffsetDateTime,
    /// The tenant, from the subject.
    pub tenant: Option<String>,
    /// The type, from the subject.
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// The schema version, from its headers.
    pub schema_version: Option<String>,
    /// For a replay: the plugin and subscription it is for.
    pub replay_for: Option<(String, String)>,
    /// For each registered plugin (and each of its subscriptions the event reaches), where
    /// the event is.
    pub plugins: Vec<PluginView>,
}

/// Where the event is for one plugin's subscription, or why it is not for the plugin.
#[derive(Debug, Clone, Serialize)]
pub struct PluginView {
    /// The plugin.
    pub plugin: String,
    /// The subscription; absent when the event is for none of them.
    pub subscription: Option<String>,
    /// Where the event is.
    #[serde(flatten)]
    pub status: Status,
    /// Something the operator should know besides, e.g. a version outside the range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Where an event is for one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// The event is not for this plugin or subscription.
    NotMatched {
        /// Why: its tenant, its type, or that the plugin was registered after it.
        why: String,
    },
    /// Not yet sent to the plugin.
    Pending,
    /// An attempt is being made.
    UnderWay {
        /// The dispatcher making it.
        instance: String,
        /// Which attempt.
        attempt: u32,
        /// When it started.
        #[serde(with = "time::serde::rfc3339")]
        since: OffsetDateTime,
    },
    /// An attempt failed; the event comes back after a delay.
    WaitingRetry {
        /// The dispatcher that holds it.
        instance: String,
        /// The attempts made.
        attempts: u32,
        /// When the retry is due.
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
        /// The last failure.
        last_failure: Option<LastFailure>,
    },
    /// Handled by the plugin and acknowledged.
    Done,
    /// Stored as a dead letter.
    DeadLettered {
        /// The dead letter's sequence (`switchyard dlq show <seq>`).
        dead_letter: u64,
        /// The error code.
        code: String,
        /// Why.
        reason: String,
        /// The attempts made.
        attempts: u32,
    },
    /// Sent, not acknowledged as far as JetStream knows, and held by no dispatcher that
    /// answered.
    Unknown {
        /// What is known, and what it may mean.
        why: String,
    },
}

/// Why an explanation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// Reading the streams, the consumers or the buckets failed.
    #[error("{action}: {reason}")]
    Nats {
        /// What was being done.
        action: &'static str,
        /// The error.
        reason: String,
    },
    /// The registry could not be read.
    #[error(transparent)]
    Registry(#[from] switchyard_control::registry::RegistryError),
    /// The dead letters could not be read.
    #[error(transparent)]
    DeadLetters(#[from] crate::redrive::RedriveError),
    /// The status bucket could not be read.
    #[error(transparent)]
    Status(#[from] crate::status::StatusError),
}

fn nats(action: &'static str, error: impl std::fmt::Display) -> ExplainError {
    ExplainError::Nats {
        action,
        reason: error.to_string(),
    }
}

/// Explains where the event with id `event_id` is, searching the events stream `from` the
/// given place. An id with no stored copy gives an explanation with no copies.
///
/// # Errors
/// An [`ExplainError`] when a stream, consumer or bucket cannot be read.
pub async fn explain(
    bus: &Bus,
    event_id: &str,
    from: SearchFrom,
) -> Result<Explanation, ExplainError> {
    let namespace = bus.namespace();
    let found = find_copies(bus, event_id, from).await?;
    let registry = Registry::open(bus.jetstream(), namespace).await?;
    let registrations = registry.list().await?;
    let sequences: Vec<u64> = found.iter().map(|copy| copy.sequence).collect();
    let answers = ask_dispatchers(bus, &sequences).await?;
    let dead_letters = DeadLetters::new(bus.jetstream().clone(), namespace.clone(), bus.streams());
    let events = bus
        .jetstream()
        .get_stream(&bus.streams().events.name)
        .await
        .map_err(|e| nats("open the events stream", e))?;

    let mut context = Context {
        events,
        dead_letters,
        answers: &answers,
        consumers: BTreeMap::new(),
        dead_lettered: BTreeMap::new(),
    };
    let mut copies = Vec::with_capacity(found.len());
    for copy in found {
        let mut plugins = Vec::new();
        for registration in &registrations {
            plugins.extend(context.views(registration, &copy).await?);
        }
        copies.push(Copy {
            sequence: copy.sequence,
            subject: copy.subject.clone(),
            stored_at: copy.stored_at,
            tenant: copy.target.as_ref().map(|t| t.tenant.to_string()),
            event_type: copy.target.as_ref().map(|t| t.event_type.to_string()),
            schema_version: copy.schema_version.as_ref().map(ToString::to_string),
            replay_for: copy.replay_for.clone(),
            plugins,
        });
    }
    Ok(Explanation {
        event_id: event_id.to_owned(),
        copies,
        dispatchers_answered: answers.answered,
        dispatchers_silent: answers.silent,
    })
}

/// A stored copy as found by the search.
#[derive(Debug)]
struct Found {
    sequence: u64,
    subject: String,
    stored_at: OffsetDateTime,
    /// Tenant and type, from the subject (what the consumers filter on).
    target: Option<Target>,
    schema_version: Option<Version>,
    replay_for: Option<(String, String)>,
}

#[derive(Debug)]
struct Target {
    tenant: Tenant,
    event_type: EventType,
}

/// Reads the headers of every stored event from `from` on and keeps those with the id.
async fn find_copies(
    bus: &Bus,
    event_id: &str,
    from: SearchFrom,
) -> Result<Vec<Found>, ExplainError> {
    let mut stream = bus
        .jetstream()
        .get_stream(&bus.streams().events.name)
        .await
        .map_err(|e| nats("open the events stream", e))?;
    let last = stream
        .info()
        .await
        .map_err(|e| nats("read the events stream", e))?
        .state
        .last_sequence;
    let deliver_policy = match from {
        SearchFrom::Start => DeliverPolicy::All,
        SearchFrom::Sequence(start_sequence) if start_sequence > last => return Ok(Vec::new()),
        SearchFrom::Sequence(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
        SearchFrom::Time(start_time) => DeliverPolicy::ByStartTime { start_time },
    };
    if last == 0 {
        return Ok(Vec::new());
    }
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            headers_only: true,
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| nats("search the events stream", e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| nats("search the events stream", e))?;
    let namespace = bus.namespace();
    let mut found = Vec::new();
    loop {
        let message = match tokio::time::timeout(SCAN_IDLE, messages.next()).await {
            // Nothing after the start (a time after the last event): the search is over.
            Err(_) | Ok(None) => break,
            Ok(Some(message)) => message.map_err(|e| nats("search the events stream", e))?,
        };
        let Ok(info) = message.info() else {
            continue;
        };
        let (sequence, stored_at, pending) = (info.stream_sequence, info.published, info.pending);
        let headers = message.headers.as_ref();
        if headers.and_then(|h| header(h, ce::ID)) == Some(event_id) {
            found.push(read_copy(namespace, &message, sequence, stored_at));
        }
        if pending == 0 || sequence >= last || found.len() >= MAX_COPIES {
            break;
        }
    }
    Ok(found)
}

fn read_copy(
    namespace: &Namespace,
    message: &async_nats::jetstream::Message,
    sequence: u64,
    stored_at: OffsetDateTime,
) -> Found {
    let subject = message.subject.to_string();
    let target = namespace
        .parse_event_or_redrive(&subject)
        .ok()
        .map(|(tenant, event_type)| Target { tenant, event_type });
    let replay_for = subject
        .strip_prefix(&format!("{}.redrive.", namespace.prefix()))
        .and_then(|rest| {
            let mut tokens = rest.split('.');
            Some((tokens.next()?.to_owned(), tokens.next()?.to_owned()))
        });
    let schema_version = decode_event(message.headers.as_ref(), Bytes::new())
        .ok()
        .map(|event| event.attributes.schema_version);
    Found {
        sequence,
        subject,
        stored_at,
        target,
        schema_version,
        replay_for,
    }
}

/// What the running dispatchers said.
#[derive(Debug, Default)]
struct Answers {
    held: Vec<(String, HeldEvent)>,
    held_per_consumer: BTreeMap<String, usize>,
    answered: Vec<String>,
    silent: Vec<String>,
}

impl Answers {
    /// Whether every running dispatcher answered.
    fn complete(&self) -> bool {
        self.silent.is_empty()
    }
}

/// Asks every running dispatcher which of `sequences` it holds; waits for all that the
/// status bucket lists as alive, or [`ANSWER_WAIT`].
async fn ask_dispatchers(bus: &Bus, sequences: &[u64]) -> Result<Answers, ExplainError> {
    let board = StatusBoard::open(bus.jetstream(), bus.namespace()).await?;
    let alive: HashSet<String> = board.live_instances().await?.into_iter().collect();
    let mut answers = Answers::default();
    if sequences.is_empty() {
        return Ok(answers);
    }
    let client = bus.client();
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| nats("ask the dispatchers", e))?;
    let mut queries = Vec::new();
    for chunk in sequences.chunks(held::MAX_SEQUENCES) {
        let query = serde_json::to_vec(&HeldQuery {
            sequences: chunk.to_vec(),
        })
        .map_err(|e| nats("ask the dispatchers", e))?;
        queries.push(query);
    }
    for query in &queries {
        client
            .publish_with_reply(
                bus.namespace().explain_requests(),
                inbox.clone(),
                query.clone().into(),
            )
            .await
            .map_err(|e| nats("ask the dispatchers", e))?;
    }
    client
        .flush()
        .await
        .map_err(|e| nats("ask the dispatchers", e))?;
    let expected = alive.len() * queries.len();
    let mut heard: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + ANSWER_WAIT;
    while heard.values().sum::<usize>() < expected
        || !alive.iter().all(|instance| heard.contains_key(instance))
    {
        let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await else {
            break;
        };
        let Ok(answer) = serde_json::from_slice::<HeldAnswer>(&reply.payload) else {
            continue;
        };
        if let Some(error) = &answer.error {
            tracing::warn!(instance = %answer.instance, %error, "a dispatcher refused the explain query");
            continue;
        }
        *heard.entry(answer.instance.clone()).or_default() += 1;
        for (consumer, count) in answer.held_per_consumer {
            *answers.held_per_consumer.entry(consumer).or_default() += count;
        }
        answers.held.extend(
            answer
                .held
                .into_iter()
                .map(|held| (answer.instance.clone(), held)),
        );
    }
    answers.answered = heard.keys().cloned().collect();
    answers.silent = alive
        .into_iter()
        .filter(|instance| !heard.contains_key(instance))
        .collect();
    answers.silent.sort();
    Ok(answers)
}

/// What is read once per consumer or plugin and shared by the copies.
struct Context<'a> {
    events: async_nats::jetstream::stream::Stream,
    dead_letters: DeadLetters,
    answers: &'a Answers,
    consumers: BTreeMap<String, Option<consumer::Info>>,
    /// Each plugin's dead letters: (subscription, event sequence) → the dead letter.
    dead_lettered: BTreeMap<PluginId, BTreeMap<(String, u64), Status>>,
}

impl Context<'_> {
    /// The views of one plugin on one copy.
    async fn views(
        &mut self,
        registration: &Registration,
        copy: &Found,
    ) -> Result<Vec<PluginView>, ExplainError> {
        let plugin = registration.plugin_id();
        let view = |subscription: Option<&Subscription>, status, note| PluginView {
            plugin: plugin.to_string(),
            subscription: subscription.map(|s| s.name.to_string()),
            status,
            note,
        };
        let Some(target) = &copy.target else {
            return Ok(vec![view(
                None,
                Status::NotMatched {
                    why: format!("its subject `{}` is not an event subject", copy.subject),
                },
                None,
            )]);
        };
        if let Some((for_plugin, _)) = &copy.replay_for {
            if for_plugin != plugin.as_str() {
                return Ok(Vec::new());
            }
        } else if !registration.tenants.includes(&target.tenant) {
            return Ok(vec![view(
                None,
                Status::NotMatched {
                    why: format!(
                        "tenant `{}` is not among the plugin's tenants",
                        target.tenant
                    ),
                },
                None,
            )]);
        }
        let mut views = Vec::new();
        for subscription in &registration.manifest.subscriptions {
            if let Some((_, for_subscription)) = &copy.replay_for {
                if for_subscription != subscription.name.as_str() {
                    continue;
                }
            } else if !subscription
                .events
                .iter()
                .any(|pattern| pattern.matches(&target.event_type))
            {
                continue;
            }
            let note = version_note(subscription, copy.schema_version.as_ref());
            let status = self.status(registration, subscription, copy).await?;
            views.push(view(Some(subscription), status, note));
        }
        if views.is_empty() {
            let patterns: Vec<String> = registration
                .manifest
                .subscriptions
                .iter()
                .flat_map(|s| s.events.iter().map(ToString::to_string))
                .collect();
            views.push(view(
                None,
                Status::NotMatched {
                    why: format!(
                        "type `{}` matches none of its subscriptions' patterns ({})",
                        target.event_type,
                        if patterns.is_empty() {
                            "it has none".to_owned()
                        } else {
                            patterns.join(", ")
                        }
                    ),
                },
                None,
            ));
        }
        Ok(views)
    }

    /// Where the copy is for one subscription whose filters it passes.
    async fn status(
        &mut self,
        registration: &Registration,
        subscription: &Subscription,
        copy: &Found,
    ) -> Result<Status, ExplainError> {
        let plugin = registration.plugin_id();
        let sequence = copy.sequence;
        if let Some(dead) = self
            .dead_letter(plugin, subscription.name.as_str(), sequence)
            .await?
        {
            return Ok(dead);
        }
        let name = consumer_name(plugin, subscription.name.as_str());
        let info = self.consumer(&name).await?;
        let Some(info) = info else {
            // No dispatcher has created the consumer yet; it will start at the registration's
            // sequence.
            return Ok(match registration.start_sequence {
                Some(start) if sequence < start => registered_after(start),
                _ => Status::Pending,
            });
        };
        match info.config.deliver_policy {
            DeliverPolicy::ByStartSequence { start_sequence } if sequence < start_sequence => {
                return Ok(registered_after(start_sequence));
            }
            DeliverPolicy::New if copy.stored_at < info.created => {
                return Ok(Status::NotMatched {
                    why: format!(
                        "stored before the subscription's consumer was created ({}), which \
                         starts with new events",
                        info.created
                    ),
                });
            }
            _ => {}
        }
        // Below the ack floor first: a dispatcher may still hold an entry for an event another
        // one settled since.
        if sequence <= info.ack_floor.stream_sequence {
            return Ok(Status::Done);
        }
        if let Some(held) = self.held(plugin, subscription.name.as_str(), sequence) {
            return Ok(held);
        }
        if sequence > info.delivered.stream_sequence {
            return Ok(Status::Pending);
        }
        // Sent, and not below the ack floor: acknowledged out of order, or held by a
        // dispatcher that did not answer (or stopped holding it).
        let held_by_answering = self.answers.held_per_consumer.get(&name).copied();
        if info.num_ack_pending == 0
            || (self.answers.complete() && held_by_answering == Some(info.num_ack_pending))
        {
            return Ok(Status::Done);
        }
        Ok(Status::Unknown {
            why: format!(
                "sent, not yet acknowledged as far as JetStream knows ({} of the subscription's \
                 events are), and held by no dispatcher that answered: it comes back after its \
                 ack wait if a dispatcher stopped holding it, or it was acknowledged a moment ago",
                info.num_ack_pending
            ),
        })
    }

    async fn consumer(&mut self, name: &str) -> Result<Option<consumer::Info>, ExplainError> {
        if let Some(info) = self.consumers.get(name) {
            return Ok(info.clone());
        }
        let info = match self.events.consumer_info(name).await {
            Ok(info) => Some(info),
            Err(error) if error.kind() == ConsumerInfoErrorKind::NotFound => None,
            Err(error) => return Err(nats("read a subscription's consumer", error)),
        };
        self.consumers.insert(name.to_owned(), info.clone());
        Ok(info)
    }

    async fn dead_letter(
        &mut self,
        plugin: &PluginId,
        subscription: &str,
        sequence: u64,
    ) -> Result<Option<Status>, ExplainError> {
        if !self.dead_lettered.contains_key(plugin) {
            let summaries = self
                .dead_letters
                .list(&DeadLetterFilter {
                    plugin: Some(plugin.clone()),
                    ..DeadLetterFilter::default()
                })
                .await?;
            let by_event = summaries
                .into_iter()
                .map(|summary| {
                    let failure = summary.failure;
                    (
                        (failure.subscription, failure.stream_sequence),
                        Status::DeadLettered {
                            dead_letter: summary.sequence,
                            code: failure.code.to_string(),
                            reason: failure.reason,
                            attempts: failure.attempts,
                        },
                    )
                })
                .collect();
            self.dead_lettered.insert(plugin.clone(), by_event);
        }
        Ok(self
            .dead_lettered
            .get(plugin)
            .and_then(|by_event| by_event.get(&(subscription.to_owned(), sequence)))
            .cloned())
    }

    /// What the answering dispatchers hold of the event: an attempt under way wins over a
    /// retry another dispatcher is waiting for.
    fn held(&self, plugin: &PluginId, subscription: &str, sequence: u64) -> Option<Status> {
        let mut best: Option<Status> = None;
        for (instance, held) in &self.answers.held {
            if held.plugin != *plugin
                || held.subscription != subscription
                || held.sequence != sequence
            {
                continue;
            }
            let status = match &held.held.state {
                HeldState::UnderWay { since } => Status::UnderWay {
                    instance: instance.clone(),
                    attempt: held.held.attempt,
                    since: *since,
                },
                HeldState::WaitingRetry { until } => Status::WaitingRetry {
                    instance: instance.clone(),
                    attempts: held.held.attempt,
                    until: *until,
                    last_failure: held.held.last_failure.clone(),
                },
            };
            let under_way = matches!(status, Status::UnderWay { .. });
            if best.is_none() || under_way {
                best = Some(status);
            }
        }
        best
    }
}

fn registered_after(start: u64) -> Status {
    Status::NotMatched {
        why: format!(
            "stored before the plugin was registered (its events start at sequence {start})"
        ),
    }
}

/// A note when the event's schema version is outside the subscription's range: the event is
/// dead-lettered there, not delivered.
fn version_note(subscription: &Subscription, version: Option<&Version>) -> Option<String> {
    let version = version?;
    (!subscription.versions.matches(version)).then(|| {
        format!(
            "schema version {version} is outside the subscription's range `{}`: it is \
             dead-lettered as {}, not delivered",
            subscription.versions,
            codes::VERSION_MISMATCH
        )
    })
}
