//! Reading NATS headers without allocating.
//!
//! The twin of `switchyard_bus::header`: the SDK depends on `schemas` alone, so it keeps its
//! own copy of these few lines rather than pulling the publishing crate in.

use async_nats::HeaderMap;

/// The first value of header `name`. `HeaderMap::get(&str)` builds an owned header name per
/// lookup, and every delivery looks up about twenty; names compare exactly, as in `get`.
pub(crate) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(key, _)| AsRef::<str>::as_ref(*key) == name)
        .and_then(|(_, values)| values.first())
        .map(|value| value.as_str())
}

/// A lookup over a message's headers, if it has any, for the contract's decoders.
pub(crate) fn lookup<'h>(
    headers: Option<&'h HeaderMap>,
) -> impl Fn(&str) -> Option<&'h str> + Copy {
    move |name| headers.and_then(|h| header(h, name))
}
