//! What a handler returns, and how typed handlers are stored side by side.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use switchyard_schemas::delivery::{ErrorCode, Outcome};
use switchyard_schemas::{Event, TypedEvent};

use crate::context::Context;

/// The code given to a permanent failure whose code was not a valid error code.
const INVALID_CODE: &str = "plugin.invalid-code";
/// The code of an event whose data does not decode into the handler's type.
pub(crate) const UNDECODABLE: &str = "event.undecodable-body";
/// The code of an event of a type no handler is registered for.
pub(crate) const NO_HANDLER: &str = "plugin.no-handler";
/// The code of a handler that panicked.
pub(crate) const PANICKED: &str = "plugin.panicked";

/// Why a handler did not handle an event.
///
/// Any error type converts into a retryable failure, so `?` works in handlers:
///
/// ```
/// # use switchyard_plugin_sdk::HandlerError;
/// fn parse(raw: &str) -> Result<u32, HandlerError> {
///     Ok(raw.parse::<u32>()?) // a ParseIntError becomes a retry with its message
/// }
/// assert!(parse("x").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerError {
    /// May succeed later: the event is delivered again after `after` or the plugin's backoff,
    /// until its attempts run out.
    Retry {
        /// A delay wish; `None` leaves it to the backoff policy.
        after: Option<Duration>,
        /// A machine-readable code, if any.
        code: Option<ErrorCode>,
        /// Why, for people.
        reason: String,
    },
    /// Will never succeed: the event is dead-lettered at once.
    Permanent {
        /// A machine-readable code.
        code: ErrorCode,
        /// Why, for people.
        reason: String,
    },
}

impl HandlerError {
    /// A retryable failure.
    pub fn retry(reason: impl Into<String>) -> Self {
        Self::Retry {
            after: None,
            code: None,
            reason: reason.into(),
        }
    }

    /// A retryable failure that should not come back before `after`.
    pub fn retry_after(after: Duration, reason: impl Into<String>) -> Self {
        Self::Retry {
            after: Some(after),
            code: None,
            reason: reason.into(),
        }
    }

    /// A permanent failure with a code (1 to 64 of `a-z 0-9 . _ -`, e.g. `order.invalid`).
    /// An invalid code is replaced by `plugin.invalid-code`, keeping the reason.
    pub fn permanent(code: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        match ErrorCode::new(code) {
            Ok(code) => Self::Permanent { code, reason },
            Err(problem) => Self::Permanent {
                code: ErrorCode::internal(INVALID_CODE),
                reason: format!("(code `{code}` {problem}) {reason}"),
            },
        }
    }

    /// The outcome a worker replies with.
    pub fn into_outcome(self) -> Outcome {
        match self {
            Self::Retry {
                after,
                code,
                reason,
            } => Outcome::Retry {
                after,
                code,
                reason,
            },
            Self::Permanent { code, reason } => Outcome::Failed { code, reason },
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::retry(error.to_string())
    }
}

/// What a handler returns: `Ok(())` when the event is handled.
pub type HandlerResult = Result<(), HandlerError>;

pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// A handler for one event type, with its data type erased.
pub(crate) type ErasedHandler = Arc<dyn Fn(Event, Context) -> BoxFuture + Send + Sync>;

/// Wraps a typed handler: decodes the data, runs the handler with panics caught, and turns the
/// result into an outcome.
pub(crate) fn erase<E, F, Fut>(handler: F) -> ErasedHandler
where
    E: TypedEvent + Send + 'static,
    F: Fn(E, Context) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    let handler = Arc::new(handler);
    Arc::new(move |event: Event, context: Context| {
        let handler = Arc::clone(&handler);
        Box::pin(async move {
            let data = match event.data_as::<E>() {
                Ok(data) => data,
                Err(error) => {
                    return Outcome::Failed {
                        code: ErrorCode::internal(UNDECODABLE),
                        reason: error.to_string(),
                    }
                }
            };
            // Called inside the caught future: a handler may panic before it returns one.
            run_caught(async move { handler(data, context).await }).await
        })
    })
}

/// Runs a handler's future, turning a panic into a retryable failure that carries the panic
/// message: one bad event never takes the worker down.
pub(crate) async fn run_caught(future: impl Future<Output = HandlerResult>) -> Outcome {
    match catch_panic(future).await {
        Ok(()) => Outcome::Done,
        Err(error) => error.into_outcome(),
    }
}

/// Runs a handler's future, turning a panic into a retryable failure (`plugin.panicked`) that
/// carries the panic message.
pub(crate) async fn catch_panic<T>(
    future: impl Future<Output = Result<T, HandlerError>>,
) -> Result<T, HandlerError> {
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".to_owned());
            Err(HandlerError::Retry {
                after: None,
                code: Some(ErrorCode::internal(PANICKED)),
                reason: format!("handler panicked: {message}"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_map_to_outcomes() {
        assert!(matches!(
            HandlerError::retry("x").into_outcome(),
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(
            HandlerError::retry_after(Duration::from_secs(2), "x").into_outcome(),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        let Outcome::Failed { code, reason } =
            HandlerError::permanent("order.invalid", "no lines").into_outcome()
        else {
            panic!("expected a failure");
        };
        assert_eq!(
            (code.as_str(), reason.as_str()),
            ("order.invalid", "no lines")
        );
    }

    #[test]
    fn an_invalid_code_is_replaced_and_named_in_the_reason() {
        let HandlerError::Permanent { code, reason } = HandlerError::permanent("Bad Code", "why")
        else {
            panic!("expected a permanent failure");
        };
        assert_eq!(code.as_str(), INVALID_CODE);
        assert!(
            reason.contains("Bad Code") && reason.ends_with("why"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn a_panic_becomes_a_retry_with_its_message() {
        let outcome = run_caught(async {
            if true {
                panic!("boom {}", 42);
            }
            Ok(())
        })
        .await;
        let Outcome::Retry { code, reason, .. } = outcome else {
            panic!("expected a retry");
        };
        assert_eq!(code.unwrap().as_str(), PANICKED);
        assert_eq!(reason, "handler panicked: boom 42");
    }
}
