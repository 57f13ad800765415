//! Whether a body is well-formed JSON or MessagePack, checked before any decoder sees it.
//!
//! Bodies come from anyone who can publish. A decoder that recurses once per nesting level
//! can be made to overflow its stack by a small body (rmp-serde bounds the depth of arrays and
//! maps, but not of enum variants), and a worker in another language should never receive a
//! body that its own decoder refuses. So every body is checked here first, by a single
//! forward pass that keeps its state in a fixed array on the stack: time linear in the body's
//! length, no allocation, and nesting refused beyond [`MAX_BODY_DEPTH`].
//!
//! Well-formed means syntax only: whether the value fits the event type's schema is still the
//! reader's business.

use std::fmt;

use crate::content_type::ContentType;

/// The deepest nesting of arrays and maps (JSON objects) a body may have: a scalar at the top
/// is at depth 0, `[1]` at depth 1, `{"a": [1]}` at depth 2.
///
/// Below serde_json's own limit (128) and rmp-serde's (1024, which does not count enum
/// variants), so that a body this check accepts never trips a decoder's limit, and event data
/// nested deeper than this is not a realistic schema.
pub const MAX_BODY_DEPTH: usize = 100;

/// Why a body is not well-formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not well-formed {content_type} at byte {offset}: {kind}")]
pub struct BodyError {
    /// The content type the body claimed.
    pub content_type: ContentType,
    /// The offset, in bytes from the body's start, of the first byte at fault (the body's
    /// length when it ends too early).
    pub offset: usize,
    /// What is wrong there.
    pub kind: BodyErrorKind,
}

/// What is wrong with a body that is not well-formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyErrorKind {
    /// The body ends inside a value (an empty body included).
    UnexpectedEnd,
    /// Bytes follow the one top-level value.
    TrailingBytes,
    /// Arrays and maps are nested deeper than the limit.
    TooDeep {
        /// The limit, [`MAX_BODY_DEPTH`].
        limit: usize,
    },
    /// Text that is not UTF-8: anywhere in a JSON body, or in a MessagePack string.
    InvalidUtf8,
    /// JSON: a byte that cannot stand where it is.
    UnexpectedByte(u8),
    /// JSON: a control character (below U+0020) not escaped inside a string.
    ControlCharacter,
    /// JSON: a backslash escape that does not exist, or a `\u` without four hex digits.
    BadEscape,
    /// JSON: a `\u` escape of half a surrogate pair without its other half.
    LoneSurrogate,
    /// JSON: a number that does not follow the grammar (`01`, `1.`, `-`, `1e`).
    BadNumber,
    /// MessagePack: the byte `0xc1`, which the format never uses.
    ReservedMarker,
}

impl fmt::Display for BodyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedEnd => f.write_str("the body ends inside a value"),
            Self::TrailingBytes => f.write_str("bytes after the end of the value"),
            Self::TooDeep { limit } => {
                write!(f, "arrays and maps nested deeper than {limit} levels")
            }
            Self::InvalidUtf8 => f.write_str("text that is not UTF-8"),
            Self::UnexpectedByte(byte) if byte.is_ascii_graphic() => {
                write!(f, "unexpected `{}`", char::from(*byte))
            }
            Self::UnexpectedByte(byte) => write!(f, "unexpected byte 0x{byte:02x}"),
            Self::ControlCharacter => f.write_str("a control character not escaped in a string"),
            Self::BadEscape => f.write_str("an invalid escape in a string"),
            Self::LoneSurrogate => f.write_str("a \\u escape of half a surrogate pair"),
            Self::BadNumber => f.write_str("a malformed number"),
            Self::ReservedMarker => f.write_str("the byte 0xc1, which MessagePack never uses"),
        }
    }
}

/// Checks that `body` is one well-formed value of `content_type`, nested at most
/// [`MAX_BODY_DEPTH`] deep.
///
/// # Errors
/// A [`BodyError`] naming the first problem and its offset.
pub fn check_body(content_type: ContentType, body: &[u8]) -> Result<(), BodyError> {
    let checked = match content_type {
        ContentType::Json => Json::new(body).check(),
        ContentType::MessagePack => msgpack(body),
    };
    checked.map_err(|(offset, kind)| BodyError {
        content_type,
        offset,
        kind,
    })
}

type Checked = Result<(), (usize, BodyErrorKind)>;

const TOO_DEEP: BodyErrorKind = BodyErrorKind::TooDeep {
    limit: MAX_BODY_DEPTH,
};

