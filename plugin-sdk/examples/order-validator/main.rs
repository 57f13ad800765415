//! A validator that refuses bad input permanently: an order without an id or with a zero total
//! is dead-lettered at once with code `order.invalid`, never retried. An operator can inspect it
//! with `switchyard dlq show`, fix the cause, and replay it with `switchyard dlq replay`.
//!
//! It also answers requests on the channel `order-checks`: it checks the order the same way
//! and asks the tax-rates plugin's `rate` operation what tax it owes, a plugin calling
//! another's operation through its context.
use serde::{Deserialize, Serialize};
use switchyard_plugin_sdk::{
    ChannelContext, Context, HandlerError, HandlerResult, Plugin, PluginError, TypedEvent, Version,
};

#[derive(Serialize, Deserialize)]
struct OrderCreated {
    order_id: String,
    total_cents: u64,
}

impl TypedEvent for OrderCreated {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// A request to check an order, on the channel `order-checks`.
#[derive(Serialize, Deserialize)]
pub struct OrderCheck {
    /// The order.
    pub order_id: String,
    /// Its total, in cents.
    pub total_cents: u64,
    /// Where it ships: `eu`, `uk` or `us`.
    pub region: String,
}

impl TypedEvent for OrderCheck {
    const TYPE: &'static str = "order.check";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// The answer to an [`OrderCheck`].
#[derive(Serialize, Deserialize)]
pub struct OrderChecked {
    /// The order.
    pub order_id: String,
    /// The tax it owes, in cents.
    pub tax_cents: u64,
}

impl TypedEvent for OrderChecked {
    const TYPE: &'static str = "order.checked";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// What the tax-rates plugin's `rate` operation takes and answers (its manifest declares them).
#[derive(Serialize, Deserialize)]
struct TaxQuery {
    region: String,
    total_cents: u64,
}

impl TypedEvent for TaxQuery {
    const TYPE: &'static str = "tax.query";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

#[derive(Serialize, Deserialize)]
struct TaxRate {
    rate_percent: u32,
    tax_cents: u64,
}

impl TypedEvent for TaxRate {
    const TYPE: &'static str = "tax.rate";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

async fn validate(order: OrderCreated, _ctx: Context) -> HandlerResult {
    check(&order.order_id, order.total_cents)
}

/// Answers a check: the order's problems as the failure, or the tax it owes.
async fn check_order(request: OrderCheck, ctx: ChannelContext) -> HandlerResult {
    check(&request.order_id, request.total_cents)?;
    let query = TaxQuery {
        region: request.region,
        total_cents: request.total_cents,
    };
    let rate: TaxRate = ctx
        .call("tax-rates", "rate", &query)
        .await
        .map_err(|error| HandlerError::permanent("order.no-tax", error.to_string()))?;
    ctx.reply(&OrderChecked {
        order_id: request.order_id,
        tax_cents: rate.tax_cents,
    })
    .await?;
    Ok(())
}

fn check(order_id: &str, total_cents: u64) -> HandlerResult {
    let order = OrderCreated {
        order_id: order_id.to_owned(),
        total_cents,
    };
    if order.order_id.trim().is_empty() {
        return Err(HandlerError::permanent(
            "order.invalid",
            "the order has no id",
        ));
    }
    if order.total_cents == 0 {
        return Err(HandlerError::permanent(
            "order.invalid",
            format!("order {} has a zero total", order.order_id),
        ));
    }
    Ok(())
}

/// The plugin, built from the manifest beside this file.
pub fn plugin() -> Result<Plugin, PluginError> {
    Ok(Plugin::from_manifest_str(include_str!("plugin.toml"))?
        .on(validate)
        .on_channel("order-checks", check_order))
}

#[tokio::main]
async fn main() -> Result<(), PluginError> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    plugin()?.run().await
}
