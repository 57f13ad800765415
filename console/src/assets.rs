//! The web console's files, built into the binary: no toolchain, no files to install.

/// The console's page.
pub const INDEX: &str = include_str!("../assets/index.html");
/// Its script.
pub const APP_JS: &str = include_str!("../assets/app.js");
/// Its styles.
pub const STYLE_CSS: &str = include_str!("../assets/style.css");
/// The OpenAPI description of the HTTP API.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

#[cfg(test)]
mod tests {
    use crate::Request;

    /// The OpenAPI description names every verb the API serves, and is valid JSON.
    #[test]
    fn the_openapi_description_covers_every_verb() {
        let description: serde_json::Value =
            serde_json::from_str(super::OPENAPI).expect("docs/openapi.json is JSON");
        let described: Vec<&str> = description["paths"]
            .as_object()
            .expect("paths")
            .values()
            .flat_map(|path| path.as_object().into_iter().flat_map(|ops| ops.values()))
            .filter_map(|operation| operation["x-nats-verb"].as_str())
            .collect();
        for verb in Request::VERBS.iter().filter(|verb| **verb != "live") {
            assert!(described.contains(verb), "docs/openapi.json lacks `{verb}`");
        }
    }
}
