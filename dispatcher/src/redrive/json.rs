//! Dead letters as JSON: what `switchyard dlq list --json` and `dlq show --json` print and the
//! management API answers, one shape for both.
#![allow(missing_docs)] // The fields are the documented JSON (docs/management-api.md).

use std::collections::BTreeMap;

use data_encoding::BASE64;
use serde::Serialize;
use switchyard_schemas::{header as ce, ContentType};
use time::OffsetDateTime;

use super::{DeadLetterRecord, DeadLetterSummary, OriginalForm};

/// `dlq list --json`.
#[derive(Debug, Serialize)]
pub struct DeadLetterList {
    /// The dead letters, oldest first.
    pub dead_letters: Vec<SummaryJson>,
}

/// One dead letter's failure and event, as `dlq list --json` and `dlq show --json` print it.
#[derive(Debug, Serialize)]
pub struct SummaryJson {
    sequence: u64,
    #[serde(with = "time::serde::rfc3339")]
    stored: OffsetDateTime,
    plugin: String,
    subscription: String,
    code: String,
    reason: String,
    attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    first_failure: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    last_failure: OffsetDateTime,
    original_subject: String,
    stream_sequence: u64,
    tenant: String,
    event_type: String,
    event_id: Option<String>,
}

impl SummaryJson {
    /// The view of `letter`.
    pub fn of(letter: &DeadLetterSummary) -> Self {
        let failure = &letter.failure;
        Self {
            sequence: letter.sequence,
            stored: letter.stored,
            plugin: failure.plugin.to_string(),
            subscription: failure.subscription.clone(),
            code: failure.code.to_string(),
            reason: failure.reason.clone(),
            attempts: failure.attempts,
            first_failure: failure.first_failure,
            last_failure: failure.last_failure,
            original_subject: failure.original_subject.clone(),
            stream_sequence: failure.stream_sequence,
            tenant: letter.tenant.to_string(),
            event_type: letter.event_type.to_string(),
            event_id: letter.event_id.as_ref().map(|id| id.as_str().to_owned()),
        }
    }
}

/// `dlq show --json`: the summary, the original headers, and the original as kept.
#[derive(Debug, Serialize)]
pub struct RecordJson {
    #[serde(flatten)]
    summary: SummaryJson,
    /// Whether the headers are a valid CloudEvents event.
    valid_event: bool,
    /// Each header with all its values, sorted by name.
    headers: BTreeMap<String, Vec<String>>,
    original: OriginalJson,
}

/// How the original was kept, and its bytes.
#[derive(Debug, Serialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum OriginalJson {
    /// A copy of the event: its body, decoded when its content type allows.
    Copy {
        content_type: Option<String>,
        body_bytes: usize,
        /// The body as JSON when it decodes whole as its content type says, else null.
        body: Option<serde_json::Value>,
        /// The body in base64, always.
        body_base64: String,
    },
    /// The raw message (its header block could not be read), both parts in base64.
    Raw {
        header_block_base64: String,
        body_base64: String,
    },
    /// The original was not kept.
    Omitted { why: String },
}

impl RecordJson {
    /// The view of `record`.
    pub fn of(record: &DeadLetterRecord) -> Self {
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, values) in record.headers.iter() {
            headers
                .entry(name.to_string())
                .or_default()
                .extend(values.iter().map(|v| v.as_str().to_owned()));
        }
        let original = match &record.form {
            OriginalForm::Copy => {
                let content_type = record
                    .headers
                    .get(ce::CONTENT_TYPE)
                    .map(|v| v.as_str().to_owned());
                OriginalJson::Copy {
                    body: content_type
                        .as_deref()
                        .and_then(ContentType::parse)
                        .and_then(|ct| ct.decode_whole(&record.body)),
                    content_type,
                    body_bytes: record.body.len(),
                    body_base64: BASE64.encode(&record.body),
                }
            }
            OriginalForm::Raw { header_len } => {
                let split = (*header_len).min(record.body.len());
                let (block, body) = record.body.split_at(split);
                OriginalJson::Raw {
                    header_block_base64: BASE64.encode(block),
                    body_base64: BASE64.encode(body),
                }
            }
            OriginalForm::Omitted { why } => OriginalJson::Omitted { why: why.clone() },
        };
        Self {
            summary: SummaryJson::of(&record.summary),
            valid_event: record.event.is_some(),
            headers,
            original,
        }
    }
}
