//! A validator that refuses bad input permanently: an order without an id or with a zero total
//! is dead-lettered at once with code `order.invalid`, never retried. An operator can inspect it
//! with `switchyard dlq show`, fix the cause, and replay it with `switchyard dlq replay`.
use serde::{Deserialize, Serialize};
use switchyard_plugin_sdk::{
    Context, HandlerError, HandlerResult, Plugin, PluginError, TypedEvent, Version,
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

async fn validate(order: OrderCreated, _ctx: Context) -> HandlerResult {
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
    Ok(Plugin::from_manifest_str(include_str!("plugin.toml"))?.on(validate))
}

#[tokio::main]
async fn main() -> Result<(), PluginError> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    plugin()?.run().await
}
