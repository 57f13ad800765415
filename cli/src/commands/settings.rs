//! `switchyard settings`: what operators set for a plugin within the settings its manifest
//! declares, and its secrets, which are kept apart and never printed.

use std::io::Read;
use std::path::PathBuf;

use async_nats::jetstream;
use clap::{Args, Subcommand};

use switchyard_control::audit::Action;
use switchyard_control::lifecycle::operate;
use switchyard_control::registry::{Registration, Registry};
use switchyard_control::settings::SettingsReport;
use switchyard_control::settings::{
    Changed, OperatorSettings, Secret, SettingChange, SettingsStore,
};
use switchyard_schemas::manifest::toml::{self, Table, Value};
use switchyard_schemas::manifest::{SettingKind, MAX_SETTING_VALUE_BYTES};
use switchyard_schemas::{Manifest, PluginId};

use super::audit::{auditor, ActorArgs};
use super::streams::NamespaceArgs;
use super::{print_json, CliError, NatsArgs, OutputArgs};
use crate::render::{parse_plugin_id, printable};
use crate::table::render_table;

#[derive(Debug, Subcommand)]
pub(crate) enum SettingsCommand {
    /// Show a plugin's settings: each declared setting, its type, its value and where the
    /// value comes from (the manifest's default, or set). Secrets show only whether they are
    /// set.
    Show(ShowArgs),
    /// Set plain settings (`NAME=VALUE`, the value written as in TOML: `3`, `true`,
    /// `"text"`, `[1, 2]`; text that is not TOML is a string). Each is checked against the
    /// setting the manifest declares; if one is refused, none is set. Running workers receive
    /// the change at once.
    Set(SetArgs),
    /// Set a secret, read from standard input (or `--from-file`), never from the command
    /// line; one trailing newline is dropped. It is stored apart from the settings and never
    /// printed.
    SetSecret(SetSecretArgs),
    /// Take back settings or secrets set for a plugin: its workers fall back to the
    /// manifest's default. Refused for a required setting without a default while the plugin
    /// is enabled.
    Unset(UnsetArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Target {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The plugin's id.
    #[arg(value_parser = parse_plugin_id)]
    plugin: PluginId,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    #[command(flatten)]
    target: Target,
    /// `NAME=VALUE` pairs.
    #[arg(required = true, value_name = "NAME=VALUE")]
    pairs: Vec<String>,
    #[command(flatten)]
    actor: ActorArgs,
}

#[derive(Debug, Args)]
pub(crate) struct SetSecretArgs {
    #[command(flatten)]
    target: Target,
    /// The secret's name.
    name: String,
    /// Read the value from this file instead of standard input.
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    #[command(flatten)]
    actor: ActorArgs,
}

#[derive(Debug, Args)]
pub(crate) struct UnsetArgs {
    #[command(flatten)]
    target: Target,
    /// The names of the settings or secrets.
    #[arg(required = true)]
    names: Vec<String>,
    #[command(flatten)]
    actor: ActorArgs,
}

pub(crate) async fn run(command: SettingsCommand) -> Result<(), CliError> {
    match command {
        SettingsCommand::Show(args) => show(args).await,
        SettingsCommand::Set(args) => set(args).await,
        SettingsCommand::SetSecret(args) => set_secret(args).await,
        SettingsCommand::Unset(args) => unset(args).await,
    }
}

/// The plugin's registration and its settings store, on one connection.
struct Opened {
    client: async_nats::Client,
    registration: Registration,
    store: SettingsStore,
}

async fn open(target: &Target) -> Result<Opened, CliError> {
    let client = target.nats.connect_options()?.connect().await?;
    let js = jetstream::new(client.clone());
    let ns = &target.namespace.prefix;
    let registry = Registry::open(&js, ns).await?;
    let registration = super::registration_of(&registry, &target.plugin).await?;
    let store = SettingsStore::open(&js, ns, 1).await?;
    Ok(Opened {
        client,
        registration,
        store,
    })
}

/// Reads `NAME=VALUE` with the value as TOML, or as text when it is not TOML or when the
/// setting is a string (so that `mode=true` sets the text `true` of a string setting).
fn parse_pair(pair: &str, manifest: &Manifest) -> Result<(String, Value), CliError> {
    let Some((name, text)) = pair.split_once('=') else {
        return Err(CliError::BadArgument {
            argument: "NAME=VALUE",
            reason: format!("`{}` has no `=`", printable(pair)),
        });
    };
    let name = name.trim().to_owned();
    let parsed = toml::from_str::<Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut table| table.remove("v"));
    let is_string = manifest
        .settings_schema
        .spec(&name)
        .is_some_and(|spec| spec.kind == SettingKind::String);
    let declared = manifest.settings_schema.spec(&name).is_some();
    let value = match parsed {
        Some(value) if !is_string || value.is_str() => value,
        // Text for a string setting; for any other, text that is not TOML is a mistake.
        None if declared && !is_string => {
            let digits = text.trim().trim_start_matches(['-', '+']);
            let reason = if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                "a whole number beyond the range of 64-bit integers".to_owned()
            } else {
                toml::from_str::<Table>(&format!("v = {text}"))
                    .err()
                    .map(|e| e.message().to_owned())
                    .unwrap_or_default()
            };
            return Err(CliError::BadArgument {
                argument: "NAME=VALUE",
                reason: format!(
                    "`{}` is not a value for `{name}` written as in TOML ({reason})",
                    printable(&shortened(text))
                ),
            });
        }
        _ => Value::String(text.to_owned()),
    };
    Ok((name, value))
}

