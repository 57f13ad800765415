//! Reading a stored event's bytes exactly as they were published, without the NATS client's
//! header parser.
//!
//! A publisher can store a header block that no client can read (a bare CR in a value, a line
//! without `:`, bytes that are not UTF-8). Such a message reaches the dispatcher with its
//! headers replaced by [`async_nats::header::MALFORMED_HEADERS`]; to keep the original in its
//! dead letter, the dispatcher asks the stream for it through `$JS.API.STREAM.MSG.GET`, whose
//! answer is JSON carrying the header block and the body as base64.

use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use data_encoding::BASE64;
use serde::Deserialize;

/// How long the stream has to answer.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A stored message's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The subject it was published to.
    pub subject: String,
    /// The header block as stored (`NATS/1.0\r\n…\r\n\r\n`), empty when it had none.
    pub header_block: Bytes,
    /// The body.
    pub body: Bytes,
}

/// Why a stored message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RawReadError {
    /// The request failed or was not answered in time.
    #[error("cannot ask stream `{stream}` for sequence {sequence}: {reason}")]
    Request {
        /// The stream.
        stream: String,
        /// The sequence asked for.
        sequence: u64,
        /// What went wrong.
        reason: String,
    },
    /// The stream answered with an error (e.g. the message is gone).
    #[error("stream `{stream}` has no sequence {sequence}: {reason}")]
    Refused {
        /// The stream.
        stream: String,
        /// The sequence asked for.
        sequence: u64,
        /// The stream's description of the error.
        reason: String,
    },
    /// The answer was not the JSON the API documents.
    #[error("unreadable answer from stream `{stream}` for sequence {sequence}: {reason}")]
    BadAnswer {
        /// The stream.
        stream: String,
        /// The sequence asked for.
        sequence: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads stored messages of one stream.
#[derive(Debug, Clone)]
pub struct RawReader {
    client: async_nats::Client,
    stream: String,
}

/// The API's answer; async-nats's own reader of it parses the header block, which is what
/// must not happen here, so only its message type is reused.
#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    message: Option<jetstream::stream::RawMessage>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    description: String,
}

impl RawReader {
    /// A reader of `stream` (JetStream's default API prefix, as the bus uses).
    pub fn new(client: async_nats::Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }

    /// The message stored at `sequence`.
    ///
    /// # Errors
    /// A [`RawReadError`] naming the stream and sequence.
    pub async fn read(&self, sequence: u64) -> Result<RawMessage, RawReadError> {
        let subject = format!("$JS.API.STREAM.MSG.GET.{}", self.stream);
        let body = serde_json::to_vec(&serde_json::json!({ "seq": sequence }))
            .expect("a sequence serializes");
        let request = self.client.request(subject, body.into());
        let answer = match tokio::time::timeout(READ_TIMEOUT, request).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => return Err(self.request_error(sequence, error.to_string())),
            Err(_) => return Err(self.request_error(sequence, "no answer in time".into())),
        };
        self.parse(sequence, &answer.payload)
    }

    fn parse(&self, sequence: u64, answer: &[u8]) -> Result<RawMessage, RawReadError> {
        let bad = |reason: String| RawReadError::BadAnswer {
            stream: self.stream.clone(),
            sequence,
            reason,
        };
        let answer: Answer = serde_json::from_slice(answer).map_err(|e| bad(e.to_string()))?;
        if let Some(error) = answer.error {
            return Err(RawReadError::Refused {
                stream: self.stream.clone(),
                sequence,
                reason: error.description,
            });
        }
        let stored = answer
            .message
            .ok_or_else(|| bad("neither a message nor an error".into()))?;
        let decode = |field: &str, text: &str| -> Result<Bytes, RawReadError> {
            BASE64
                .decode(text.as_bytes())
                .map(Bytes::from)
                .map_err(|e| bad(format!("`{field}` is not base64: {e}")))
        };
        Ok(RawMessage {
            header_block: decode("hdrs", stored.headers.as_deref().unwrap_or_default())?,
            body: decode("data", &stored.payload)?,
            subject: stored.subject,
        })
    }

    fn request_error(&self, sequence: u64, reason: String) -> RawReadError {
        RawReadError::Request {
            stream: self.stream.clone(),
            sequence,
            reason,
        }
    }
}
