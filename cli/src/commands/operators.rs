//! `switchyard operators`: who may use the management API and the web console, and with
//! which role (docs/management-api.md).

use async_nats::jetstream;
use clap::{Args, Subcommand};
use serde::Serialize;
use switchyard_control::auth::operators::{OperatorName, OperatorStore, Role};

use super::audit::{auditor, ActorArgs};
use super::streams::NamespaceArgs;
use super::{print_json, CliError, NatsArgs, OutputArgs};
use crate::render::timestamp;
use crate::table::render_table;

#[derive(Debug, Subcommand)]
pub(crate) enum OperatorsCommand {
    /// Add an operator with a role and print its token, once; for an existing one, set its
    /// role and issue a new token (the earlier one stops working at once).
    Add(AddArgs),
    /// List the operators: name, role, when its token was issued.
    List(ListArgs),
    /// Remove an operator: its token stops working, and its open consoles stop updating.
    Remove(RemoveArgs),
}

fn parse_name(raw: &str) -> Result<OperatorName, String> {
    raw.parse()
        .map_err(|e: switchyard_control::auth::operators::BadOperatorName| e.to_string())
}

fn parse_role(raw: &str) -> Result<Role, String> {
    raw.parse()
        .map_err(|e: switchyard_control::auth::operators::UnknownRole| e.to_string())
}

#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The operator's name (a-z, 0-9, `-`, `_`).
    #[arg(value_parser = parse_name)]
    name: OperatorName,
    /// What it may do: `viewer` (read), `operator` (also approve, reject, enable, disable,
    /// roll back, replay), `admin` (also purge and manage operators).
    #[arg(long, value_parser = parse_role)]
    role: Role,
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
    /// The operator.
    #[arg(value_parser = parse_name)]
    name: OperatorName,
    #[command(flatten)]
    actor: ActorArgs,
}

pub(crate) async fn run(command: OperatorsCommand) -> Result<(), CliError> {
    match command {
        OperatorsCommand::Add(args) => add(args).await,
        OperatorsCommand::List(args) => list(args).await,
        OperatorsCommand::Remove(args) => remove(args).await,
    }
}

async fn add(args: AddArgs) -> Result<(), CliError> {
    let client = args.nats.connect_options()?.connect().await?;
    let ns = &args.namespace.prefix;
    let operators = OperatorStore::open(&jetstream::new(client.clone()), ns).await?;
    let auditor = auditor(&args.nats, &client, ns, &args.actor).await?;
    let token = operators.add(&args.name, args.role, &auditor).await?;
    eprintln!(
        "operator {} ({}) may use the management API and the console with this token (any \
         earlier one no longer works):",
        args.name, args.role
    );
    println!("{}", token.expose());
    Ok(())
}

#[derive(Debug, Serialize)]
struct OperatorList {
    operators: Vec<OperatorRow>,
}

#[derive(Debug, Serialize)]
struct OperatorRow {
    name: String,
    role: Role,
    added_at: String,
}

async fn list(args: ListArgs) -> Result<(), CliError> {
    let client = args.nats.connect_options()?.connect().await?;
    let operators = OperatorStore::open(&jetstream::new(client), &args.namespace.prefix).await?;
    let logins = operators.list().await?;
    let rows: Vec<OperatorRow> = logins
        .iter()
        .map(|login| OperatorRow {
            name: login.name.to_string(),
            role: login.role,
            added_at: timestamp(login.credential.issued_at),
        })
        .collect();
    if args.output.json {
        return print_json(&OperatorList { operators: rows });
    }
    if rows.is_empty() {
        println!("no operators in {}", operators.bucket());
        return Ok(());
    }
    let table: Vec<[String; 3]> = rows
        .iter()
        .map(|row| [row.name.clone(), row.role.to_string(), row.added_at.clone()])
        .collect();
    print!(
        "{}",
        render_table(["OPERATOR", "ROLE", "TOKEN ISSUED"], &table)
    );
    Ok(())
}

async fn remove(args: RemoveArgs) -> Result<(), CliError> {
    let client = args.nats.connect_options()?.connect().await?;
    let ns = &args.namespace.prefix;
    let operators = OperatorStore::open(&jetstream::new(client.clone()), ns).await?;
    let auditor = auditor(&args.nats, &client, ns, &args.actor).await?;
    if operators.remove(&args.name, &auditor).await? {
        println!("removed operator {}: its token no longer works", args.name);
    } else {
        println!("there is no operator {}", args.name);
    }
    Ok(())
}
