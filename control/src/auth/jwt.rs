//! NATS JWTs: the signed claims that nats-server and the auth callout exchange.
//!
//! A NATS JWT is three base64url (unpadded) parts joined by `.`: the header
//! `{"typ":"JWT","alg":"ed25519-nkey"}`, the claims as JSON, and an ed25519 signature over the
//! first two parts (as they appear in the token) by the nkey named in the claims' `iss`.
//!
//! Why this small module instead of the `nats-jwt` crate (0.3): that crate writes user and
//! account claims only. It cannot write the authorization *response* claims the callout
//! answers with, nor a user's `resp` permission (allow responses) or audience (the account
//! the user is placed in), and it cannot decode the authorization *request* the server sends.
//! What is needed is about a hundred lines on top of `nkeys`, tested below against the rules
//! nats-server applies (`nats-io/jwt` v2 `Decode`).

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use nkeys::{KeyPair, KeyPairType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512_256};

/// The header of every JWT written here (version 2 claims).
const HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;
/// The algorithm of version 2 claims; the only one accepted when decoding.
const ALGORITHM: &str = "ed25519-nkey";

/// The claims common to every NATS JWT, with the type-specific part in `nats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Claims<N> {
    /// A unique id: a hash of the claims (computed by [`encode`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    /// Issued at, Unix seconds.
    #[serde(default)]
    pub iat: i64,
    /// The public nkey that signed the claims (set by [`encode`]).
    #[serde(default)]
    pub iss: String,
    /// A name for people (for a user: the name the server shows for the connection).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Whom the claims are about (a user's public nkey).
    #[serde(default)]
    pub sub: String,
    /// Whom the claims are for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub aud: String,
    /// Expiry, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// The type-specific claims.
    pub nats: N,
}

/// Why a JWT could not be read or written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum JwtError {
    /// Not three base64url parts, or a part is not the JSON expected.
    #[error("malformed JWT: {0}")]
    Malformed(String),
    /// The header names another algorithm.
    #[error("unsupported JWT algorithm `{0}`")]
    Algorithm(String),
    /// The issuer is not a public nkey of the expected kind.
    #[error("JWT issuer `{issuer}` is not a public {expected:?} nkey")]
    Issuer {
        /// The `iss` claim.
        issuer: String,
        /// The kind of key expected.
        expected: KeyPairType,
    },
    /// The signature does not verify against the issuer.
    #[error("JWT signature does not verify")]
    Signature,
    /// The claims have expired.
    #[error("JWT expired at {0}")]
    Expired(i64),
    /// Signing failed (a key without its seed).
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// Signs `claims` with `key`, setting `iss` to its public key and `jti` to a hash of the rest.
///
/// # Errors
/// [`JwtError::Sign`] when `key` holds no seed.
pub(crate) fn encode<N: Serialize>(
    mut claims: Claims<N>,
    key: &KeyPair,
) -> Result<String, JwtError> {
    claims.iss = key.public_key();
    claims.jti = String::new();
    let unhashed = to_json(&claims)?;
    claims.jti = BASE32_NOPAD.encode(&Sha512_256::digest(&unhashed));
    let body = to_json(&claims)?;
    let signed = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(HEADER.as_bytes()),
        BASE64URL_NOPAD.encode(&body)
    );
    let signature = key
        .sign(signed.as_bytes())
        .map_err(|e| JwtError::Sign(e.to_string()))?;
    Ok(format!("{signed}.{}", BASE64URL_NOPAD.encode(&signature)))
}

