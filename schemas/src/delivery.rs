//! The delivery protocol between the dispatcher and a plugin's workers.
//!
//! The dispatcher sends each delivery as a NATS request to `{prefix}.deliver.{plugin}`: the
//! event's own headers and body, plus the [`DeliveryInfo`] headers. The worker replies with an
//! [`Outcome`]. See `docs/wire-format.md` §4.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::name::PluginId;

/// Header names of the delivery protocol, defined once.
pub mod header {
    /// Everything the dispatcher tells a worker about one delivery, as `name=value` fields
    /// separated by `;` (see [`super::field`]): one header rather than one per field, since
    /// every header is parsed and allocated on its own by each client that receives it.
    pub const DELIVERY: &str = "switchyard-delivery";
    /// The reply's outcome: `done`, `retry` or `failed`.
    pub const OUTCOME: &str = "switchyard-outcome";
    /// With `retry`: how long to wait before the next attempt, in milliseconds.
    pub const RETRY_AFTER_MS: &str = "switchyard-retry-after-ms";
    /// With `retry` or `failed`: a machine-readable error code.
    pub const ERROR_CODE: &str = "switchyard-error-code";
    /// Marks a presence probe: a request with no event that a worker answers with any reply,
    /// so the dispatcher learns a worker is connected.
    pub const PROBE: &str = "switchyard-probe";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace state.
    pub const TRACESTATE: &str = "tracestate";
}

/// Field names of the [`header::DELIVERY`] header, defined once.
pub mod field {
    /// The attempt number, 1 for the first delivery of an event to this plugin.
    pub const ATTEMPT: &str = "attempt";
    /// The most attempts the plugin's policy allows.
    pub const MAX_ATTEMPTS: &str = "max-attempts";
    /// When the dispatcher stops waiting for the reply: Unix time in milliseconds.
    pub const DEADLINE_MS: &str = "deadline-ms";
    /// The per-attempt timeout in milliseconds (the deadline without clock skew).
    pub const TIMEOUT_MS: &str = "timeout-ms";
    /// The plugin the delivery is for.
    pub const PLUGIN: &str = "plugin";
    /// The plugin's subscription that matched the event.
    pub const SUBSCRIPTION: &str = "subscription";
    /// The event's sequence number in the events stream.
    pub const STREAM_SEQUENCE: &str = "stream-seq";
}

/// The longest error code accepted, in bytes.
pub const MAX_ERROR_CODE_LEN: usize = 64;
/// The longest reason kept, in bytes; longer ones are cut (on a character boundary).
pub const MAX_REASON_LEN: usize = 4096;

/// A machine-readable error code: 1 to 64 of `a-z 0-9 . _ -` (`payment.declined`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(String);

impl ErrorCode {
    /// Validates a code.
    ///
    /// # Errors
    /// A reason when the code is empty, too long, or holds other characters.
    pub fn new(code: impl Into<String>) -> Result<Self, &'static str> {
        let code = code.into();
        if code.is_empty() {
            return Err("must not be empty");
        }
        if code.len() > MAX_ERROR_CODE_LEN {
            return Err("longer than 64 bytes");
        }
        if !code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        {
            return Err("only a-z, 0-9, `.`, `_` and `-` are allowed");
        }
        Ok(Self(code))
    }

    /// A code chosen by Switchyard's own code; panics on a bad literal, which is a bug.
    ///
    /// # Panics
    /// When `code` is not a valid error code.
    pub fn internal(code: &'static str) -> Self {
        Self::new(code).unwrap_or_else(|e| panic!("internal error code `{code}` {e}"))
    }

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the dispatcher tells a worker about one delivery, besides the event itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryInfo {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The most attempts the policy allows.
    pub max_attempts: u32,
    /// When the dispatcher stops waiting for the reply.
    pub deadline: SystemTime,
    /// The per-attempt timeout.
    pub timeout: Duration,
    /// The plugin.
    pub plugin: PluginId,
    /// The subscription that matched.
    pub subscription: String,
    /// The event's sequence in the events stream.
    pub stream_sequence: u64,
}

