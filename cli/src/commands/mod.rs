//! The commands of `switchyard` and what they share: how to reach NATS.

mod audit;
mod auth;
mod call;
mod catalog;
mod console;
mod dev;
mod dlq;
mod events;
mod explain;
pub(crate) mod host;
mod instances;
mod lifecycle;
mod logs;
mod operators;
mod package;
mod plugins;
mod probe;
mod publish;
mod run;
mod secrets;
pub(crate) mod services;
mod settings;
mod streams;
mod trust;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use switchyard_bus::{ConnectError, ConnectOptions, ProvisionError, PublishError};
use switchyard_control::registry::{EmptyTenantScope, RegistryError};
use switchyard_dispatcher::local_nats::ServerError;
use switchyard_schemas::manifest::ManifestLoadError;
use switchyard_schemas::PluginId;

/// Switchyard: deliver domain events from NATS to plugins, each under its own delivery policy.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a dispatcher: deliver events to the registered plugins until SIGTERM or Ctrl-C.
    Run(run::RunArgs),
    /// Run the embedded default: a local nats-server, the dispatcher and the example plugins,
    /// with a stream of sample events and a live view of what happens to them.
    Dev(dev::DevArgs),
    /// Provision and inspect the events, dead-letter and audit streams.
    #[command(subcommand)]
    Streams(streams::StreamsCommand),
    /// Register, remove and list plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// List, show, replay and purge dead letters.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Publish events: one, or a paced load.
    Publish(publish::PublishArgs),
    /// Call a plugin's operation and print its answer and the time it took.
    Call(call::CallArgs),
    /// Service logins of a secured deployment: clients that publish events for their tenants
    /// and call the operations that allow services.
    #[command(subcommand)]
    Services(services::ServicesCommand),
    /// Serve the management API (HTTP/JSON and a NATS micro service) and the web console.
    Console(console::ConsoleArgs),
    /// Operators of the management API and the console: their names, roles and tokens.
    #[command(subcommand)]
    Operators(operators::OperatorsCommand),
    /// Watch events as they are stored.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Where an event is for each plugin subscribed to its type, and why.
    Explain(explain::ExplainArgs),
    /// Broker-enforced plugin rights: generate the server configuration, run the auth callout.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Plugin packages: build, sign, verify, inspect and publish them; make publisher keys.
    #[command(subcommand)]
    Package(package::PackageCommand),
    /// A plugin's settings and secrets, as operators set them within what its manifest
    /// declares; running workers receive changes at once.
    #[command(subcommand)]
    Settings(settings::SettingsCommand),
    /// The publisher keys whose packages this deployment trusts.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// List the published packages: id, version, publisher (trusted or not), description,
    /// tags and category.
    Catalog(catalog::CatalogArgs),
    /// Run the plugin host on this machine: start, confine and supervise the workers of the
    /// enabled plugins installed from packages, sharing their instances with the other hosts.
    Host(host::HostArgs),
    /// Show what a plugin's workers wrote on stdout and stderr, from every host that ran them.
    Logs(logs::LogsArgs),
    /// List the audit log, oldest first: who registered, replaced, approved, rejected, rolled
    /// back, removed, enabled, disabled or marked failed a plugin, issued, rotated or revoked
    /// its secret, replayed or purged its dead letters, or trusted or distrusted a publisher
    /// key, and when (the server's time of storage).
    Audit(audit::AuditArgs),
}

/// The server URL when none is given.
const DEFAULT_URL: &str = "nats://127.0.0.1:4222";

/// How to reach a NATS server; shared by every command that connects to one.
#[derive(Debug, Clone, Args)]
pub(crate) struct NatsArgs {
    /// NATS server URL(s), comma-separated [env: SWITCHYARD_NATS_URL] [default:
    /// nats://127.0.0.1:4222]. A password in it is visible to other users of the machine:
    /// use --url-file for a login URL.
    #[arg(long, value_name = "URL", conflicts_with = "url_file")]
    url: Option<String>,
    /// A file holding the NATS URL, e.g. `admin.url` written by `switchyard auth init`, so
    /// that no password is on the command line [env: SWITCHYARD_NATS_URL_FILE]. Either option
    /// wins over both variables; setting both variables is an error.
    #[arg(long, value_name = "PATH")]
    url_file: Option<PathBuf>,
    /// A NATS credentials (.creds) file.
    #[arg(long, env = "SWITCHYARD_NATS_CREDS")]
    creds: Option<PathBuf>,
    /// CA certificate (PEM) the server's certificate must chain to.
    #[arg(long, env = "SWITCHYARD_NATS_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --tls-key.
    #[arg(long, env = "SWITCHYARD_NATS_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS; needs --tls-cert.
    #[arg(long, env = "SWITCHYARD_NATS_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long to wait for the server to answer a connect, e.g. `5s`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
}

