//! `switchyard logs <plugin>`: what a plugin's workers wrote on stdout and stderr, as the
//! hosts that run them published it.

use async_nats::jetstream;
use clap::Args;
use switchyard_schemas::PluginId;

use super::streams::NamespaceArgs;
use super::{CliError, NatsArgs};
use crate::render::{parse_plugin_id, printable};

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The plugin's id.
    #[arg(value_parser = parse_plugin_id)]
    plugin: PluginId,
    /// How many of the newest lines to show (all instances together).
    #[arg(long, short = 'n', default_value_t = 100)]
    lines: usize,
    /// Keep printing new lines as they come, until Ctrl-C.
    #[arg(long, short = 'f')]
    follow: bool,
}

pub(crate) async fn run(args: LogsArgs) -> Result<(), CliError> {
    let client = args.nats.connect_options()?.connect().await?;
    let js = jetstream::new(client);
    let read = switchyard_host::logs::read(&js, &args.namespace.prefix, &args.plugin, args.lines)
        .await
        .map_err(|e| CliError::Nats {
            action: "read the logs",
            reason: e.to_string(),
        })?;
    let Some((lines, mut more)) = read else {
        println!("no host has run a worker in this deployment yet: no logs");
        return Ok(());
    };
    if lines.is_empty() && !args.follow {
        println!("no output from `{}`'s workers is kept", args.plugin);
    }
    for line in &lines {
        print_line(line);
    }
    if !args.follow {
        return Ok(());
    }
    loop {
        tokio::select! {
            line = more.next() => match line {
                Some(Ok(line)) => print_line(&line),
                Some(Err(e)) => return Err(CliError::Nats { action: "follow the logs", reason: e.to_string() }),
                None => return Ok(()),
            },
            () = switchyard_plugin_sdk::stop_signal() => return Ok(()),
        }
    }
}

/// `<time> <instance>@<host> <stream>: <text>`, the text with control characters escaped.
fn print_line(line: &switchyard_host::logs::LogLine) {
    let at = line
        .at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    println!(
        "{at} {}@{} {}: {}",
        printable(&line.slot),
        printable(&line.host),
        printable(&line.stream),
        printable(&line.text)
    );
}
