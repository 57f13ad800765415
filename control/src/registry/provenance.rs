//! Where a registration's manifest came from: a verified package (and why it was accepted), or
//! a manifest alone (the development path).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::package::Verdict;

/// What a plugin was installed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstalledFrom {
    /// A manifest alone, with no package: the development path. Nothing was verified.
    Manifest,
    /// A package, verified as installing verifies it.
    Package,
}

/// Where a registration's manifest came from, and the decision that let it in: stored with
/// the registration, shown by `plugins show` and `history`, and recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// A package or a manifest alone.
    pub from: InstalledFrom,
    /// The package's object in the package store (`{id}/{version}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// The SHA-256 of the package file, in lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// What verifying found: `trusted`, `unsigned` or `untrusted_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// The key the package is signed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher_key: Option<String>,
    /// The name that key is trusted under, for a trusted package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher_name: Option<String>,
    /// Who allowed an unsigned package, or one signed by an untrusted key, for this install
    /// (the audit actor's name); `None` for a trusted package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_by: Option<String>,
}

impl Provenance {
    /// Installed from a manifest alone, with no package.
    pub fn manifest() -> Self {
        Self {
            from: InstalledFrom::Manifest,
            package: None,
            sha256: None,
            verdict: None,
            publisher_key: None,
            publisher_name: None,
            allowed_by: None,
        }
    }

    /// Installed from the package stored as `object` (SHA-256 `sha256`), accepted with
    /// `verdict`; `actor` allowed it when it is not trusted.
    pub fn package(object: String, sha256: String, verdict: &Verdict, actor: &str) -> Self {
        let (publisher_key, publisher_name) = match verdict {
            Verdict::Trusted { publisher } => (
                Some(publisher.key.to_string()),
                Some(publisher.name.clone()),
            ),
            Verdict::UntrustedKey { key } => (Some(key.to_string()), None),
            _ => (None, None),
        };
        Self {
            from: InstalledFrom::Package,
            package: Some(object),
            sha256: Some(sha256),
            verdict: Some(verdict.kind().to_owned()),
            publisher_key,
            publisher_name,
            allowed_by: (!verdict.is_trusted()).then(|| actor.to_owned()),
        }
    }
}

/// One line: `package audit-log/1.2.0, signed by trusted key "Acme" (VABC…)`, `package
/// audit-log/1.2.0, unsigned, allowed by alice@h1`, or `from manifest, no package`.
impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == InstalledFrom::Manifest {
            return f.write_str("from manifest, no package");
        }
        write!(f, "package {}", self.package.as_deref().unwrap_or("?"))?;
        let key = self.publisher_key.as_deref().unwrap_or("?");
        match self.verdict.as_deref() {
            Some("trusted") => write!(
                f,
                ", signed by trusted key {:?} ({key})",
                self.publisher_name.as_deref().unwrap_or("")
            )?,
            Some("untrusted_key") => write!(f, ", signed by untrusted key {key}")?,
            Some("unsigned") => f.write_str(", unsigned")?,
            Some(other) => write!(f, ", {other}")?,
            None => {}
        }
        if let Some(by) = &self.allowed_by {
            write!(f, ", allowed by {by}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{PublisherKeyPair, TrustedPublisher};

    #[test]
    fn a_provenance_says_where_from_and_who_allowed_it() {
        assert_eq!(
            Provenance::manifest().to_string(),
            "from manifest, no package"
        );
        let unsigned = Provenance::package(
            "billing/1.0.0".into(),
            "ab".repeat(32),
            &Verdict::Unsigned,
            "alice@h1",
        );
        assert_eq!(
            unsigned.to_string(),
            "package billing/1.0.0, unsigned, allowed by alice@h1"
        );
        let key = PublisherKeyPair::generate().public_key().clone();
        let trusted = Provenance::package(
            "billing/1.0.0".into(),
            "ab".repeat(32),
            &Verdict::Trusted {
                publisher: TrustedPublisher {
                    key: key.clone(),
                    name: "Acme".into(),
                },
            },
            "alice@h1",
        );
        assert_eq!(
            trusted.allowed_by, None,
            "a trusted package needs no allowance"
        );
        assert_eq!(
            trusted.to_string(),
            format!("package billing/1.0.0, signed by trusted key \"Acme\" ({key})")
        );
        let json = serde_json::to_value(&trusted).unwrap();
        assert_eq!(json["from"], "package");
        assert!(json.get("allowed_by").is_none());
        assert_eq!(serde_json::from_value::<Provenance>(json).unwrap(), trusted);
    }
}