async fn set(args: SetArgs) -> Result<(), CliError> {
    let opened = Box::pin(open(&args.target)).await?;
    let manifest = &opened.registration.manifest;
    let changes = args
        .pairs
        .iter()
        .map(|pair| parse_pair(pair, manifest).map(|(name, value)| SettingChange::Set(name, value)))
        .collect::<Result<Vec<_>, _>>()?;
    refuse_twice(&changes)?;
    Box::pin(apply(&opened, &args.target, &args.actor, &changes)).await
}

async fn set_secret(args: SetSecretArgs) -> Result<(), CliError> {
    let value = read_secret(args.from_file.as_deref())?;
    let opened = Box::pin(open(&args.target)).await?;
    let changes = [SettingChange::SetSecret(
        args.name.clone(),
        Secret::new(value),
    )];
    Box::pin(apply(&opened, &args.target, &args.actor, &changes)).await
}

/// The secret from `file` or standard input, without one trailing newline.
fn read_secret(file: Option<&std::path::Path>) -> Result<String, CliError> {
    let mut bytes = Vec::new();
    let limit = (MAX_SETTING_VALUE_BYTES + 2) as u64;
    let read = match file {
        Some(path) => std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .map_err(|source| CliError::Io {
                action: "cannot read the secret from",
                path: path.to_owned(),
                source,
            }),
        None => std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(|source| CliError::Io {
                action: "cannot read the secret from",
                path: PathBuf::from("standard input"),
                source,
            }),
    };
    read?;
    let mut value = String::from_utf8(bytes).map_err(|_| CliError::BadArgument {
        argument: "secret",
        reason: "it is not UTF-8 text".to_owned(),
    })?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(CliError::BadArgument {
            argument: "secret",
            reason: "it is empty (to take a secret back, use `switchyard settings unset`)"
                .to_owned(),
        });
    }
    Ok(value)
}