/// A JSON (RFC 8259) checker over the body's bytes.
struct Json<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// The open containers, innermost last: `true` for an object, `false` for an array.
    open: [bool; MAX_BODY_DEPTH],
    depth: usize,
}

/// What the JSON checker expects next.
enum Next {
    /// A value.
    Value,
    /// An object's key (a string), then `:`.
    Key,
    /// What follows a complete value: `,`, a closing bracket, or the end.
    AfterValue,
}

impl<'a> Json<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            open: [false; MAX_BODY_DEPTH],
            depth: 0,
        }
    }

    fn check(mut self) -> Checked {
        // All of a JSON text is UTF-8; checking it once up front leaves the strings to be
        // scanned byte by byte for quotes, escapes and control characters only.
        if let Err(error) = std::str::from_utf8(self.bytes) {
            // Report the earlier of a syntax error before the bad byte and the bad byte.
            let valid = error.valid_up_to();
            return match Json::new(&self.bytes[..valid]).check() {
                Err((offset, kind)) if offset < valid => Err((offset, kind)),
                _ => Err((valid, BodyErrorKind::InvalidUtf8)),
            };
        }
        let mut next = Next::Value;
        loop {
            self.skip_whitespace();
            next = match next {
                Next::Value => self.value()?,
                Next::Key => {
                    self.string()?;
                    self.skip_whitespace();
                    self.expect(b':')?;
                    Next::Value
                }
                Next::AfterValue => {
                    if self.depth == 0 {
                        return match self.peek() {
                            None => Ok(()),
                            Some(_) => Err((self.pos, BodyErrorKind::TrailingBytes)),
                        };
                    }
                    let in_object = self.open[self.depth - 1];
                    match (self.peek(), in_object) {
                        (Some(b','), true) => {
                            self.pos += 1;
                            Next::Key
                        }
                        (Some(b','), false) => {
                            self.pos += 1;
                            Next::Value
                        }
                        (Some(b'}'), true) | (Some(b']'), false) => {
                            self.pos += 1;
                            self.depth -= 1;
                            Next::AfterValue
                        }
                        (Some(byte), _) => return Err(self.unexpected(byte)),
                        (None, _) => return Err(self.end()),
                    }
                }
            };
        }
    }

    /// One value, or the opening of a container.
    fn value(&mut self) -> Result<Next, (usize, BodyErrorKind)> {
        let Some(byte) = self.peek() else {
            return Err(self.end());
        };
        match byte {
            b'{' | b'[' => {
                if self.depth == MAX_BODY_DEPTH {
                    return Err((self.pos, TOO_DEEP));
                }
                let object = byte == b'{';
                self.open[self.depth] = object;
                self.depth += 1;
                self.pos += 1;
                self.skip_whitespace();
                let close = if object { b'}' } else { b']' };
                if self.peek() == Some(close) {
                    self.pos += 1;
                    self.depth -= 1;
                    Ok(Next::AfterValue)
                } else if object {
                    Ok(Next::Key)
                } else {
                    Ok(Next::Value)
                }
            }
            b'"' => self.string().map(|()| Next::AfterValue),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(|()| Next::AfterValue),
            other => Err(self.unexpected(other)),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<Next, (usize, BodyErrorKind)> {
        for &expected in word {
            match self.peek() {
                Some(byte) if byte == expected => self.pos += 1,
                Some(byte) => return Err(self.unexpected(byte)),
                None => return Err(self.end()),
            }
        }
        Ok(Next::AfterValue)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Checked {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err((start, BodyErrorKind::BadNumber)),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err((start, BodyErrorKind::BadNumber));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return Err((start, BodyErrorKind::BadNumber));
            }
            self.digits();
        }
        // `01` and `1x` are caught here or by what follows the value; `01` here, because a
        // digit cannot follow a leading zero.
        if self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return Err((start, BodyErrorKind::BadNumber));
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    /// A string, from its opening quote to past its closing one.
    fn string(&mut self) -> Checked {
        match self.peek() {
            Some(b'"') => self.pos += 1,
            Some(byte) => return Err(self.unexpected(byte)),
            None => return Err(self.end()),
        }
        loop {
            let Some(byte) = self.peek() else {
                return Err(self.end());
            };
            match byte {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => self.escape()?,
                0x00..=0x1f => return Err((self.pos, BodyErrorKind::ControlCharacter)),
                _ => self.pos += 1,
            }
        }
    }

    /// One escape, from its backslash. A `\u` of a high surrogate must be followed by a `\u`
    /// of a low one, as serde_json and most other readers insist.
    fn escape(&mut self) -> Checked {
        let start = self.pos;
        self.pos += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                self.pos += 1;
                let unit = self.hex4(start)?;
                match unit {
                    0xD800..=0xDBFF => {
                        if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err((start, BodyErrorKind::LoneSurrogate));
                        }
                        self.pos += 2;
                        match self.hex4(start)? {
                            0xDC00..=0xDFFF => Ok(()),
                            _ => Err((start, BodyErrorKind::LoneSurrogate)),
                        }
                    }
                    0xDC00..=0xDFFF => Err((start, BodyErrorKind::LoneSurrogate)),
                    _ => Ok(()),
                }
            }
            Some(_) => Err((start, BodyErrorKind::BadEscape)),
            None => Err(self.end()),
        }
    }

    fn hex4(&mut self, escape: usize) -> Result<u16, (usize, BodyErrorKind)> {
        let mut unit = 0u16;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(byte) => char::from(byte)
                    .to_digit(16)
                    .ok_or((escape, BodyErrorKind::BadEscape))?,
                None => return Err(self.end()),
            };
            // Four hex digits fit in 16 bits; `digit` is below 16.
            unit = (unit << 4) | digit as u16;
            self.pos += 1;
        }
        Ok(unit)
    }

    fn expect(&mut self, wanted: u8) -> Checked {
        match self.peek() {
            Some(byte) if byte == wanted => {
                self.pos += 1;
                Ok(())
            }
            Some(byte) => Err(self.unexpected(byte)),
            None => Err(self.end()),
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn unexpected(&self, byte: u8) -> (usize, BodyErrorKind) {
        (self.pos, BodyErrorKind::UnexpectedByte(byte))
    }

    fn end(&self) -> (usize, BodyErrorKind) {
        (self.bytes.len(), BodyErrorKind::UnexpectedEnd)
    }
}

/// A MessagePack checker: every marker is known, every length fits in the body, every string
/// is UTF-8, and containers nest at most [`MAX_BODY_DEPTH`] deep.
fn msgpack(bytes: &[u8]) -> Checked {
    // Values still to read in each open container, innermost last (a map's entries count
    // twice: key and value). A map32 may claim 2^33 values: u64.
    let mut remaining = [0u64; MAX_BODY_DEPTH];
    let mut depth = 0usize;
    let mut pos = 0usize;
    let end = (bytes.len(), BodyErrorKind::UnexpectedEnd);
    loop {
        let start = pos;
        let marker = *bytes.get(pos).ok_or(end)?;
        pos += 1;
        // What follows the marker: a container of `n` values, or `skip` bytes of payload
        // (whose length may itself follow the marker), `utf8` when the payload is a string.
        let mut container: Option<u64> = None;
        let mut utf8 = false;
        let skip: usize = match marker {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => 0,
            0x80..=0x8f => {
                container = Some(2 * u64::from(marker & 0x0f));
                0
            }
            0x90..=0x9f => {
                container = Some(u64::from(marker & 0x0f));
                0
            }
            0xa0..=0xbf => {
                utf8 = true;
                usize::from(marker & 0x1f)
            }
            0xc1 => return Err((start, BodyErrorKind::ReservedMarker)),
            // bin 8/16/32
            0xc4 => length(bytes, &mut pos, 1)?,
            0xc5 => length(bytes, &mut pos, 2)?,
            0xc6 => length(bytes, &mut pos, 4)?,
            // ext 8/16/32: the length, then a type byte, then the payload
            0xc7 => length(bytes, &mut pos, 1)?.saturating_add(1),
            0xc8 => length(bytes, &mut pos, 2)?.saturating_add(1),
            0xc9 => length(bytes, &mut pos, 4)?.saturating_add(1),
            0xca => 4,
            0xcb => 8,
            0xcc | 0xd0 => 1,
            0xcd | 0xd1 => 2,
            0xce | 0xd2 => 4,
            0xcf | 0xd3 => 8,
            // fixext 1/2/4/8/16: a type byte, then the payload
            0xd4 => 2,
            0xd5 => 3,
            0xd6 => 5,
            0xd7 => 9,
            0xd8 => 17,
            0xd9..=0xdb => {
                utf8 = true;
                length(bytes, &mut pos, 1 << (marker - 0xd9))?
            }
            0xdc => {
                container = Some(length(bytes, &mut pos, 2)? as u64);
                0
            }
            0xdd => {
                container = Some(length(bytes, &mut pos, 4)? as u64);
                0
            }
            0xde => {
                container = Some(2 * length(bytes, &mut pos, 2)? as u64);
                0
            }
            0xdf => {
                container = Some(2 * length(bytes, &mut pos, 4)? as u64);
                0
            }
        };
        let payload = pos
            .checked_add(skip)
            .and_then(|stop| bytes.get(pos..stop))
            .ok_or(end)?;
        if utf8 {
            if let Err(error) = std::str::from_utf8(payload) {
                return Err((pos + error.valid_up_to(), BodyErrorKind::InvalidUtf8));
            }
        }
        pos += skip;

        match container {
            Some(count) if count > 0 => {
                if depth == MAX_BODY_DEPTH {
                    return Err((start, TOO_DEEP));
                }
                remaining[depth] = count;
                depth += 1;
                continue;
            }
            // A scalar, or an empty container: one value of the enclosing container is done,
            // which may complete it, and so on outwards.
            _ => loop {
                if depth == 0 {
                    return if pos == bytes.len() {
                        Ok(())
                    } else {
                        Err((pos, BodyErrorKind::TrailingBytes))
                    };
                }
                remaining[depth - 1] -= 1;
                if remaining[depth - 1] > 0 {
                    break;
                }
                depth -= 1;
            },
        }
    }
}

/// Reads a big-endian length of `width` bytes at `pos` and moves past it.
fn length(bytes: &[u8], pos: &mut usize, width: usize) -> Result<usize, (usize, BodyErrorKind)> {
    let field = pos
        .checked_add(width)
        .and_then(|stop| bytes.get(*pos..stop))
        .ok_or((bytes.len(), BodyErrorKind::UnexpectedEnd))?;
    *pos += width;
    let value = field
        .iter()
        .fold(0u64, |acc, &byte| (acc << 8) | u64::from(byte));
    // A 32-bit length always fits a usize on the 64-bit and 32-bit targets Rust runs NATS on;
    // saturating keeps a 16-bit target from wrapping (the bounds check then fails).
    Ok(usize::try_from(value).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(body: &str) -> Result<(), (usize, BodyErrorKind)> {
        check_body(ContentType::Json, body.as_bytes()).map_err(|e| (e.offset, e.kind))
    }

    fn mp(body: &[u8]) -> Result<(), (usize, BodyErrorKind)> {
        check_body(ContentType::MessagePack, body).map_err(|e| (e.offset, e.kind))
    }

    #[test]
    fn accepts_well_formed_json() {
        for body in [
            "{}",
            "[]",
            " {\"a\": [1, -2.5e+3, true, false, null, \"x\\n\\u00e9\\ud83d\\ude00\"]} ",
            "0",
            "\"é\"",
            "{\"a\":{\"b\":{}}}",
            "-0.0E-0",
        ] {
            assert_eq!(json(body), Ok(()), "{body}");
        }
    }

    #[test]
    fn refuses_malformed_json_naming_the_offset_and_kind() {
        use BodyErrorKind::*;
        let cases: &[(&str, (usize, BodyErrorKind))] = &[
            ("{this is not json", (1, UnexpectedByte(b't'))),
            ("", (0, UnexpectedEnd)),
            ("   ", (3, UnexpectedEnd)),
            ("{\"a\":1", (6, UnexpectedEnd)),
            ("[1,]", (3, UnexpectedByte(b']'))),
            ("{\"a\" 1}", (5, UnexpectedByte(b'1'))),
            ("{1:2}", (1, UnexpectedByte(b'1'))),
            ("[1] [2]", (4, TrailingBytes)),
            ("01", (0, BadNumber)),
            ("1.", (0, BadNumber)),
            ("-", (0, BadNumber)),
            ("1e+", (0, BadNumber)),
            ("\"a\tb\"", (2, ControlCharacter)),
            ("\"\\x\"", (1, BadEscape)),
            ("\"\\u12g4\"", (1, BadEscape)),
            ("\"\\ud800\"", (1, LoneSurrogate)),
            ("\"\\udc00\"", (1, LoneSurrogate)),
            ("\"\\ud800\\u0041\"", (1, LoneSurrogate)),
            ("tru", (3, UnexpectedEnd)),
            ("nul!", (3, UnexpectedByte(b'!'))),
            ("[1}", (2, UnexpectedByte(b'}'))),
        ];
        for (body, expected) in cases {
            assert_eq!(json(body), Err(*expected), "{body:?}");
        }
        assert_eq!(
            check_body(ContentType::Json, b"[\"\xff\"]").map_err(|e| (e.offset, e.kind)),
            Err((2, InvalidUtf8))
        );
        // A syntax error before the bad byte is the one reported.
        assert_eq!(
            check_body(ContentType::Json, b"[x\xff]").map_err(|e| (e.offset, e.kind)),
            Err((1, UnexpectedByte(b'x')))
        );
    }

    #[test]
    fn json_depth_is_bounded_at_the_limit() {
        let at_limit = format!(
            "{}{}",
            "[".repeat(MAX_BODY_DEPTH),
            "]".repeat(MAX_BODY_DEPTH)
        );
        assert_eq!(json(&at_limit), Ok(()));
        // And serde_json reads whatever this check lets through.
        serde_json::from_str::<serde_json::Value>(&at_limit).unwrap();
        let over = format!("{{\"a\":{at_limit}}}");
        assert_eq!(json(&over), Err((5 + MAX_BODY_DEPTH - 1, TOO_DEEP)));
        // Far deeper than any stack would take recursively: refused at once, no overflow.
        assert!(json(&"[".repeat(1_000_000)).is_err());
    }

    #[test]
    fn accepts_what_rmp_serde_writes() {
        #[derive(serde::Serialize)]
        struct Everything {
            n: i64,
            u: u64,
            f: f64,
            s: String,
            b: serde_bytes_like::Bytes,
            v: Vec<Option<bool>>,
            m: std::collections::BTreeMap<String, Vec<u8>>,
            big: String,
        }
        mod serde_bytes_like {
            pub(super) struct Bytes(pub(super) Vec<u8>);
            impl serde::Serialize for Bytes {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_bytes(&self.0)
                }
            }
        }
        let value = Everything {
            n: -1_000_000_000_000,
            u: u64::MAX,
            f: 1.5,
            s: "héllo".into(),
            b: serde_bytes_like::Bytes(vec![0xc1; 300]),
            v: vec![Some(true), None, Some(false)],
            m: [("k".to_owned(), vec![1, 2, 255])].into(),
            big: "x".repeat(70_000),
        };
        let body = rmp_serde::to_vec_named(&value).unwrap();
        assert_eq!(mp(&body), Ok(()));
        // Extension types (here a timestamp) are well-formed too.
        assert_eq!(mp(&[0xd6, 0xff, 0, 0, 0, 1]), Ok(()));
        assert_eq!(mp(&[0xc7, 0x00, 0x05]), Ok(()));
    }

    #[test]
    fn refuses_malformed_msgpack_naming_the_offset_and_kind() {
        use BodyErrorKind::*;
        let cases: &[(&[u8], (usize, BodyErrorKind))] = &[
            (b"\xc1", (0, ReservedMarker)),
            (b"\x92\x01\xc1", (2, ReservedMarker)),
            (b"", (0, UnexpectedEnd)),
            (b"\x92\x01", (2, UnexpectedEnd)),
            (b"\x81\xa1a", (3, UnexpectedEnd)),
            (b"\xa5abc", (4, UnexpectedEnd)),
            (b"\xdb\xff\xff\xff\xff", (5, UnexpectedEnd)),
            (b"\xdf\xff\xff\xff\xff\x01", (6, UnexpectedEnd)),
            (b"\xcd\x01", (2, UnexpectedEnd)),
            (b"\x01\x02", (1, TrailingBytes)),
            (b"\x90\x90", (1, TrailingBytes)),
            (b"\xa2a\xff", (2, InvalidUtf8)),
        ];
        for (body, expected) in cases {
            assert_eq!(mp(body), Err(*expected), "{body:?}");
        }
    }

    #[test]
    fn msgpack_depth_is_bounded_at_the_limit() {
        // fixarrays of one element, innermost holding nil.
        let nested = |levels: usize| {
            let mut body = vec![0x91; levels];
            body.push(0xc0);
            body
        };
        assert_eq!(mp(&nested(MAX_BODY_DEPTH)), Ok(()));
        assert_eq!(
            mp(&nested(MAX_BODY_DEPTH + 1)),
            Err((MAX_BODY_DEPTH, TOO_DEEP))
        );
        assert!(mp(&nested(10_000_000)).is_err());
        // Empty containers do not open a level.
        let mut wide = vec![0x91; MAX_BODY_DEPTH];
        wide.push(0x90);
        assert_eq!(mp(&wide), Ok(()));
    }

    #[test]
    fn the_error_names_content_type_offset_and_kind() {
        let error = check_body(ContentType::MessagePack, b"\xc1").unwrap_err();
        assert_eq!(
            error.to_string(),
            "not well-formed application/msgpack at byte 0: the byte 0xc1, which MessagePack never uses"
        );
    }
}
