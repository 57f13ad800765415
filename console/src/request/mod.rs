//! The calls of the management API: what each one asks, the role it needs, and how a NATS
//! request's verb and JSON body become one. HTTP routes build the same values.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use switchyard_control::audit::Action;
use switchyard_control::auth::operators::{OperatorName, Role};
use switchyard_control::package::PublisherKey;
use switchyard_control::registry::TenantScope;
use switchyard_schemas::{PluginId, ServiceName, Tenant};

use crate::error::ApiError;

pub mod deploy;

pub use deploy::{ExplainFrom, Install, InstallSource};

/// The most items a list answers; `limit` asks for fewer.
pub const MAX_LIMIT: usize = 1000;
/// How many items a list answers when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;

/// One call of the management API.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Who is calling.
    Whoami,
    /// Every plugin's summary, approvals waiting, dead letters, dispatchers.
    Overview,
    /// The overview, as a stream (HTTP only).
    Live,
    /// Every plugin's summary.
    ListPlugins,
    /// One plugin in full.
    ShowPlugin(PluginId),
    /// Approve what waits for approval.
    Approve {
        /// The plugin.
        plugin: PluginId,
        /// Leave a new installation disabled.
        disabled: bool,
    },
    /// Reject what waits for approval.
    Reject(PluginId),
    /// Enable the plugin.
    Enable(PluginId),
    /// Disable the plugin.
    Disable(PluginId),
    /// Roll the plugin back.
    Rollback {
        /// The plugin.
        plugin: PluginId,
        /// The revision; the latest earlier version when absent.
        to: Option<u64>,
    },
    /// Remove the plugin (and with `cascade` the plugins that require it).
    RemovePlugin {
        /// The plugin.
        plugin: PluginId,
        /// Remove the plugins that require it too.
        cascade: bool,
    },
    /// Issue the plugin a new secret (the earlier one stops working).
    IssueCredentials(PluginId),
    /// Revoke the plugin's secret: its workers are refused.
    RevokeCredentials(PluginId),
    /// What is in force for the plugin's settings.
    ShowSettings(PluginId),
    /// Set and unset plain settings of the plugin.
    ChangeSettings {
        /// The plugin.
        plugin: PluginId,
        /// `name` = value, each as the CLI's `NAME=VALUE` reads it.
        set: Vec<(String, String)>,
        /// Names to unset (plain or secret).
        unset: Vec<String>,
    },
    /// Set a secret of the plugin.
    SetSecret {
        /// The plugin.
        plugin: PluginId,
        /// The secret's name.
        name: String,
        /// Its value.
        value: String,
    },
    /// Call a plugin's operation, as the operator.
    CallOperation {
        /// Where.
        target: switchyard_bus::CallTarget,
        /// The request, as JSON.
        data: serde_json::Value,
        /// How long to wait (default: the operation's timeout).
        timeout: Option<std::time::Duration>,
        /// The most attempts (idempotent operations only).
        attempts: Option<u32>,
    },
    /// What waits for approval.
    ListApprovals,
    /// Dead letters.
    ListDeadLetters(DeadLetterQuery),
    /// One dead letter in full.
    ShowDeadLetter(u64),
    /// Replay dead letters to the plugin that failed them.
    Replay {
        /// The plugin.
        plugin: PluginId,
        /// Which (all of the plugin's when empty).
        sequences: Vec<u64>,
    },
    /// Delete dead letters without replay.
    Purge {
        /// The plugin.
        plugin: PluginId,
        /// Which; empty only with `all`.
        sequences: Vec<u64>,
        /// All of the plugin's.
        all: bool,
    },
    /// The audit log.
    ListAudit(AuditQuery),
    /// The operators.
    ListOperators,
    /// Add an operator, or give one a new token and role.
    AddOperator {
        /// Its name.
        name: OperatorName,
        /// Its role.
        role: Role,
    },
    /// Remove an operator.
    RemoveOperator(OperatorName),
    /// The trusted publisher keys.
    ListTrust,
    /// Trust a publisher key (or rename a trusted one).
    AddTrust {
        /// The key.
        key: PublisherKey,
        /// Who it is.
        name: String,
    },
    /// Stop trusting a publisher key.
    RemoveTrust(PublisherKey),
    /// The published packages.
    Catalog,
    /// The service logins.
    ListServices,
    /// Add a service login (or give one new tenants and a new secret).
    AddService {
        /// Its name.
        name: ServiceName,
        /// The tenants it acts for.
        tenants: TenantScope,
    },
    /// Remove a service login.
    RemoveService(ServiceName),
    /// Install a plugin, or upgrade an installed one.
    Install(Box<Install>),
    /// Publish a package (its bytes) to the package store.
    PublishPackage {
        /// The package file's bytes.
        package: bytes::Bytes,
        /// Replace another package published as the same version.
        replace: bool,
    },
    /// The streams: settings, what they hold, placement.
    StreamsInfo,
    /// Create or update the streams and buckets.
    Provision(switchyard_dispatcher::provision::Limits),
    /// Where an event is for each plugin subscribed to its type.
    Explain {
        /// The event's id.
        event_id: switchyard_schemas::EventId,
        /// Where the search starts.
        from: ExplainFrom,
    },
    /// The newest lines a plugin's workers wrote.
    Logs {
        /// The plugin.
        plugin: PluginId,
        /// How many.
        lines: usize,
    },
    /// Publish an event.
    PublishEvent(Box<switchyard_schemas::Event>),
}