/// Why delivery headers or a reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A required header is absent.
    #[error("missing header `{0}`")]
    Missing(&'static str),
    /// A field of a `name=value;…` header ([`header::DELIVERY`], `switchyard-call`) is absent.
    #[error("header `{header}` has no `{field}` field")]
    MissingField {
        /// The header.
        header: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A field of a `name=value;…` header is not valid.
    #[error("bad field `{field}` = `{value}` in header `{header}`: {reason}")]
    BadField {
        /// The header.
        header: &'static str,
        /// The field.
        field: &'static str,
        /// The value found.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A header's value is not valid.
    #[error("bad header `{header}` = `{value}`: {reason}")]
    Bad {
        /// The header.
        header: &'static str,
        /// The value found.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl DeliveryInfo {
    /// The header that carries this information: [`header::DELIVERY`] and its value.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![(header::DELIVERY, self.header_value())]
    }

    /// The value of the [`header::DELIVERY`] header, e.g.
    /// `attempt=1;max-attempts=5;deadline-ms=1795000000123;timeout-ms=30000;plugin=audit;subscription=orders;stream-seq=42`.
    pub fn header_value(&self) -> String {
        use std::fmt::Write as _;
        let deadline_ms = self
            .deadline
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut value = String::with_capacity(128);
        // Writing to a String cannot fail.
        let _ = write!(
            value,
            "{}={};{}={};{}={};{}={};{}={};{}={};{}={}",
            field::ATTEMPT,
            self.attempt,
            field::MAX_ATTEMPTS,
            self.max_attempts,
            field::DEADLINE_MS,
            deadline_ms,
            field::TIMEOUT_MS,
            self.timeout.as_millis(),
            field::PLUGIN,
            self.plugin,
            field::SUBSCRIPTION,
            self.subscription,
            field::STREAM_SEQUENCE,
            self.stream_sequence,
        );
        value
    }

    /// Reads the information from a delivery's headers. Fields it does not know are
    /// skipped, so that later versions can add some.
    ///
    /// # Errors
    /// A [`ProtocolError`] naming the missing header, or the missing or bad field.
    pub fn decode<'h>(header: impl Fn(&str) -> Option<&'h str>) -> Result<Self, ProtocolError> {
        let raw = header(header::DELIVERY).ok_or(ProtocolError::Missing(header::DELIVERY))?;
        let (mut attempt, mut max_attempts, mut deadline_ms, mut timeout_ms) =
            (None, None, None, None);
        let (mut plugin, mut subscription, mut stream_sequence) = (None, None, None);
        for pair in fields(header::DELIVERY, raw) {
            let (name, value) = pair?;
            let slot = match name {
                field::ATTEMPT => &mut attempt,
                field::MAX_ATTEMPTS => &mut max_attempts,
                field::DEADLINE_MS => &mut deadline_ms,
                field::TIMEOUT_MS => &mut timeout_ms,
                field::PLUGIN => &mut plugin,
                field::SUBSCRIPTION => &mut subscription,
                field::STREAM_SEQUENCE => &mut stream_sequence,
                _ => continue,
            };
            *slot = Some(value);
        }
        let get = |value: Option<&'h str>, name: &'static str| {
            value.ok_or(ProtocolError::MissingField {
                header: header::DELIVERY,
                field: name,
            })
        };
        let number = |value: Option<&'h str>, name: &'static str| -> Result<u64, ProtocolError> {
            let raw = get(value, name)?;
            raw.parse().map_err(|_| ProtocolError::BadField {
                header: header::DELIVERY,
                field: name,
                value: raw.to_owned(),
                reason: "not a whole number",
            })
        };
        let small = |value: Option<&'h str>, name: &'static str| -> Result<u32, ProtocolError> {
            let value = number(value, name)?;
            u32::try_from(value).map_err(|_| ProtocolError::BadField {
                header: header::DELIVERY,
                field: name,
                value: value.to_string(),
                reason: "too large",
            })
        };
        let raw_plugin = get(plugin, field::PLUGIN)?;
        Ok(Self {
            attempt: small(attempt, field::ATTEMPT)?,
            max_attempts: small(max_attempts, field::MAX_ATTEMPTS)?,
            deadline: UNIX_EPOCH + Duration::from_millis(number(deadline_ms, field::DEADLINE_MS)?),
            timeout: Duration::from_millis(number(timeout_ms, field::TIMEOUT_MS)?),
            plugin: PluginId::new(raw_plugin).map_err(|_| ProtocolError::BadField {
                header: header::DELIVERY,
                field: field::PLUGIN,
                value: raw_plugin.to_owned(),
                reason: "not a valid plugin id",
            })?,
            subscription: get(subscription, field::SUBSCRIPTION)?.to_owned(),
            stream_sequence: number(stream_sequence, field::STREAM_SEQUENCE)?,
        })
    }
}

/// The `name=value` fields of a `;`-separated header (`header`'s value `raw`), names and
/// values trimmed, empty fields skipped: the shape of [`header::DELIVERY`] and of the call
/// header. Lazily, without allocating: a delivery header is read once per delivery.
pub(crate) fn fields<'a>(
    header: &'static str,
    raw: &'a str,
) -> impl Iterator<Item = Result<(&'a str, &'a str), ProtocolError>> + 'a {
    raw.split(';')
        .filter(|pair| !pair.trim().is_empty())
        .map(move |pair| {
            pair.split_once('=')
                .map(|(name, value)| (name.trim(), value.trim()))
                .ok_or_else(|| ProtocolError::Bad {
                    header,
                    value: raw.to_owned(),
                    reason: "not a list of `name=value` fields separated by `;`",
                })
        })
}

