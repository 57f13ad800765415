//! The environment variables a worker reads (the SDK's `Plugin::run`), and a host sets for the
//! workers it starts.

/// The NATS server URL(s); default `nats://127.0.0.1:4222`.
pub const URL: &str = "SWITCHYARD_NATS_URL";
/// A NATS credentials file, if the server needs one.
pub const CREDS: &str = "SWITCHYARD_NATS_CREDS";
/// The deployment's subject prefix; default `switchyard`.
pub const PREFIX: &str = "SWITCHYARD_PREFIX";
/// The plugin's secret (`switchyard plugins credentials <id>`), when the broker enforces
/// plugin rights: the worker logs in as its plugin id with it.
pub const TOKEN: &str = "SWITCHYARD_PLUGIN_TOKEN";
/// A file holding the plugin's secret (`switchyard plugins credentials <id> --out FILE`),
/// instead of [`TOKEN`]: the secret stays out of the environment other processes may
/// read. Set one of the two.
pub const TOKEN_FILE: &str = "SWITCHYARD_PLUGIN_TOKEN_FILE";

/// Which instance of its plugin this worker is, when a host started it (`{plugin}.{slot}`);
/// said in its hello and its logs.
pub const INSTANCE: &str = "SWITCHYARD_INSTANCE";
