//! The operation call protocol: a caller asks a plugin's operation, a dispatcher checks and
//! forwards the call to one of the plugin's workers, and answers the caller. See
//! `docs/operations.md`.
//!
//! | leg | subject | headers |
//! |---|---|---|
//! | caller → dispatcher | `{prefix}.op.{tenant}.{plugin}.{operation}.{kind}.{caller}` | optional [`header::CALL`] ([`CallOptions`]), `content-type`, `traceparent` |
//! | dispatcher → worker | `{prefix}.call.{plugin}` | [`header::CALL`] ([`CallInfo`]), `content-type`, `traceparent` |
//! | worker → dispatcher | `_SY_REPLY.{prefix}.{plugin}.…` | [`Outcome`](crate::delivery::Outcome) headers; `done` carries the response |
//! | dispatcher → caller | the call's reply subject | on error [`CallError`]'s headers, always [`header::ATTEMPTS`] and [`header::DURATION_US`] |

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use semver::Version;

use crate::delivery::{fields, ErrorCode, ProtocolError};
use crate::name::{OperationName, PluginId, ServiceName, Tenant};

/// Header names of the call protocol, defined once.
pub mod header {
    /// Caller → dispatcher: the caller's [`CallOptions`](super::CallOptions); dispatcher →
    /// worker: the call's [`CallInfo`](super::CallInfo). `name=value` fields separated by `;`.
    pub const CALL: &str = "switchyard-call";
    /// On an error answer: the error code (`call.timed-out`, or the handler's own).
    pub const ERROR_CODE: &str = crate::delivery::header::ERROR_CODE;
    /// With `call.rate-limited`: how long to wait before calling again, in milliseconds.
    pub const RETRY_AFTER_MS: &str = crate::delivery::header::RETRY_AFTER_MS;
    /// How many attempts the dispatcher made.
    pub const ATTEMPTS: &str = "switchyard-call-attempts";
    /// How long the dispatcher waited for the plugin, all attempts together, in microseconds.
    pub const DURATION_US: &str = "switchyard-call-duration-us";
    /// NATS micro's error header: the reason, for people. Present on every error answer.
    pub const SERVICE_ERROR: &str = "Nats-Service-Error";
    /// NATS micro's error code header: an HTTP-like number ([`CallErrorKind::status`](super::CallErrorKind::status)).
    pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";
}

/// Field names of the [`header::CALL`] header.
pub mod field {
    /// Caller: how long it waits, in milliseconds. Worker: this attempt's timeout.
    pub const TIMEOUT_MS: &str = "timeout-ms";
    /// Caller: the most attempts it allows (retries happen only for idempotent operations).
    pub const ATTEMPTS: &str = "attempts";
    /// Caller: the schema version of the request it wrote.
    pub const VERSION: &str = "version";
    /// Worker: the operation called.
    pub const OPERATION: &str = "operation";
    /// Worker: the tenant the call is for.
    pub const TENANT: &str = "tenant";
    /// Worker: who called, `{kind}:{id}`.
    pub const CALLER: &str = "caller";
    /// Worker: this attempt's number, 1 for the first.
    pub const ATTEMPT: &str = "attempt";
    /// Worker: when the dispatcher stops waiting: Unix time in milliseconds.
    pub const DEADLINE_MS: &str = "deadline-ms";
}

/// The most attempts a caller may ask for.
pub const MAX_CALL_ATTEMPTS: u32 = 10;

/// The code a worker answers when a request does not decode into its handler's type. Not a
/// reserved code (`call.…` is the dispatcher's): the dispatcher passes it on to the caller as
/// `call.bad-request` with the worker's reason.
pub const UNDECODABLE_REQUEST: &str = "request.undecodable";

/// The longest reason an error answer carries, in bytes (it travels in a header).
pub const MAX_CALL_REASON_LEN: usize = 1024;

/// What kind of client called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallerKind {
    /// A plugin, logged in as itself.
    Plugin,
    /// A service login.
    Service,
    /// A trusted login (`switchyard call`, the console).
    Operator,
}

impl CallerKind {
    /// The subject token.
    pub fn as_str(self) -> &'static str {
        match self {
            CallerKind::Plugin => "plugin",
            CallerKind::Service => "service",
            CallerKind::Operator => "operator",
        }
    }
}

