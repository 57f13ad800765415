//! Event type patterns: what a subscription listens to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::name::{EventType, NameError, MAX_TYPE_TOKENS};

/// Matches exactly one token.
const ONE: &str = "*";
/// Matches one or more tokens; only as the last token.
const REST: &str = ">";

/// A pattern of event types, as NATS subject wildcards read it: `order.created`, `order.*`,
/// `invoice.>`.
///
/// It is 1 to [`MAX_TYPE_TOKENS`] tokens joined by `.`. Each token is a token of an
/// [`EventType`], or `*` (exactly one token), or, as the last token only, `>` (one or more
/// tokens). The dispatcher appends it to the tenant's event subject to make the consumer's
/// filter, so it matches exactly what NATS would match.
///
/// # Examples
///
/// ```
/// use switchyard_schemas::{EventPattern, EventType};
///
/// let pattern = EventPattern::new("invoice.>")?;
/// assert!(pattern.matches(&EventType::new("invoice.paid.late")?));
/// assert!(!pattern.matches(&EventType::new("invoice")?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventPattern(String);

/// Why a string is not an [`EventPattern`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A token is neither a wildcard nor a valid event type token.
    #[error("event pattern `{pattern}`: {source}")]
    BadToken {
        /// The refused pattern.
        pattern: String,
        /// What is wrong with the token.
        source: NameError,
    },
    /// `>` is used before the last token.
    #[error("event pattern `{pattern}`: `>` may only be the last token")]
    MisplacedRest {
        /// The refused pattern.
        pattern: String,
    },
    /// The pattern has more tokens than an event type may have.
    #[error("event pattern `{pattern}` has more than {max} tokens")]
    TooManyTokens {
        /// The refused pattern.
        pattern: String,
        /// The most tokens allowed.
        max: usize,
    },
}

impl EventPattern {
    /// Validates `value` as a pattern.
    ///
    /// # Errors
    /// A [`PatternError`] when a token is empty or not valid, when `>` is not the last token,
    /// or when there are more than [`MAX_TYPE_TOKENS`] tokens.
    pub fn new(value: impl Into<String>) -> Result<Self, PatternError> {
        let pattern = value.into();
        let count = pattern.split('.').count();
        if count > MAX_TYPE_TOKENS {
            return Err(PatternError::TooManyTokens {
                pattern,
                max: MAX_TYPE_TOKENS,
            });
        }
        for (position, token) in pattern.split('.').enumerate() {
            match token {
                ONE => {}
                REST if position + 1 == count => {}
                REST => return Err(PatternError::MisplacedRest { pattern }),
                // A single valid token is a valid one-token event type.
                literal => {
                    if let Err(source) = EventType::new(literal) {
                        return Err(PatternError::BadToken { pattern, source });
                    }
                }
            }
        }
        Ok(Self(pattern))
    }

    /// The pattern as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The pattern's tokens, in order.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// Whether `event_type` matches: `order.*` matches `order.created` but not
    /// `order.created.v2`; `invoice.>` matches `invoice.paid` and `invoice.paid.late` but not
    /// `invoice`.
    pub fn matches(&self, event_type: &EventType) -> bool {
        let mut types = event_type.tokens();
        for token in self.tokens() {
            if token == REST {
                return types.next().is_some();
            }
            match types.next() {
                Some(found) if token == ONE || token == found => {}
                _ => return false,
            }
        }
        types.next().is_none()
    }

    /// Whether every event type that `other` matches is also matched by `self`
    /// (`order.>` covers `order.*`, which covers `order.created`; a pattern covers itself).
    ///
    /// JetStream refuses a consumer with two filter subjects where one covers the other, so
    /// a subscription must not list such a pair.
    pub fn covers(&self, other: &Self) -> bool {
        let mut others = other.tokens();
        for token in self.tokens() {
            let Some(found) = others.next() else {
                return false;
            };
            match (token, found) {
                (REST, _) => return true,
                (_, REST) => return false,
                (ONE, _) => {}
                (literal, found) if literal == found => {}
                _ => return false,
            }
        }
        others.next().is_none()
    }
}

impl fmt::Display for EventPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EventPattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for EventPattern {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for EventPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EventPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}
