//! `switchyard`: run the dispatcher or the embedded default, and operate plugins, streams and
//! dead letters.
//!
//! Thin on purpose: parse the arguments (clap refuses bad ones with a message naming them),
//! set up logging, run the command, and turn an error into a message and an exit code. The
//! commands are in [`commands`], one module each.

mod commands;
mod render;
mod table;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Started under the trampoline's name (the host's link to this executable), it confines
    // itself and becomes the worker, before any thread or runtime exists.
    let invoked_as = std::env::args_os().next().map(std::path::PathBuf::from);
    if invoked_as
        .as_deref()
        .and_then(std::path::Path::file_name)
        .is_some_and(|name| name == commands::host::ENTER_NAME)
    {
        let why = switchyard_host::confine::enter(std::env::args_os().skip(1));
        eprintln!("{}: {why}", commands::host::ENTER_NAME);
        return ExitCode::from(
            u8::try_from(switchyard_host::confine::ENTER_FAILED).unwrap_or(u8::MAX),
        );
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(cli()),
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn cli() -> ExitCode {
    let mut args = commands::Cli::parse();
    // RUST_LOG overrides the default; an empty RUST_LOG counts as unset.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|value| !value.trim().is_empty())
        // The telemetry module at info: its recoveries close the warnings it logged.
        .unwrap_or_else(|| {
            "warn,switchyard_dispatcher=info,switchyard_plugin_sdk::telemetry=info".to_owned()
        });
    // The NATS client logs its connect options (passwords included) at debug: where the
    // filter would let its debug through, it is capped at info unless RUST_LOG names it.
    let verbose = filter.contains("debug") || filter.contains("trace");
    let filter = if verbose && !filter.contains("async_nats") {
        format!("{filter},async_nats=info")
    } else {
        filter
    };
    let logs =
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter));
    match args.log_file() {
        // The embedded default's live view owns the terminal; its logs go to a file.
        Some(path) => match open_log(&path) {
            Ok(file) => logs
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init(),
            Err(error) => {
                eprintln!(
                    "error: cannot open the log file {}: {error}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        },
        // Colours only on a terminal: a journal, a file or a pipe gets plain text.
        None => logs
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
    // Exports traces and metrics only when the OTEL_* environment asks for it.
    let _telemetry = match switchyard_plugin_sdk::telemetry::init_from_env(&args.service_identity())
    {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    match Box::pin(commands::run(args)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

/// Opens (appending) a log file, creating its directory.
fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}
