//! Sealed authorization requests and responses (nats-server's `auth_callout { xkey }`).
//!
//! When the server's configuration names the auth service's curve public key (`xkey`), the
//! server seals each authorization request to it with a curve key of its own, and sends that
//! key's public half in the [`SERVER_XKEY_HEADER`] header. The service opens the request with
//! its xkey's seed, and seals the response back to the server's key, so that neither the
//! plugin's secret nor the user JWT crosses the callout account readable: any other trusted
//! user subscribed to `$SYS.REQ.USER.AUTH` sees ciphertext only.
//!
//! The policy is strict both ways ([`Sealing::open`]): a service with an xkey refuses a
//! plaintext request (the server is configured without the xkey, so plugin secrets are on the
//! wire in clear), and a service without one cannot read a sealed request.

use std::sync::Arc;

use nkeys::XKey;

/// The header in which nats-server sends the public half of the curve key it sealed the
/// request with.
pub const SERVER_XKEY_HEADER: &str = "Nats-Server-Xkey";

/// Why a request could not be opened, or a response not sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The request came sealed, but this service has no xkey to open it with.
    #[error(
        "the authorization request is sealed (header `{SERVER_XKEY_HEADER}`), but this auth \
         service has no xkey: start it with the xkey seed (`xkey.nk` of `switchyard auth init`) \
         whose public key the server's `auth_callout {{ xkey }}` names"
    )]
    NoKey,
    /// The request came in plaintext although this service has an xkey: the server is
    /// configured without it, and plugin secrets cross the callout account in clear.
    #[error(
        "the authorization request is not sealed: the server's `auth_callout` names no `xkey`, \
         so plugin secrets travel in plaintext to every trusted user subscribed to \
         `$SYS.REQ.USER.AUTH`; add `xkey: \"{expected}\"` to the server's `auth_callout`, or \
         run the service without an xkey"
    )]
    Plaintext {
        /// The public key the server's configuration should name.
        expected: String,
    },
    /// The header does not hold a curve public key.
    #[error("the server's xkey `{0}` (header `{SERVER_XKEY_HEADER}`) is not a curve public key")]
    BadServerKey(String),
    /// The request does not open with this service's xkey and the server's: garbage, or sealed
    /// to another key (the server names another `xkey` than this service's).
    #[error(
        "cannot open the sealed authorization request ({reason}); does the server's \
         `auth_callout {{ xkey }}` name this service's key `{own}`?"
    )]
    Open {
        /// This service's public xkey.
        own: String,
        /// What the decryption said.
        reason: String,
    },
    /// The response could not be sealed.
    #[error("cannot seal the authorization response: {0}")]
    Seal(String),
}

/// Reads a curve key (xkey) from its seed (`SX…`).
///
/// # Errors
/// The reason, when the seed does not decode or is not a curve seed.
pub(crate) fn xkey_from_seed(seed: &str) -> Result<XKey, String> {
    XKey::from_seed(seed.trim()).map_err(|e| {
        format!("{e} (an xkey seed starts with `SX`, as in `xkey.nk` of `switchyard auth init`)")
    })
}

/// The service's side of the sealing: its own xkey, if it has one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sealing {
    own: Option<Arc<XKey>>,
}

/// An opened request, and how its response must go back.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The request's plaintext: the authorization request JWT.
    pub(crate) request: Vec<u8>,
    /// The keys to seal the response with: this service's and the server's.
    reply: Option<(Arc<XKey>, XKey)>,
}

impl Sealing {
    /// Sealing with `own` (the key whose public half the server's `auth_callout { xkey }`
    /// names), or none.
    pub(crate) fn new(own: Option<Arc<XKey>>) -> Self {
        Self { own }
    }

    /// Opens a request as received: `server_xkey` is the [`SERVER_XKEY_HEADER`] header, when
    /// present.
    ///
    /// # Errors
    /// A [`SealError`] when the request is sealed but this service has no key, is plaintext
    /// although it has one, or does not open.
    pub(crate) fn open(
        &self,
        server_xkey: Option<&str>,
        payload: &[u8],
    ) -> Result<Opened, SealError> {
        let server_xkey = server_xkey.map(str::trim).filter(|key| !key.is_empty());
        match (&self.own, server_xkey) {
            (None, None) => Ok(Opened {
                request: payload.to_vec(),
                reply: None,
            }),
            (None, Some(_)) => Err(SealError::NoKey),
            (Some(own), None) => Err(SealError::Plaintext {
                expected: own.public_key(),
            }),
            (Some(own), Some(server)) => {
                let server = XKey::from_public_key(server)
                    .map_err(|_| SealError::BadServerKey(server.to_owned()))?;
                let request = own.open(payload, &server).map_err(|e| SealError::Open {
                    own: own.public_key(),
                    reason: e.to_string(),
                })?;
                Ok(Opened {
                    request,
                    reply: Some((Arc::clone(own), server)),
                })
            }
        }
    }
}

impl Opened {
    /// The public key the server sealed the request with, if it was sealed. The request's
    /// claims name it too (`server_id.xkey`), signed by the server.
    pub(crate) fn server_xkey(&self) -> Option<String> {
        self.reply.as_ref().map(|(_, server)| server.public_key())
    }