/// Reads a JWT whose issuer must be a public nkey of kind `issuer_kind`: checks the header,
/// the signature against the issuer and the expiry at `now` (Unix seconds).
///
/// # Errors
/// A [`JwtError`] saying which check failed.
pub(crate) fn decode<N: DeserializeOwned>(
    token: &str,
    issuer_kind: KeyPairType,
    now: i64,
) -> Result<Claims<N>, JwtError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(header), Some(body), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("expected three parts".to_owned()));
    };
    let base64 = |part: &str, what: &str| {
        BASE64URL_NOPAD
            .decode(part.as_bytes())
            .map_err(|e| JwtError::Malformed(format!("{what}: {e}")))
    };
    #[derive(Deserialize)]
    struct Header {
        alg: String,
    }
    let header: Header = serde_json::from_slice(&base64(header, "header")?)
        .map_err(|e| JwtError::Malformed(format!("header: {e}")))?;
    if !header.alg.eq_ignore_ascii_case(ALGORITHM) {
        return Err(JwtError::Algorithm(header.alg));
    }
    let claims: Claims<N> = serde_json::from_slice(&base64(body, "claims")?)
        .map_err(|e| JwtError::Malformed(format!("claims: {e}")))?;
    let issuer_error = || JwtError::Issuer {
        issuer: claims.iss.clone(),
        expected: issuer_kind.clone(),
    };
    let issuer = KeyPair::from_public_key(&claims.iss).map_err(|_| issuer_error())?;
    if issuer.key_pair_type() != issuer_kind {
        return Err(issuer_error());
    }
    let signed = &token[..header_len(token)];
    issuer
        .verify(signed.as_bytes(), &base64(signature, "signature")?)
        .map_err(|_| JwtError::Signature)?;
    match claims.exp {
        Some(exp) if exp > 0 && now > exp => Err(JwtError::Expired(exp)),
        _ => Ok(claims),
    }
}

/// The length of `header.claims` in a token of three parts.
fn header_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, JwtError> {
    serde_json::to_vec(value).map_err(|e| JwtError::Malformed(e.to_string()))
}

/// The `nats` part of the authorization request a server sends to `$SYS.REQ.USER.AUTH`.
/// Only what the callout reads; the rest is ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct AuthorizationRequest {
    /// The server asking.
    pub server_id: ServerId,
    /// The public nkey the server generated for this connection: the subject of the user
    /// JWT and of the response.
    pub user_nkey: String,
    /// What the server knows about the client.
    #[serde(default)]
    pub client_info: ClientInfo,
    /// What the client sent in its CONNECT.
    #[serde(default)]
    pub connect_opts: ConnectOpts,
    /// `authorization_request`.
    #[serde(rename = "type", default)]
    pub kind: String,
}

/// The server that sent an authorization request.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ServerId {
    /// The server's name.
    #[serde(default)]
    pub name: String,
    /// The server's id (its public nkey): the audience of the response.
    #[serde(default)]
    pub id: String,
    /// The public curve key the server seals requests with, when its `auth_callout` names an
    /// `xkey`.
    #[serde(default)]
    pub xkey: String,
}

/// The client of an authorization request.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ClientInfo {
    /// Its address.
    #[serde(default)]
    pub host: String,
    /// Its connection id on that server.
    #[serde(default)]
    pub id: u64,
}

/// The credentials a client presented.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ConnectOpts {
    /// The user name.
    #[serde(default)]
    pub user: Option<String>,
    /// The password.
    #[serde(default)]
    pub pass: Option<String>,
    /// The client's connection name.
    #[serde(default)]
    pub name: Option<String>,
}

/// The claim type of an authorization request.
pub(crate) const AUTHORIZATION_REQUEST: &str = "authorization_request";

/// The `nats` part of the callout's answer: a user JWT, or why the client is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AuthorizationResponse {
    /// The user JWT the connection gets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
    /// Why it is refused; the server logs it and closes the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `authorization_response`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always 2.
    pub version: u32,
}

impl AuthorizationResponse {
    /// An answer granting the connection the user JWT `jwt`.
    pub(crate) fn granted(jwt: String) -> Self {
        Self {
            jwt: Some(jwt),
            error: None,
            kind: "authorization_response".to_owned(),
            version: 2,
        }
    }

    /// An answer refusing the connection.
    pub(crate) fn refused(reason: String) -> Self {
        Self {
            jwt: None,
            error: Some(reason),
            kind: "authorization_response".to_owned(),
            version: 2,
        }
    }
}

