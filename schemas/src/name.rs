//! Validated names that end up inside NATS subjects, stream and consumer names.
//!
//! Every name is built from *tokens*: 1 to [`MAX_TOKEN_LEN`] ASCII letters, digits, `-` or `_`.
//! That rules out what NATS gives a meaning to (`.` separates tokens, `*` and `>` are
//! wildcards, whitespace ends a subject) and what JetStream forbids in consumer names.
//! Event types are several tokens joined by `.` (`order.created`); the other names are one token.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest token accepted, in bytes. Consumer names are built from several tokens and
/// JetStream limits their length, so tokens stay short.
pub const MAX_TOKEN_LEN: usize = 64;

/// The most tokens an event type may have (`a.b.c.d.e.f.g.h`).
pub const MAX_TYPE_TOKENS: usize = 8;

/// Why a name was refused. Each variant names what kind of name it was (`what`) and the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name, or one of its tokens, is empty.
    #[error("{what} must not be empty (in `{value}`)")]
    Empty {
        /// Which kind of name ("tenant", "event type", ...).
        what: &'static str,
        /// The refused value.
        value: String,
    },
    /// A single-token name contains `.`, the NATS token separator.
    #[error("{what} `{value}` must not contain `.`")]
    Dot {
        /// Which kind of name.
        what: &'static str,
        /// The refused value.
        value: String,
    },
    /// The name contains a NATS wildcard (`*` or `>`).
    #[error("{what} `{value}` must not contain the wildcard `{wildcard}`")]
    Wildcard {
        /// Which kind of name.
        what: &'static str,
        /// The refused value.
        value: String,
        /// The wildcard found.
        wildcard: char,
    },
    /// The name contains whitespace.
    #[error("{what} `{value}` must not contain whitespace")]
    Whitespace {
        /// Which kind of name.
        what: &'static str,
        /// The refused value.
        value: String,
    },
    /// The name contains a character outside ASCII letters, digits, `-` and `_`.
    #[error(
        "{what} `{value}` contains `{found}`; only ASCII letters, digits, `-` and `_` are allowed"
    )]
    InvalidChar {
        /// Which kind of name.
        what: &'static str,
        /// The refused value.
        value: String,
        /// The first character that is not allowed.
        found: char,
    },
    /// A token is longer than [`MAX_TOKEN_LEN`], or a type has more than [`MAX_TYPE_TOKENS`].
    #[error("{what} `{value}` is too long (at most {max} {unit})")]
    TooLong {
        /// Which kind of name.
        what: &'static str,
        /// The refused value.
        value: String,
        /// The limit that was exceeded.
        max: usize,
        /// What the limit counts ("bytes per token" or "tokens").
        unit: &'static str,
    },
}