/// A worker's answer to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled; the event is acknowledged.
    Done,
    /// Not handled now; try again later (after `after`, or the plugin's backoff).
    Retry {
        /// The worker's wish for the delay; `None` leaves it to the backoff policy.
        after: Option<Duration>,
        /// A code for the failure, if the worker gave one.
        code: Option<ErrorCode>,
        /// Why, for people.
        reason: String,
    },
    /// Will never succeed; the event is dead-lettered at once.
    Failed {
        /// A code for the failure.
        code: ErrorCode,
        /// Why, for people.
        reason: String,
    },
}

impl Outcome {
    /// The reply's headers and body.
    pub fn to_reply(&self) -> (Vec<(&'static str, String)>, Bytes) {
        match self {
            Outcome::Done => (vec![(header::OUTCOME, "done".to_owned())], Bytes::new()),
            Outcome::Retry {
                after,
                code,
                reason,
            } => {
                let mut headers = vec![(header::OUTCOME, "retry".to_owned())];
                if let Some(after) = after {
                    headers.push((header::RETRY_AFTER_MS, after.as_millis().to_string()));
                }
                if let Some(code) = code {
                    headers.push((header::ERROR_CODE, code.as_str().to_owned()));
                }
                (headers, Bytes::from(truncate(reason).to_owned()))
            }
            Outcome::Failed { code, reason } => (
                vec![
                    (header::OUTCOME, "failed".to_owned()),
                    (header::ERROR_CODE, code.as_str().to_owned()),
                ],
                Bytes::from(truncate(reason).to_owned()),
            ),
        }
    }

    /// Reads a worker's reply.
    ///
    /// # Errors
    /// A [`ProtocolError`] when the outcome header is missing or unknown, a `failed` reply has
    /// no valid error code, or a number or code is malformed. The dispatcher treats such a
    /// reply as a retryable failure with code `protocol.bad-reply`.
    pub fn from_reply<'h>(
        header: impl Fn(&str) -> Option<&'h str>,
        body: &[u8],
    ) -> Result<Self, ProtocolError> {
        let reason = || truncate(&String::from_utf8_lossy(body)).to_owned();
        let code = |required: bool| -> Result<Option<ErrorCode>, ProtocolError> {
            match header(header::ERROR_CODE) {
                None if required => Err(ProtocolError::Missing(header::ERROR_CODE)),
                None => Ok(None),
                Some(raw) => ErrorCode::new(raw)
                    .map(Some)
                    .map_err(|reason| ProtocolError::Bad {
                        header: header::ERROR_CODE,
                        value: raw.to_owned(),
                        reason,
                    }),
            }
        };
        let outcome = header(header::OUTCOME).ok_or(ProtocolError::Missing(header::OUTCOME))?;
        match outcome {
            "done" => Ok(Outcome::Done),
            "retry" => {
                let after = header(header::RETRY_AFTER_MS)
                    .map(|raw| {
                        raw.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                            ProtocolError::Bad {
                                header: header::RETRY_AFTER_MS,
                                value: raw.to_owned(),
                                reason: "not a whole number of milliseconds",
                            }
                        })
                    })
                    .transpose()?;
                Ok(Outcome::Retry {
                    after,
                    code: code(false)?,
                    reason: reason(),
                })
            }
            "failed" => Ok(Outcome::Failed {
                code: code(true)?.expect("required code is present"),
                reason: reason(),
            }),
            other => Err(ProtocolError::Bad {
                header: header::OUTCOME,
                value: other.to_owned(),
                reason: "expected `done`, `retry` or `failed`",
            }),
        }
    }
}