impl FromStr for CallerKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "plugin" => Ok(CallerKind::Plugin),
            "service" => Ok(CallerKind::Service),
            "operator" => Ok(CallerKind::Operator),
            _ => Err(()),
        }
    }
}

/// Who called: the last two tokens of the call subject. Where rights are enforced, the broker
/// lets a plugin call only as `plugin.{its id}` and a service only as `service.{its name}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Caller {
    /// A plugin.
    Plugin(PluginId),
    /// A service login.
    Service(ServiceName),
    /// A trusted login, with a name it gives itself (not checked by the broker).
    Operator(String),
}

impl Caller {
    /// The kind.
    pub fn kind(&self) -> CallerKind {
        match self {
            Caller::Plugin(_) => CallerKind::Plugin,
            Caller::Service(_) => CallerKind::Service,
            Caller::Operator(_) => CallerKind::Operator,
        }
    }

    /// The id, one subject token.
    pub fn id(&self) -> &str {
        match self {
            Caller::Plugin(id) => id.as_str(),
            Caller::Service(name) => name.as_str(),
            Caller::Operator(name) => name,
        }
    }

    /// Reads a caller from its kind and id tokens; `None` when either is not valid.
    pub fn from_tokens(kind: &str, id: &str) -> Option<Self> {
        match kind.parse().ok()? {
            CallerKind::Plugin => PluginId::new(id).ok().map(Caller::Plugin),
            CallerKind::Service => ServiceName::new(id).ok().map(Caller::Service),
            // Held to the rules of a token, like the others.
            CallerKind::Operator => Tenant::new(id)
                .ok()
                .map(|t| Caller::Operator(t.as_str().into())),
        }
    }
}

/// `{kind}:{id}`, e.g. `plugin:billing`.
impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind().as_str(), self.id())
    }
}

impl FromStr for Caller {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (kind, id) = s.split_once(':').ok_or(())?;
        Caller::from_tokens(kind, id).ok_or(())
    }
}

/// A call subject read back: which operation of which plugin, for which tenant, by whom.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallSubject {
    /// The tenant the call is for.
    pub tenant: Tenant,
    /// The plugin called.
    pub plugin: PluginId,
    /// Its operation.
    pub operation: OperationName,
    /// Who called.
    pub caller: Caller,
}

/// What a caller may ask of one call, in its optional [`header::CALL`] header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// How long it waits; the dispatcher gives up then. `None`: the operation's timeout.
    pub timeout: Option<Duration>,
    /// The most attempts it allows, 1 to [`MAX_CALL_ATTEMPTS`]; `None`: 1. More than one is
    /// used only for an idempotent operation.
    pub attempts: Option<u32>,
    /// The schema version of the request it wrote.
    pub version: Option<Version>,
}

impl CallOptions {
    /// The header's value, e.g. `timeout-ms=2000;attempts=3;version=1.0.0`; empty when
    /// nothing is asked (then the header is better left out).
    pub fn header_value(&self) -> String {
        let mut fields = Vec::new();
        if let Some(timeout) = self.timeout {
            fields.push(format!("{}={}", field::TIMEOUT_MS, timeout.as_millis()));
        }
        if let Some(attempts) = self.attempts {
            fields.push(format!("{}={attempts}", field::ATTEMPTS));
        }
        if let Some(version) = &self.version {
            fields.push(format!("{}={version}", field::VERSION));
        }
        fields.join(";")
    }

