//! What several commands print and parse alike: event bodies, times, plugin ids.

use std::fmt::Write as _;

use switchyard_schemas::{ContentType, PluginId, Tenant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How much of a body that is neither JSON nor MessagePack is printed.
pub(crate) const PREVIEW_BYTES: usize = 512;

pub(crate) fn parse_plugin_id(raw: &str) -> Result<PluginId, String> {
    PluginId::new(raw).map_err(|e| e.to_string())
}

pub(crate) fn parse_tenant(raw: &str) -> Result<Tenant, String> {
    Tenant::new(raw).map_err(|e| e.to_string())
}

/// An RFC 3339 time, or a duration meaning "that long ago".
pub(crate) fn parse_time(raw: &str) -> Result<OffsetDateTime, String> {
    if let Ok(time) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Ok(time);
    }
    let ago = humantime::parse_duration(raw).map_err(|_| {
        format!(
            "`{raw}` is neither an RFC 3339 time (2026-11-22T10:00:00Z) nor a duration ago (1h, 30m)"
        )
    })?;
    OffsetDateTime::now_utc()
        .checked_sub(time::Duration::try_from(ago).map_err(|e| e.to_string())?)
        .ok_or_else(|| format!("`{raw}` ago is before the year -9999"))
}

/// The body as pretty JSON when it decodes as its content type says, else a preview.
pub(crate) fn render_body(content_type: Option<&str>, body: &[u8]) -> String {
    let decoded = content_type
        .and_then(ContentType::parse)
        .and_then(|ct| ct.decode_whole(body));
    match decoded.and_then(|value| serde_json::to_string_pretty(&value).ok()) {
        Some(pretty) => pretty,
        None => preview(body),
    }
}

/// Text shown escaped, anything else in hex; at most [`PREVIEW_BYTES`] of it.
pub(crate) fn preview(body: &[u8]) -> String {
    let shown = &body[..body.len().min(PREVIEW_BYTES)];
    let mut out = match std::str::from_utf8(shown) {
        Ok(text) => text.escape_debug().to_string(),
        Err(_) => shown
            .chunks(16)
            .map(|line| {
                line.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n"),
    };
    if body.len() > shown.len() {
        let _ = write!(out, "\n... ({} more bytes)", body.len() - shown.len());
    }
    out
}

/// `text` with its control characters escaped (`\u{1b}`), for text that comes from a package
/// or a store and must not drive the terminal.
pub(crate) fn printable(text: &str) -> String {
    switchyard_control::settings::edit::printable(text)
}

/// A time in UTC to the second: enough to tell failures apart on a terminal.
pub(crate) fn timestamp(time: OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| time.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        assert_eq!(
            parse_time("2026-11-22T10:00:00Z").unwrap(),
            time::macros::datetime!(2026-11-22 10:00 UTC)
        );
        let an_hour_ago = parse_time("1h").unwrap();
        let expected = OffsetDateTime::now_utc() - time::Duration::hours(1);
        assert!((an_hour_ago - expected).abs() < time::Duration::seconds(5));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }

    #[test]
    fn bodies_are_pretty_json_when_they_decode_whole_else_previewed() {
        let msgpack = ContentType::MessagePack
            .encode(&serde_json::json!({"n": 3}))
            .unwrap();
        assert_eq!(
            render_body(Some("application/msgpack"), &msgpack),
            "{\n  \"n\": 3\n}"
        );
        assert_eq!(
            render_body(Some("application/json"), br#"{"n":3}"#),
            "{\n  \"n\": 3\n}"
        );
        // `g` alone is a valid MessagePack number; the rest must not be hidden.
        assert_eq!(
            render_body(Some("application/msgpack"), b"garbage"),
            "garbage"
        );
        assert_eq!(render_body(None, b"line\none"), "line\\none");
        assert_eq!(render_body(None, &[0xff, 0x00, 0x10]), "ff 00 10");
        let big = vec![b'a'; PREVIEW_BYTES + 3];
        assert!(render_body(None, &big).ends_with("... (3 more bytes)"));
    }
}