/// Checks one token of a name of kind `what`; `whole` is the full name, for the message.
fn check_token(what: &'static str, token: &str, whole: &str) -> Result<(), NameError> {
    let value = || whole.to_owned();
    if token.is_empty() {
        return Err(NameError::Empty {
            what,
            value: value(),
        });
    }
    if let Some(found) = token.chars().find(|c| !is_token_char(*c)) {
        return Err(match found {
            '.' => NameError::Dot {
                what,
                value: value(),
            },
            '*' | '>' => NameError::Wildcard {
                what,
                value: value(),
                wildcard: found,
            },
            c if c.is_whitespace() => NameError::Whitespace {
                what,
                value: value(),
            },
            _ => NameError::InvalidChar {
                what,
                value: value(),
                found,
            },
        });
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(NameError::TooLong {
            what,
            value: value(),
            max: MAX_TOKEN_LEN,
            unit: "bytes per token",
        });
    }
    Ok(())
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Declares a validated single-token name type.
macro_rules! token_name {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Validates `value` as a single token.
            ///
            /// # Errors
            /// A [`NameError`] naming the problem when `value` is empty, contains `.`, a
            /// wildcard, whitespace or another character outside `[A-Za-z0-9_-]`, or is too long.
            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                check_token($what, &value, &value)?;
                Ok(Self(value))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

token_name!(
    /// A tenant: the isolation unit. Events, channels and plugin installations belong to one.
    Tenant,
    "tenant"
);
token_name!(
    /// A plugin's id, as declared in its manifest.
    PluginId,
    "plugin id"
);
/// The user names of a secured deployment's trusted logins (`docs/security.md`), which bypass
/// the broker's checks. A plugin logs in with its id as user name, so none of these may be a
/// plugin's id: manifests declaring one are refused, and the auth callout refuses it too.
pub const RESERVED_PLUGIN_IDS: [&str; 3] = ["dispatcher", "admin", "system"];

impl PluginId {
    /// Whether this id is one of [`RESERVED_PLUGIN_IDS`], ignoring ASCII case. [`PluginId::new`]
    /// accepts such ids (ids read back from storage stay readable); manifests refuse them.
    pub fn is_reserved(&self) -> bool {
        RESERVED_PLUGIN_IDS
            .iter()
            .any(|reserved| self.0.eq_ignore_ascii_case(reserved))
    }
}

token_name!(
    /// The name of a plugin-to-plugin channel.
    ChannelName,
    "channel name"
);
token_name!(
    /// A tag or category of a plugin, as its manifest lists them (`tags`, `category`), for
    /// finding it in the catalog. Compared without regard to ASCII case there.
    Tag,
    "tag"
);

/// An event type such as `order.created`: 1 to [`MAX_TYPE_TOKENS`] tokens joined by `.`.
///
/// It is the CloudEvents `type` attribute and the tail of the event's subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(String);

impl EventType {
    /// Validates `value` as an event type.
    ///
    /// # Errors
    /// A [`NameError`] when a token is empty (`order..created`, a leading or trailing `.`),
    /// contains a wildcard, whitespace or another character outside `[A-Za-z0-9_-]`, when a
    /// token is too long, or when there are more than [`MAX_TYPE_TOKENS`] tokens.
    pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
        const WHAT: &str = "event type";
        let value = value.into();
        let mut count = 0;
        for token in value.split('.') {
            check_token(WHAT, token, &value)?;
            count += 1;
        }
        if count > MAX_TYPE_TOKENS {
            return Err(NameError::TooLong {
                what: WHAT,
                value,
                max: MAX_TYPE_TOKENS,
                unit: "tokens",
            });
        }
        Ok(Self(value))
    }

    /// The type as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The type's tokens, in order.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EventType {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for EventType {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

token_name!(
    /// The name of one of a plugin's operations (`[[operations]]`), unique within its manifest.
    /// It is one token of the operation's call subject.
    OperationName,
    "operation name"
);
token_name!(
    /// The name of a service login: a client of a secured deployment that is neither a plugin
    /// nor a trusted login, and may call the operations that allow services.
    ServiceName,
    "service name"
);
token_name!(
    /// The name of one of a plugin's subscriptions, unique within its manifest. It names the
    /// subscription's JetStream durable consumer, so it is a single token.
    SubscriptionName,
    "subscription name"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trusted_logins_are_reserved_plugin_ids() {
        for id in ["dispatcher", "admin", "system", "Admin", "SYSTEM"] {
            assert!(PluginId::new(id).unwrap().is_reserved(), "{id}");
        }
        for id in ["audit-log", "admins", "system-audit", "my-dispatcher"] {
            assert!(!PluginId::new(id).unwrap().is_reserved(), "{id}");
        }
    }

    #[test]
    fn accepts_plain_tokens() {
        assert_eq!(Tenant::new("acme-corp_1").unwrap().as_str(), "acme-corp_1");
        let ty = EventType::new("order.created").unwrap();
        assert_eq!(ty.tokens().collect::<Vec<_>>(), ["order", "created"]);
    }

    #[test]
    fn refuses_each_forbidden_shape_with_its_own_variant() {
        assert!(matches!(
            Tenant::new(""),
            Err(NameError::Empty { what: "tenant", .. })
        ));
        assert!(matches!(Tenant::new("a.b"), Err(NameError::Dot { .. })));
        assert!(matches!(
            Tenant::new("a*"),
            Err(NameError::Wildcard { wildcard: '*', .. })
        ));
        assert!(matches!(
            PluginId::new("a>"),
            Err(NameError::Wildcard { wildcard: '>', .. })
        ));
        assert!(matches!(
            Tenant::new("a b"),
            Err(NameError::Whitespace { .. })
        ));
        assert!(matches!(
            Tenant::new("a\tb"),
            Err(NameError::Whitespace { .. })
        ));
        assert!(matches!(
            ChannelName::new("a/b"),
            Err(NameError::InvalidChar { found: '/', .. })
        ));
        assert!(matches!(
            Tenant::new("x".repeat(MAX_TOKEN_LEN + 1)),
            Err(NameError::TooLong { .. })
        ));
        assert!(Tenant::new("x".repeat(MAX_TOKEN_LEN)).is_ok());
    }

    #[test]
    fn event_types_refuse_empty_tokens_and_wildcards() {
        for bad in ["", ".order", "order.", "order..created"] {
            assert!(
                matches!(EventType::new(bad), Err(NameError::Empty { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            EventType::new("order.*"),
            Err(NameError::Wildcard { .. })
        ));
        assert!(matches!(
            EventType::new("order.>"),
            Err(NameError::Wildcard { .. })
        ));
        assert!(matches!(
            EventType::new("order created"),
            Err(NameError::Whitespace { .. })
        ));
        let nine = ["a"; MAX_TYPE_TOKENS + 1].join(".");
        assert!(matches!(
            EventType::new(nine),
            Err(NameError::TooLong { unit: "tokens", .. })
        ));
    }

    #[test]
    fn error_messages_name_the_kind_and_value() {
        let err = EventType::new("order.*").unwrap_err().to_string();
        assert!(
            err.contains("event type") && err.contains("order.*"),
            "{err}"
        );
    }

    #[test]
    fn deserializing_validates() {
        let err = serde_json::from_str::<Tenant>("\"a.b\"").unwrap_err();
        assert!(err.to_string().contains("must not contain `.`"), "{err}");
        let ok: EventType = serde_json::from_str("\"invoice.paid\"").unwrap();
        assert_eq!(ok.as_str(), "invoice.paid");
    }
}