impl NatsArgs {
    /// The server URL(s): `--url`, `--url-file`, `SWITCHYARD_NATS_URL_FILE` or
    /// `SWITCHYARD_NATS_URL`, else the default.
    fn url(&self) -> Result<String, CliError> {
        let source = secrets::UrlSource {
            url: self.url.as_deref(),
            file: self.url_file.as_deref(),
            env: "SWITCHYARD_NATS_URL",
            env_file: "SWITCHYARD_NATS_URL_FILE",
        };
        Ok(source
            .resolve(secrets::environment)?
            .unwrap_or_else(|| DEFAULT_URL.to_owned()))
    }

    /// How to connect, the URL read from its file if one is named.
    fn connect_options(&self) -> Result<ConnectOptions, CliError> {
        Ok(ConnectOptions {
            url: self.url()?,
            credentials_file: self.creds.clone(),
            tls_root_certificates: self.tls_ca.clone(),
            tls_client_certificate: self.tls_cert.clone().zip(self.tls_key.clone()),
            require_tls: self.tls_ca.is_some() || self.tls_cert.is_some(),
            connect_timeout: self.connect_timeout,
            name: Some("switchyard-cli".to_owned()),
            inbox_prefix: None,
        })
    }
}

/// `--json`, shared by every command that lists or shows something.
#[derive(Debug, Clone, Args)]
pub(crate) struct OutputArgs {
    /// Print one JSON document on stdout instead of text (field names: README, "Operating
    /// it").
    #[arg(long)]
    pub(crate) json: bool,
}

/// The registration of `plugin`, or [`CliError::NotRegistered`] naming the registry's bucket.
async fn registration_of(
    registry: &switchyard_control::registry::Registry,
    plugin: &PluginId,
) -> Result<switchyard_control::registry::Registration, CliError> {
    registry
        .get(plugin)
        .await?
        .ok_or_else(|| CliError::NotRegistered {
            plugin: plugin.clone(),
            bucket: registry.bucket().to_owned(),
        })
}