/// Which dead letters `dlq.list` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// Only this plugin's.
    pub plugin: Option<String>,
    /// Only of this error code.
    pub code: Option<String>,
    /// Only of this tenant.
    pub tenant: Option<String>,
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<usize>,
}

/// Which audit entries `audit.list` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only about this target (a plugin id, `operator:NAME`, …).
    pub plugin: Option<String>,
    /// Only of this action.
    pub action: Option<String>,
    /// At most this many, newest first (default 100, at most 1,000).
    pub limit: Option<usize>,
    /// Include the records of reads (`api_viewed`), hidden by default.
    #[serde(default)]
    pub include_reads: bool,
}

impl AuditQuery {
    /// The action asked for, checked.
    ///
    /// # Errors
    /// [`ApiError::bad_request`] naming the unknown action.
    pub fn action(&self) -> Result<Option<Action>, ApiError> {
        self.action
            .as_deref()
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.parse::<Action>()
                    .map_err(|e| ApiError::bad_request(e.to_string()))
            })
            .transpose()
    }
}

/// The `limit` asked for, within bounds.
pub fn limit(asked: Option<usize>) -> usize {
    asked.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// A plugin id from a request, checked.
///
/// # Errors
/// [`ApiError::bad_request`] naming the bad id.
pub fn plugin_id(raw: &str) -> Result<PluginId, ApiError> {
    PluginId::new(raw).map_err(|e| ApiError::bad_request(format!("bad plugin id: {e}")))
}

/// An operator name from a request, checked.
///
/// # Errors
/// [`ApiError::bad_request`].
pub fn operator_name(raw: &str) -> Result<OperatorName, ApiError> {
    raw.parse()
        .map_err(|e: switchyard_control::auth::operators::BadOperatorName| {
            ApiError::bad_request(e.to_string())
        })
}

/// The body of a verb without arguments: `{}` (or nothing).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginArgs {
    plugin: String,
}

/// The body of an approval.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveArgs {
    #[serde(default)]
    plugin: String,
    /// Leave a new installation disabled.
    #[serde(default)]
    pub disabled: bool,
}

/// The body (NATS) or query (HTTP) of a removal.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveArgs {
    #[serde(default)]
    plugin: String,
    /// Remove the plugins that require it too.
    #[serde(default)]
    pub cascade: bool,
}

/// The body of `settings.change`: values to set (a string is read as the CLI reads the text
/// after `NAME=`; a number, boolean or array as its JSON text) and names to unset.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsArgs {
    #[serde(default)]
    plugin: String,
    /// Values to set.
    #[serde(default)]
    pub set: serde_json::Map<String, serde_json::Value>,
    /// Names to unset.
    #[serde(default)]
    pub unset: Vec<String>,
}

/// The body of `settings.set-secret`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretArgs {
    #[serde(default)]
    plugin: String,
    /// The secret's name.
    #[serde(default)]
    pub name: String,
    /// Its value.
    pub value: String,
}

/// The body of `operations.call`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallArgs {
    /// The plugin.
    #[serde(default)]
    pub plugin: String,
    /// The operation.
    #[serde(default)]
    pub operation: String,
    /// The tenant it is called for.
    pub tenant: String,
    /// The request (default `{}`).
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    /// How long to wait, in milliseconds (at most 60,000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The most attempts (1 to 10; idempotent operations only).
    #[serde(default)]
    pub attempts: Option<u32>,
}

/// The body of a rollback.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackArgs {
    #[serde(default)]
    plugin: String,
    /// The revision.
    pub to: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SequenceArgs {
    sequence: u64,
}

/// The body of a replay or a purge.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectionArgs {
    /// The plugin.
    pub plugin: String,
    /// Which dead letters.
    #[serde(default)]
    pub sequences: Vec<u64>,
    /// All of the plugin's (purge).
    #[serde(default)]
    pub all: bool,
}

/// The body of `operators.add`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorArgs {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameArgs {
    name: String,
}

