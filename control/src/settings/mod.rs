//! Operator-set plugin settings and secrets, in two JetStream key-value buckets:
//! `{PREFIX}_SETTINGS` for plain values and `{PREFIX}_SECRETS` for secrets, one entry per
//! plugin in each ([`values_bucket`], [`secrets_bucket`]).
//!
//! Secrets live apart so that a login may be given the settings without the secrets, and so
//! that nothing that lists settings can print them: [`Secret`] hides its value from `Debug`.
//! Every change is checked against the plugin's [`SettingsSchema`] and written only over the
//! revision it was checked against, so two operators at once cannot both pass a check that
//! one of them breaks. Dispatchers follow both buckets ([`SettingsStore::watch`]) and send
//! each plugin's workers what is set for it ([`OperatorSettings::update`]).

pub mod edit;
mod report;
pub use report::{SettingRow, SettingsReport};

use std::collections::BTreeMap;
use std::fmt;

use async_nats::jetstream::{self, kv};
use futures::{Stream, StreamExt};
use switchyard_bus::kv::{open_existing, open_or_create, BucketError};
use switchyard_bus::stream_name;
use switchyard_schemas::delivery::SettingsUpdate;
use switchyard_schemas::manifest::toml::{Table, Value};
use switchyard_schemas::manifest::{
    compose_settings, SettingError, SettingsSchema, MAX_SETTINGS_BYTES,
};
use switchyard_schemas::{Manifest, Namespace, PluginId};

/// The name of the plain settings' bucket: `{PREFIX}_SETTINGS`.
pub fn values_bucket(namespace: &Namespace) -> String {
    stream_name(namespace, "SETTINGS")
}

/// The name of the secrets' bucket: `{PREFIX}_SECRETS`.
pub fn secrets_bucket(namespace: &Namespace) -> String {
    stream_name(namespace, "SECRETS")
}

/// How many times a change is checked and written again when another one lands in between.
const WRITE_ATTEMPTS: usize = 5;

/// A secret's value. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the plugin's workers only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// What an operator set for one plugin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OperatorSettings {
    /// The plain settings set.
    pub values: Table,
    /// Their entry's revision (0: never set).
    pub values_revision: u64,
    /// The secrets set, by name.
    pub secrets: BTreeMap<String, Secret>,
    /// Their entry's revision (0: never set).
    pub secrets_revision: u64,
}

impl OperatorSettings {
    /// What the plugin's workers are sent: the values and the secrets, which they lay over
    /// their manifest's defaults.
    pub fn update(&self) -> SettingsUpdate {
        SettingsUpdate {
            values_revision: self.values_revision,
            secrets_revision: self.secrets_revision,
            settings: compose_settings(
                &Table::new(),
                &self.values,
                self.secrets.iter().map(|(k, v)| (k.as_str(), v.expose())),
            ),
        }
    }

    /// The settings `manifest`'s workers run with: its defaults, then these.
    pub fn effective(&self, manifest: &Manifest) -> Table {
        let mut settings = manifest.settings.clone();
        settings.extend(self.update().settings);
        settings
    }

    /// Every problem with these settings under `schema` (a new version's, say).
    pub fn problems(&self, schema: &SettingsSchema) -> Vec<SettingError> {
        schema.problems(&self.values, self.secrets.keys().map(String::as_str))
    }

    /// The required settings of `manifest` that have no value.
    pub fn missing_required(&self, manifest: &Manifest) -> Vec<String> {
        manifest.settings_schema.missing_required(
            &manifest.settings,
            &self.values,
            self.secrets.keys().map(String::as_str),
        )
    }

    /// Why these settings do not fit `manifest` (a version being installed or restored), one
    /// sentence each: a value its declarations refuse, or, when the plugin is `enabled`, a
    /// required setting without a value. Empty: they fit.
    pub fn unfit_for(&self, manifest: &Manifest, enabled: bool) -> Vec<String> {
        let id = &manifest.plugin.id;
        let version = &manifest.plugin.version;
        let mut problems: Vec<String> = self
            .problems(&manifest.settings_schema)
            .iter()
            .map(|problem| {
                format!(
                    "{problem} (in {id} {version}; change or unset it first with `switchyard settings`)"
                )
            })
            .collect();
        if enabled {
            let missing = self.missing_required(manifest);
            if !missing.is_empty() {
                problems.push(format!(
                    "{id} {version} requires settings that have no value: {} (set them with \
                     `switchyard settings set` or `set-secret`, or keep it disabled)",
                    missing.join(", ")
                ));
            }
        }
        problems
    }
}

