//! `switchyard auth probe`: prove, against a live deployment, that no plugin gets past its
//! rights. Throwaway plugins try every subject class and reply trick; the login the command
//! runs with (a trusted one, e.g. `admin`) observes. Prints each cell and `N passed, M failed`,
//! and fails when any cell failed.

use std::time::Duration;

use clap::Args;
use switchyard_control::auth::probe::{self, ProbeOptions};

use super::streams::NamespaceArgs;
use super::{CliError, NatsArgs};

#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The URL plugins connect to, when it differs from `--url` (its user and password are
    /// never used for plugins). By default `--url` without its user and password.
    #[arg(long)]
    plugin_url: Option<String>,
    /// How long one cell waits for its positive control (the proof that the observer would
    /// have seen the message).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// How long to keep watching after the control plane answered, for an answer another auth
    /// service instance sent elsewhere.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Print every cell, not only the failed ones.
    #[arg(long)]
    verbose: bool,
}

pub(crate) async fn run(args: ProbeArgs) -> Result<(), CliError> {
    let admin_options = args.nats.connect_options()?;
    let admin = admin_options.connect().await?;
    let mut plugin_connect = admin_options.clone();
    plugin_connect.url = args
        .plugin_url
        .clone()
        .unwrap_or_else(|| switchyard_bus::without_userinfo(&admin_options.url));
    let options = ProbeOptions {
        namespace: args.namespace.prefix,
        plugin_connect,
        wait: args.wait,
        grace: args.grace,
    };
    let report = probe::run(&admin, &options)
        .await
        .map_err(|e| CliError::nats("run the probe", e))?;
    for result in &report.results {
        if args.verbose || !result.passed {
            let mark = if result.passed { "ok  " } else { "FAIL" };
            println!("{mark} {}  ({})", result.cell, result.seen);
        }
    }
    println!("{} passed, {} failed", report.passed(), report.failed());
    if report.failed() > 0 {
        return Err(CliError::ProbeFailed {
            failed: report.failed(),
            total: report.results.len(),
        });
    }
    Ok(())
}
