//! Publisher keys and package signatures.
//!
//! A publisher key is an ed25519 key pair in the NATS nkeys encoding ([`nkeys`], already what
//! the auth callout signs with): the public key is 56 characters starting with `V` (the
//! nkeys "service provider" type, which nothing else in Switchyard uses, so that an account or
//! user key is not taken for a publisher's by mistake), the seed 58 characters starting with
//! `SV`, each with a checksum, so a mistyped key is refused rather than trusted.
//!
//! A signature is over [`SIGNING_CONTEXT`] followed by the index's canonical bytes: the
//! context keeps a signature made for anything else with the same key from passing for a
//! package's.

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use nkeys::{KeyPair, KeyPairType};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::PackageError;

/// What a package signature signs before the index's bytes.
pub const SIGNING_CONTEXT: &[u8] = b"switchyard package index v1\n";

/// A publisher's public key, checked: `V` followed by 55 base32 characters with a valid
/// checksum.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublisherKey(String);

impl PublisherKey {
    /// Checks `key` as a publisher's public key.
    ///
    /// # Errors
    /// [`PackageError::Key`] saying why: not an nkey, a bad checksum, or a key of another type
    /// (a seed, an account or a user key).
    pub fn new(key: &str) -> Result<Self, PackageError> {
        let shown = shown(key);
        if key.starts_with('S') {
            return Err(PackageError::Key(format!(
                "{shown} is a seed (a secret), not a public key: never share it; the public key \
                 is what `switchyard package keygen` printed"
            )));
        }
        let pair = KeyPair::from_public_key(key)
            .map_err(|e| PackageError::Key(format!("{shown} is not a public key: {e}")))?;
        if pair.key_pair_type() != KeyPairType::Service {
            return Err(PackageError::Key(format!(
                "{shown} is not a publisher key (those start with `V`): it is a {:?} key",
                pair.key_pair_type()
            )));
        }
        Ok(Self(key.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `signature` is this key's over `index` (the canonical bytes of an index).
    ///
    /// # Errors
    /// Why it is not: a signature of the wrong length, or one that does not verify.
    pub fn verify_index(&self, index: &[u8], signature: &[u8]) -> Result<(), String> {
        let pair = KeyPair::from_public_key(&self.0).map_err(|e| e.to_string())?;
        pair.verify(&signed_message(index), signature)
            .map_err(|e| format!("the signature does not verify with this key ({e})"))
    }
}

impl fmt::Display for PublisherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for PublisherKey {
    type Err = PackageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for PublisherKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PublisherKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::new(&raw).map_err(serde::de::Error::custom)
    }
}

/// A publisher's key pair: signs packages. Its `Debug` does not show the seed.
pub struct PublisherKeyPair {
    pair: KeyPair,
    public: PublisherKey,
}

impl fmt::Debug for PublisherKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublisherKeyPair({})", self.public)
    }
}

impl PublisherKeyPair {
    /// A new random key pair.
    pub fn generate() -> Self {
        let pair = KeyPair::new_service();
        let public = PublisherKey(pair.public_key());
        Self { pair, public }
    }

    /// The key pair of a seed (`SV…`).
    ///
    /// # Errors
    /// [`PackageError::Key`] when it is not a publisher seed.
    pub fn from_seed(seed: &str) -> Result<Self, PackageError> {
        let seed = seed.trim();
        let pair = KeyPair::from_seed(seed)
            .map_err(|e| PackageError::Key(format!("not a publisher seed: {e}")))?;
        if pair.key_pair_type() != KeyPairType::Service {
            return Err(PackageError::Key(format!(
                "not a publisher seed (those start with `SV`): it is a {:?} seed",
                pair.key_pair_type()
            )));
        }
        let public = PublisherKey(pair.public_key());
        Ok(Self { pair, public })
    }

    /// Reads the seed in the file at `path` (as written by [`PublisherKeyPair::write_seed_file`]).
    ///
    /// # Errors
    /// [`PackageError::Io`] when it cannot be read, [`PackageError::Key`] when it holds no
    /// publisher seed.
    pub fn read_seed_file(path: &Path) -> Result<Self, PackageError> {
        let text = std::fs::read_to_string(path).map_err(|source| PackageError::Io {
            action: "read the publisher key",
            path: path.to_owned(),
            source,
        })?;
        Self::from_seed(&text).map_err(|e| match e {
            PackageError::Key(reason) => PackageError::Key(format!("{}: {reason}", path.display())),
            other => other,
        })
    }

