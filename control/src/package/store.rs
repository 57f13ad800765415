//! Published packages, in the JetStream object store `{PREFIX}_PACKAGES` ([`bucket_name`]):
//! one object per plugin version, named `{id}/{version}` ([`object_name`]), and the catalog of
//! what it holds.
//!
//! Nothing read back from the store is trusted more than a file would be: the catalog reads
//! the start of each object (index, signature, manifest), checks the signature and the
//! manifest's digest, and looks the key up among the trusted ones; [`PackageStore::get`]
//! returns a [`Package`] for [`verify_for_install`](super::verify_for_install) to judge.

use async_nats::jetstream::object_store::{self, ObjectMetadata, ObjectStore};
use async_nats::jetstream::{self, stream::StorageType};
use futures::TryStreamExt;
use semver::Version;
use serde::Serialize;
use switchyard_bus::stream_name;
use switchyard_schemas::{Namespace, PluginId};
use time::OffsetDateTime;
use tokio::io::AsyncReadExt as _;

use super::archive::{Package, PackageHead};
use super::error::PackageError;
use super::verify::{TrustedKeys, Verdict};
use super::{MAX_INDEX_BYTES, MAX_PACKAGE_BYTES, MAX_SIGNATURE_BYTES};

/// The most bytes read from the start of an object to list it: room for the largest index,
/// signature and manifest, and their headers.
const MAX_HEAD_BYTES: u64 =
    MAX_INDEX_BYTES + MAX_SIGNATURE_BYTES + switchyard_schemas::MAX_MANIFEST_BYTES as u64 + 8 * 512;

/// The name of the packages object store for `namespace`: `{PREFIX}_PACKAGES`.
pub fn bucket_name(namespace: &Namespace) -> String {
    stream_name(namespace, "PACKAGES")
}

/// The object a plugin version is stored as: `{id}/{version}`, with the `+` of build metadata
/// written `_` (object names may not hold `+`; versions never hold `_`).
pub fn object_name(plugin: &PluginId, version: &Version) -> String {
    format!("{plugin}/{}", version.to_string().replace('+', "_"))
}

/// How the object store is created when it does not exist yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageStoreOptions {
    /// How many servers keep a copy (1, 3 or 5).
    pub replicas: usize,
}

impl Default for PackageStoreOptions {
    fn default() -> Self {
        Self { replicas: 1 }
    }
}

/// Why the package store could not do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A request to JetStream failed.
    #[error("{action} (object store {bucket}): {reason}")]
    Store {
        /// What was being done.
        action: &'static str,
        /// The object store.
        bucket: String,
        /// Why it failed.
        reason: String,
    },
    /// The package (given, or read back) is not one.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The package fails verification: tampered, or a bad signature.
    #[error("not published: {0}")]
    Refused(Verdict),
    /// Another package is stored under this plugin version already.
    #[error(
        "another package is published as {object} already (sha256 {existing}); a version is \
         published once: publish a new version, or replace it explicitly"
    )]
    VersionExists {
        /// The object's name.
        object: String,
        /// The stored package's SHA-256, in hex.
        existing: String,
    },
}

/// The store's digest (`SHA-256=` and base64url) in hex, as package digests are shown
/// everywhere else; the store's own form when it is not one.
fn hex_digest(digest: &str) -> String {
    digest
        .strip_prefix("SHA-256=")
        .and_then(|b64| data_encoding::BASE64URL.decode(b64.as_bytes()).ok())
        .map_or_else(
            || digest.to_owned(),
            |bytes| data_encoding::HEXLOWER.encode(&bytes),
        )
}

/// What publishing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Stored under a name that was free.
    New,
    /// The same bytes were stored already: nothing changed.
    Unchanged,
    /// Replaced another package of the same plugin version (asked for).
    Replaced,
}

impl Published {
    /// What was done, in words: `published`, `already published, unchanged:`, `replaced`.
    pub fn describe(self) -> &'static str {
        match self {
            Published::New => "published",
            Published::Unchanged => "already published, unchanged:",
            Published::Replaced => "replaced",
        }
    }

    /// Its name in JSON: `new`, `unchanged`, `replaced`.
    pub fn as_str(self) -> &'static str {
        match self {
            Published::New => "new",
            Published::Unchanged => "unchanged",
            Published::Replaced => "replaced",
        }
    }
}

/// Who signed `package`, as a publisher sees it without trusting anyone: `signed by KEY`
/// (whether the signature verifies or not is for installing it), or `unsigned`.
pub fn signer_of(package: &Package) -> String {
    match package.verdict(&super::TrustedKeys::none()) {
        super::Verdict::UntrustedKey { key } => format!("signed by {key}"),
        _ => "unsigned".to_owned(),
    }
}

