//! A plugin's operations (`[[operations]]`): request/reply calls it answers, each with its
//! request and response types, its limits, and who may call it.

use std::num::NonZeroU32;
use std::time::Duration;

use semver::Version;
use toml::{Table, Value};

use super::error::{ProblemKind, Problems, Reported};
use super::overrides::read_rate;
use super::policy::{Rate, MAX_IN_FLIGHT_LIMIT, TIMEOUT_RANGE};
use super::read::{names_of, report_duplicates, Field, ReadList};
use crate::name::{EventType, OperationName, PluginId, Tenant};

/// The most operations a manifest may declare. Each is a subscription of every dispatcher and
/// a line of its callers' permissions.
pub const MAX_OPERATIONS: usize = 64;

/// The most plugins one operation may name as callers.
pub const MAX_CALLER_PLUGINS: usize = 256;

/// The timeout of an operation that declares none.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The `max_in_flight` of an operation that declares none.
pub const DEFAULT_OPERATION_IN_FLIGHT: u32 = 16;

/// The longest `description` of an operation, in bytes.
pub const MAX_OPERATION_DESCRIPTION_BYTES: usize = 1024;

/// One operation a plugin answers: `name` called with a `request`, answered with a `response`.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Its name, unique within the manifest; a token of its call subject.
    pub name: OperationName,
    /// What it does, for callers and operators.
    pub description: Option<String>,
    /// The type and schema version of what a call carries.
    pub request: MessageType,
    /// The type and schema version of what an answer carries.
    pub response: MessageType,
    /// The longest one attempt may take (1 ms to 15 min; default 10 s).
    pub timeout: Duration,
    /// At most this many calls start per period; `None`: unlimited.
    pub rate: Option<Rate>,
    /// How many calls may start at once after a quiet spell (the token bucket's size).
    pub burst: NonZeroU32,
    /// At most this many calls under way at once (1 to 10 000; default 16).
    pub max_in_flight: NonZeroU32,
    /// Whether calling it twice has the effect of calling it once: only then is a failed
    /// attempt retried, and only when the caller asks for it.
    pub idempotent: bool,
    /// Who may call it.
    pub callers: Callers,
}

/// A message type and the schema version a plugin speaks of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageType {
    /// The type, named like an event type (`quote.request`).
    pub name: EventType,
    /// Its schema version.
    pub version: Version,
}

impl MessageType {
    /// Whether a message written against schema `version` can be read by a reader of this
    /// one: the same major version, and not newer.
    pub fn accepts(&self, version: &Version) -> bool {
        version.major == self.version.major && *version <= self.version
    }
}

/// Who may call an operation. Where rights are enforced (`docs/security.md`), the broker
/// refuses a plugin's or a service's call that this does not allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callers {
    /// The trusted logins (`switchyard call`, the console). Default `true`.
    pub operators: bool,
    /// Service logins. Default `false`.
    pub services: bool,
    /// The plugins that may call it, by id. Default none.
    pub plugins: Vec<PluginId>,
    /// The tenants it may be called for; `None`: every tenant the plugin is registered for.
    pub tenants: Option<Vec<Tenant>>,
}

impl Default for Callers {
    fn default() -> Self {
        Self {
            operators: true,
            services: false,
            plugins: Vec::new(),
            tenants: None,
        }
    }
}

impl Callers {
    /// Whether it may be called for `tenant` (before the plugin's own tenants are considered).
    pub fn allows_tenant(&self, tenant: &Tenant) -> bool {
        self.tenants
            .as_ref()
            .is_none_or(|tenants| tenants.contains(tenant))
    }
}

const OPERATION_KEYS: &[&str] = &[
    "name",
    "description",
    "request",
    "response",
    "timeout",
    "rate",
    "burst",
    "max_in_flight",
    "idempotent",
    "callers",
];
const TYPE_KEYS: &[&str] = &["type", "version"];
const CALLER_KEYS: &[&str] = &["operators", "services", "plugins", "tenants"];

