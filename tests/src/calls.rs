//! Operations for tests: a pricing plugin's manifest and types, and waiting until a dispatcher
//! serves a plugin's operations.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_schemas::semver::Version;
use switchyard_schemas::{Manifest, TypedEvent};

/// A request for a price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuoteRequest {
    /// What is priced; an empty one is refused by [`pricing_manifest`]'s handlers.
    pub sku: String,
    /// How many.
    pub quantity: u32,
}

impl TypedEvent for QuoteRequest {
    const TYPE: &'static str = "quote.request";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// A price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    /// The price in cents.
    pub cents: u64,
    /// Who answered (the worker's attempt, the caller it saw), for the tests to check.
    pub note: String,
}

impl TypedEvent for Quote {
    const TYPE: &'static str = "quote.response";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// A manifest for plugin `id` with one operation per `(name, extra keys)`, each taking a
/// [`QuoteRequest`] and answering a [`Quote`].
///
/// # Panics
/// When the keys do not make a valid manifest.
pub fn operations_manifest(id: &str, operations: &[(&str, &str)]) -> Manifest {
    let mut text = format!("[plugin]\nid = \"{id}\"\nversion = \"1.0.0\"\ncore = \"*\"\n");
    for (name, extra) in operations {
        text.push_str(&format!(
            "[[operations]]\nname = \"{name}\"\n\
             request = {{ type = \"quote.request\", version = \"1.0.0\" }}\n\
             response = {{ type = \"quote.response\", version = \"1.0.0\" }}\n{extra}\n"
        ));
    }
    Manifest::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Waits until a dispatcher serves `operation` of `plugin`: its micro service answers
/// `$SRV.INFO.{plugin}` listing it.
///
/// # Panics
/// When it is not served within 15 s.
pub async fn wait_for_operation(client: &async_nats::Client, plugin: &str, operation: &str) {
    crate::wait_until(Duration::from_secs(15), || async {
        let Ok(Ok(info)) = tokio::time::timeout(
            Duration::from_secs(1),
            client.request(format!("$SRV.INFO.{plugin}"), bytes::Bytes::new()),
        )
        .await
        else {
            return false;
        };
        serde_json::from_slice::<serde_json::Value>(&info.payload)
            .ok()
            .and_then(|info| info["endpoints"].as_array().cloned())
            .is_some_and(|endpoints| endpoints.iter().any(|e| e["name"] == operation))
    })
    .await
    .unwrap_or_else(|_| panic!("operation `{operation}` of `{plugin}` is served within 15 s"));
}
