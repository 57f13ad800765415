//! The control plane of Switchyard: what decides who may do what, apart from the delivery
//! path.
//!
//! - [`registry`]: the registered plugins (manifest, tenants, enabled), in a JetStream
//!   key-value bucket every dispatcher watches.
//! - [`auth`]: broker-enforced rights: the auth callout that gives each plugin exactly its
//!   subjects, plugin credentials, quotas, the server configuration, and the probe that
//!   proves the rights from outside (docs/security.md).
//! - [`package`]: plugin packages (a manifest and a worker, indexed and signed by a
//!   publisher), the publisher keys operators trust, the decision whether a package may be
//!   installed, and the store and catalog of published packages (docs/lifecycle.md).
//! - [`audit`]: the audit log: who changed what, in an append-only stream; the registry's,
//!   the credentials' and the dead letters' operator-facing changes record themselves there
//!   (docs/lifecycle.md, "Audit").
//! - [`settings`]: the settings and secrets operators set for a plugin, checked against the
//!   settings its manifest declares, which dispatchers send its workers (docs/lifecycle.md,
//!   "Settings").

pub mod audit;
pub mod auth;
pub mod lifecycle;
pub mod package;
pub mod registry;
pub mod settings;
