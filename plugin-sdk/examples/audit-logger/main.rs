//! An audit logger: every order and invoice event, whatever its type, becomes one JSON line.
//!
//! It handles events undecoded (`on_any`), so new event types under its patterns need no code.
//! Lines are keyed by the event id: a redelivered event writes the same line again, which an
//! audit reader de-duplicates, so the handler is idempotent without keeping state.
use std::io::Write;

use serde::Deserialize;
use switchyard_plugin_sdk::{Context, Event, HandlerError, HandlerResult, Plugin, PluginError};

#[derive(Deserialize)]
struct Settings {
    path: String,
}

async fn record(event: Event, ctx: Context) -> HandlerResult {
    let settings: Settings = ctx.settings()?;
    let a = &event.attributes;
    let data = a
        .content_type
        .decode::<serde_json::Value>(&event.data)
        .unwrap_or(serde_json::Value::Null);
    let line = serde_json::json!({
        "id": a.id.as_str(),
        "tenant": a.tenant.as_str(),
        "type": a.event_type.as_str(),
        "schema_version": a.schema_version.to_string(),
        "source": a.source,
        "data": data,
    });
    if settings.path == "-" {
        println!("{line}");
        return Ok(());
    }
    // A full disk or a missing directory may clear up: retry rather than drop.
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&settings.path)
        .map_err(|e| HandlerError::retry(format!("open {}: {e}", settings.path)))?;
    writeln!(file, "{line}")?;
    Ok(())
}

/// The plugin, built from the manifest beside this file.
pub fn plugin() -> Result<Plugin, PluginError> {
    Ok(Plugin::from_manifest_str(include_str!("plugin.toml"))?.on_any(record))
}

#[tokio::main]
async fn main() -> Result<(), PluginError> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    plugin()?.run().await
}