/// The body of `trust.add`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustArgs {
    /// The publisher's public key.
    pub key: String,
    /// Who it is.
    pub name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyArgs {
    key: String,
}

/// The body of `services.add`: tenants, or every tenant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceArgs {
    /// Its name.
    pub name: String,
    /// The tenants it acts for.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Every tenant, including later ones.
    #[serde(default)]
    pub all_tenants: bool,
}

/// A publisher key from a request, checked.
///
/// # Errors
/// [`ApiError::bad_request`].
pub fn publisher_key(raw: &str) -> Result<PublisherKey, ApiError> {
    PublisherKey::new(raw.trim()).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A service name from a request, checked.
///
/// # Errors
/// [`ApiError::bad_request`].
pub fn service_name(raw: &str) -> Result<ServiceName, ApiError> {
    ServiceName::new(raw).map_err(|e| ApiError::bad_request(format!("bad service name: {e}")))
}

/// Reads a JSON body (empty means `{}`).
///
/// # Errors
/// [`ApiError::bad_request`] naming what is wrong.
pub fn body<T: DeserializeOwned>(verb: &str, bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("bad body for `{verb}`: {e}")))
}

impl Request {
    /// Every NATS verb, as served.
    pub const VERBS: [&'static str; 41] = [
        "whoami",
        "overview",
        "plugins.list",
        "plugins.show",
        "plugins.approve",
        "plugins.reject",
        "plugins.enable",
        "plugins.disable",
        "plugins.rollback",
        "plugins.remove",
        "plugins.credentials.issue",
        "plugins.credentials.revoke",
        "settings.show",
        "settings.change",
        "settings.set-secret",
        "operations.call",
        "approvals.list",
        "dlq.list",
        "dlq.show",
        "dlq.replay",
        "dlq.purge",
        "audit.list",
        "operators.list",
        "operators.add",
        "operators.remove",
        "trust.list",
        "trust.add",
        "trust.remove",
        "catalog.list",
        "services.list",
        "services.add",
        "services.remove",
        "plugins.install",
        "plugins.upgrade",
        "packages.publish",
        "streams.info",
        "streams.provision",
        "explain",
        "logs",
        "events.publish",
        "live",
    ];