async fn unset(args: UnsetArgs) -> Result<(), CliError> {
    let opened = Box::pin(open(&args.target)).await?;
    let registration = &opened.registration;
    let current = opened.store.get(registration.plugin_id()).await?;
    // A name neither declared nor set is a mistake (a typo, most likely), not a no-op.
    let schema = &registration.manifest.settings_schema;
    let unknown: Vec<&str> = args
        .names
        .iter()
        .map(String::as_str)
        .filter(|name| {
            schema.spec(name).is_none()
                && !current.values.contains_key(*name)
                && !current.secrets.contains_key(*name)
        })
        .collect();
    if !unknown.is_empty() {
        return Err(CliError::Incompatible {
            what: format!("unsetting settings of {}", registration.plugin_id()),
            problems: unknown
                .iter()
                .map(|name| {
                    format!(
                        "{} declares no setting `{name}`, and none is set",
                        registration.plugin_id()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
        });
    }
    if registration.is_active() {
        let mut after = current.clone();
        for name in &args.names {
            after.values.remove(name);
            after.secrets.remove(name);
        }
        let missing = after.missing_required(&registration.manifest);
        if !missing.is_empty() {
            return Err(CliError::Incompatible {
                what: format!("unsetting settings of {}", registration.plugin_id()),
                problems: format!(
                    "{} is enabled and requires {}, which would have no value; disable it first",
                    registration.plugin_id(),
                    missing.join(", ")
                ),
            });
        }
    }
    let changes: Vec<SettingChange> = args
        .names
        .iter()
        .map(|name| SettingChange::Unset(name.clone()))
        .collect();
    refuse_twice(&changes)?;
    Box::pin(apply(&opened, &args.target, &args.actor, &changes)).await
}

/// Refuses a change that names one setting twice: which one was meant is not guessed.
fn refuse_twice(changes: &[SettingChange]) -> Result<(), CliError> {
    let mut seen = std::collections::BTreeSet::new();
    for change in changes {
        if !seen.insert(change.name()) {
            return Err(CliError::BadArgument {
                argument: "names",
                reason: format!("`{}` is given twice", change.name()),
            });
        }
    }
    Ok(())
}

/// Applies `changes`, checks them again against the registration as it is now (a lifecycle
/// change may have landed meanwhile: an upgrade, an enable, a removal) and takes them back
/// when they no longer fit, then records them in the audit log.
async fn apply(
    opened: &Opened,
    target: &Target,
    actor: &ActorArgs,
    changes: &[SettingChange],
) -> Result<(), CliError> {
    let plugin = &target.plugin;
    let auditor = auditor(
        &target.nats,
        &opened.client,
        &target.namespace.prefix,
        actor,
    )
    .await?;
    let changed = Box::pin(opened.store.change(
        plugin,
        &opened.registration.manifest.settings_schema,
        changes,
    ))
    .await?;
    Box::pin(still_fits(opened, target, &changed)).await?;
    for name in &changed.not_set {
        println!("{name} was not set");
    }
    let described = describe(changes, &changed.not_set);
    if described.is_empty() {
        return Ok(());
    }
    let done = format!("changed the settings of {plugin}: {described}");
    let entry = auditor
        .entry(Action::SettingsChanged, plugin.as_str())
        .before(Some(audited(&changed.before)))
        .after(Some(audited(&changed.after)))
        .detail(described.clone());
    auditor.record(done, &entry).await?;
    print_outcome(plugin, &changed, &described);
    Ok(())
}

/// After a change: the plugin must still be registered, and, when its registration changed
/// since the checks, the settings must fit the new one. Otherwise the change is taken back
/// (forgotten, for a plugin removed meanwhile) and refused.
async fn still_fits(opened: &Opened, target: &Target, changed: &Changed) -> Result<(), CliError> {
    let plugin = &target.plugin;
    let registry = Registry::open(
        &jetstream::new(opened.client.clone()),
        &target.namespace.prefix,
    )
    .await?;
    let Some(now) = registry.get(plugin).await? else {
        opened.store.forget(plugin).await?;
        return Err(CliError::Incompatible {
            what: format!("changing the settings of {plugin}"),
            problems: format!("{plugin} was removed meanwhile; what was set is forgotten"),
        });
    };
    if now == opened.registration {
        return Ok(());
    }
    let mut problems: Vec<String> = changed
        .after
        .problems(&now.manifest.settings_schema)
        .iter()
        .map(ToString::to_string)
        .collect();
    if now.is_active() {
        let missing = changed.after.missing_required(&now.manifest);
        if !missing.is_empty() {
            problems.push(format!(
                "{plugin} is enabled and requires {}",
                missing.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    opened.store.revert(plugin, changed).await?;
    Err(CliError::Incompatible {
        what: format!(
            "changing the settings of {plugin} (its registration changed meanwhile, to version {}; the change was taken back)",
            now.manifest.plugin.version
        ),
        problems: problems.join("\n"),
    })
}

fn print_outcome(plugin: &PluginId, changed: &Changed, described: &str) {
    println!(
        "{plugin}: {described} (settings revision {}, secrets revision {}); running workers receive it now",
        changed.after.values_revision, changed.after.secrets_revision
    );
}

/// What changed, for people and the audit log: names, and plain values; never a secret's value.
fn describe(changes: &[SettingChange], not_set: &[String]) -> String {
    changes
        .iter()
        .filter(|change| !not_set.iter().any(|name| name == change.name()))
        .map(|change| match change {
            SettingChange::Set(name, value) => {
                format!("set {name} = {}", shortened(&value.to_string()))
            }
            SettingChange::SetSecret(name, _) => format!("set secret {name}"),
            SettingChange::Unset(name) => format!("unset {name}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `text`, or its start and its length when it is long (a value may be 16 KiB).
fn shortened(text: &str) -> String {
    const SHOWN: usize = 64;
    if text.chars().count() <= SHOWN {
        return text.to_owned();
    }
    let start: String = text.chars().take(SHOWN).collect();
    format!("{start}… ({} bytes)", text.len())
}

/// The settings as the audit log records them: plain values, and the names of the secrets.
fn audited(settings: &OperatorSettings) -> serde_json::Value {
    serde_json::json!({
        "values": settings.values,
        "values_revision": settings.values_revision,
        "secrets": settings.secrets.keys().collect::<Vec<_>>(),
        "secrets_revision": settings.secrets_revision,
    })
}

async fn show(args: ShowArgs) -> Result<(), CliError> {
    let opened = Box::pin(open(&args.target)).await?;
    let manifest = &opened.registration.manifest;
    let set = opened.store.get(&args.target.plugin).await?;
    let report = SettingsReport::of(manifest, &set);
    if args.output.json {
        return print_json(&report);
    }
    if report.settings.is_empty() {
        println!("{} declares no settings", report.plugin);
        return Ok(());
    }
    let table: Vec<[String; 4]> = report
        .settings
        .iter()
        .map(|row| {
            let value = match (&row.value, row.secret, row.source) {
                (_, true, "set") => "<secret, set>".to_owned(),
                (_, true, _) => "<secret, not set>".to_owned(),
                (Some(value), _, _) => printable(&shortened(&value.to_string())),
                (None, _, _) => "-".to_owned(),
            };
            let mut kind = row.kind.clone();
            if row.required {
                kind.push_str(", required");
            }
            [row.name.clone(), kind, value, row.source.to_owned()]
        })
        .collect();
    print!(
        "{}",
        render_table(["NAME", "TYPE", "VALUE", "SOURCE"], &table)
    );
    if !report.missing_required.is_empty() {
        println!(
            "required, with no value (it cannot be enabled without them): {}",
            report.missing_required.join(", ")
        );
    }
    Ok(())
}

/// Refuses a change of `manifest`'s lifecycle that its settings do not allow: settings set
/// earlier that `manifest` (a new version, or an old one rolled back to) no longer declares
/// or admits, and, when the change leaves it `enabled`, a required setting with no value.
pub(crate) async fn check_settings_allow(
    nats: &NatsArgs,
    namespace: &switchyard_schemas::Namespace,
    manifest: &Manifest,
    enabled: bool,
) -> Result<(), CliError> {
    let client = nats.connect_options()?.connect().await?;
    let js = jetstream::new(client);
    Ok(Box::pin(operate::check_settings_allow(
        &js, namespace, manifest, enabled,
    ))
    .await?)
}

/// Forgets what was set for a removed plugin; says so when there was something.
pub(crate) async fn forget_settings(
    client: &async_nats::Client,
    namespace: &switchyard_schemas::Namespace,
    plugin: &PluginId,
) -> Result<(), CliError> {
    let js = jetstream::new(client.clone());
    if let Some(store) = SettingsStore::open_existing(&js, namespace).await? {
        if store.forget(plugin).await? {
            println!("forgot the settings and secrets set for {plugin}");
        }
    }
    Ok(())
}
