//! `switchyard plugins`: register, remove and list plugins in the registry.

use std::fmt::Write as _;
use std::path::PathBuf;

use async_nats::jetstream;
use clap::{ArgGroup, Args, Subcommand};
use switchyard_dispatcher::registry::{Registration, Registry, TenantScope};
use switchyard_schemas::{Manifest, PluginId, Tenant};

use super::streams::NamespaceArgs;
use super::{CliError, NatsArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum PluginsCommand {
    /// Register a plugin from its manifest, or replace (upgrade) its registration.
    ///
    /// The manifest is checked first: an invalid one is refused with every problem listed,
    /// and nothing is written. Name the tenants whose events the plugin receives with
    /// `--tenant` (repeatable), or give `--all-tenants`. Adding an id that is already
    /// registered replaces its registration; the bucket keeps earlier revisions.
    Add(AddArgs),
    /// Remove a plugin's registration; the dispatcher stops delivering to it.
    ///
    /// Fails when no plugin with this id is registered under the prefix.
    Remove(RemoveArgs),
    /// List the registered plugins with their version, tenants and subscriptions.
    List(ListArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("tenant_scope").required(true).args(["tenants", "all_tenants"])))]
pub(crate) struct AddArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The plugin's manifest, `plugin.toml`.
    manifest: PathBuf,
    /// A tenant whose events the plugin receives; repeat for several.
    #[arg(long = "tenant", value_name = "TENANT", value_parser = parse_tenant)]
    tenants: Vec<Tenant>,
    /// Deliver the events of every tenant, including tenants that appear later.
    #[arg(long)]
    all_tenants: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The id of the plugin to remove.
    #[arg(value_parser = parse_plugin_id)]
    plugin: PluginId,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
}

fn parse_tenant(raw: &str) -> Result<Tenant, String> {
    Tenant::new(raw).map_err(|e| e.to_string())
}

fn parse_plugin_id(raw: &str) -> Result<PluginId, String> {
    PluginId::new(raw).map_err(|e| e.to_string())
}

pub(crate) async fn run(command: PluginsCommand) -> Result<(), CliError> {
    match command {
        PluginsCommand::Add(args) => add(args).await,
        PluginsCommand::Remove(args) => remove(args).await,
        PluginsCommand::List(args) => list(args).await,
    }
}

async fn open_registry(nats: &NatsArgs, namespace: &NamespaceArgs) -> Result<Registry, CliError> {
    let client = nats.connect_options().connect().await?;
    Ok(Registry::open(&jetstream::new(client), &namespace.prefix).await?)
}

async fn add(args: AddArgs) -> Result<(), CliError> {
    // The manifest is checked before connecting, so a bad one is refused even with no server.
    let manifest = Manifest::from_path(&args.manifest)?;
    let tenants = if args.all_tenants {
        TenantScope::All
    } else {
        // clap's group makes sure there is at least one `--tenant` here.
        TenantScope::only(args.tenants)?
    };
    let registration = Registration::new(manifest, tenants);
    let registry = open_registry(&args.nats, &args.namespace).await?;
    let previous = registry.get(registration.plugin_id()).await?;
    let revision = registry.put(&registration).await?;
    let info = &registration.manifest.plugin;
    let verb = if previous.is_some() {
        "updated"
    } else {
        "registered"
    };
    print!(
        "{verb} {} {} for {} (revision {revision}",
        info.id, info.version, registration.tenants
    );
    match previous {
        Some(previous) => println!(", was {})", previous.manifest.plugin.version),
        None => println!(")"),
    }
    Ok(())
}

async fn remove(args: RemoveArgs) -> Result<(), CliError> {
    let registry = open_registry(&args.nats, &args.namespace).await?;
    if registry.remove(&args.plugin).await? {
        println!("removed {}", args.plugin);
        Ok(())
    } else {
        Err(CliError::NotRegistered {
            plugin: args.plugin,
            bucket: registry.bucket().to_owned(),
        })
    }
}

async fn list(args: ListArgs) -> Result<(), CliError> {
    let registry = open_registry(&args.nats, &args.namespace).await?;
    let registrations = registry.list().await?;
    if registrations.is_empty() {
        println!("no plugins are registered in {}", registry.bucket());
        return Ok(());
    }
    let rows: Vec<[String; 4]> = registrations.iter().map(row).collect();
    print!(
        "{}",
        render_table(["PLUGIN", "VERSION", "TENANTS", "SUBSCRIPTIONS"], &rows)
    );
    Ok(())
}

/// One line of `plugins list`.
fn row(registration: &Registration) -> [String; 4] {
    let info = &registration.manifest.plugin;
    let subscriptions = registration
        .manifest
        .subscriptions
        .iter()
        .map(|subscription| {
            let patterns: Vec<&str> = subscription.events.iter().map(|p| p.as_str()).collect();
            format!("{}: {}", subscription.name, patterns.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ");
    [
        info.id.to_string(),
        info.version.to_string(),
        registration.tenants.to_string(),
        subscriptions,
    ]
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn render_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.map(str::to_owned);
    for line in std::iter::once(&header).chain(rows) {
        let mut text = String::new();
        for (i, (cell, width)) in line.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                // Writing to a String cannot fail.
                let _ = write!(text, "{cell:width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render_table;

    #[test]
    fn table_columns_line_up() {
        let rows = [
            ["audit-log".to_owned(), "1.2.0".to_owned(), "x".to_owned()],
            ["a".to_owned(), "10.0.0".to_owned(), "y".to_owned()],
        ];
        assert_eq!(
            render_table(["PLUGIN", "VERSION", "NOTE"], &rows),
            "PLUGIN     VERSION  NOTE\naudit-log  1.2.0    x\na          10.0.0   y\n"
        );
    }
}