/// Cuts `text` to at most [`MAX_REASON_LEN`] bytes on a character boundary.
fn truncate(text: &str) -> &str {
    if text.len() <= MAX_REASON_LEN {
        return text;
    }
    let mut end = MAX_REASON_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A worker's hello (the body of its message on `{prefix}.control.hello.{plugin}`): which
/// version of the plugin it runs, and which process it is. An empty body is a hello too
/// (workers that say nothing more).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    /// The plugin's version the worker was built from (its manifest's `plugin.version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Which worker process this is, for people reading logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// The longest hello read; a longer one is read as an empty hello.
pub const MAX_HELLO_LEN: usize = 1024;

impl Hello {
    /// Reads a hello's body; an empty, oversized or unreadable body reads as a hello that
    /// says nothing more (a hello is never refused: it only speeds deliveries up).
    pub fn read(body: &[u8]) -> Self {
        if body.is_empty() || body.len() > MAX_HELLO_LEN {
            return Self::default();
        }
        serde_json::from_slice(body).unwrap_or_default()
    }
}

/// A dispatcher's answer to a hello that asked for one (sent with a reply subject in the
/// worker's own inbox).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HelloAnswer {
    /// The version registered (and approved) for the plugin.
    pub registered_version: String,
    /// Whether the worker's version is the registered one.
    pub matches: bool,
    /// The dispatcher instance that answers.
    pub dispatcher: String,
    /// The settings the worker runs with, as the operator last set them. Absent from
    /// dispatchers that predate settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<SettingsUpdate>,
}

/// What the operator set for a plugin: its plain settings and its secrets, which a worker lays
/// over its manifest's defaults (what is set wins). Sent by dispatchers in answer to a hello
/// and on
/// `{plugin inbox prefix}.settings` ([`Namespace::plugin_settings`](crate::Namespace::plugin_settings))
/// whenever they change, as JSON.
///
/// The revisions order updates from several dispatchers: a worker keeps the update whose
/// revisions are not both behind the one it has.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SettingsUpdate {
    /// The revision of the operator's plain settings (0: none set).
    pub values_revision: u64,
    /// The revision of the operator's secrets (0: none set).
    pub secrets_revision: u64,
    /// The settings and secrets set, by name.
    pub settings: toml::Table,
}

/// Why a settings update could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsUpdateError {
    /// Longer than [`MAX_SETTINGS_UPDATE_LEN`].
    #[error("a settings update of {0} bytes is longer than the {MAX_SETTINGS_UPDATE_LEN} read")]
    TooLong(usize),
    /// Not the JSON of a [`SettingsUpdate`].
    #[error("not a settings update: {0}")]
    Malformed(String),
}

/// The longest settings update read: the plain settings' and the secrets' limits, and room
/// for the revisions.
pub const MAX_SETTINGS_UPDATE_LEN: usize = 2 * crate::manifest::MAX_SETTINGS_BYTES + 1024;

impl SettingsUpdate {
    /// Reads an update's body.
    ///
    /// # Errors
    /// [`SettingsUpdateError`] for an oversized or malformed body.
    pub fn read(body: &[u8]) -> Result<Self, SettingsUpdateError> {
        if body.len() > MAX_SETTINGS_UPDATE_LEN {
            return Err(SettingsUpdateError::TooLong(body.len()));
        }
        serde_json::from_slice(body).map_err(|e| SettingsUpdateError::Malformed(e.to_string()))
    }