/// One change to a plugin's settings.
#[derive(Debug, Clone, PartialEq)]
pub enum SettingChange {
    /// Set a plain setting.
    Set(String, Value),
    /// Set a secret.
    SetSecret(String, Secret),
    /// Take back what the operator set (plain or secret): the default applies again.
    Unset(String),
}

impl SettingChange {
    /// The setting it changes.
    pub fn name(&self) -> &str {
        match self {
            Self::Set(name, _) | Self::SetSecret(name, _) | Self::Unset(name) => name,
        }
    }
}

/// What [`SettingsStore::change`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    /// The settings before.
    pub before: OperatorSettings,
    /// The settings after.
    pub after: OperatorSettings,
    /// The names unset that had not been set (nothing was done for them).
    pub not_set: Vec<String>,
}

/// Why settings could not be read or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A bucket could not be opened or created.
    #[error(transparent)]
    Bucket(#[from] BucketError),
    /// A read or write failed.
    #[error("{action} (bucket {bucket}): {reason}")]
    Store {
        /// What was being done.
        action: String,
        /// The bucket.
        bucket: String,
        /// Why it failed.
        reason: String,
    },
    /// An entry that does not decode (written by hand, or by another version).
    #[error("the entry of `{plugin}` in {bucket} is not readable: {reason}")]
    Corrupt {
        /// The plugin.
        plugin: PluginId,
        /// The bucket.
        bucket: String,
        /// Why.
        reason: String,
    },
    /// Changes the plugin's schema refuses; nothing was written.
    #[error("{}", refused_text(.0))]
    Refused(Vec<SettingError>),
    /// Other changes kept landing in between; nothing was written.
    #[error("the settings of `{0}` kept changing while this change was checked ({WRITE_ATTEMPTS} attempts); try again")]
    Contended(PluginId),
}

fn refused_text(problems: &[SettingError]) -> String {
    let mut text = String::from("settings refused, nothing was changed:");
    for problem in problems {
        text.push_str("\n  ");
        text.push_str(&problem.to_string());
    }
    text
}

/// The operator-set settings of one deployment. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SettingsStore {
    values: kv::Store,
    values_name: String,
    secrets: kv::Store,
    secrets_name: String,
}

