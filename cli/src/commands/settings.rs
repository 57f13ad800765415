//! `switchyard settings`: what operators set for a plugin within the settings its manifest
//! declares, and its secrets, which are kept apart and never printed.

use std::io::Read;
use std::path::PathBuf;

use async_nats::jetstream;
use clap::{Args, Subcommand};

use switchyard_control::lifecycle::operate::OperateError;
use switchyard_control::registry::{Registration, Registry};
use switchyard_control::settings::edit::{parse_assignment, shortened};
use switchyard_control::settings::SettingsReport;
use switchyard_control::settings::{Secret, SettingChange, SettingsStore};
use switchyard_schemas::manifest::toml::Value;
use switchyard_schemas::manifest::MAX_SETTING_VALUE_BYTES;
use switchyard_schemas::{Manifest, PluginId};

use super::audit::ActorArgs;
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
        registration,
        store,
    })
}

/// Reads `NAME=VALUE` as the manifest types it ([`parse_assignment`]).
fn parse_pair(pair: &str, manifest: &Manifest) -> Result<(String, Value), CliError> {
    parse_assignment(pair, manifest).map_err(|reason| CliError::BadArgument {
        argument: "NAME=VALUE",
        reason,
    })
}

async fn set(args: SetArgs) -> Result<(), CliError> {
    let opened = Box::pin(open(&args.target)).await?;
    let manifest = &opened.registration.manifest;
    let changes = args
        .pairs
        .iter()
        .map(|pair| parse_pair(pair, manifest).map(|(name, value)| SettingChange::Set(name, value)))
        .collect::<Result<Vec<_>, _>>()?;
    Box::pin(apply(&args.target, &args.actor, &changes)).await
}

async fn set_secret(args: SetSecretArgs) -> Result<(), CliError> {
    let value = read_secret(args.from_file.as_deref())?;
    let changes = [SettingChange::SetSecret(
        args.name.clone(),
        Secret::new(value),
    )];
    Box::pin(apply(&args.target, &args.actor, &changes)).await
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
    let changes: Vec<SettingChange> = args
        .names
        .iter()
        .map(|name| SettingChange::Unset(name.clone()))
        .collect();
    Box::pin(apply(&args.target, &args.actor, &changes)).await
}

/// Makes `changes` through the lifecycle verbs ([`Operator::change_settings`]): checked,
/// taken back when a lifecycle change made meanwhile no longer fits them, and audited.
async fn apply(
    target: &Target,
    actor: &ActorArgs,
    changes: &[SettingChange],
) -> Result<(), CliError> {
    let operator = super::lifecycle::operator(&target.nats, &target.namespace, actor).await?;
    let outcome = Box::pin(operator.change_settings(&target.plugin, changes))
        .await
        .map_err(|error| match error {
            OperateError::BadChange(reason) => CliError::BadArgument {
                argument: "names",
                reason,
            },
            other => other.into(),
        })?;
    super::lifecycle::print_outcome(&outcome);
    Ok(())
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