    /// Reads the caller's header (`None`: no header, all defaults). Unknown fields are skipped.
    ///
    /// # Errors
    /// A [`ProtocolError`] naming the bad field.
    pub fn decode(raw: Option<&str>) -> Result<Self, ProtocolError> {
        let mut options = Self::default();
        let Some(raw) = raw else {
            return Ok(options);
        };
        for pair in fields(header::CALL, raw) {
            let (name, value) = pair?;
            match name {
                field::TIMEOUT_MS => {
                    let ms: u64 = value
                        .parse()
                        .map_err(|_| bad(field::TIMEOUT_MS, value, "not a whole number"))?;
                    if ms == 0 {
                        return Err(bad(field::TIMEOUT_MS, value, "must be at least 1"));
                    }
                    options.timeout = Some(Duration::from_millis(ms));
                }
                field::ATTEMPTS => {
                    let attempts: u32 = value
                        .parse()
                        .map_err(|_| bad(field::ATTEMPTS, value, "not a whole number"))?;
                    if !(1..=MAX_CALL_ATTEMPTS).contains(&attempts) {
                        return Err(bad(field::ATTEMPTS, value, "must be from 1 to 10"));
                    }
                    options.attempts = Some(attempts);
                }
                field::VERSION => {
                    options.version = Some(
                        Version::parse(value)
                            .map_err(|_| bad(field::VERSION, value, "not a semver version"))?,
                    );
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

/// What the dispatcher tells a worker about one call, in [`header::CALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The operation called.
    pub operation: OperationName,
    /// The tenant it is for.
    pub tenant: Tenant,
    /// Who called (proven by the broker where rights are enforced).
    pub caller: Caller,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// When the dispatcher stops waiting for this attempt.
    pub deadline: SystemTime,
    /// This attempt's timeout (the deadline without clock skew).
    pub timeout: Duration,
}

impl CallInfo {
    /// The header's value, e.g.
    /// `operation=quote;tenant=acme;caller=plugin:billing;attempt=1;deadline-ms=1795000000123;timeout-ms=2000`.
    pub fn header_value(&self) -> String {
        let deadline_ms = self
            .deadline
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        format!(
            "{}={};{}={};{}={};{}={};{}={deadline_ms};{}={}",
            field::OPERATION,
            self.operation,
            field::TENANT,
            self.tenant,
            field::CALLER,
            self.caller,
            field::ATTEMPT,
            self.attempt,
            field::DEADLINE_MS,
            field::TIMEOUT_MS,
            self.timeout.as_millis()
        )
    }

    /// Reads a call's header as a worker receives it. Unknown fields are skipped.
    ///
    /// # Errors
    /// A [`ProtocolError`] naming the missing header or the missing or bad field.
    pub fn decode(raw: Option<&str>) -> Result<Self, ProtocolError> {
        let raw = raw.ok_or(ProtocolError::Missing(header::CALL))?;
        let (mut operation, mut tenant, mut caller, mut attempt, mut deadline, mut timeout) =
            (None, None, None, None, None, None);
        for pair in fields(header::CALL, raw) {
            let (name, value) = pair?;
            let slot = match name {
                field::OPERATION => &mut operation,
                field::TENANT => &mut tenant,
                field::CALLER => &mut caller,
                field::ATTEMPT => &mut attempt,
                field::DEADLINE_MS => &mut deadline,
                field::TIMEOUT_MS => &mut timeout,
                _ => continue,
            };
            *slot = Some(value);
        }
        let get = |value: Option<&str>, name: &'static str| {
            value.map(str::to_owned).ok_or(ProtocolError::MissingField {
                header: header::CALL,
                field: name,
            })
        };
        let number = |value: Option<&str>, name: &'static str| -> Result<u64, ProtocolError> {
            let raw = get(value, name)?;
            raw.parse()
                .map_err(|_| bad(name, &raw, "not a whole number"))
        };
        let operation_raw = get(operation, field::OPERATION)?;
        let tenant_raw = get(tenant, field::TENANT)?;
        let caller_raw = get(caller, field::CALLER)?;
        Ok(Self {
            operation: OperationName::new(operation_raw.as_str()).map_err(|_| {
                bad(
                    field::OPERATION,
                    &operation_raw,
                    "not a valid operation name",
                )
            })?,
            tenant: Tenant::new(tenant_raw.as_str())
                .map_err(|_| bad(field::TENANT, &tenant_raw, "not a valid tenant"))?,
            caller: caller_raw
                .parse()
                .map_err(|()| bad(field::CALLER, &caller_raw, "not `{kind}:{id}`"))?,
            attempt: u32::try_from(number(attempt, field::ATTEMPT)?)
                .map_err(|_| bad(field::ATTEMPT, "", "too large"))?,
            deadline: UNIX_EPOCH + Duration::from_millis(number(deadline, field::DEADLINE_MS)?),
            timeout: Duration::from_millis(number(timeout, field::TIMEOUT_MS)?),
        })
    }
}

fn bad(field: &'static str, value: &str, reason: &'static str) -> ProtocolError {
    ProtocolError::BadField {
        header: header::CALL,
        field,
        value: value.to_owned(),
        reason,
    }
}

/// Why a call did not return the operation's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallErrorKind {
    /// No worker of the plugin is connected (`call.no-worker`).
    NoWorker,
    /// No answer within the timeout (`call.timed-out`).
    TimedOut,
    /// The caller may not call it: not among its callers, a tenant it is not for, or the
    /// plugin is not running (`call.refused`).
    Refused,
    /// Over the operation's rate (`call.rate-limited`); the answer says when to call again.
    RateLimited,
    /// `max_in_flight` calls are under way (`call.busy`).
    Busy,
    /// The call itself is malformed: its header, a body that is not well-formed, a request
    /// version the operation cannot read (`call.bad-request`).
    BadRequest,
    /// No dispatcher serves the operation: the plugin or the operation does not exist, is not
    /// running, or no dispatcher runs (`call.unavailable`; found by the caller).
    Unavailable,
    /// The worker's answer broke the protocol (`protocol.bad-reply`).
    BadReply,
    /// The operation's handler failed, with its own code.
    Handler,
}

impl CallErrorKind {
    /// The error code of every kind but [`CallErrorKind::Handler`], whose code is the handler's.
    pub fn code(self) -> Option<&'static str> {
        Some(match self {
            CallErrorKind::NoWorker => "call.no-worker",
            CallErrorKind::TimedOut => "call.timed-out",
            CallErrorKind::Refused => "call.refused",
            CallErrorKind::RateLimited => "call.rate-limited",
            CallErrorKind::Busy => "call.busy",
            CallErrorKind::BadRequest => "call.bad-request",
            CallErrorKind::Unavailable => "call.unavailable",
            CallErrorKind::BadReply => "protocol.bad-reply",
            CallErrorKind::Handler => return None,
        })
    }

