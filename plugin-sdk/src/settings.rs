//! The settings a worker runs with: its manifest's defaults (with [`Plugin::with_setting`]
//! overrides), and over them what the operator set, kept current as dispatchers send changes.
//!
//! Each delivery's [`Context`](crate::Context) takes the settings current when it starts, so a
//! handler sees one consistent set; the next delivery sees a change.
//!
//! [`Plugin::with_setting`]: crate::Plugin::with_setting

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use switchyard_schemas::delivery::SettingsUpdate;
use switchyard_schemas::manifest::toml::{self, Table};

/// The settings of one worker.
#[derive(Debug)]
pub(crate) struct LiveSettings {
    /// The manifest's defaults and the worker's own overrides.
    base: Arc<Table>,
    current: Mutex<Current>,
}

#[derive(Debug)]
struct Current {
    settings: Arc<Table>,
    /// The update in force, if one arrived.
    update: Option<SettingsUpdate>,
}

impl LiveSettings {
    /// Settings that are `base` until an update arrives.
    pub(crate) fn new(base: Table) -> Self {
        let base = Arc::new(base);
        Self {
            current: Mutex::new(Current {
                settings: Arc::clone(&base),
                update: None,
            }),
            base,
        }
    }

    /// The worker's own settings with `key` set to `value` (before any update arrives).
    pub(crate) fn with_override(&self, key: &str, value: toml::Value) -> Self {
        let mut base = (*self.base).clone();
        base.insert(key.to_owned(), value);
        Self::new(base)
    }

    /// The settings in force.
    pub(crate) fn current(&self) -> Arc<Table> {
        Arc::clone(&self.current.lock().expect("never poisoned").settings)
    }

    /// Lays `update` over the base unless it is older than the one in force (a late copy
    /// from another dispatcher). Returns whether the settings changed.
    pub(crate) fn apply(&self, update: SettingsUpdate) -> bool {
        let mut current = self.current.lock().expect("never poisoned");
        if let Some(in_force) = &current.update {
            if update.is_older_than(in_force) || *in_force == update {
                return false;
            }
        }
        let mut settings = (*self.base).clone();
        settings.extend(update.settings.iter().map(|(k, v)| (k.clone(), v.clone())));
        let changed = *current.settings != settings;
        current.settings = Arc::new(settings);
        if changed {
            // Names and revisions only: values may be secrets.
            tracing::info!(
                values_revision = update.values_revision,
                secrets_revision = update.secrets_revision,
                set = ?update.settings.keys().collect::<Vec<_>>(),
                "settings changed"
            );
        }
        current.update = Some(update);
        changed
    }
}

/// Applies each update sent on the plugin's settings subject until it ends.
pub(crate) async fn listen(mut updates: async_nats::Subscriber, settings: Arc<LiveSettings>) {
    while let Some(message) = updates.next().await {
        match SettingsUpdate::read(&message.payload) {
            Ok(update) => {
                settings.apply(update);
            }
            Err(error) => tracing::warn!(%error, "ignoring an unreadable settings update"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(values: u64, secrets: u64, text: &str) -> SettingsUpdate {
        SettingsUpdate {
            values_revision: values,
            secrets_revision: secrets,
            settings: toml::from_str(text).unwrap(),
        }
    }

    #[test]
    fn updates_lay_over_the_base_and_late_ones_are_ignored() {
        let live = LiveSettings::new(toml::from_str("a = 1\nb = 2").unwrap());
        assert!(live.apply(update(3, 0, "b = 5")));
        assert_eq!(live.current()["b"], toml::Value::Integer(5));
        // A copy from another dispatcher that saw an earlier revision.
        assert!(!live.apply(update(2, 0, "b = 4")));
        assert_eq!(live.current()["b"], toml::Value::Integer(5));
        // Unset: the default is back.
        assert!(live.apply(update(4, 0, "")));
        assert_eq!(live.current()["b"], toml::Value::Integer(2));
        assert_eq!(live.current()["a"], toml::Value::Integer(1));
    }
}
