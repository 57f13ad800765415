//! Where a call's operator token travels: `Authorization: Bearer <token>`, or (HTTP) the
//! console's session cookie.

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "switchyard_session";

/// The token of an `Authorization` header value `Bearer <token>` (the scheme in any case).
pub fn bearer(value: &str) -> Option<String> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The value of the cookie `name` in a `Cookie` header value.
pub fn cookie(header: &str, name: &str) -> Option<String> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name && !value.is_empty()).then(|| value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_and_cookies_are_found_and_nothing_else() {
        assert_eq!(bearer("Bearer alice.x"), Some("alice.x".to_owned()));
        assert_eq!(bearer("bearer   alice.x "), Some("alice.x".to_owned()));
        assert_eq!(bearer("Basic YWxpY2U="), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(
            cookie("a=1; switchyard_session=alice.x; b=2", SESSION_COOKIE),
            Some("alice.x".to_owned())
        );
        assert_eq!(cookie("switchyard_session=", SESSION_COOKIE), None);
        assert_eq!(cookie("xswitchyard_session=a", SESSION_COOKIE), None);
    }
}