    /// The kind an error code names; any other code is a handler's.
    pub fn of_code(code: &str) -> Self {
        [
            CallErrorKind::NoWorker,
            CallErrorKind::TimedOut,
            CallErrorKind::Refused,
            CallErrorKind::RateLimited,
            CallErrorKind::Busy,
            CallErrorKind::BadRequest,
            CallErrorKind::Unavailable,
            CallErrorKind::BadReply,
        ]
        .into_iter()
        .find(|kind| kind.code() == Some(code))
        .unwrap_or(CallErrorKind::Handler)
    }

    /// The number NATS micro's `Nats-Service-Error-Code` carries, HTTP-like.
    pub fn status(self) -> u16 {
        match self {
            CallErrorKind::BadRequest => 400,
            CallErrorKind::Refused => 403,
            CallErrorKind::RateLimited | CallErrorKind::Busy => 429,
            CallErrorKind::Handler => 500,
            CallErrorKind::BadReply => 502,
            CallErrorKind::NoWorker | CallErrorKind::Unavailable => 503,
            CallErrorKind::TimedOut => 504,
        }
    }
}

/// A call's error, as the caller receives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct CallError {
    /// What kind of error.
    pub kind: CallErrorKind,
    /// Its code: the kind's, or the handler's own.
    pub code: ErrorCode,
    /// Why, for people (one line, at most [`MAX_CALL_REASON_LEN`] bytes).
    pub reason: String,
    /// With [`CallErrorKind::RateLimited`], or a handler's retryable failure: when to call again.
    pub retry_after: Option<Duration>,
}

impl CallError {
    /// An error of `kind` (not [`CallErrorKind::Handler`]), with its own code.
    pub fn new(kind: CallErrorKind, reason: impl Into<String>) -> Self {
        let code = kind.code().unwrap_or("handler.failed");
        Self {
            kind,
            code: ErrorCode::new(code).expect("the kinds' codes are valid"),
            reason: one_line(&reason.into()),
            retry_after: None,
        }
    }

    /// A handler's failure with its own code.
    pub fn handler(code: ErrorCode, reason: impl Into<String>) -> Self {
        Self {
            kind: CallErrorKind::of_code(code.as_str()),
            code,
            reason: one_line(&reason.into()),
            retry_after: None,
        }
    }

