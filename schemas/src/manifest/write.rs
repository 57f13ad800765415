//! Writing a manifest back as a TOML table in its canonical form.
//!
//! The canonical form has no `[defaults]`: every subscription carries its fully resolved
//! policy, and `[limits]` is always written, with every key written out, so that reading it
//! back gives the same [`Manifest`] even if the built-in defaults change later.

use std::time::Duration;

use toml::{Table, Value};

use super::limits::{Limits, Size};
use super::policy::{Backoff, DeliveryPolicy};
use super::{
    ChannelGrants, Dependencies, Manifest, PluginInfo, SettingSpec, SettingsSchema, Subscription,
};

pub(super) fn write_manifest(manifest: &Manifest) -> Table {
    let mut root = Table::new();
    root.insert("plugin".into(), write_plugin(&manifest.plugin).into());
    if !manifest.subscriptions.is_empty() {
        let subscriptions = manifest.subscriptions.iter().map(write_subscription);
        root.insert(
            "subscriptions".into(),
            Value::Array(subscriptions.collect()),
        );
    }
    insert_unless_empty(&mut root, "channels", write_channels(&manifest.channels));
    if !manifest.operations.is_empty() {
        let operations = manifest
            .operations
            .iter()
            .map(super::operations::write_operation);
        root.insert("operations".into(), Value::Array(operations.collect()));
    }
    root.insert("limits".into(), write_limits(&manifest.limits).into());
    root.insert("run".into(), super::run::write_run(&manifest.run).into());
    insert_unless_empty(
        &mut root,
        "dependencies",
        write_dependencies(&manifest.dependencies),
    );
    insert_unless_empty(&mut root, "settings", manifest.settings.clone());
    if manifest.settings_schema.is_declared() {
        root.insert(
            "settings_schema".into(),
            write_settings_schema(&manifest.settings_schema).into(),
        );
    }
    root
}

fn write_settings_schema(schema: &SettingsSchema) -> Table {
    schema
        .specs()
        .map(|(name, spec)| (name.to_owned(), write_setting(spec).into()))
        .collect()
}

fn write_setting(spec: &SettingSpec) -> Table {
    let mut table = Table::new();
    table.insert("type".into(), spec.kind.to_string().into());
    if let Some(description) = &spec.description {
        table.insert("description".into(), description.as_str().into());
    }
    if spec.secret {
        table.insert("secret".into(), true.into());
    }
    if spec.required {
        table.insert("required".into(), true.into());
    }
    for (key, bound) in [("min", spec.min), ("max", spec.max)] {
        if let Some(bound) = bound {
            table.insert(key.into(), bound.into());
        }
    }
    if let Some(max) = spec.max_length {
        table.insert("max_length".into(), Value::Integer(max as i64));
    }
    if !spec.choices.is_empty() {
        table.insert("choices".into(), Value::Array(spec.choices.clone()));
    }
    table
}

fn insert_unless_empty(table: &mut Table, key: &str, value: Table) {
    if !value.is_empty() {
        table.insert(key.into(), value.into());
    }
}

fn write_plugin(plugin: &PluginInfo) -> Table {
    let mut table = Table::new();
    table.insert("id".into(), plugin.id.as_str().into());
    table.insert("version".into(), plugin.version.to_string().into());
    table.insert("core".into(), plugin.core.to_string().into());
    let texts = [
        ("description", &plugin.description),
        ("author", &plugin.author),
        ("license", &plugin.license),
        ("homepage", &plugin.homepage),
        ("repository", &plugin.repository),
    ];
    for (key, value) in texts {
        if let Some(value) = value {
            table.insert(key.into(), value.as_str().into());
        }
    }
    if !plugin.tags.is_empty() {
        let tags = plugin.tags.iter().map(|tag| tag.as_str().into());
        table.insert("tags".into(), Value::Array(tags.collect()));
    }
    if let Some(category) = &plugin.category {
        table.insert("category".into(), category.as_str().into());
    }
    table
}

fn write_subscription(subscription: &Subscription) -> Value {
    let mut table = Table::new();
    table.insert("name".into(), subscription.name.as_str().into());
    let events = subscription
        .events
        .iter()
        .map(|event| event.as_str().into());
    table.insert("events".into(), Value::Array(events.collect()));
    table.insert("versions".into(), subscription.versions.to_string().into());
    table.insert("policy".into(), write_policy(&subscription.policy).into());
    table.into()
}

fn write_policy(policy: &DeliveryPolicy) -> Table {
    let mut table = Table::new();
    if let Some(rate) = policy.rate {
        table.insert("rate".into(), rate.to_string().into());
    }
    table.insert("burst".into(), i64::from(policy.burst.get()).into());
    table.insert(
        "max_in_flight".into(),
        i64::from(policy.max_in_flight.get()).into(),
    );
    table.insert("timeout".into(), duration(policy.timeout));
    table.insert(
        "max_attempts".into(),
        i64::from(policy.max_attempts.get()).into(),
    );
    table.insert("backoff".into(), write_backoff(&policy.backoff).into());
    if let Some(opens) = policy.fail_after_opens {
        table.insert("fail_after_opens".into(), i64::from(opens.get()).into());
    }
    table
}

fn write_backoff(backoff: &Backoff) -> Table {
    let mut table = Table::new();
    match backoff {
        Backoff::Exponential {
            initial,
            max,
            multiplier,
            jitter,
        } => {
            let mut exponential = Table::new();
            exponential.insert("initial".into(), duration(*initial));
            exponential.insert("max".into(), duration(*max));
            exponential.insert("multiplier".into(), (*multiplier).into());
            exponential.insert("jitter".into(), (*jitter).into());
            table.insert("exponential".into(), exponential.into());
        }
        Backoff::Fixed(delays) => {
            let delays = delays.iter().map(|delay| duration(*delay));
            table.insert("fixed".into(), Value::Array(delays.collect()));
        }
    }
    table
}

fn write_channels(channels: &ChannelGrants) -> Table {
    let mut table = Table::new();
    for (key, names) in [("send", &channels.send), ("receive", &channels.receive)] {
        if !names.is_empty() {
            let names = names.iter().map(|name| name.as_str().into());
            table.insert(key.into(), Value::Array(names.collect()));
        }
    }
    table
}

/// Always written, defaults included: the limits an operator approved stay what they were
/// if a built-in default changes later.
fn write_limits(limits: &Limits) -> Table {
    let mut table = Table::new();
    table.insert(
        "max_subscriptions".into(),
        i64::from(limits.max_subscriptions.get()).into(),
    );
    table.insert(
        "max_payload".into(),
        Size(limits.max_payload.get().into()).to_string().into(),
    );
    table.insert(
        "max_connections".into(),
        i64::from(limits.max_connections.get()).into(),
    );
    table.insert(
        "max_bytes_per_second".into(),
        Size(limits.max_bytes_per_second.get().into())
            .to_string()
            .into(),
    );
    table
}

fn write_dependencies(dependencies: &Dependencies) -> Table {
    let mut table = Table::new();
    let requires: Table = dependencies
        .requires
        .iter()
        .map(|(id, range)| (id.to_string(), range.to_string().into()))
        .collect();
    insert_unless_empty(&mut table, "requires", requires);
    if !dependencies.conflicts.is_empty() {
        let conflicts = dependencies.conflicts.iter().map(|id| id.as_str().into());
        table.insert("conflicts".into(), Value::Array(conflicts.collect()));
    }
    table
}

/// humantime's form (`1m 30s`), which it reads back to the same nanosecond.
fn duration(duration: Duration) -> Value {
    humantime::format_duration(duration).to_string().into()
}