/// Prints `value` as one pretty JSON document on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    #[error(transparent)]
    ProvisionAll(#[from] switchyard_dispatcher::provision::ProvisionAllError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Batch(#[from] switchyard_bus::BatchError),
    #[error(transparent)]
    LocalServer(#[from] ServerError),
    #[error(transparent)]
    Plugin(#[from] switchyard_plugin_sdk::PluginError),
    #[error(transparent)]
    Status(#[from] switchyard_dispatcher::status::StatusError),
    #[error(transparent)]
    Dispatcher(#[from] switchyard_dispatcher::DispatcherError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Redrive(#[from] switchyard_dispatcher::redrive::RedriveError),
    /// A plugin manifest that cannot be read, or is invalid (every problem, one per line).
    #[error(transparent)]
    Manifest(#[from] ManifestLoadError),
    #[error(transparent)]
    TenantScope(#[from] EmptyTenantScope),
    #[error(transparent)]
    Auth(#[from] switchyard_control::auth::AuthError),
    #[error(transparent)]
    Console(#[from] switchyard_console::ConsoleError),
    /// A lifecycle change that met another change to the registry on every try.
    #[error(
        "gave up {what} after {attempts} tries: other changes to the registry kept coming \
         first ({last}); try again"
    )]
    KeptChanging {
        what: String,
        attempts: usize,
        last: String,
    },
    /// A lifecycle change refused for compatibility: every problem, one per line.
    #[error("refused {what}:\n{problems}")]
    Incompatible { what: String, problems: String },
    // Boxed: they are large, and every command's future holds a CliError.
    #[error(transparent)]
    Package(Box<switchyard_control::package::PackageError>),
    #[error(transparent)]
    Trust(Box<switchyard_control::package::TrustError>),
    #[error(transparent)]
    PackageStore(Box<switchyard_control::package::StoreError>),
    #[error(transparent)]
    Refused(Box<switchyard_control::package::InstallRefusal>),
    #[error(transparent)]
    Unpack(Box<switchyard_control::package::UnpackError>),
    #[error(transparent)]
    Audit(#[from] switchyard_control::audit::AuditError),
    #[error(transparent)]
    Settings(#[from] switchyard_control::settings::SettingsError),
    /// An operation's call that did not return its answer: the typed error, with its code.
    #[error("calling operation `{operation}` of plugin `{plugin}` failed: {error}")]
    CallFailed {
        plugin: PluginId,
        operation: switchyard_schemas::OperationName,
        error: switchyard_schemas::call::CallError,
    },
    #[error("no plugin `{plugin}` is registered (in `{bucket}`)")]
    NotRegistered { plugin: PluginId, bucket: String },
    #[error("the probe found {failed} of {total} cells failing: a plugin can get past its rights")]
    ProbeFailed { failed: usize, total: usize },
    #[error("{action}: {reason}")]
    Nats {
        action: &'static str,
        reason: String,
    },
    /// Both variables of one URL are set; which one is meant is not guessed.
    #[error("both {env} and {env_file} are set; unset one (or give the URL as an option)")]
    UrlTwice {
        env: &'static str,
        env_file: &'static str,
    },
    #[error(
        "no event with id `{id}` is stored in `{stream}` where the search looked: it was never \
         stored, or the stream's limits removed it"
    )]
    EventNotFound { id: String, stream: String },
    #[error(transparent)]
    Explain(#[from] switchyard_dispatcher::explain::ExplainError),
    #[error("cannot encode the JSON output: {0}")]
    Json(#[from] serde_json::Error),
    /// An argument that parsed but cannot be used, e.g. data that is not JSON.
    #[error("bad {argument}: {reason}")]
    BadArgument {
        argument: &'static str,
        reason: String,
    },
    #[error("cannot build the event: {0}")]
    Encode(#[from] switchyard_schemas::EncodeError),
    #[error("the URL file `{path}` is empty")]
    EmptyUrlFile { path: PathBuf },
    #[error("{action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<switchyard_control::lifecycle::operate::OperateError> for CliError {
    fn from(error: switchyard_control::lifecycle::operate::OperateError) -> Self {
        use switchyard_control::lifecycle::operate::OperateError;
        match error {
            OperateError::NotRegistered { plugin, bucket } => {
                CliError::NotRegistered { plugin, bucket }
            }
            OperateError::Incompatible { what, problems } => {
                CliError::Incompatible { what, problems }
            }
            OperateError::KeptChanging {
                what,
                attempts,
                last,
            } => CliError::KeptChanging {
                what,
                attempts,
                last,
            },
            OperateError::NoTarget(reason) => CliError::BadArgument {
                argument: "plugin",
                reason,
            },
            OperateError::Registry(error) => error.into(),
            OperateError::Settings(error) => error.into(),
            OperateError::BadChange(reason) => CliError::BadArgument {
                argument: "change",
                reason,
            },
            OperateError::Audit(error) => error.into(),
            OperateError::Credentials(reason) => CliError::Nats {
                action: "revoke the credential of a removed plugin",
                reason,
            },
            error @ (OperateError::NotInstalled(_)
            | OperateError::NeedsTenants(_)
            | OperateError::TenantsWithUpgrade(_)) => CliError::BadArgument {
                argument: "plugin",
                reason: error.to_string(),
            },
            OperateError::NoPackage(reason) => CliError::BadArgument {
                argument: "--package",
                reason,
            },
            OperateError::Refused(refusal) => CliError::Refused(refusal),
            OperateError::PackageStore(store) => CliError::PackageStore(store),
            OperateError::Trust(reason) => CliError::Nats {
                action: "read the trusted keys",
                reason,
            },
        }
    }
}

impl switchyard_control::lifecycle::operate::AsConflict for CliError {
    fn as_conflict(&self) -> Option<&RegistryError> {
        match self {
            CliError::Registry(conflict @ RegistryError::Conflict { .. }) => Some(conflict),
            _ => None,
        }
    }
}

impl From<switchyard_control::package::PackageError> for CliError {
    fn from(error: switchyard_control::package::PackageError) -> Self {
        Self::Package(Box::new(error))
    }
}

impl From<switchyard_control::package::TrustError> for CliError {
    fn from(error: switchyard_control::package::TrustError) -> Self {
        Self::Trust(Box::new(error))
    }
}

impl From<switchyard_control::package::StoreError> for CliError {
    fn from(error: switchyard_control::package::StoreError) -> Self {
        Self::PackageStore(Box::new(error))
    }
}

impl From<switchyard_control::package::InstallRefusal> for CliError {
    fn from(error: switchyard_control::package::InstallRefusal) -> Self {
        Self::Refused(Box::new(error))
    }
}

impl From<switchyard_control::package::UnpackError> for CliError {
    fn from(error: switchyard_control::package::UnpackError) -> Self {
        Self::Unpack(Box::new(error))
    }
}

impl CliError {
    /// A failed NATS/JetStream request, described by what was being done.
    fn nats(action: &'static str, error: impl std::fmt::Display) -> Self {
        CliError::Nats {
            action,
            reason: error.to_string(),
        }
    }
}

impl Cli {
    /// Who this process is in its telemetry: `switchyard` at this version, and for `run` the
    /// dispatcher's instance name as `service.instance.id`.
    pub(crate) fn service_identity(&mut self) -> switchyard_plugin_sdk::telemetry::ServiceIdentity {
        let identity = switchyard_plugin_sdk::telemetry::ServiceIdentity::new(
            "switchyard",
            env!("CARGO_PKG_VERSION"),
        );
        match &mut self.command {
            Command::Run(args) => identity.with_instance_id(args.settle_instance()),
            _ => identity,
        }
    }

    /// Where the command's logs go when not to stderr: `switchyard dev` writes them into its
    /// data directory, since its live view owns the terminal.
    pub(crate) fn log_file(&self) -> Option<PathBuf> {
        match &self.command {
            Command::Dev(args) => Some(args.log_file()),
            _ => None,
        }
    }
}

/// Runs `switchyard plugins <args>` in this process, as if typed (how `dev --watch` installs
/// its builds).
pub(crate) async fn run_plugins(args: &[&str]) -> Result<(), CliError> {
    let cli = Cli::try_parse_from(
        ["switchyard", "plugins"]
            .into_iter()
            .chain(args.iter().copied()),
    )
    .map_err(|e| CliError::BadArgument {
        argument: "plugins",
        reason: e.to_string(),
    })?;
    match cli.command {
        Command::Plugins(command) => Box::pin(plugins::run(command)).await,
        _ => Err(CliError::BadArgument {
            argument: "plugins",
            reason: "not a plugins command".to_owned(),
        }),
    }
}

/// Runs the command the arguments name.
pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Host(args) => Box::pin(host::run(args)).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Streams(command) => streams::run(command).await,
        // Boxed: its future holds manifests, the checks, the write, its audit entry and its event.
        Command::Plugins(command) => Box::pin(plugins::run(command)).await,
        Command::Dlq(command) => dlq::run(command).await,
        Command::Publish(args) => publish::run(args).await,
        Command::Call(args) => call::run(args).await,
        Command::Services(command) => services::run(command).await,
        Command::Console(args) => Box::pin(console::run(args)).await,
        Command::Operators(command) => operators::run(command).await,
        Command::Events(command) => events::run(command).await,
        Command::Explain(args) => explain::run(args).await,
        // Boxed: the auth service's future is large, and only this command needs it.
        Command::Auth(command) => Box::pin(auth::run(command)).await,
        Command::Package(command) => package::run(command).await,
        Command::Trust(command) => trust::run(command).await,
        Command::Settings(command) => settings::run(command).await,
        Command::Catalog(args) => catalog::run(args).await,
        Command::Audit(args) => audit::run(args).await,
    }
}