/// `[[operations]]`: at most [`MAX_OPERATIONS`], names unique.
pub(super) fn read_operations(
    field: &Field<'_>,
    problems: &mut Problems,
) -> Result<Vec<Operation>, Reported> {
    let items = field.array(problems)?;
    if items.len() > MAX_OPERATIONS {
        return Err(field.report(
            problems,
            ProblemKind::TooLarge,
            format!(
                "{} operations; a manifest may declare at most {MAX_OPERATIONS} (MAX_OPERATIONS)",
                items.len()
            ),
        ));
    }
    report_duplicates(&names_of(&items), "operation name", problems);
    ReadList::new(&items, problems, read_operation).into_values()
}

fn read_operation(field: &Field<'_>, problems: &mut Problems) -> Result<Operation, Reported> {
    let section = field.section(problems, OPERATION_KEYS)?;
    let name = section
        .required("name", problems)
        .and_then(|f| f.name::<OperationName>(problems));
    let description = section
        .optional("description")
        .map(|f| read_description(&f, problems))
        .transpose();
    let request = section
        .required("request", problems)
        .and_then(|f| read_type(&f, problems));
    let response = section
        .required("response", problems)
        .and_then(|f| read_type(&f, problems));
    let timeout = section
        .optional("timeout")
        .map_or(Ok(DEFAULT_OPERATION_TIMEOUT), |f| {
            f.duration_in(problems, TIMEOUT_RANGE)
        });
    let rate = section
        .optional("rate")
        .map(|f| read_rate(&f, problems))
        .transpose();
    let burst = section
        .optional("burst")
        .map(|f| f.count_up_to(problems, u32::MAX))
        .transpose();
    let max_in_flight = section.optional("max_in_flight").map_or(
        Ok(NonZeroU32::new(DEFAULT_OPERATION_IN_FLIGHT).expect("not 0")),
        |f| f.count_up_to(problems, MAX_IN_FLIGHT_LIMIT),
    );
    let idempotent = section
        .optional("idempotent")
        .map_or(Ok(false), |f| f.boolean(problems));
    let callers = section
        .optional("callers")
        .map_or(Ok(Callers::default()), |f| read_callers(&f, problems));
    let rate = rate?;
    let burst = burst?
        .or(rate.map(|rate| rate.default_burst()))
        .unwrap_or(NonZeroU32::MIN);
    Ok(Operation {
        name: name?,
        description: description?,
        request: request?,
        response: response?,
        timeout: timeout?,
        rate,
        burst,
        max_in_flight: max_in_flight?,
        idempotent: idempotent?,
        callers: callers?,
    })
}

fn read_description(field: &Field<'_>, problems: &mut Problems) -> Result<String, Reported> {
    let text = field.string(problems)?;
    if text.len() > MAX_OPERATION_DESCRIPTION_BYTES {
        return Err(field.report(
            problems,
            ProblemKind::TooLarge,
            format!(
                "{} bytes; at most {MAX_OPERATION_DESCRIPTION_BYTES} are allowed",
                text.len()
            ),
        ));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n') {
        return Err(field.report(
            problems,
            ProblemKind::BadText,
            format!("holds the control character {c:?}"),
        ));
    }
    Ok(text.to_owned())
}

/// `{ type = "quote.request", version = "1.0.0" }`.
fn read_type(field: &Field<'_>, problems: &mut Problems) -> Result<MessageType, Reported> {
    let section = field.section(problems, TYPE_KEYS)?;
    let name = section.required("type", problems).and_then(|f| {
        let text = f.string(problems)?;
        EventType::new(text)
            .map_err(|err| f.report(problems, ProblemKind::BadName, err.to_string()))
    });
    let version = section
        .required("version", problems)
        .and_then(|f| f.version(problems));
    Ok(MessageType {
        name: name?,
        version: version?,
    })
}

