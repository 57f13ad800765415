//! An operation: `rate` answers what tax an order owes in a region. Services call it
//! (`switchyard call tax-rates rate --tenant acme --data '{"region":"eu","total_cents":1000}'`),
//! and so does the order validator, from its channel handler. An unknown region is a
//! permanent failure with code `tax.unknown-region`, which the caller receives as it is.
use serde::{Deserialize, Serialize};
use switchyard_plugin_sdk::{CallContext, HandlerError, Plugin, PluginError, TypedEvent, Version};

/// What a caller asks.
#[derive(Debug, Serialize, Deserialize)]
pub struct TaxQuery {
    /// `eu`, `uk` or `us`.
    pub region: String,
    /// The order's total, in cents.
    pub total_cents: u64,
}

impl TypedEvent for TaxQuery {
    const TYPE: &'static str = "tax.query";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// The answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct TaxRate {
    /// The rate, in percent.
    pub rate_percent: u32,
    /// The tax on the total, in cents, rounded down.
    pub tax_cents: u64,
}

impl TypedEvent for TaxRate {
    const TYPE: &'static str = "tax.rate";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

async fn rate(query: TaxQuery, ctx: CallContext) -> Result<TaxRate, HandlerError> {
    let rate_percent = match query.region.as_str() {
        "eu" => 20,
        "uk" => 20,
        "us" => 7,
        other => {
            return Err(HandlerError::permanent(
                "tax.unknown-region",
                format!("no tax rate is known for region `{other}`"),
            ))
        }
    };
    tracing::info!(tenant = %ctx.tenant(), caller = %ctx.caller(), region = %query.region, "rate asked");
    Ok(TaxRate {
        rate_percent,
        tax_cents: query.total_cents * u64::from(rate_percent) / 100,
    })
}

/// The plugin, built from the manifest beside this file.
pub fn plugin() -> Result<Plugin, PluginError> {
    Ok(Plugin::from_manifest_str(include_str!("plugin.toml"))?.operation("rate", rate))
}

#[tokio::main]
async fn main() -> Result<(), PluginError> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    plugin()?.run().await
}