    /// The response as it must be sent: sealed to the server's key when the request was
    /// sealed, else as is.
    ///
    /// # Errors
    /// [`SealError::Seal`] when sealing fails.
    pub(crate) fn seal(&self, response: String) -> Result<Vec<u8>, SealError> {
        match &self.reply {
            None => Ok(response.into_bytes()),
            Some((own, server)) => own
                .seal(response.as_bytes(), server)
                .map_err(|e| SealError::Seal(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.request.signature";

    fn service() -> (Sealing, Arc<XKey>) {
        let own = Arc::new(XKey::new());
        (Sealing::new(Some(Arc::clone(&own))), own)
    }

    #[test]
    fn a_sealed_request_opens_and_its_response_goes_back_sealed_to_the_server() {
        let (sealing, own) = service();
        let server = XKey::new();
        // As nats-server does: seal to the service's public key with the server's own key.
        let public_own = XKey::from_public_key(&own.public_key()).unwrap();
        let sealed = server.seal(REQUEST.as_bytes(), &public_own).unwrap();
        assert!(!sealed.windows(3).any(|w| w == b"eyJ"));

        let opened = sealing
            .open(Some(&server.public_key()), &sealed)
            .expect("opens");
        assert_eq!(opened.request, REQUEST.as_bytes());
        assert_eq!(opened.server_xkey(), Some(server.public_key()));

        let response = opened.seal("eyJresponse".to_owned()).unwrap();
        assert!(!response.starts_with(b"eyJ"));
        // As nats-server does: open with its key, from the key its configuration names.
        assert_eq!(server.open(&response, &public_own).unwrap(), b"eyJresponse");
    }

    #[test]
    fn without_keys_on_either_side_requests_and_responses_pass_as_they_are() {
        let opened = Sealing::default().open(None, REQUEST.as_bytes()).unwrap();
        assert_eq!(opened.request, REQUEST.as_bytes());
        assert_eq!(opened.server_xkey(), None);
        assert_eq!(opened.seal("eyJx".to_owned()).unwrap(), b"eyJx");
    }

    #[test]
    fn a_plaintext_request_is_refused_by_a_service_with_a_key() {
        let (sealing, own) = service();
        assert_eq!(
            sealing.open(None, REQUEST.as_bytes()).unwrap_err(),
            SealError::Plaintext {
                expected: own.public_key()
            }
        );
        // An empty header counts as none.
        assert!(matches!(
            sealing.open(Some("  "), REQUEST.as_bytes()),
            Err(SealError::Plaintext { .. })
        ));
    }

    #[test]
    fn a_sealed_request_is_refused_by_a_service_without_a_key() {
        let server = XKey::new();
        let receiver = XKey::new();
        let sealed = server.seal(REQUEST.as_bytes(), &receiver).unwrap();
        assert_eq!(
            Sealing::default()
                .open(Some(&server.public_key()), &sealed)
                .unwrap_err(),
            SealError::NoKey
        );
    }

    #[test]
    fn garbage_is_refused_with_a_typed_error_never_a_panic() {
        let (sealing, own) = service();
        let server = XKey::new();
        let header = server.public_key();
        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"x".to_vec(),
            b"xkv1".to_vec(),
            [b"xkv1".as_slice(), &[0; 24]].concat(),
            [b"xkv1".as_slice(), &[0; 25]].concat(),
            [b"xkv1".as_slice(), &[7; 200]].concat(),
            REQUEST.as_bytes().to_vec(),
        ];
        for length in 0..100 {
            inputs.push((0..length).map(|_| rand::random::<u8>()).collect());
        }
        for input in &inputs {
            assert!(
                matches!(
                    sealing.open(Some(&header), input),
                    Err(SealError::Open { .. })
                ),
                "{input:?}"
            );
        }

        // Sealed to another key than the service's.
        let elsewhere = server.seal(REQUEST.as_bytes(), &XKey::new()).unwrap();
        let refused = sealing.open(Some(&header), &elsewhere).unwrap_err();
        assert!(refused.to_string().contains(&own.public_key()), "{refused}");

        // Tampered with.
        let mut tampered = server
            .seal(
                REQUEST.as_bytes(),
                &XKey::from_public_key(&own.public_key()).unwrap(),
            )
            .unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(matches!(
            sealing.open(Some(&header), &tampered),
            Err(SealError::Open { .. })
        ));

        // A header that is not a curve public key.
        let user = nkeys::KeyPair::new_user().public_key();
        for bad in ["nope", "XAAAA", &own.seed().unwrap(), &user] {
            assert!(
                matches!(
                    sealing.open(Some(bad), REQUEST.as_bytes()),
                    Err(SealError::BadServerKey(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn seeds_are_read_and_other_keys_refused() {
        let key = XKey::new();
        let seed = key.seed().unwrap();
        assert_eq!(
            xkey_from_seed(&format!("{seed}\n")).unwrap().public_key(),
            key.public_key()
        );
        let account = nkeys::KeyPair::new_account().seed().unwrap();
        for bad in ["", "garbage", account.as_str()] {
            assert!(xkey_from_seed(bad).unwrap_err().contains("SX"), "{bad}");
        }
    }
}