/// How a catalog entry's signature stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureState {
    /// Signed by a trusted key.
    Trusted,
    /// Signed by a key that is not trusted.
    Untrusted,
    /// Not signed.
    Unsigned,
    /// A signature that does not verify.
    Bad,
    /// The object could not be read as a package.
    Unreadable,
}

/// One package of the store, as the catalog lists it. Only the index, the signature and the
/// manifest were read: the worker's parts are checked when it is installed.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    /// The object's name.
    pub object: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was stored.
    #[serde(with = "time::serde::rfc3339::option")]
    pub published_at: Option<OffsetDateTime>,
    /// The plugin's id (`None` when unreadable).
    pub id: Option<PluginId>,
    /// Its version.
    pub version: Option<Version>,
    /// The manifest's description.
    pub description: Option<String>,
    /// The manifest's author.
    pub author: Option<String>,
    /// The manifest's licence.
    pub license: Option<String>,
    /// The manifest's home page.
    pub homepage: Option<String>,
    /// The manifest's repository.
    pub repository: Option<String>,
    /// The manifest's tags.
    pub tags: Vec<String>,
    /// The manifest's category.
    pub category: Option<String>,
    /// The key it is signed with, when the signature verifies.
    pub publisher: Option<String>,
    /// The name that key is trusted under.
    pub publisher_name: Option<String>,
    /// Whether it is signed, and by whom.
    pub signature: SignatureState,
    /// Whether the signing key is trusted.
    pub trusted: bool,
    /// What is wrong with it, when something is.
    pub problem: Option<String>,
}

/// What to list: every filter given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogQuery {
    /// A tag the plugin lists (ASCII case ignored).
    pub tag: Option<String>,
    /// The plugin's category (ASCII case ignored).
    pub category: Option<String>,
    /// Text found in its id, description, author, tags or category (case ignored).
    pub search: Option<String>,
}

impl CatalogEntry {
    /// Whether this entry matches `query`.
    pub fn matches(&self, query: &CatalogQuery) -> bool {
        let tag = query
            .tag
            .as_deref()
            .is_none_or(|wanted| self.tags.iter().any(|tag| tag.eq_ignore_ascii_case(wanted)));
        let category = query.category.as_deref().is_none_or(|wanted| {
            self.category
                .as_deref()
                .is_some_and(|category| category.eq_ignore_ascii_case(wanted))
        });
        let search = query.search.as_deref().is_none_or(|text| {
            let text = text.to_lowercase();
            let id = self.id.as_ref().map(PluginId::as_str);
            [
                id,
                self.description.as_deref(),
                self.author.as_deref(),
                self.category.as_deref(),
            ]
            .into_iter()
            .flatten()
            .chain(self.tags.iter().map(String::as_str))
            .any(|field| field.to_lowercase().contains(&text))
        });
        tag && category && search
    }

    fn unreadable(
        object: String,
        size: u64,
        published_at: Option<OffsetDateTime>,
        problem: String,
    ) -> Self {
        Self {
            object,
            size,
            published_at,
            id: None,
            version: None,
            description: None,
            author: None,
            license: None,
            homepage: None,
            repository: None,
            tags: Vec::new(),
            category: None,
            publisher: None,
            publisher_name: None,
            signature: SignatureState::Unreadable,
            trusted: false,
            problem: Some(problem),
        }
    }

    fn from_head(
        object: String,
        size: u64,
        published_at: Option<OffsetDateTime>,
        head: &PackageHead,
        trust: &TrustedKeys,
    ) -> Self {
        let plugin = &head.manifest.plugin;
        let (signature, publisher, publisher_name, mut problem) = match &head.signature {
            None => (SignatureState::Unsigned, None, None, None),
            Some(signature) => match signature.verify(&head.index_bytes) {
                Ok(key) => match trust.name_of(&key) {
                    Some(name) => (
                        SignatureState::Trusted,
                        Some(key.to_string()),
                        Some(name.to_owned()),
                        None,
                    ),
                    None => (SignatureState::Untrusted, Some(key.to_string()), None, None),
                },
                Err(reason) => (
                    SignatureState::Bad,
                    None,
                    None,
                    Some(format!("bad signature: {reason}")),
                ),
            },
        };
        let expected = object_name(&plugin.id, &plugin.version);
        if problem.is_none() && expected != object {
            problem = Some(format!("it holds {expected}, not what its name says"));
        }
        Self {
            object,
            size,
            published_at,
            id: Some(plugin.id.clone()),
            version: Some(plugin.version.clone()),
            description: plugin.description.clone(),
            author: plugin.author.clone(),
            license: plugin.license.clone(),
            homepage: plugin.homepage.clone(),
            repository: plugin.repository.clone(),
            tags: plugin.tags.iter().map(|t| t.as_str().to_owned()).collect(),
            category: plugin.category.as_ref().map(|c| c.as_str().to_owned()),
            trusted: signature == SignatureState::Trusted,
            publisher,
            publisher_name,
            signature,
            problem,
        }
    }
}

