//! Operators of the management API: people (or jobs) with a name, a role and a token.
//!
//! The bucket `{PREFIX}_OPERATORS` ([`bucket_name`]) holds each operator's role and the SHA-256
//! digest of its token, never the token. A token is `{name}.{secret}`: the name finds the
//! entry in one read, and the 256-bit secret is compared by digest in constant time.

use std::fmt;
use std::str::FromStr;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use switchyard_bus::stream_name;
use switchyard_schemas::Namespace;
use time::OffsetDateTime;

use super::credentials::{
    digest, new_credential_id, open_secret_bucket, store_error, PluginSecret, StoredCredential,
};
use super::AuthError;
use crate::audit::{Action, Auditor};

/// The name of the operators bucket for `namespace`: `{PREFIX}_OPERATORS`.
pub fn bucket_name(namespace: &Namespace) -> String {
    stream_name(namespace, "OPERATORS")
}

/// The longest operator name.
pub const MAX_OPERATOR_NAME: usize = 64;

/// What an operator may do. Each role may do what the one before it may, and more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything; change nothing.
    Viewer,
    /// Also approve, reject, enable, disable, roll back plugins and replay dead letters.
    Operator,
    /// Also purge dead letters and manage operators.
    Admin,
}

impl Role {
    /// Every role, least first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The role's name: `viewer`, `operator` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (one of: viewer, operator, admin)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == name)
            .ok_or_else(|| UnknownRole(name.to_owned()))
    }
}

/// An operator's name: 1 to 64 of `a-z`, `0-9`, `-`, `_`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OperatorName(String);

/// A name that is not an operator name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "bad operator name `{0}`: use 1 to 64 of a-z, 0-9, `-` and `_`, starting with a letter or digit"
)]
pub struct BadOperatorName(pub String);

impl OperatorName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OperatorName {
    type Error = BadOperatorName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let bytes = name.as_bytes();
        let allowed =
            |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_';
        let fits = !bytes.is_empty()
            && bytes.len() <= MAX_OPERATOR_NAME
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes.iter().all(allowed);
        if fits {
            Ok(Self(name))
        } else {
            Err(BadOperatorName(name.chars().take(80).collect()))
        }
    }
}

impl FromStr for OperatorName {
    type Err = BadOperatorName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        name.to_owned().try_into()
    }
}

impl From<OperatorName> for String {
    fn from(name: OperatorName) -> Self {
        name.0
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One operator as stored: never its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorLogin {
    /// Its name.
    pub name: OperatorName,
    /// What it may do.
    pub role: Role,
    /// Its token's digest, and which issue it is.
    pub credential: StoredCredential,
}

/// An operator who proved its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Its name.
    pub name: OperatorName,
    /// What it may do.
    pub role: Role,
}

/// An operator's token, as handed out once.
pub struct OperatorToken(String);

impl OperatorToken {
    /// The token: `{name}.{secret}`.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OperatorToken(…)")
    }
}

/// The operators of one deployment. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OperatorStore {
    store: kv::Store,
    bucket: String,
}

