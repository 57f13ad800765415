//! The example plugins `switchyard dev` runs, compiled from `plugin-sdk/examples/`: the same
//! files a plugin author copies, so what the demo shows is what they get.

use std::path::Path;

use switchyard_plugin_sdk::{Plugin, PluginError};

#[allow(dead_code, unreachable_pub)]
#[path = "../../../../plugin-sdk/examples/audit-logger/main.rs"]
mod audit_logger;
#[allow(dead_code, unreachable_pub)]
#[path = "../../../../plugin-sdk/examples/flaky-notifier/main.rs"]
mod flaky_notifier;
#[allow(dead_code, unreachable_pub)]
#[path = "../../../../plugin-sdk/examples/order-validator/main.rs"]
mod order_validator;
#[allow(dead_code, unreachable_pub)]
#[path = "../../../../plugin-sdk/examples/tax-rates/main.rs"]
mod tax_rates;

/// The example plugins; the audit logger writes to `<data_dir>/audit.jsonl` instead of the
/// terminal, which the live view occupies.
pub(crate) fn example_plugins(data_dir: &Path) -> Result<Vec<Plugin>, PluginError> {
    let audit_log = data_dir.join("audit.jsonl").display().to_string();
    Ok(vec![
        audit_logger::plugin()?.with_setting("path", audit_log),
        flaky_notifier::plugin()?,
        order_validator::plugin()?,
        tax_rates::plugin()?,
    ])
}
