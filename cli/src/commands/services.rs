//! `switchyard services`: service logins of a secured deployment. A service publishes events
//! for its tenants and calls the operations that allow services; nothing else.

use std::path::PathBuf;

use async_nats::jetstream;
use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;
use switchyard_control::auth::{AuthError, ServiceStore};
use switchyard_control::registry::TenantScope;
use switchyard_schemas::{ServiceName, Tenant};

use super::audit::{auditor, ActorArgs};
use super::secrets::PrivateReplacement;
use super::streams::NamespaceArgs;
use super::{print_json, CliError, NatsArgs, OutputArgs};
use crate::render::{parse_tenant, timestamp};
use crate::table::render_table;

#[derive(Debug, Subcommand)]
pub(crate) enum ServicesCommand {
    /// Add a service login for some tenants and print (or write) its secret; for an existing
    /// one, set its tenants and issue a new secret (the earlier one stops working).
    Add(AddArgs),
    /// List the service logins: name, tenants, when its secret was issued.
    List(ListArgs),
    /// Remove a service login: its secret stops working.
    Remove(RemoveArgs),
}

fn parse_service(raw: &str) -> Result<ServiceName, String> {
    ServiceName::new(raw).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("tenant_scope").args(["tenants", "all_tenants"]).required(true)))]
pub(crate) struct AddArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The service's name: it logs in as `service:NAME`.
    #[arg(value_parser = parse_service)]
    name: ServiceName,
    /// A tenant it publishes events for and calls operations in; repeat for several.
    #[arg(long = "tenant", value_name = "TENANT", value_parser = parse_tenant)]
    tenants: Vec<Tenant>,
    /// Every tenant, including tenants that appear later.
    #[arg(long)]
    all_tenants: bool,
    /// Write the secret (alone) to this file, readable by its owner only, instead of printing
    /// it; replaces the file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    actor: ActorArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The service.
    #[arg(value_parser = parse_service)]
    name: ServiceName,
    #[command(flatten)]
    actor: ActorArgs,
}

pub(crate) async fn run(command: ServicesCommand) -> Result<(), CliError> {
    match command {
        ServicesCommand::Add(args) => add(args).await,
        ServicesCommand::List(args) => list(args).await,
        ServicesCommand::Remove(args) => remove(args).await,
    }
}

async fn add(args: AddArgs) -> Result<(), CliError> {
    let tenants = if args.all_tenants {
        TenantScope::All
    } else {
        TenantScope::only(args.tenants.clone())?
    };
    let client = args.nats.connect_options()?.connect().await?;
    let ns = &args.namespace.prefix;
    let services = ServiceStore::open(&jetstream::new(client.clone()), ns).await?;
    let auditor = auditor(&args.nats, &client, ns, &args.actor).await?;
    // Created before the secret: a path that cannot be written to fails before anything
    // changes.
    let out = args
        .out
        .as_deref()
        .map(PrivateReplacement::begin)
        .transpose()?;
    let (secret, unrecorded) = match services.add(&args.name, tenants.clone(), &auditor).await {
        Ok(secret) => (secret, None),
        Err(AuthError::IssuedNotRecorded { secret, audit }) => (secret, Some(audit)),
        Err(other) => return Err(other.into()),
    };
    let login = format!("service:{}", args.name);
    let inbox = ns.service_inbox_prefix(&args.name);
    if let Some(out) = out {
        let path = out.target().to_owned();
        out.commit(&format!("{}\n", secret.expose()))?;
        println!(
            "service {} may act for {tenants}; its secret is in {} (any earlier one no longer \
             works). It logs in as user `{login}` with the secret as password, with the inbox \
             prefix `{inbox}`",
            args.name,
            path.display()
        );
    } else {
        eprintln!(
            "service {} may act for {tenants}; it logs in as user `{login}` with this secret as \
             password (any earlier one no longer works), with the inbox prefix `{inbox}`:",
            args.name
        );
        println!("{}", secret.expose());
    }
    match unrecorded {
        Some(audit) => Err(audit.into()),
        None => Ok(()),
    }
}

/// `services list --json`.
#[derive(Debug, Serialize)]
struct ServiceList {
    services: Vec<ServiceRow>,
}

#[derive(Debug, Serialize)]
struct ServiceRow {
    name: String,
    /// Null for every tenant.
    tenants: Option<Vec<String>>,
    issued_at: String,
}

async fn list(args: ListArgs) -> Result<(), CliError> {
    let client = args.nats.connect_options()?.connect().await?;
    let services = ServiceStore::open(&jetstream::new(client), &args.namespace.prefix).await?;
    let logins = services.list().await?;
    if args.output.json {
        let services = logins
            .iter()
            .map(|login| ServiceRow {
                name: login.name.to_string(),
                tenants: match &login.tenants {
                    TenantScope::All => None,
                    TenantScope::Only(tenants) => {
                        Some(tenants.iter().map(ToString::to_string).collect())
                    }
                },
                issued_at: timestamp(login.credential.issued_at),
            })
            .collect();
        return print_json(&ServiceList { services });
    }
    if logins.is_empty() {
        println!("no service logins in {}", services.bucket());
        return Ok(());
    }
    let rows: Vec<[String; 3]> = logins
        .iter()
        .map(|login| {
            [
                login.name.to_string(),
                login.tenants.to_string(),
                timestamp(login.credential.issued_at),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(["SERVICE", "TENANTS", "SECRET ISSUED"], &rows)
    );
    Ok(())
}

async fn remove(args: RemoveArgs) -> Result<(), CliError> {
    let client = args.nats.connect_options()?.connect().await?;
    let ns = &args.namespace.prefix;
    let services = ServiceStore::open(&jetstream::new(client.clone()), ns).await?;
    let auditor = auditor(&args.nats, &client, ns, &args.actor).await?;
    if services.remove(&args.name, &auditor).await? {
        println!("removed service {}: its secret no longer works", args.name);
    } else {
        println!("there is no service {}", args.name);
    }
    Ok(())
}