impl SettingsStore {
    /// Opens both buckets of `namespace`, creating each with `replicas` copies when missing.
    ///
    /// # Errors
    /// [`SettingsError::Bucket`] when one can be neither opened nor created.
    pub async fn open(
        js: &jetstream::Context,
        namespace: &Namespace,
        replicas: usize,
    ) -> Result<Self, SettingsError> {
        let config = |bucket: String, description: &str| kv::Config {
            bucket,
            description: description.to_owned(),
            history: 5,
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let values_name = values_bucket(namespace);
        let secrets_name = secrets_bucket(namespace);
        let values = open_or_create(
            js,
            config(
                values_name.clone(),
                "Switchyard: plugin settings set by operators",
            ),
        )
        .await?;
        let secrets = open_or_create(
            js,
            config(
                secrets_name.clone(),
                "Switchyard: plugin secrets set by operators",
            ),
        )
        .await?;
        Ok(Self {
            values,
            values_name,
            secrets,
            secrets_name,
        })
    }

    /// Opens both buckets if they exist: a deployment where no setting was ever set has none,
    /// and reading must not create them.
    ///
    /// # Errors
    /// [`SettingsError::Bucket`] when one exists but cannot be opened.
    pub async fn open_existing(
        js: &jetstream::Context,
        namespace: &Namespace,
    ) -> Result<Option<Self>, SettingsError> {
        let values_name = values_bucket(namespace);
        let secrets_name = secrets_bucket(namespace);
        let (Some(values), Some(secrets)) = (
            open_existing(js, &values_name).await?,
            open_existing(js, &secrets_name).await?,
        ) else {
            return Ok(None);
        };
        Ok(Some(Self {
            values,
            values_name,
            secrets,
            secrets_name,
        }))
    }

    /// What the operator set for `plugin` (empty when nothing).
    ///
    /// # Errors
    /// [`SettingsError::Store`] when a read fails; [`SettingsError::Corrupt`] for an entry
    /// that does not decode.
    pub async fn get(&self, plugin: &PluginId) -> Result<OperatorSettings, SettingsError> {
        let (values, values_revision) = self.read_values(plugin).await?;
        let (secrets, secrets_revision) = self.read_secrets(plugin).await?;
        Ok(OperatorSettings {
            values,
            values_revision,
            secrets,
            secrets_revision,
        })
    }

    /// Applies `changes` to `plugin`'s settings, each checked against `schema` (the
    /// registered manifest's), all or nothing per bucket, each bucket written over the
    /// revision it was checked against.
    ///
    /// # Errors
    /// [`SettingsError::Refused`] listing every change the schema refuses (nothing is
    /// written); [`SettingsError::Contended`] when other changes kept landing in between;
    /// [`SettingsError::Store`] or [`SettingsError::Corrupt`] otherwise.
    pub async fn change(
        &self,
        plugin: &PluginId,
        schema: &SettingsSchema,
        changes: &[SettingChange],
    ) -> Result<Changed, SettingsError> {
        let problems: Vec<SettingError> = changes
            .iter()
            .filter_map(|change| match change {
                SettingChange::Set(name, value) => schema.check_value(name, value).err(),
                SettingChange::SetSecret(name, value) => {
                    schema.check_secret(name, value.expose()).err()
                }
                SettingChange::Unset(_) => None,
            })
            .collect();
        if !problems.is_empty() {
            return Err(SettingsError::Refused(problems));
        }
        for _ in 0..WRITE_ATTEMPTS {
            let before = self.get(plugin).await?;
            let mut after = before.clone();
            let mut not_set = Vec::new();
            for change in changes {
                match change {
                    SettingChange::Set(name, value) => {
                        after.values.insert(name.clone(), value.clone());
                    }
                    SettingChange::SetSecret(name, value) => {
                        after.secrets.insert(name.clone(), value.clone());
                    }
                    SettingChange::Unset(name) => {
                        let was_set = after.values.remove(name).is_some()
                            | after.secrets.remove(name).is_some();
                        if !was_set {
                            not_set.push(name.clone());
                        }
                    }
                }
            }
            check_size(&after)?;
            match self.write(plugin, &before, &mut after).await {
                Ok(()) => {
                    return Ok(Changed {
                        before,
                        after,
                        not_set,
                    })
                }
                Err(Write::Raced) => continue,
                Err(Write::Failed(error)) => return Err(error),
            }
        }
        Err(SettingsError::Contended(plugin.clone()))
    }

    /// Takes back `changed` (a change found not to fit after all): writes its `before` over
    /// its `after`, only where nothing changed since.
    ///
    /// # Errors
    /// [`SettingsError::Contended`] when another change landed since; [`SettingsError::Store`]
    /// when a write fails.
    pub async fn revert(&self, plugin: &PluginId, changed: &Changed) -> Result<(), SettingsError> {
        let mut before = changed.before.clone();
        let written = OperatorSettings {
            values_revision: changed.after.values_revision,
            secrets_revision: changed.after.secrets_revision,
            ..changed.after.clone()
        };
        match self.write(plugin, &written, &mut before).await {
            Ok(()) => Ok(()),
            Err(Write::Raced) => Err(SettingsError::Contended(plugin.clone())),
            Err(Write::Failed(error)) => Err(error),
        }
    }

    /// Forgets everything set for `plugin` (it was removed). Returns whether anything was.
    ///
    /// # Errors
    /// [`SettingsError::Store`] when a removal fails.
    pub async fn forget(&self, plugin: &PluginId) -> Result<bool, SettingsError> {
        let mut forgot = false;
        for (store, bucket) in [
            (&self.values, &self.values_name),
            (&self.secrets, &self.secrets_name),
        ] {
            let had = store
                .get(plugin.as_str())
                .await
                .map_err(|e| store_error(bucket, format!("read the entry of `{plugin}`"), e))?
                .is_some();
            if had {
                store
                    .purge(plugin.as_str())
                    .await
                    .map_err(|e| store_error(bucket, format!("forget `{plugin}`"), e))?;
                forgot = true;
            }
        }
        Ok(forgot)
    }

    /// Follows both buckets: the plugin of every entry there now, then of each change as it
    /// happens. Re-read the plugin's settings with [`SettingsStore::get`] on each.
    ///
    /// # Errors
    /// [`SettingsError::Store`] when a watch cannot be started.
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = PluginId> + Send + Unpin + 'static, SettingsError> {
        let values = self
            .values
            .watch_all()
            .await
            .map_err(|e| store_error(&self.values_name, "start watching", e))?;
        let secrets = self
            .secrets
            .watch_all()
            .await
            .map_err(|e| store_error(&self.secrets_name, "start watching", e))?;
        let plugins = futures::stream::select(values, secrets).filter_map(|entry| async move {
            match entry {
                Ok(entry) => PluginId::new(entry.key.as_str()).ok(),
                // The ordered consumer under a watch resumes by itself.
                Err(error) => {
                    tracing::warn!(%error, "settings watch interrupted; resuming");
                    None
                }
            }
        });
        Ok(plugins.boxed())
    }