    /// With a delay before the next call.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The answer's headers (its body is empty).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (header::ERROR_CODE, self.code.as_str().to_owned()),
            (header::SERVICE_ERROR, self.reason.clone()),
            (header::SERVICE_ERROR_CODE, self.kind.status().to_string()),
        ];
        if let Some(after) = self.retry_after {
            headers.push((header::RETRY_AFTER_MS, after.as_millis().to_string()));
        }
        headers
    }

    /// Reads an answer's error, if it is one: `None` when it carries neither
    /// [`header::ERROR_CODE`] nor [`header::SERVICE_ERROR`].
    pub fn from_headers<'h>(header: impl Fn(&str) -> Option<&'h str>) -> Option<Self> {
        let code = header(header::ERROR_CODE);
        let reason = header(header::SERVICE_ERROR);
        if code.is_none() && reason.is_none() {
            return None;
        }
        let code = code
            .and_then(|code| ErrorCode::new(code).ok())
            .unwrap_or_else(|| ErrorCode::internal("protocol.bad-reply"));
        let mut error = CallError::handler(code, reason.unwrap_or(""));
        error.retry_after = header(header::RETRY_AFTER_MS)
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis);
        Some(error)
    }
}

/// `text` on one line (control characters as spaces), cut to [`MAX_CALL_REASON_LEN`] bytes.
pub fn one_line(text: &str) -> String {
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.len() > MAX_CALL_REASON_LEN {
        let mut end = MAX_CALL_REASON_LEN;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_info_round_trips_through_its_header() {
        let info = CallInfo {
            operation: OperationName::new("quote").unwrap(),
            tenant: Tenant::new("acme").unwrap(),
            caller: Caller::Plugin(PluginId::new("billing").unwrap()),
            attempt: 2,
            deadline: UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            timeout: Duration::from_millis(2000),
        };
        let value = info.header_value();
        assert_eq!(
            value,
            "operation=quote;tenant=acme;caller=plugin:billing;attempt=2;deadline-ms=1795000000123;timeout-ms=2000"
        );
        assert_eq!(CallInfo::decode(Some(&value)).unwrap(), info);
        assert!(matches!(
            CallInfo::decode(Some("operation=quote;tenant=acme")),
            Err(ProtocolError::MissingField {
                header: header::CALL,
                ..
            })
        ));
        assert!(CallInfo::decode(Some(&value.replace("plugin:billing", "robot:x"))).is_err());
    }

    #[test]
    fn options_are_optional_and_bounded() {
        assert_eq!(CallOptions::decode(None).unwrap(), CallOptions::default());
        let options = CallOptions {
            timeout: Some(Duration::from_millis(1500)),
            attempts: Some(3),
            version: Some(Version::new(1, 2, 0)),
        };
        assert_eq!(
            CallOptions::decode(Some(&options.header_value())).unwrap(),
            options
        );
        for bad in [
            "attempts=0",
            "attempts=11",
            "timeout-ms=0",
            "timeout-ms=x",
            "version=1",
            "nonsense",
        ] {
            assert!(CallOptions::decode(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            CallOptions::decode(Some("future=1;attempts=2"))
                .unwrap()
                .attempts,
            Some(2)
        );
    }

    #[test]
    fn errors_round_trip_and_keep_their_kind() {
        let error = CallError::new(CallErrorKind::RateLimited, "over 5/s\r\nX: y")
            .retry_after(Duration::from_millis(200));
        assert_eq!(error.reason, "over 5/s  X: y");
        let headers = error.headers();
        let read = CallError::from_headers(|name| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        })
        .unwrap();
        assert_eq!(read, error);
        let declined = CallError::handler(ErrorCode::new("payment.declined").unwrap(), "no");
        assert_eq!(declined.kind, CallErrorKind::Handler);
        assert_eq!(CallError::from_headers(|_| None), None);
        assert_eq!(one_line(&"é".repeat(1000)).len(), 1024);
    }

    #[test]
    fn callers_read_from_their_tokens_only_when_valid() {
        assert_eq!(
            Caller::from_tokens("service", "shop"),
            Some(Caller::Service(ServiceName::new("shop").unwrap()))
        );
        assert_eq!(
            Caller::from_tokens("operator", "cli").unwrap().to_string(),
            "operator:cli"
        );
        assert_eq!(Caller::from_tokens("plugin", "a*"), None);
        assert_eq!(Caller::from_tokens("robot", "a"), None);
    }
}
