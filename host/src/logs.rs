//! Workers' output, readable from anywhere: each host publishes what its instances write on
//! stdout and stderr, line by line, on `{prefix}.logs.{plugin}.{slot}`, and the stream
//! `{PREFIX}_LOGS` keeps the newest [`LINES_PER_INSTANCE`] lines of each instance within
//! [`LOGS_MAX_BYTES`] in all. `switchyard logs <plugin>` reads them.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::HeaderMap;
use futures::StreamExt as _;
use switchyard_bus::stream_name;
use switchyard_schemas::{Namespace, PluginId};
use time::OffsetDateTime;

use crate::place::{PlaceError, Slot};
use crate::supervise::{Line, Stream};

/// The lines kept per instance.
pub const LINES_PER_INSTANCE: i64 = 2000;
/// The most the logs stream holds, all instances together; the oldest lines go first.
pub const LOGS_MAX_BYTES: i64 = 64 * 1024 * 1024;
/// How long a line is kept at most.
const LOGS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The header naming the stream a line came from (`stdout` or `stderr`).
pub const STREAM_HEADER: &str = "Switchyard-Output";
/// The header naming the host that ran the instance.
pub const HOST_HEADER: &str = "Switchyard-Host";

/// The subject of `plugin`'s instance `slot`'s lines.
pub fn subject(namespace: &Namespace, plugin: &str, slot: Slot) -> String {
    format!("{}.logs.{plugin}.{slot}", namespace.prefix())
}

/// Creates the logs stream of `namespace` if it is missing (a host, at start).
///
/// # Errors
/// [`PlaceError::Store`].
pub async fn provision(js: &jetstream::Context, namespace: &Namespace) -> Result<(), PlaceError> {
    let name = stream_name(namespace, "LOGS");
    js.get_or_create_stream(stream::Config {
        name: name.clone(),
        description: Some("Switchyard workers' output, per instance".into()),
        subjects: vec![format!("{}.logs.>", namespace.prefix())],
        max_messages_per_subject: LINES_PER_INSTANCE,
        max_bytes: LOGS_MAX_BYTES,
        max_age: LOGS_MAX_AGE,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    })
    .await
    .map(drop)
    .map_err(|e| PlaceError::Store {
        action: "create the logs stream",
        bucket: name,
        reason: e.to_string(),
    })
}

/// The headers of one published line.
pub fn headers(line: &Line, host: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let stream = match line.stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    headers.insert(STREAM_HEADER, stream);
    headers.insert(HOST_HEADER, host);
    headers
}

/// One line read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the host published it.
    pub at: OffsetDateTime,
    /// The instance.
    pub slot: String,
    /// The host that ran it.
    pub host: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The text.
    pub text: String,
}

/// Reads `plugin`'s lines: the newest `last` of them, oldest first (all instances together),
/// and then, with `follow`, each new one as it comes, until `stop` is sent to it.
///
/// # Errors
/// [`PlaceError::Store`] when the stream cannot be read; `Ok(None)` when no host ever made it.
pub async fn read(
    js: &jetstream::Context,
    namespace: &Namespace,
    plugin: &PluginId,
    last: usize,
) -> Result<Option<(Vec<LogLine>, LineStream)>, PlaceError> {
    let name = stream_name(namespace, "LOGS");
    let failed = |action, e: &dyn std::fmt::Display| PlaceError::Store {
        action,
        bucket: name.clone(),
        reason: e.to_string(),
    };
    let Ok(stream) = js.get_stream(&name).await else {
        return Ok(None);
    };
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: format!("{}.logs.{plugin}.>", namespace.prefix()),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| failed("read the logs", &e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| failed("read the logs", &e))?;
    let mut kept = VecDeque::new();
    // Nothing stored: an empty answer rather than a wait.
    let pending = consumer_pending(&stream, namespace, plugin).await;
    if pending > 0 {
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| failed("read the logs", &e))?;
            let Ok(info) = message.info() else { continue };
            let behind = info.pending;
            kept.push_back(line_of(&message, info.published));
            if kept.len() > last {
                kept.pop_front();
            }
            if behind == 0 {
                break;
            }
        }
    }
    Ok(Some((kept.into(), LineStream { messages })))
}

/// The lines stored for `plugin` now.
async fn consumer_pending(
    stream: &stream::Stream,
    namespace: &Namespace,
    plugin: &PluginId,
) -> u64 {
    let filter = format!("{}.logs.{plugin}.>", namespace.prefix());
    let stream = stream.clone();
    match stream.info_with_subjects(filter).await {
        Ok(subjects) => {
            let mut total = 0;
            let mut subjects = subjects;
            while let Some(Ok((_, count))) = subjects.next().await {
                total += count as u64;
            }
            total
        }
        Err(_) => 1,
    }
}

fn line_of(message: &jetstream::Message, at: OffsetDateTime) -> LogLine {
    let header = |name: &str| {
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default()
    };
    LogLine {
        at,
        slot: message
            .subject
            .rsplit_once('.')
            .map(|(_, slot)| slot.to_owned())
            .unwrap_or_default(),
        host: header(HOST_HEADER),
        stream: header(STREAM_HEADER),
        text: String::from_utf8_lossy(&message.payload).into_owned(),
    }
}

/// The lines after those [`read`] returned, as they come.
pub struct LineStream {
    messages: consumer::pull::Ordered,
}

impl LineStream {
    /// The next line; `None` when the connection closed.
    ///
    /// # Errors
    /// [`PlaceError::Store`] when reading fails.
    pub async fn next(&mut self) -> Option<Result<LogLine, PlaceError>> {
        loop {
            let message = match self.messages.next().await? {
                Ok(message) => message,
                Err(e) => {
                    return Some(Err(PlaceError::Store {
                        action: "follow the logs",
                        bucket: "logs".into(),
                        reason: e.to_string(),
                    }))
                }
            };
            if let Ok(info) = message.info() {
                let published = info.published;
                return Some(Ok(line_of(&message, published)));
            }
        }
    }
}
