//! A notifier whose upstream fails transiently: the first attempt of each notification is
//! refused (as a real webhook might answer 503), and the retry goes through. The delay between
//! attempts is the manifest's backoff; the handler only says "retry".
use serde::{Deserialize, Serialize};
use switchyard_plugin_sdk::{
    Context, HandlerError, HandlerResult, Plugin, PluginError, TypedEvent, Version,
};

#[derive(Serialize, Deserialize)]
struct InvoicePaid {
    invoice_id: String,
    amount_cents: u64,
}

impl TypedEvent for InvoicePaid {
    const TYPE: &'static str = "invoice.paid";
    const SCHEMA_VERSION: Version = Version::new(1, 1, 0);
}

#[derive(Deserialize)]
struct Settings {
    failures_before_success: u32,
}

async fn notify(invoice: InvoicePaid, ctx: Context) -> HandlerResult {
    let settings: Settings = ctx.settings()?;
    if ctx.attempt() <= settings.failures_before_success {
        return Err(HandlerError::retry(format!(
            "upstream busy (attempt {} of {})",
            ctx.attempt(),
            ctx.max_attempts()
        )));
    }
    tracing::info!(
        invoice = %invoice.invoice_id,
        amount_cents = invoice.amount_cents,
        attempts = ctx.attempt(),
        "notified"
    );
    Ok(())
}

/// The plugin, built from the manifest beside this file.
pub fn plugin() -> Result<Plugin, PluginError> {
    Ok(Plugin::from_manifest_str(include_str!("plugin.toml"))?.on(notify))
}

#[tokio::main]
async fn main() -> Result<(), PluginError> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    plugin()?.run().await
}
