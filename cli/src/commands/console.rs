//! `switchyard console`: the management API (HTTP and NATS) and the web console.

use std::net::SocketAddr;

use clap::Args;
use switchyard_bus::Bus;
use switchyard_console::Console;

use super::streams::NamespaceArgs;
use super::{CliError, NatsArgs};

#[derive(Debug, Args)]
pub(crate) struct ConsoleArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The address of the HTTP API and the web console. Plain HTTP: keep it on 127.0.0.1, or
    /// put a TLS-terminating proxy in front of it.
    #[arg(long, default_value = switchyard_console::DEFAULT_LISTEN)]
    listen: SocketAddr,
}

pub(crate) async fn run(args: ConsoleArgs) -> Result<(), CliError> {
    let options = args.nats.connect_options()?;
    let bus = Bus::connect(&options)
        .await?
        .with_namespace(args.namespace.prefix.clone());
    let console = Console::start(&bus, args.listen).await?;
    println!(
        "switchyard console on {} (NATS service `{}` on {}); sign in with a token from \
         `switchyard operators add NAME --role ROLE`",
        console.url(),
        switchyard_console::service::SERVICE_NAME,
        switchyard_bus::redact_password(&options.url)
    );
    switchyard_plugin_sdk::stop_signal().await;
    println!("stopped");
    Ok(())
}