/// The `nats` part of a user JWT: what the connection may publish and subscribe to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct User {
    /// Publish permissions.
    #[serde(rename = "pub", default, skip_serializing_if = "Permission::is_empty")]
    pub publish: Permission,
    /// Subscribe permissions.
    #[serde(rename = "sub", default, skip_serializing_if = "Permission::is_empty")]
    pub subscribe: Permission,
    /// Most subscriptions; -1 for no limit. nats-server (up to 2.15.1 at least) applies it only
    /// to a connection that presented this JWT itself, not to one authorized by the callout.
    pub subs: i64,
    /// Most data; -1 for no limit. nats-server does not apply a user's `data` to client
    /// connections at all.
    pub data: i64,
    /// Largest message (headers included); -1 for the server's limit, which applies anyway.
    /// Applied like `subs`.
    pub payload: i64,
    /// `user`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always 2.
    pub version: u32,
}

/// Subjects allowed and denied (NATS wildcards; deny wins).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Permission {
    /// Allowed subjects; when empty, everything not denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Denied subjects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl Permission {
    fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: Option<i64>) -> Claims<AuthorizationResponse> {
        Claims {
            jti: String::new(),
            iat: 1_700_000_000,
            iss: String::new(),
            name: String::new(),
            sub: KeyPair::new_user().public_key(),
            aud: KeyPair::new_server().public_key(),
            exp,
            nats: AuthorizationResponse::refused("no".to_owned()),
        }
    }

    #[test]
    fn encodes_the_nats_format_and_reads_it_back() {
        let issuer = KeyPair::new_account();
        let token = encode(claims(None), &issuer).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            BASE64URL_NOPAD.decode(parts[0].as_bytes()).unwrap(),
            HEADER.as_bytes()
        );
        let json: serde_json::Value =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap()).unwrap();
        assert_eq!(json["iss"], issuer.public_key());
        assert_eq!(json["nats"]["type"], "authorization_response");
        assert_eq!(json["nats"]["error"], "no");
        assert!(json.get("exp").is_none());
        assert_eq!(json["jti"].as_str().unwrap().len(), 52);

        let back: Claims<AuthorizationResponse> =
            decode(&token, KeyPairType::Account, 1_700_000_000).unwrap();
        assert_eq!(back.iss, issuer.public_key());
        assert_eq!(back.nats, AuthorizationResponse::refused("no".to_owned()));
    }

    #[test]
    fn refuses_a_tampered_token_a_wrong_issuer_kind_and_an_expired_one() {
        let issuer = KeyPair::new_account();
        let token = encode(claims(Some(100)), &issuer).unwrap();

        let expired = decode::<AuthorizationResponse>(&token, KeyPairType::Account, 101);
        assert_eq!(expired, Err(JwtError::Expired(100)));
        assert!(decode::<AuthorizationResponse>(&token, KeyPairType::Account, 100).is_ok());

        let wrong_kind = decode::<AuthorizationResponse>(&token, KeyPairType::Server, 0);
        assert!(matches!(wrong_kind, Err(JwtError::Issuer { .. })));

        // Same header and signature, other claims: the signature no longer verifies.
        let other = encode(claims(Some(200)), &issuer).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = other.split('.').nth(1).unwrap();
        assert_eq!(
            decode::<AuthorizationResponse>(&parts.join("."), KeyPairType::Account, 0),
            Err(JwtError::Signature)
        );

        // Signed by another key than the one it names.
        let impostor = encode(claims(None), &KeyPair::new_account()).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[2] = impostor.split('.').nth(2).unwrap();
        assert_eq!(
            decode::<AuthorizationResponse>(&parts.join("."), KeyPairType::Account, 0),
            Err(JwtError::Signature)
        );

        assert!(matches!(
            decode::<AuthorizationResponse>("a.b", KeyPairType::Account, 0),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn refuses_other_algorithms() {
        let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
        let token = format!("{header}.e30.AAAA");
        assert_eq!(
            decode::<serde_json::Value>(&token, KeyPairType::Account, 0),
            Err(JwtError::Algorithm("HS256".to_owned()))
        );
    }

    #[test]
    fn user_claims_serialize_as_nats_server_reads_them() {
        let user = User {
            publish: Permission {
                allow: vec!["a.b".to_owned()],
                deny: vec![],
            },
            subscribe: Permission::default(),
            subs: -1,
            data: -1,
            payload: -1,
            kind: "user".to_owned(),
            version: 2,
        };
        let json = serde_json::to_value(&user).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "pub": {"allow": ["a.b"]},
                "subs": -1, "data": -1, "payload": -1,
                "type": "user", "version": 2
            })
        );
    }
}