    /// The request a NATS `verb` with this JSON body asks.
    ///
    /// # Errors
    /// [`ApiError`] `not-found` for an unknown verb, `bad-request` for a body that does
    /// not fit it.
    pub fn parse(verb: &str, bytes: &[u8]) -> Result<Self, ApiError> {
        let plugin = |bytes| -> Result<PluginId, ApiError> {
            plugin_id(&body::<PluginArgs>(verb, bytes)?.plugin)
        };
        let none = |request: Request| -> Result<Request, ApiError> {
            body::<NoArgs>(verb, bytes)?;
            Ok(request)
        };
        Ok(match verb {
            "whoami" => none(Request::Whoami)?,
            "overview" => none(Request::Overview)?,
            "plugins.list" => none(Request::ListPlugins)?,
            "plugins.show" => Request::ShowPlugin(plugin(bytes)?),
            "plugins.approve" => {
                let args: ApproveArgs = body(verb, bytes)?;
                Request::Approve {
                    plugin: plugin_id(&args.plugin)?,
                    disabled: args.disabled,
                }
            }
            "plugins.reject" => Request::Reject(plugin(bytes)?),
            "plugins.enable" => Request::Enable(plugin(bytes)?),
            "plugins.disable" => Request::Disable(plugin(bytes)?),
            "plugins.rollback" => {
                let args: RollbackArgs = body(verb, bytes)?;
                Request::Rollback {
                    plugin: plugin_id(&args.plugin)?,
                    to: args.to,
                }
            }
            "plugins.remove" => {
                let args: RemoveArgs = body(verb, bytes)?;
                Request::RemovePlugin {
                    plugin: plugin_id(&args.plugin)?,
                    cascade: args.cascade,
                }
            }
            "plugins.credentials.issue" => Request::IssueCredentials(plugin(bytes)?),
            "plugins.credentials.revoke" => Request::RevokeCredentials(plugin(bytes)?),
            "settings.show" => Request::ShowSettings(plugin(bytes)?),
            "settings.change" => {
                let args: SettingsArgs = body(verb, bytes)?;
                let plugin = plugin_id(&args.plugin)?;
                Request::change_settings(plugin, args)?
            }
            "settings.set-secret" => {
                let args: SecretArgs = body(verb, bytes)?;
                let plugin = plugin_id(&args.plugin)?;
                Request::set_secret(plugin, args.name, args.value)?
            }
            "operations.call" => Request::call(body(verb, bytes)?)?,
            "approvals.list" => none(Request::ListApprovals)?,
            "dlq.list" => Request::ListDeadLetters(body(verb, bytes)?),
            "dlq.show" => Request::ShowDeadLetter(body::<SequenceArgs>(verb, bytes)?.sequence),
            "dlq.replay" => Request::replay(body(verb, bytes)?)?,
            "dlq.purge" => Request::purge(body(verb, bytes)?)?,
            "audit.list" => Request::ListAudit(body(verb, bytes)?),
            "operators.list" => none(Request::ListOperators)?,
            "operators.add" => Request::add_operator(body(verb, bytes)?)?,
            "operators.remove" => {
                Request::RemoveOperator(operator_name(&body::<NameArgs>(verb, bytes)?.name)?)
            }
            "trust.list" => none(Request::ListTrust)?,
            "trust.add" => Request::add_trust(body(verb, bytes)?)?,
            "trust.remove" => {
                Request::RemoveTrust(publisher_key(&body::<KeyArgs>(verb, bytes)?.key)?)
            }
            "catalog.list" => none(Request::Catalog)?,
            "services.list" => none(Request::ListServices)?,
            "services.add" => Request::add_service(body(verb, bytes)?)?,
            "services.remove" => {
                Request::RemoveService(service_name(&body::<NameArgs>(verb, bytes)?.name)?)
            }
            "plugins.install" => Request::Install(Box::new(
                body::<deploy::InstallArgs>(verb, bytes)?.check(None)?,
            )),
            "plugins.upgrade" => {
                let args: deploy::InstallArgs = body(verb, bytes)?;
                let plugin = plugin_id(args.plugin.as_deref().unwrap_or_default())?;
                Request::Install(Box::new(args.check(Some(plugin))?))
            }
            "packages.publish" => Request::PublishPackage {
                package: bytes::Bytes::copy_from_slice(bytes),
                replace: false,
            },
            "streams.info" => none(Request::StreamsInfo)?,
            "streams.provision" => {
                Request::Provision(body::<deploy::ProvisionArgs>(verb, bytes)?.check()?)
            }
            "explain" => {
                let (event_id, from) = body::<deploy::ExplainArgs>(verb, bytes)?.check()?;
                Request::Explain { event_id, from }
            }
            "logs" => Request::logs(body(verb, bytes)?)?,
            "events.publish" => {
                Request::PublishEvent(Box::new(body::<deploy::PublishArgs>(verb, bytes)?.check()?))
            }
            other => {
                return Err(ApiError::new(
                    crate::ErrorKind::NotFound,
                    format!(
                        "no verb `{}` (one of: {})",
                        other.chars().take(64).collect::<String>(),
                        Self::VERBS.join(", ")
                    ),
                ))
            }
        })
    }

    /// A replay of `args`.
    ///
    /// # Errors
    /// [`ApiError::bad_request`].
    pub fn replay(args: SelectionArgs) -> Result<Self, ApiError> {
        if args.all {
            return Err(ApiError::bad_request(
                "a replay takes `sequences`, or none for all of the plugin's; `all` is for a purge",
            ));
        }
        Ok(Request::Replay {
            plugin: plugin_id(&args.plugin)?,
            sequences: args.sequences,
        })
    }

    /// A purge of `args`: sequences, or `all`, not both and not neither.
    ///
    /// # Errors
    /// [`ApiError::bad_request`].
    pub fn purge(args: SelectionArgs) -> Result<Self, ApiError> {
        if args.all != args.sequences.is_empty() {
            return Err(ApiError::bad_request(
                "a purge takes either `sequences` or `all: true`",
            ));
        }
        Ok(Request::Purge {
            plugin: plugin_id(&args.plugin)?,
            sequences: args.sequences,
            all: args.all,
        })
    }

    /// A read of a plugin's logs, checked.
    ///
    /// # Errors
    /// [`ApiError::bad_request`].
    pub fn logs(args: deploy::LogsArgs) -> Result<Self, ApiError> {
        let lines = args.lines.unwrap_or(100);
        if lines == 0 || lines > deploy::MAX_LOG_LINES {
            return Err(ApiError::bad_request(format!(
                "`lines` is 1 to {}",
                deploy::MAX_LOG_LINES
            )));
        }
        Ok(Request::Logs {
            plugin: plugin_id(&args.plugin)?,
            lines,
        })
    }

    /// An operator to add, checked.
    ///
    /// # Errors
    /// [`ApiError::bad_request`].
    pub fn add_operator(args: OperatorArgs) -> Result<Self, ApiError> {
        Ok(Request::AddOperator {
            name: operator_name(&args.name)?,
            role: args.role.parse().map_err(
                |e: switchyard_control::auth::operators::UnknownRole| {
                    ApiError::bad_request(e.to_string())
                },
            )?,
        })
    }

