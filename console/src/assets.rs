//! The web console's files, built into the binary: no toolchain, no files to install.

/// The console's page.
pub const INDEX: &str = include_str!("../assets/index.html");
/// Its script.
pub const APP_JS: &str = include_str!("../assets/app.js");
/// Its styles.
pub const STYLE_CSS: &str = include_str!("../assets/style.css");
/// The OpenAPI description of the HTTP API.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");