fn read_callers(field: &Field<'_>, problems: &mut Problems) -> Result<Callers, Reported> {
    let section = field.section(problems, CALLER_KEYS)?;
    let defaults = Callers::default();
    let operators = section
        .optional("operators")
        .map_or(Ok(defaults.operators), |f| f.boolean(problems));
    let services = section
        .optional("services")
        .map_or(Ok(defaults.services), |f| f.boolean(problems));
    let plugins = section.optional("plugins").map_or(Ok(Vec::new()), |f| {
        let items = f.array(problems)?;
        if items.len() > MAX_CALLER_PLUGINS {
            return Err(f.report(
                problems,
                ProblemKind::TooLarge,
                format!(
                    "{} plugins; an operation may name at most {MAX_CALLER_PLUGINS} \
                     (MAX_CALLER_PLUGINS)",
                    items.len()
                ),
            ));
        }
        let plugins = ReadList::new(&items, problems, |item, problems| {
            let id = item.name::<PluginId>(problems)?;
            if id.is_reserved() {
                return Err(item.report(
                    problems,
                    ProblemKind::Reserved,
                    format!("`{id}` is a trusted login, not a plugin; use `operators`"),
                ));
            }
            Ok(id)
        });
        report_duplicates(&plugins.read, "plugin", problems);
        plugins.into_values()
    });
    let tenants = section
        .optional("tenants")
        .map(|f| {
            let items = f.non_empty_array(problems, "tenant")?;
            let tenants = ReadList::new(&items, problems, |item, problems| {
                item.name::<Tenant>(problems)
            });
            report_duplicates(&tenants.read, "tenant", problems);
            tenants.into_values()
        })
        .transpose();
    Ok(Callers {
        operators: operators?,
        services: services?,
        plugins: plugins?,
        tenants: tenants?,
    })
}

/// Every key written out, so that what an operator approved keeps its meaning.
pub(super) fn write_operation(operation: &Operation) -> Value {
    let duration = |d: Duration| Value::from(humantime::format_duration(d).to_string());
    let write_type = |t: &MessageType| {
        let mut table = Table::new();
        table.insert("type".into(), t.name.as_str().into());
        table.insert("version".into(), t.version.to_string().into());
        Value::Table(table)
    };
    let mut table = Table::new();
    table.insert("name".into(), operation.name.as_str().into());
    if let Some(description) = &operation.description {
        table.insert("description".into(), description.as_str().into());
    }
    table.insert("request".into(), write_type(&operation.request));
    table.insert("response".into(), write_type(&operation.response));
    table.insert("timeout".into(), duration(operation.timeout));
    if let Some(rate) = operation.rate {
        table.insert("rate".into(), rate.to_string().into());
    }
    table.insert("burst".into(), i64::from(operation.burst.get()).into());
    table.insert(
        "max_in_flight".into(),
        i64::from(operation.max_in_flight.get()).into(),
    );
    table.insert("idempotent".into(), operation.idempotent.into());
    let callers = &operation.callers;
    let mut who = Table::new();
    who.insert("operators".into(), callers.operators.into());
    who.insert("services".into(), callers.services.into());
    who.insert(
        "plugins".into(),
        Value::Array(callers.plugins.iter().map(|p| p.as_str().into()).collect()),
    );
    if let Some(tenants) = &callers.tenants {
        who.insert(
            "tenants".into(),
            Value::Array(tenants.iter().map(|t| t.as_str().into()).collect()),
        );
    }
    table.insert("callers".into(), Value::Table(who));
    Value::Table(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn a_type_accepts_older_minor_versions_of_its_major_only() {
        let declared = MessageType {
            name: EventType::new("quote.request").unwrap(),
            version: version("1.2.0"),
        };
        assert!(declared.accepts(&version("1.0.0")));
        assert!(declared.accepts(&version("1.2.0")));
        assert!(!declared.accepts(&version("1.3.0")));
        assert!(!declared.accepts(&version("2.0.0")));
        assert!(!declared.accepts(&version("0.9.0")));
    }
}