    /// A settings change of `plugin`, checked: something to do, values that are text,
    /// numbers, booleans or arrays.
    ///
    /// # Errors
    /// [`ApiError::bad_request`].
    pub fn change_settings(plugin: PluginId, args: SettingsArgs) -> Result<Self, ApiError> {
        if args.set.is_empty() && args.unset.is_empty() {
            return Err(ApiError::bad_request(
                "a settings change takes `set` (name: value) or `unset` (names), or both",
            ));
        }
        let set = args
            .set
            .into_iter()
            .map(|(name, value)| {
                let text = match value {
                    serde_json::Value::String(text) => text,
                    serde_json::Value::Null | serde_json::Value::Object(_) => {
                        return Err(ApiError::bad_request(format!(
                            "the value of `{name}` is not text, a number, a boolean or an array"
                        )))
                    }
                    other => other.to_string(),
                };
                Ok((name, text))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Request::ChangeSettings {
            plugin,
            set,
            unset: args.unset,
        })
    }

    /// A secret to set, checked: a name and a value.
    ///
    /// # Errors
    /// [`ApiError::bad_request`].
    pub fn set_secret(plugin: PluginId, name: String, value: String) -> Result<Self, ApiError> {
        if name.trim().is_empty() {
            return Err(ApiError::bad_request("a secret needs a `name`"));
        }
        Ok(Request::SetSecret {
            plugin,
            name,
            value,
        })
    }

    /// An operation's call, checked.
    ///
    /// # Errors
    /// [`ApiError::bad_request`].
    pub fn call(args: CallArgs) -> Result<Self, ApiError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            ApiError::bad_request(format!("bad {what}: {e}"))
        };
        let timeout = match args.timeout_ms {
            Some(0) | Some(60_001..) => {
                return Err(ApiError::bad_request("`timeout_ms` is 1 to 60000"))
            }
            other => other.map(std::time::Duration::from_millis),
        };
        if matches!(args.attempts, Some(n) if n == 0 || n > switchyard_schemas::call::MAX_CALL_ATTEMPTS)
        {
            return Err(ApiError::bad_request(format!(
                "`attempts` is 1 to {}",
                switchyard_schemas::call::MAX_CALL_ATTEMPTS
            )));
        }
        Ok(Request::CallOperation {
            target: switchyard_bus::CallTarget {
                tenant: Tenant::new(&args.tenant).map_err(|e| bad("tenant", &e))?,
                plugin: plugin_id(&args.plugin)?,
                operation: switchyard_schemas::OperationName::new(&args.operation)
                    .map_err(|e| bad("operation", &e))?,
            },
            data: args.data.unwrap_or_else(|| serde_json::json!({})),
            timeout,
            attempts: args.attempts,
        })
    }

    /// A key to trust, checked.
    ///
    /// # Errors
    /// [`ApiError::bad_request`].
    pub fn add_trust(args: TrustArgs) -> Result<Self, ApiError> {
        let name = args.name.trim();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "a trusted key needs a `name`: 1 to 128 bytes, no control characters",
            ));
        }
        Ok(Request::AddTrust {
            key: publisher_key(&args.key)?,
            name: name.to_owned(),
        })
    }

    /// A service login to add, checked: `tenants` or `all_tenants`, not both, not neither.
    ///
    /// # Errors
    /// [`ApiError::bad_request`].
    pub fn add_service(args: ServiceArgs) -> Result<Self, ApiError> {
        let tenants = match (args.all_tenants, args.tenants.is_empty()) {
            (true, true) => TenantScope::All,
            (false, false) => deploy::tenant_scope(&args.tenants)?,
            _ => {
                return Err(ApiError::bad_request(
                    "a service takes either `tenants` or `all_tenants: true`",
                ))
            }
        };
        Ok(Request::AddService {
            name: service_name(&args.name)?,
            tenants,
        })
    }

    /// The NATS verb of this request.
    pub fn verb(&self) -> &'static str {
        match self {
            Request::Whoami => "whoami",
            Request::Overview => "overview",
            Request::Live => "live",
            Request::ListPlugins => "plugins.list",
            Request::ShowPlugin(_) => "plugins.show",
            Request::Approve { .. } => "plugins.approve",
            Request::Reject(_) => "plugins.reject",
            Request::Enable(_) => "plugins.enable",
            Request::Disable(_) => "plugins.disable",
            Request::Rollback { .. } => "plugins.rollback",
            Request::RemovePlugin { .. } => "plugins.remove",
            Request::IssueCredentials(_) => "plugins.credentials.issue",
            Request::RevokeCredentials(_) => "plugins.credentials.revoke",
            Request::ShowSettings(_) => "settings.show",
            Request::ChangeSettings { .. } => "settings.change",
            Request::SetSecret { .. } => "settings.set-secret",
            Request::CallOperation { .. } => "operations.call",
            Request::ListApprovals => "approvals.list",
            Request::ListDeadLetters(_) => "dlq.list",
            Request::ShowDeadLetter(_) => "dlq.show",
            Request::Replay { .. } => "dlq.replay",
            Request::Purge { .. } => "dlq.purge",
            Request::ListAudit(_) => "audit.list",
            Request::ListOperators => "operators.list",
            Request::AddOperator { .. } => "operators.add",
            Request::RemoveOperator(_) => "operators.remove",
            Request::ListTrust => "trust.list",
            Request::AddTrust { .. } => "trust.add",
            Request::RemoveTrust(_) => "trust.remove",
            Request::Catalog => "catalog.list",
            Request::ListServices => "services.list",
            Request::AddService { .. } => "services.add",
            Request::RemoveService(_) => "services.remove",
            Request::Install(install) if install.upgrade.is_some() => "plugins.upgrade",
            Request::Install(_) => "plugins.install",
            Request::PublishPackage { .. } => "packages.publish",
            Request::StreamsInfo => "streams.info",
            Request::Provision(_) => "streams.provision",
            Request::Explain { .. } => "explain",
            Request::Logs { .. } => "logs",
            Request::PublishEvent(_) => "events.publish",
        }
    }

    /// The least role that may make this call.
    pub fn role(&self) -> Role {
        match self {
            Request::Install(install) if install.sets_trust_aside() => Role::Admin,
            Request::PublishPackage { replace: true, .. } => Role::Admin,
            Request::Approve { .. }
            | Request::Reject(_)
            | Request::Enable(_)
            | Request::Disable(_)
            | Request::Rollback { .. }
            | Request::ChangeSettings { .. }
            | Request::CallOperation { .. }
            | Request::Install(_)
            | Request::PublishPackage { .. }
            | Request::PublishEvent(_)
            | Request::Replay { .. } => Role::Operator,
            Request::Purge { .. }
            | Request::ListOperators
            | Request::AddOperator { .. }
            | Request::RemoveOperator(_)
            | Request::RemovePlugin { .. }
            | Request::IssueCredentials(_)
            | Request::RevokeCredentials(_)
            | Request::SetSecret { .. }
            | Request::AddTrust { .. }
            | Request::RemoveTrust(_)
            | Request::AddService { .. }
            | Request::RemoveService(_)
            | Request::Provision(_) => Role::Admin,
            _ => Role::Viewer,
        }
    }

    /// Whether the call only reads (its audit record is `api_viewed`).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Request::Whoami
                | Request::Overview
                | Request::Live
                | Request::ListPlugins
                | Request::ShowPlugin(_)
                | Request::ListApprovals
                | Request::ListDeadLetters(_)
                | Request::ShowDeadLetter(_)
                | Request::ListAudit(_)
                | Request::ListOperators
                | Request::ListTrust
                | Request::Catalog
                | Request::ListServices
                | Request::ShowSettings(_)
                | Request::StreamsInfo
                | Request::Explain { .. }
                | Request::Logs { .. }
        )
    }

    /// What the call is about, for its audit record: the verb and its main argument.
    pub fn target(&self) -> String {
        let about = match self {
            Request::ShowPlugin(p)
            | Request::Reject(p)
            | Request::Enable(p)
            | Request::Disable(p)
            | Request::Approve { plugin: p, .. }
            | Request::Rollback { plugin: p, .. }
            | Request::RemovePlugin { plugin: p, .. }
            | Request::IssueCredentials(p)
            | Request::RevokeCredentials(p)
            | Request::ShowSettings(p)
            | Request::ChangeSettings { plugin: p, .. }
            | Request::SetSecret { plugin: p, .. }
            | Request::Replay { plugin: p, .. }
            | Request::Purge { plugin: p, .. }
            | Request::Logs { plugin: p, .. } => Some(p.to_string()),
            Request::Install(install) => Some(install.plugin().to_string()),
            Request::Explain { event_id, .. } => Some(event_id.to_string()),
            Request::PublishEvent(event) => Some(format!(
                "{} for {}",
                event.attributes.event_type, event.attributes.tenant
            )),
            Request::ShowDeadLetter(sequence) => Some(sequence.to_string()),
            Request::CallOperation { target, .. } => {
                Some(format!("{}.{}", target.plugin, target.operation))
            }
            Request::AddOperator { name, .. } | Request::RemoveOperator(name) => {
                Some(format!("operator:{name}"))
            }
            Request::AddTrust { key, .. } | Request::RemoveTrust(key) => Some(key.to_string()),
            Request::AddService { name, .. } | Request::RemoveService(name) => {
                Some(format!("service:{name}"))
            }
            _ => None,
        };
        match about {
            Some(about) => format!("{} {about}", self.verb()),
            None => self.verb().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verb_parses_with_its_arguments_and_names_itself() {
        let pair = switchyard_control::package::PublisherKeyPair::generate();
        let key = pair.public_key();
        let trust_add = format!(r#"{{"key":"{key}","name":"Acme"}}"#);
        let trust_remove = format!(r#"{{"key":"{key}"}}"#);
        let bodies: [(&str, &str); 27] = [
            (
                "plugins.install",
                r#"{"package":"audit-log@1.2.0","tenants":["acme"],"approve":true}"#,
            ),
            (
                "plugins.upgrade",
                r#"{"plugin":"audit-log","package":"audit-log"}"#,
            ),
            ("explain", r#"{"event_id":"e-1","from_sequence":4}"#),
            ("logs", r#"{"plugin":"audit-log","lines":20}"#),
            (
                "events.publish",
                r#"{"tenant":"acme","type":"order.created","data":{"n":1}}"#,
            ),
            ("plugins.show", r#"{"plugin":"audit-log"}"#),
            (
                "plugins.approve",
                r#"{"plugin":"audit-log","disabled":true}"#,
            ),
            ("plugins.reject", r#"{"plugin":"audit-log"}"#),
            ("plugins.enable", r#"{"plugin":"audit-log"}"#),
            ("plugins.disable", r#"{"plugin":"audit-log"}"#),
            ("plugins.rollback", r#"{"plugin":"audit-log","to":3}"#),
            ("dlq.show", r#"{"sequence":7}"#),
            ("dlq.replay", r#"{"plugin":"audit-log"}"#),
            ("dlq.purge", r#"{"plugin":"audit-log","all":true}"#),
            ("operators.add", r#"{"name":"bob","role":"viewer"}"#),
            ("operators.remove", r#"{"name":"bob"}"#),
            ("plugins.remove", r#"{"plugin":"audit-log","cascade":true}"#),
            ("plugins.credentials.issue", r#"{"plugin":"audit-log"}"#),
            ("plugins.credentials.revoke", r#"{"plugin":"audit-log"}"#),
            ("settings.show", r#"{"plugin":"audit-log"}"#),
            (
                "operations.call",
                r#"{"plugin":"tax-rates","operation":"rate","tenant":"acme","data":{"region":"eu"}}"#,
            ),
            (
                "settings.change",
                r#"{"plugin":"audit-log","set":{"retries":5,"mode":"fast"},"unset":["x"]}"#,
            ),
            (
                "settings.set-secret",
                r#"{"plugin":"audit-log","name":"api_key","value":"s3cret"}"#,
            ),
            ("trust.add", &trust_add),
            ("trust.remove", &trust_remove),
            ("services.add", r#"{"name":"billing","tenants":["acme"]}"#),
            ("services.remove", r#"{"name":"billing"}"#),
        ];
        for verb in Request::VERBS.iter().filter(|v| **v != "live") {
            let body = bodies
                .iter()
                .find(|(v, _)| v == verb)
                .map_or("", |(_, b)| *b);
            let request =
                Request::parse(verb, body.as_bytes()).unwrap_or_else(|e| panic!("{verb}: {e}"));
            assert_eq!(request.verb(), *verb);
        }
    }

    #[test]
    fn bad_bodies_are_refused_naming_the_problem() {
        for (verb, body, says) in [
            ("plugins.show", "{}", "missing field `plugin`"),
            ("plugins.show", r#"{"plugin":"Bad Id"}"#, "bad plugin id"),
            (
                "plugins.show",
                r#"{"plugin":"a","extra":1}"#,
                "unknown field",
            ),
            (
                "dlq.purge",
                r#"{"plugin":"a"}"#,
                "either `sequences` or `all",
            ),
            (
                "dlq.purge",
                r#"{"plugin":"a","all":true,"sequences":[1]}"#,
                "either",
            ),
            (
                "dlq.replay",
                r#"{"plugin":"a","all":true}"#,
                "`all` is for a purge",
            ),
            (
                "operators.add",
                r#"{"name":"bob","role":"root"}"#,
                "unknown role",
            ),
            (
                "operators.add",
                r#"{"name":"Bob","role":"admin"}"#,
                "bad operator name",
            ),
            ("dlq.show", "\"seven\"", "bad body"),
            ("plugins.list", "not json", "bad body"),
            ("overview", r#"{"x":1}"#, "unknown field"),
            ("plugins.show", "\u{0}\u{ff}", "bad body"),
            (
                "plugins.install",
                r#"{"tenants":["acme"]}"#,
                "either `package`",
            ),
            (
                "plugins.install",
                r#"{"package":"a","manifest":"x"}"#,
                "either `package`",
            ),
            (
                "plugins.install",
                r#"{"package":"a@x.y"}"#,
                "bad package version",
            ),
            (
                "plugins.install",
                r#"{"manifest":"[plugin]"}"#,
                "manifest is not valid",
            ),
            (
                "plugins.install",
                r#"{"package":"a","tenants":["acme"],"all_tenants":true}"#,
                "not both",
            ),
            (
                "plugins.upgrade",
                r#"{"plugin":"b","package":"a@1.0.0"}"#,
                "cannot install a",
            ),
            (
                "streams.provision",
                r#"{"replicas":7}"#,
                "`replicas` is 1 to 5",
            ),
            (
                "streams.provision",
                r#"{"events_max_bytes":0}"#,
                "at least 1000000 bytes",
            ),
            ("explain", r#"{"event_id":""}"#, "bad event id"),
            (
                "explain",
                r#"{"event_id":"e","since":"2026-01-01T00:00:00Z","from_sequence":1}"#,
                "not both",
            ),
            (
                "explain",
                r#"{"event_id":"e","since":"yesterday"}"#,
                "RFC 3339",
            ),
            (
                "logs",
                r#"{"plugin":"a","lines":0}"#,
                "`lines` is 1 to 1000",
            ),
            (
                "logs",
                r#"{"plugin":"a","lines":1001}"#,
                "`lines` is 1 to 1000",
            ),
            (
                "events.publish",
                r#"{"tenant":"acme","type":"a..b"}"#,
                "bad type",
            ),
            (
                "events.publish",
                r#"{"tenant":"","type":"a"}"#,
                "bad tenant",
            ),
            (
                "events.publish",
                r#"{"tenant":"acme","type":"a","content_type":"xml"}"#,
                "bad content_type",
            ),
            (
                "events.publish",
                r#"{"tenant":"acme","type":"a","subject":"x\ny"}"#,
                "bad event",
            ),
        ] {
            let error = Request::parse(verb, body.as_bytes()).unwrap_err();
            assert_eq!(error.kind, crate::ErrorKind::BadRequest, "{verb} {body}");
            assert!(
                error.message.contains(says),
                "{verb} {body}: {}",
                error.message
            );
        }
        let unknown = Request::parse("plugins.explode", b"{}").unwrap_err();
        assert_eq!(unknown.kind, crate::ErrorKind::NotFound);
    }

    #[test]
    fn roles_grow_with_what_a_call_changes() {
        let plugin = plugin_id("p").unwrap();
        assert_eq!(Request::ListPlugins.role(), Role::Viewer);
        assert_eq!(Request::Enable(plugin.clone()).role(), Role::Operator);
        assert_eq!(
            Request::Replay {
                plugin: plugin.clone(),
                sequences: vec![]
            }
            .role(),
            Role::Operator
        );
        assert_eq!(
            Request::Purge {
                plugin,
                sequences: vec![1],
                all: false
            }
            .role(),
            Role::Admin
        );
        assert_eq!(Request::ListOperators.role(), Role::Admin);
        let install = |body: &str| Request::parse("plugins.install", body.as_bytes()).unwrap();
        let stored = r#"{"package":"audit-log","tenants":["acme"]}"#;
        assert_eq!(install(stored).role(), Role::Operator);
        let unsigned = r#"{"package":"audit-log","tenants":["acme"],"allow_unsigned":true}"#;
        assert_eq!(install(unsigned).role(), Role::Admin);
        let untrusted = r#"{"package":"audit-log","all_tenants":true,"allow_untrusted":true}"#;
        assert_eq!(install(untrusted).role(), Role::Admin);
        let manifest = format!(
            r#"{{"manifest":{},"all_tenants":true}}"#,
            serde_json::to_string(MANIFEST).unwrap()
        );
        assert_eq!(install(&manifest).role(), Role::Admin);
        assert_eq!(Request::StreamsInfo.role(), Role::Viewer);
        assert_eq!(
            Request::Provision(switchyard_dispatcher::provision::Limits::default()).role(),
            Role::Admin
        );
        let publish = |replace| Request::PublishPackage {
            package: bytes::Bytes::new(),
            replace,
        };
        assert_eq!(publish(false).role(), Role::Operator);
        assert_eq!(publish(true).role(), Role::Admin);
    }

    const MANIFEST: &str = r#"
[plugin]
id = "audit-log"
version = "1.0.0"
core = "^0.1"

[[subscriptions]]
name = "all"
events = ["order.created"]
"#;

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None), DEFAULT_LIMIT);
        assert_eq!(limit(Some(0)), 1);
        assert_eq!(limit(Some(usize::MAX)), MAX_LIMIT);
    }
}