    async fn read_values(&self, plugin: &PluginId) -> Result<(Table, u64), SettingsError> {
        let Some((bytes, revision)) = read(&self.values, &self.values_name, plugin).await? else {
            return Ok((Table::new(), 0));
        };
        let values = serde_json::from_slice(&bytes)
            .map_err(|e| self.corrupt(&self.values_name, plugin, e))?;
        Ok((values, revision))
    }

    async fn read_secrets(
        &self,
        plugin: &PluginId,
    ) -> Result<(BTreeMap<String, Secret>, u64), SettingsError> {
        let Some((bytes, revision)) = read(&self.secrets, &self.secrets_name, plugin).await? else {
            return Ok((BTreeMap::new(), 0));
        };
        let secrets = serde_json::from_slice(&bytes)
            .map_err(|e| self.corrupt(&self.secrets_name, plugin, e))?;
        Ok((secrets, revision))
    }

    fn corrupt(&self, bucket: &str, plugin: &PluginId, error: serde_json::Error) -> SettingsError {
        SettingsError::Corrupt {
            plugin: plugin.clone(),
            bucket: bucket.to_owned(),
            // serde_json's message names the position, never the text.
            reason: error.to_string(),
        }
    }

    /// Writes what changed between `before` and `after`, each over the revision read, and
    /// records the new revisions in `after`.
    async fn write(
        &self,
        plugin: &PluginId,
        before: &OperatorSettings,
        after: &mut OperatorSettings,
    ) -> Result<(), Write> {
        if after.values != before.values {
            let bytes = serde_json::to_vec(&after.values).expect("settings encode as JSON");
            after.values_revision = write(
                &self.values,
                &self.values_name,
                plugin,
                bytes,
                before.values_revision,
            )
            .await?;
        }
        if after.secrets != before.secrets {
            let bytes = serde_json::to_vec(&after.secrets).expect("secrets encode as JSON");
            after.secrets_revision = write(
                &self.secrets,
                &self.secrets_name,
                plugin,
                bytes,
                before.secrets_revision,
            )
            .await?;
        }
        Ok(())
    }
}

/// A write that lost a race, or failed.
enum Write {
    Raced,
    Failed(SettingsError),
}

impl From<SettingsError> for Write {
    fn from(error: SettingsError) -> Self {
        Self::Failed(error)
    }
}

/// Each bucket's entry is held to [`MAX_SETTINGS_BYTES`] on its own: each is written only
/// over the revision checked, so two changes at once (one to each) cannot pass the limit
/// together.
fn check_size(settings: &OperatorSettings) -> Result<(), SettingsError> {
    let values = serde_json::to_vec(&settings.values).map_or(0, |b| b.len());
    let secrets = serde_json::to_vec(&settings.secrets).map_or(0, |b| b.len());
    for bytes in [values, secrets] {
        if bytes > MAX_SETTINGS_BYTES {
            return Err(SettingsError::Refused(vec![SettingError::AllTooLarge {
                bytes,
                max: MAX_SETTINGS_BYTES,
            }]));
        }
    }
    Ok(())
}

/// The entry of `plugin` and its revision; `None` when there is none (or it was removed).
async fn read(
    store: &kv::Store,
    bucket: &str,
    plugin: &PluginId,
) -> Result<Option<(bytes::Bytes, u64)>, SettingsError> {
    let entry = store
        .entry(plugin.as_str())
        .await
        .map_err(|e| store_error(bucket, format!("read the entry of `{plugin}`"), e))?;
    Ok(entry
        .filter(|entry| entry.operation == kv::Operation::Put)
        .map(|entry| (entry.value, entry.revision)))
}

/// Writes `bytes` as `plugin`'s entry over `revision` (0: there was none, or it was removed);
/// returns the new revision.
async fn write(
    store: &kv::Store,
    bucket: &str,
    plugin: &PluginId,
    bytes: Vec<u8>,
    revision: u64,
) -> Result<u64, Write> {
    let key = plugin.as_str();
    let written = if revision == 0 {
        store.create(key, bytes.into()).await.map_err(|e| {
            if e.kind() == kv::CreateErrorKind::AlreadyExists {
                Write::Raced
            } else {
                Write::Failed(store_error(bucket, format!("write `{plugin}`"), e))
            }
        })
    } else {
        store
            .update(key, bytes.into(), revision)
            .await
            .map_err(|e| {
                if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                    Write::Raced
                } else {
                    Write::Failed(store_error(bucket, format!("write `{plugin}`"), e))
                }
            })
    };
    written
}

fn store_error(bucket: &str, action: impl Into<String>, error: impl fmt::Display) -> SettingsError {
    SettingsError::Store {
        action: action.into(),
        bucket: bucket.to_owned(),
        reason: error.to_string(),
    }
}
