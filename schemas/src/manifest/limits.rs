//! A plugin's quotas on the bus (`[limits]`): how many subscriptions one of its connections may
//! hold, how large a message it may publish, how many connections it may have open and how
//! many bytes per second it may send.

use std::fmt;
use std::num::NonZeroU32;
use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

/// One kibibyte.
const KIB: u64 = 1024;
/// One mebibyte.
const MIB: u64 = 1024 * KIB;
/// One gibibyte.
const GIB: u64 = 1024 * MIB;

/// The `max_subscriptions` a manifest may ask for.
pub const MAX_SUBSCRIPTIONS_RANGE: RangeInclusive<u32> = 1..=100_000;
/// The `max_payload`s a manifest may ask for, in bytes: 1 KiB to 64 MiB. 64 MiB is
/// nats-server's default `max_pending`, the most it buffers for one connection; it refuses to
/// start with a `max_payload` above that.
pub const MAX_PAYLOAD_RANGE: RangeInclusive<u32> = 1024..=64 * 1024 * 1024;
/// The `max_connections` a manifest may ask for.
pub const MAX_CONNECTIONS_RANGE: RangeInclusive<u32> = 1..=10_000;
/// The `max_bytes_per_second`s a manifest may ask for: 1 KiB to 1 GiB.
pub const MAX_BYTES_PER_SECOND_RANGE: RangeInclusive<u32> = 1024..=1024 * 1024 * 1024;
/// `max_subscriptions` when the manifest does not say.
pub const DEFAULT_MAX_SUBSCRIPTIONS: NonZeroU32 = NonZeroU32::new(1000).expect("1000 is not 0");
/// `max_payload` when the manifest does not say: 1 MiB, nats-server's own default.
pub const DEFAULT_MAX_PAYLOAD: NonZeroU32 = NonZeroU32::new(1024 * 1024).expect("1 MiB is not 0");
/// `max_connections` when the manifest does not say: room for a few workers, and for each to
/// reconnect while its old connection is still being closed.
pub const DEFAULT_MAX_CONNECTIONS: NonZeroU32 = NonZeroU32::new(8).expect("8 is not 0");
/// `max_bytes_per_second` when the manifest does not say: 8 MiB/s, eight largest messages of
/// the default `max_payload` a second.
pub const DEFAULT_MAX_BYTES_PER_SECOND: NonZeroU32 =
    NonZeroU32::new(8 * 1024 * 1024).expect("8 MiB is not 0");

/// A plugin's quotas: part of what an operator approves by registering its manifest.
///
/// `max_subscriptions` and `max_payload` are per connection and written into the user JWT of
/// each of its connections (`subs`, `payload`); `max_connections` and `max_bytes_per_second`
/// are for the plugin as a whole, all its connections together. The auth service enforces all
/// but `max_payload` itself (`docs/security.md`, Limits).
///
/// Its serde form (the one of the rights a worker is told) is plain numbers:
/// `{"max_subscriptions": 1000, "max_payload": 1048576, "max_connections": 8,
/// "max_bytes_per_second": 8388608}`; a key left out reads as its default. The manifest writes
/// sizes as such (`"1MiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// How many subscriptions one connection may hold at once (1 to 100 000).
    pub max_subscriptions: NonZeroU32,
    /// The largest message, in bytes, one connection may publish (1 KiB to 64 MiB). The
    /// server's own `max_payload` still applies: the smaller of the two wins.
    pub max_payload: NonZeroU32,
    /// How many connections the plugin may have open at once, all its workers together (1 to
    /// 10 000).
    pub max_connections: NonZeroU32,
    /// How many bytes per second the plugin may publish, all its connections together (1 KiB
    /// to 1 GiB): message headers and payloads, as the server counts them.
    pub max_bytes_per_second: NonZeroU32,
}

impl Default for Limits {
    /// 1000 subscriptions, 1 MiB messages, 8 connections, 8 MiB/s.
    fn default() -> Self {
        Self {
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_bytes_per_second: DEFAULT_MAX_BYTES_PER_SECOND,
        }
    }
}

/// Why a string is not a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum ParseSizeError {
    /// Not a whole number followed by `B`, `KiB`, `MiB` or `GiB`.
    #[error(
        "`{0}` is not a size; write a whole number of bytes, or one followed by B, KiB, MiB or \
         GiB, e.g. \"256KiB\" or \"1MiB\" (units are powers of 1024)"
    )]
    Malformed(String),
    /// A size too large to count in bytes.
    #[error("`{0}` is far too large")]
    Overflow(String),
}

/// Reads a size: `"2048"`, `"2048B"`, `"256KiB"`, `"1MiB"`, `"1 GiB"`, in bytes.
pub(super) fn parse_size(text: &str) -> Result<u64, ParseSizeError> {
    let malformed = || ParseSizeError::Malformed(text.to_owned());
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(malformed());
    }
    let unit = match unit.strip_prefix(' ').unwrap_or(unit) {
        "" | "B" => 1,
        "KiB" => KIB,
        "MiB" => MIB,
        "GiB" => GIB,
        _ => return Err(malformed()),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|number| number.checked_mul(unit))
        .ok_or_else(|| ParseSizeError::Overflow(text.to_owned()))
}

/// A size in its shortest exact form: `"1MiB"`, `"2KiB"`, `"1025B"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Size(pub(super) u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        match [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")]
            .into_iter()
            .find(|(unit, _)| bytes != 0 && bytes.is_multiple_of(*unit))
        {
            Some((unit, suffix)) => write!(f, "{}{suffix}", bytes / unit),
            None => write!(f, "{bytes}B"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_powers_of_1024() {
        for (text, bytes) in [
            ("0", 0),
            ("2048", 2048),
            ("2048B", 2048),
            ("1KiB", 1024),
            ("256KiB", 256 * 1024),
            ("1MiB", 1024 * 1024),
            ("1 MiB", 1024 * 1024),
            ("64MiB", 64 * 1024 * 1024),
            ("2GiB", 2 * 1024 * 1024 * 1024),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn other_spellings_are_not_sizes() {
        for text in [
            "", "KiB", "1KB", "1kib", "1MB", "1M", "1.5MiB", "-1KiB", " 1KiB", "1KiB ", "1  KiB",
            "1_024",
        ] {
            assert_eq!(
                parse_size(text),
                Err(ParseSizeError::Malformed(text.to_owned())),
                "{text}"
            );
        }
        for text in ["99999999999999999999", "17179869184GiB"] {
            assert_eq!(
                parse_size(text),
                Err(ParseSizeError::Overflow(text.to_owned())),
                "{text}"
            );
        }
    }

    #[test]
    fn sizes_show_in_their_shortest_exact_form_and_read_back() {
        for (bytes, text) in [
            (1024 * 1024, "1MiB"),
            (2048, "2KiB"),
            (2049, "2049B"),
            (1536 * 1024, "1536KiB"),
            (0, "0B"),
        ] {
            assert_eq!(Size(bytes).to_string(), text);
            assert_eq!(parse_size(text), Ok(bytes));
        }
    }
}