    /// Writes the seed to a new file at `path`, readable by its owner only. An existing file
    /// is not replaced.
    ///
    /// # Errors
    /// [`PackageError::Io`] when the file exists or cannot be written.
    pub fn write_seed_file(&self, path: &Path) -> Result<(), PackageError> {
        let io = |source| PackageError::Io {
            action: "write the publisher key to",
            path: path.to_owned(),
            source,
        };
        let seed = self
            .pair
            .seed()
            .map_err(|e| PackageError::Key(e.to_string()))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(io)?;
        file.write_all(format!("{seed}\n").as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The public key.
    pub fn public_key(&self) -> &PublisherKey {
        &self.public
    }

    /// Signs an index's canonical bytes.
    pub fn sign_index(&self, index: &[u8]) -> PackageSignature {
        // Signing with a key pair made from a seed cannot fail.
        let signature = self.pair.sign(&signed_message(index)).unwrap_or_default();
        PackageSignature {
            key: self.public.0.clone(),
            signature: data_encoding::BASE64URL_NOPAD.encode(&signature),
        }
    }
}

/// The signature entry of a package, as it is stored (`.package/signature.json`). Read from a
/// package, it is only a claim until verified: its key is kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSignature {
    /// The publisher's public key, as the package claims it.
    pub key: String,
    /// The ed25519 signature, base64url without padding.
    pub signature: String,
}

impl PackageSignature {
    /// Checks this signature over the index's canonical bytes: returns the publisher key it
    /// verifies with.
    ///
    /// # Errors
    /// Why it does not: the key is not a publisher key, the signature is not base64url of 64
    /// bytes, or it does not verify.
    pub fn verify(&self, index: &[u8]) -> Result<PublisherKey, String> {
        let key = PublisherKey::new(&self.key).map_err(|e| e.to_string())?;
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(self.signature.as_bytes())
            .map_err(|e| format!("the signature is not base64url: {e}"))?;
        key.verify_index(index, &bytes)?;
        Ok(key)
    }
}

fn signed_message(index: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + index.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(index);
    message
}

/// A key as read from a package or a command line, for a message: escaped, and cut short.
pub(super) fn shown(key: &str) -> String {
    let cut: String = key.chars().take(64).collect();
    if cut.len() < key.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_key_and_its_index() {
        let publisher = PublisherKeyPair::generate();
        assert!(publisher.public_key().as_str().starts_with('V'));
        let signature = publisher.sign_index(b"{\"index\":1}");
        assert_eq!(
            signature.verify(b"{\"index\":1}").unwrap(),
            *publisher.public_key()
        );
        assert!(signature.verify(b"{\"index\":2}").is_err());
        let other = PublisherKeyPair::generate();
        let forged = PackageSignature {
            key: other.public_key().to_string(),
            ..signature.clone()
        };
        assert!(forged.verify(b"{\"index\":1}").is_err());
        // Without the context, the same key's signature over the same bytes is not accepted.
        let raw = publisher.pair.sign(b"{\"index\":1}").unwrap();
        let bare = PackageSignature {
            key: publisher.public_key().to_string(),
            signature: data_encoding::BASE64URL_NOPAD.encode(&raw),
        };
        assert!(bare.verify(b"{\"index\":1}").is_err());
        let short = PackageSignature {
            signature: "AAAA".into(),
            ..signature
        };
        assert!(short.verify(b"{\"index\":1}").is_err());
    }

    #[test]
    fn keys_of_other_types_and_seeds_are_refused() {
        let account = KeyPair::new_account();
        let err = PublisherKey::new(&account.public_key()).unwrap_err();
        assert!(err.to_string().contains("not a publisher key"), "{err}");
        let publisher = PublisherKeyPair::generate();
        let seed = publisher.pair.seed().unwrap();
        let err = PublisherKey::new(&seed).unwrap_err();
        assert!(err.to_string().contains("seed"), "{err}");
        assert!(PublisherKeyPair::from_seed(&account.seed().unwrap()).is_err());
        assert_eq!(
            PublisherKeyPair::from_seed(&seed).unwrap().public_key(),
            publisher.public_key()
        );
        let mut typo = publisher.public_key().to_string();
        typo.replace_range(10..11, if &typo[10..11] == "A" { "B" } else { "A" });
        assert!(PublisherKey::new(&typo).is_err());
    }

    #[test]
    fn a_seed_file_is_private_and_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("sy-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("publisher.nk");
        let _ = std::fs::remove_file(&path);
        let publisher = PublisherKeyPair::generate();
        publisher.write_seed_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(PublisherKeyPair::generate().write_seed_file(&path).is_err());
        let read = PublisherKeyPair::read_seed_file(&path).unwrap();
        assert_eq!(read.public_key(), publisher.public_key());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
