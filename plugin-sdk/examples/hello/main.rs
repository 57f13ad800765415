//! The smallest plugin: greets every new order. Run it next to `switchyard dev --keep-running`.
use switchyard_plugin_sdk::{Context, HandlerResult, Plugin, PluginError, TypedEvent, Version};

#[derive(serde::Serialize, serde::Deserialize)]
struct OrderCreated {
    order_id: String,
    total_cents: u64,
}

impl TypedEvent for OrderCreated {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

async fn greet(order: OrderCreated, ctx: Context) -> HandlerResult {
    println!(
        "hello, order {} of {} ({} cents)",
        order.order_id,
        ctx.tenant(),
        order.total_cents
    );
    Ok(())
}

/// The plugin, built from the manifest beside this file.
pub fn plugin() -> Result<Plugin, PluginError> {
    Ok(Plugin::from_manifest_str(include_str!("plugin.toml"))?.on(greet))
}

#[tokio::main]
async fn main() -> Result<(), PluginError> {
    plugin()?.run().await
}