    /// Whether this update is older than `current` (both its revisions at or behind, one
    /// behind): an update that arrives late from another dispatcher.
    pub fn is_older_than(&self, current: &Self) -> bool {
        self.values_revision <= current.values_revision
            && self.secrets_revision <= current.secrets_revision
            && (self.values_revision, self.secrets_revision)
                != (current.values_revision, current.secrets_revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(headers: &'a [(&'static str, String)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| {
            headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    #[test]
    fn hellos_read_leniently_and_bounded() {
        assert_eq!(Hello::read(b""), Hello::default());
        assert_eq!(Hello::read(b"not json"), Hello::default());
        assert_eq!(
            Hello::read(&vec![b' '; MAX_HELLO_LEN + 1]),
            Hello::default()
        );
        let hello = Hello::read(br#"{"version":"1.2.0","instance":"w1","more":1}"#);
        assert_eq!(hello.version.as_deref(), Some("1.2.0"));
        assert_eq!(hello.instance.as_deref(), Some("w1"));
    }

    #[test]
    fn delivery_info_round_trips_to_the_millisecond() {
        let info = DeliveryInfo {
            attempt: 3,
            max_attempts: 5,
            deadline: UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            timeout: Duration::from_millis(2500),
            plugin: PluginId::new("audit").unwrap(),
            subscription: "orders".into(),
            stream_sequence: 42,
        };
        let headers = info.headers();
        assert_eq!(DeliveryInfo::decode(lookup(&headers)).unwrap(), info);
    }

    #[test]
    fn delivery_info_is_one_header_of_named_fields() {
        let info = DeliveryInfo {
            attempt: 1,
            max_attempts: 5,
            deadline: UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            timeout: Duration::from_secs(30),
            plugin: PluginId::new("audit").unwrap(),
            subscription: "orders".into(),
            stream_sequence: 42,
        };
        assert_eq!(
            info.headers(),
            [(
                header::DELIVERY,
                "attempt=1;max-attempts=5;deadline-ms=1795000000123;timeout-ms=30000;\
                 plugin=audit;subscription=orders;stream-seq=42"
                    .to_owned()
            )]
        );
        // Any order, spaces around fields, and fields added later are all fine.
        let reordered = vec![(
            header::DELIVERY,
            " stream-seq=42; subscription=orders;plugin=audit ;future=x;timeout-ms=30000;\
             deadline-ms=1795000000123;max-attempts=5;attempt=1;"
                .to_owned(),
        )];
        assert_eq!(DeliveryInfo::decode(lookup(&reordered)).unwrap(), info);
    }

    #[test]
    fn delivery_info_names_a_missing_or_bad_field() {
        assert_eq!(
            DeliveryInfo::decode(|_| None).unwrap_err(),
            ProtocolError::Missing(header::DELIVERY)
        );
        let bad = |value: &str| {
            let headers = vec![(header::DELIVERY, value.to_owned())];
            DeliveryInfo::decode(lookup(&headers)).unwrap_err()
        };
        assert_eq!(
            bad("attempt=x;plugin=audit"),
            ProtocolError::BadField {
                header: header::DELIVERY,
                field: field::ATTEMPT,
                value: "x".into(),
                reason: "not a whole number"
            }
        );
        assert_eq!(
            bad("plugin=audit"),
            ProtocolError::MissingField {
                header: header::DELIVERY,
                field: field::ATTEMPT
            }
        );
        let err = bad("attempt");
        assert!(
            matches!(
                err,
                ProtocolError::Bad {
                    header: header::DELIVERY,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            bad("plugin=audit").to_string(),
            "header `switchyard-delivery` has no `attempt` field"
        );
    }

    #[test]
    fn outcomes_round_trip() {
        for outcome in [
            Outcome::Done,
            Outcome::Retry {
                after: Some(Duration::from_millis(1500)),
                code: Some(ErrorCode::new("upstream.busy").unwrap()),
                reason: "try later".into(),
            },
            Outcome::Retry {
                after: None,
                code: None,
                reason: String::new(),
            },
            Outcome::Failed {
                code: ErrorCode::new("order.invalid").unwrap(),
                reason: "no lines".into(),
            },
        ] {
            let (headers, body) = outcome.to_reply();
            assert_eq!(
                Outcome::from_reply(lookup(&headers), &body).unwrap(),
                outcome
            );
        }
    }

    #[test]
    fn malformed_replies_are_refused() {
        assert_eq!(
            Outcome::from_reply(|_| None, b"").unwrap_err(),
            ProtocolError::Missing(header::OUTCOME)
        );
        let unknown = vec![(header::OUTCOME, "maybe".to_owned())];
        assert!(matches!(
            Outcome::from_reply(lookup(&unknown), b""),
            Err(ProtocolError::Bad { .. })
        ));
        let failed_without_code = vec![(header::OUTCOME, "failed".to_owned())];
        assert_eq!(
            Outcome::from_reply(lookup(&failed_without_code), b"").unwrap_err(),
            ProtocolError::Missing(header::ERROR_CODE)
        );
        let bad_delay = vec![
            (header::OUTCOME, "retry".to_owned()),
            (header::RETRY_AFTER_MS, "-1".to_owned()),
        ];
        assert!(Outcome::from_reply(lookup(&bad_delay), b"").is_err());
    }

    #[test]
    fn error_codes_are_validated() {
        assert!(ErrorCode::new("payment.declined_2").is_ok());
        assert!(ErrorCode::new("").is_err());
        assert!(ErrorCode::new("Upper").is_err());
        assert!(ErrorCode::new("a b").is_err());
        assert!(ErrorCode::new("x".repeat(65)).is_err());
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_REASON_LEN);
        let cut = truncate(&long);
        assert!(cut.len() <= MAX_REASON_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
