//! Sending each plugin's workers what operators set for it.
//!
//! A dispatcher follows the settings buckets; on each change it re-reads the plugin's
//! settings, keeps them for the answers to its workers' hellos, and publishes them on the
//! plugin's settings subject, inside its own inbox, where only its connections listen. Every
//! dispatcher does so; a worker keeps the newest by revision (docs/wire-format.md).

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures::StreamExt;
use switchyard_control::settings::{SettingsError, SettingsStore};
use switchyard_schemas::delivery::SettingsUpdate;
use switchyard_schemas::{Namespace, PluginId};
use tokio_util::sync::CancellationToken;

/// The settings each plugin's workers were last sent, by plugin.
pub(crate) type SettingsSent = Arc<DashMap<PluginId, SettingsUpdate>>;

/// How many times a plugin's settings are read again after a failed read.
const READ_ATTEMPTS: u32 = 3;

/// Follows `store` until `stop`, keeping `sent` current and publishing each change.
pub(crate) async fn follow(
    store: SettingsStore,
    client: async_nats::Client,
    namespace: Namespace,
    sent: SettingsSent,
    stop: CancellationToken,
) {
    let mut changes = match store.watch().await {
        Ok(changes) => changes,
        Err(error) => {
            tracing::error!(%error, "cannot follow plugin settings; workers keep their manifest's defaults");
            return;
        }
    };
    loop {
        let plugin = tokio::select! {
            () = stop.cancelled() => return,
            plugin = changes.next() => match plugin {
                Some(plugin) => plugin,
                None => {
                    tracing::error!("the settings watch ended; later changes are not sent");
                    return;
                }
            },
        };
        let update = match read(&store, &plugin).await {
            Ok(update) => update,
            Err(error) => {
                tracing::error!(%plugin, %error, "cannot read the plugin's settings; its workers keep the ones they have");
                continue;
            }
        };
        let body = serde_json::to_vec(&update).expect("settings encode as JSON");
        sent.insert(plugin.clone(), update);
        if let Err(error) = client
            .publish(namespace.plugin_settings(&plugin), body.into())
            .await
        {
            tracing::warn!(%plugin, %error, "cannot send the plugin's workers its settings; they get them at their next hello");
        }
    }
}

/// The plugin's settings, read again a few times when a read fails.
async fn read(store: &SettingsStore, plugin: &PluginId) -> Result<SettingsUpdate, SettingsError> {
    let mut attempt = 1;
    loop {
        match store.get(plugin).await {
            Ok(settings) => return Ok(settings.update()),
            Err(error) if attempt >= READ_ATTEMPTS => return Err(error),
            Err(error) => {
                tracing::warn!(%plugin, %error, attempt, "reading the plugin's settings failed; trying again");
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
                attempt += 1;
            }
        }
    }
}