/// The published packages of one deployment. Cheap to clone.
#[derive(Clone)]
pub struct PackageStore {
    store: ObjectStore,
    bucket: String,
}

impl std::fmt::Debug for PackageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackageStore")
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl PackageStore {
    /// Opens the packages object store of `namespace`, creating it with the default options
    /// when missing.
    ///
    /// # Errors
    /// [`StoreError::Store`] when it can be neither opened nor created.
    pub async fn open(js: &jetstream::Context, namespace: &Namespace) -> Result<Self, StoreError> {
        Self::open_with(js, namespace, &PackageStoreOptions::default()).await
    }

    /// Opens the packages object store of `namespace`, creating it with `options` when
    /// missing. An existing store is opened as it is.
    ///
    /// # Errors
    /// [`StoreError::Store`] when it can be neither opened nor created.
    pub async fn open_with(
        js: &jetstream::Context,
        namespace: &Namespace,
        options: &PackageStoreOptions,
    ) -> Result<Self, StoreError> {
        let bucket = bucket_name(namespace);
        let store = match js.get_object_store(&bucket).await {
            Ok(store) => store,
            Err(_) => {
                let created = js
                    .create_object_store(object_store::Config {
                        bucket: bucket.clone(),
                        description: Some("Switchyard: published plugin packages".to_owned()),
                        storage: StorageType::File,
                        num_replicas: options.replicas,
                        ..Default::default()
                    })
                    .await;
                match created {
                    Ok(store) => store,
                    Err(create_error) => js.get_object_store(&bucket).await.map_err(|_| {
                        store_error(&bucket, "create the packages object store", create_error)
                    })?,
                }
            }
        };
        Ok(Self { store, bucket })
    }

    /// The object store's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Stores `package` as `{id}/{version}`. A tampered package or one with a bad signature
    /// is refused; unsigned and untrusted ones are stored (the catalog says what they are, and
    /// installing decides). The same bytes again change nothing; another package of the same
    /// version is refused unless `replace`.
    ///
    /// # Errors
    /// [`StoreError::Refused`], [`StoreError::Package`] for an invalid manifest,
    /// [`StoreError::VersionExists`], [`StoreError::Store`].
    pub async fn publish(
        &self,
        package: &Package,
        replace: bool,
    ) -> Result<(String, Published), StoreError> {
        let verdict = package.verdict(&TrustedKeys::none());
        if matches!(verdict, Verdict::Tampered(_) | Verdict::BadSignature { .. }) {
            return Err(StoreError::Refused(verdict));
        }
        let manifest = package.manifest()?;
        let name = object_name(&manifest.plugin.id, &manifest.plugin.version);
        let digest = format!(
            "SHA-256={}",
            data_encoding::BASE64URL.encode(&sha2::Digest::finalize(
                <sha2::Sha256 as sha2::Digest>::new_with_prefix(package.bytes())
            ))
        );
        let mut outcome = Published::New;
        match self.store.info(&name).await {
            Ok(info) if !info.deleted => {
                let existing = info.digest.unwrap_or_default();
                if existing == digest {
                    return Ok((name, Published::Unchanged));
                }
                if !replace {
                    return Err(StoreError::VersionExists {
                        object: name,
                        existing: hex_digest(&existing),
                    });
                }
                outcome = Published::Replaced;
            }
            Ok(_) => {}
            Err(error) if error.kind() == object_store::InfoErrorKind::NotFound => {}
            Err(error) => return Err(store_error(&self.bucket, "look the version up", error)),
        }
        let meta = ObjectMetadata {
            name: name.clone(),
            description: Some(format!(
                "{} {}",
                manifest.plugin.id, manifest.plugin.version
            )),
            ..Default::default()
        };
        let mut reader: &[u8] = package.bytes();
        self.store
            .put(meta, &mut reader)
            .await
            .map_err(|e| store_error(&self.bucket, "store the package", e))?;
        Ok((name, outcome))
    }

    /// The package published as `plugin` at `version`, if there is one. Read in full (bounded
    /// by [`MAX_PACKAGE_BYTES`]) but not verified: pass it to
    /// [`verify_for_install`](super::verify_for_install).
    ///
    /// # Errors
    /// [`StoreError::Store`] when it cannot be read, [`StoreError::Package`] when it is not a
    /// package.
    pub async fn get(
        &self,
        plugin: &PluginId,
        version: &Version,
    ) -> Result<Option<Package>, StoreError> {
        let name = object_name(plugin, version);
        let mut object = match self.store.get(&name).await {
            Ok(object) => object,
            Err(error) if error.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(store_error(&self.bucket, "read the package", error)),
        };
        let size = object.info.size as u64;
        if size > MAX_PACKAGE_BYTES {
            return Err(PackageError::too_large(
                format!("the package {name}"),
                size,
                MAX_PACKAGE_BYTES,
                "MAX_PACKAGE_BYTES",
            )
            .into());
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&mut object)
            .take(MAX_PACKAGE_BYTES + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| store_error(&self.bucket, "read the package", e))?;
        Ok(Some(Package::from_bytes(bytes)?))
    }

    /// The highest version of `plugin` published, if any (by semantic-version order; build
    /// metadata does not count, the last listed of equal versions wins).
    ///
    /// # Errors
    /// [`StoreError::Store`] when the store cannot be listed.
    pub async fn latest(&self, plugin: &PluginId) -> Result<Option<Version>, StoreError> {
        let prefix = format!("{plugin}/");
        let infos: Vec<object_store::ObjectInfo> = self
            .store
            .list()
            .await
            .map_err(|e| store_error(&self.bucket, "list the packages", e))?
            .try_collect()
            .await
            .map_err(|e| store_error(&self.bucket, "list the packages", e))?;
        Ok(infos
            .iter()
            .filter(|info| !info.deleted)
            .filter_map(|info| info.name.strip_prefix(&prefix))
            .filter_map(|version| Version::parse(&version.replace('_', "+")).ok())
            .max_by(|a, b| a.cmp_precedence(b)))
    }

    /// Every package of the store, as the catalog lists it, sorted by object name. An object
    /// that is not a readable package is listed with its problem rather than failing the list.
    ///
    /// # Errors
    /// [`StoreError::Store`] when the store cannot be listed.
    pub async fn catalog(&self, trust: &TrustedKeys) -> Result<Vec<CatalogEntry>, StoreError> {
        let mut infos: Vec<object_store::ObjectInfo> = self
            .store
            .list()
            .await
            .map_err(|e| store_error(&self.bucket, "list the packages", e))?
            .try_collect()
            .await
            .map_err(|e| store_error(&self.bucket, "list the packages", e))?;
        infos.retain(|info| !info.deleted);
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        let mut entries = Vec::with_capacity(infos.len());
        for info in infos {
            let size = info.size as u64;
            let entry = match self.head(&info.name, size).await {
                Ok(head) => CatalogEntry::from_head(info.name, size, info.modified, &head, trust),
                Err(problem) => CatalogEntry::unreadable(info.name, size, info.modified, problem),
            };
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Reads the start of the object `name` until its head is parsed.
    async fn head(&self, name: &str, size: u64) -> Result<PackageHead, String> {
        if size > MAX_PACKAGE_BYTES {
            return Err(PackageError::too_large(
                "the package",
                size,
                MAX_PACKAGE_BYTES,
                "MAX_PACKAGE_BYTES",
            )
            .to_string());
        }
        let mut object = self
            .store
            .get(name)
            .await
            .map_err(|e| format!("cannot read it: {e}"))?;
        let mut prefix = Vec::new();
        let mut chunk = vec![0_u8; 64 * 1024];
        loop {
            let read = object
                .read(&mut chunk)
                .await
                .map_err(|e| format!("cannot read it: {e}"))?;
            prefix.extend_from_slice(&chunk[..read]);
            let total = if read == 0 {
                // The object ended early: parse what there is as the whole.
                prefix.len() as u64
            } else {
                size
            };
            match PackageHead::parse(&prefix, total) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) if read > 0 && (prefix.len() as u64) < MAX_HEAD_BYTES => continue,
                Ok(None) => {
                    return Err(format!(
                        "no index, signature and manifest in its first {} bytes",
                        prefix.len()
                    ))
                }
                Err(error) => return Err(error.to_string()),
            }
        }
    }
}

fn store_error(bucket: &str, action: &'static str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Store {
        action,
        bucket: bucket.to_owned(),
        reason: error.to_string(),
    }
}
