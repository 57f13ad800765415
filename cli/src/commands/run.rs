//! `switchyard run`: the dispatcher process.

use std::num::NonZeroU32;
use std::time::Duration;

use clap::Args;
use switchyard_bus::Streams;
use switchyard_dispatcher::pipeline::breaker::BreakerConfig;
use switchyard_dispatcher::{Dispatcher, DispatcherConfig};

use super::streams::NamespaceArgs;
use super::{CliError, NatsArgs};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// How long a stop (SIGTERM or Ctrl-C) waits for deliveries under way; the rest are left
    /// un-acknowledged and JetStream redelivers them.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Consecutive failed attempts after which a plugin subscription's circuit opens.
    #[arg(long, default_value_t = NonZeroU32::new(5).expect("5 is not zero"))]
    breaker_failures: NonZeroU32,
    /// How long an open circuit pauses deliveries before a probe.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    breaker_cooldown: Duration,
    /// This instance's name in status reports (default: unique per process).
    #[arg(long)]
    instance: Option<String>,
}

impl RunArgs {
    /// This dispatcher's instance name, settled once so that the status reports and the
    /// telemetry resource (`service.instance.id`) name the same instance.
    pub(crate) fn settle_instance(&mut self) -> String {
        self.instance
            .get_or_insert_with(|| DispatcherConfig::default().instance)
            .clone()
    }
}

pub(crate) async fn run(args: RunArgs) -> Result<(), CliError> {
    let options = args.nats.connect_options()?;
    let client = options.connect().await?;
    let namespace = args.namespace.prefix;
    let defaults = DispatcherConfig::default();
    let config = DispatcherConfig {
        streams: Streams::defaults(&namespace),
        namespace,
        breaker: BreakerConfig {
            failure_threshold: args.breaker_failures,
            cooldown: args.breaker_cooldown,
        },
        shutdown_grace: args.shutdown_grace,
        instance: args.instance.unwrap_or(defaults.instance),
    };
    let instance = config.instance.clone();
    let dispatcher = Dispatcher::start(client, config).await?;
    println!(
        "switchyard dispatcher {instance} running on {}",
        switchyard_bus::redact_password(&options.url)
    );
    switchyard_plugin_sdk::stop_signal().await;
    println!(
        "stopping: no new pulls; waiting up to {:?} for deliveries under way",
        args.shutdown_grace
    );
    let dropped = dispatcher.shutdown().await;
    if dropped > 0 {
        println!("stopped; {dropped} deliveries left un-acknowledged for redelivery");
    } else {
        println!("stopped");
    }
    Ok(())
}