impl OperatorStore {
    /// Opens the operators bucket of `namespace`, creating it when missing.
    ///
    /// # Errors
    /// [`AuthError::Store`] when the bucket can be neither opened nor created.
    pub async fn open(js: &jetstream::Context, namespace: &Namespace) -> Result<Self, AuthError> {
        let bucket = bucket_name(namespace);
        let store = open_secret_bucket(
            js,
            &bucket,
            "Switchyard operators of the management API: role and a token's SHA-256 digest",
        )
        .await?;
        Ok(Self { store, bucket })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Adds `name` with `role` and a new token, or gives an existing operator this role and a
    /// new token (the earlier one stops working); records `operator_added`.
    ///
    /// # Errors
    /// [`AuthError::Store`] when it cannot be stored; [`AuthError::Audit`] when it was
    /// stored and its audit entry could not be (the token is then not handed out: add the
    /// operator again).
    pub async fn add(
        &self,
        name: &OperatorName,
        role: Role,
        auditor: &Auditor,
    ) -> Result<OperatorToken, AuthError> {
        let previous = self.get(name).await?;
        let secret = PluginSecret::generate();
        let login = OperatorLogin {
            name: name.clone(),
            role,
            credential: StoredCredential {
                id: new_credential_id(),
                sha256: digest(secret.expose()),
                issued_at: OffsetDateTime::now_utc(),
                hosts: Default::default(),
            },
        };
        let body = serde_json::to_vec(&login).expect("a login serializes");
        self.store
            .put(name.as_str(), body.into())
            .await
            .map_err(|e| store_error(&self.bucket, "store an operator", e))?;
        let done = match &previous {
            Some(before) => format!(
                "gave operator {name} a new token (role {} → {role})",
                before.role
            ),
            None => format!("added operator {name} ({role})"),
        };
        let entry = auditor
            .entry(Action::OperatorAdded, format!("operator:{name}"))
            .before(previous.as_ref().map(public_login))
            .after(Some(public_login(&login)))
            .detail(done.clone());
        auditor.record(done, &entry).await?;
        Ok(OperatorToken(format!("{name}.{}", secret.expose())))
    }

    /// Removes `name`; records `operator_removed`. Whether it existed.
    ///
    /// # Errors
    /// [`AuthError::Store`] or [`AuthError::Audit`].
    pub async fn remove(&self, name: &OperatorName, auditor: &Auditor) -> Result<bool, AuthError> {
        let Some(previous) = self.get(name).await? else {
            return Ok(false);
        };
        self.store
            .purge(name.as_str())
            .await
            .map_err(|e| store_error(&self.bucket, "remove an operator", e))?;
        let done = format!("removed operator {name}");
        let entry = auditor
            .entry(Action::OperatorRemoved, format!("operator:{name}"))
            .before(Some(public_login(&previous)))
            .detail(done.clone());
        auditor.record(done, &entry).await?;
        Ok(true)
    }

    /// The operator `name`, if it exists.
    ///
    /// # Errors
    /// [`AuthError::Store`] when the bucket cannot be read, or the entry is unreadable.
    pub async fn get(&self, name: &OperatorName) -> Result<Option<OperatorLogin>, AuthError> {
        let entry = self
            .store
            .get(name.as_str())
            .await
            .map_err(|e| store_error(&self.bucket, "read an operator", e))?;
        match entry {
            None => Ok(None),
            Some(body) if body.is_empty() => Ok(None),
            Some(body) => serde_json::from_slice(&body)
                .map(Some)
                .map_err(|e| store_error(&self.bucket, "read an operator", e)),
        }
    }

    /// Every operator, by name.
    ///
    /// # Errors
    /// [`AuthError::Store`].
    pub async fn list(&self) -> Result<Vec<OperatorLogin>, AuthError> {
        let mut keys = self
            .store
            .keys()
            .await
            .map_err(|e| store_error(&self.bucket, "list the operators", e))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| store_error(&self.bucket, "list the operators", e))?;
            if let Ok(name) = key.parse::<OperatorName>() {
                names.push(name);
            }
        }
        names.sort();
        let mut logins = Vec::new();
        for name in names {
            if let Some(login) = self.get(&name).await? {
                logins.push(login);
            }
        }
        Ok(logins)
    }

    /// Who `token` belongs to, if anyone: `None` for a malformed token, an unknown name or a
    /// secret that does not match.
    ///
    /// # Errors
    /// [`AuthError::Store`] when the bucket cannot be read.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Identity>, AuthError> {
        let Some((name, secret)) = token.split_once('.') else {
            return Ok(None);
        };
        let Ok(name) = name.parse::<OperatorName>() else {
            return Ok(None);
        };
        let Some(login) = self.get(&name).await? else {
            return Ok(None);
        };
        Ok(login.credential.accepts(secret).then_some(Identity {
            name: login.name,
            role: login.role,
        }))
    }
}

/// What the audit log says of an operator: role and when it got its token, never the digest.
fn public_login(login: &OperatorLogin) -> serde_json::Value {
    serde_json::json!({
        "role": login.role,
        "added_at": login
            .credential
            .issued_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["alice", "a", "ops-bot_2", "0day"] {
            assert!(good.parse::<OperatorName>().is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_OPERATOR_NAME + 1);
        for bad in ["", "Alice", "a.b", "-a", "a b", "ä", long.as_str()] {
            assert!(bad.parse::<OperatorName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_are_ordered_and_named() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
