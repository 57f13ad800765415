//! The end-to-end and shape-of-cost benchmarks: Switchyard against raw async-nats doing the
//! same work, each scenario on its own fresh nats-server. Prints one table per group.
//!
//! ```sh
//! cargo run --release -p switchyard-benches --bin e2e              # the whole suite
//! cargo run --release -p switchyard-benches --bin e2e -- --group throughput --repeat 3
//! cargo run --release -p switchyard-benches --bin e2e -- --scale 0.1   # a quick smoke run
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use switchyard_benches::idle;
use switchyard_benches::server::server_version;
use switchyard_benches::suite::{self, Group, SuiteOptions};

/// Switchyard's end-to-end benchmarks.
#[derive(Debug, Parser)]
#[command(name = "e2e")]
struct Args {
    /// Run only these groups (repeat the flag for several); default all.
    #[arg(long = "group", value_enum)]
    groups: Vec<Group>,
    /// Multiply every event count by this (0.1 for a quick smoke run).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Run each scenario this many times and report the median.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Plugins in the idle-plugins measurement.
    #[arg(long, default_value_t = 1000)]
    idle_plugins: usize,
    /// Seconds over which idle CPU is measured.
    #[arg(long = "idle-secs", default_value_t = 20)]
    idle_secs: u64,
    /// Internal: measure this many idle plugins in this process and print the report.
    #[arg(long = "idle-child", hide = true)]
    idle_child: Option<usize>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let idle_for = Duration::from_secs(args.idle_secs);
    if let Some(plugins) = args.idle_child {
        debug_assert_eq!(idle::CHILD_FLAG, "--idle-child");
        return match Box::pin(idle::measure(plugins, idle_for)).await {
            Ok(report) => {
                println!("{}", report.to_line());
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        };
    }
    let options = SuiteOptions {
        groups: if args.groups.is_empty() {
            Group::ALL.to_vec()
        } else {
            args.groups
        },
        scale: args.scale,
        repeat: args.repeat,
        idle_plugins: args.idle_plugins,
        idle_for,
    };
    match server_version().await {
        Ok(version) => println!(
            "Switchyard benchmarks: nats-server {version}, {} cores, scale {}, repeat {}",
            std::thread::available_parallelism().map_or(0, usize::from),
            options.scale,
            options.repeat
        ),
        Err(error) => return fail(&error),
    }
    match suite::run(&options).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn fail(error: &dyn std::error::Error) -> ExitCode {
    eprintln!("e2e: {error}");
    ExitCode::FAILURE
}
