//! What the fuzz targets share: turning fuzz input into a message's headers and body.

use async_nats::{HeaderMap, HeaderName, HeaderValue};

/// Splits `data` into header pairs and a body: the part before the first NUL byte holds
/// `name: value` lines, the rest is the body. Lines without `: ` are skipped.
pub fn message(data: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let (head, body) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &[][..]),
    };
    let headers = String::from_utf8_lossy(head)
        .lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    (headers, body)
}

/// The first value of header `name`, as the bus and the SDK look headers up.
pub fn lookup<'h>(headers: &'h [(String, String)]) -> impl Fn(&str) -> Option<&'h str> + 'h {
    move |name| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The pairs as an async-nats header map, as a message received from NATS would carry them;
/// names and values that NATS could not carry are left out.
pub fn header_map(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (name.parse::<HeaderName>(), value.parse::<HeaderValue>())
        else {
            continue;
        };
        map.append(name, value);
    }
    map
}

/// A sample of valid CloudEvents headers, for targets that fuzz the body or one header only.
pub fn event_headers(content_type: &str) -> Vec<(String, String)> {
    [
        ("ce-specversion", "1.0"),
        ("ce-id", "evt-1"),
        ("ce-source", "urn:fuzz"),
        ("ce-type", "order.created"),
        ("ce-schemaversion", "1.0.0"),
        ("ce-tenant", "acme"),
        ("content-type", content_type),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect()
}
