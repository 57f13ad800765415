//! `switchyard auth`: broker-enforced plugin rights (`docs/security.md`).
//!
//! - `init` writes what the nats-server configuration needs: an issuer key and the trusted
//!   logins.
//! - `serve` runs the auth callout: it decides every plugin connection against the registry
//!   and the credentials, and disconnects connections whose rights changed. It is a process of
//!   its own (not part of `switchyard run`) so that the issuer key, which can grant any right,
//!   lives in one small process only; run one or more next to the dispatchers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use switchyard_dispatcher::auth::{issuer_from_seed, AuthConfig, AuthService, AuthSetup};

use super::streams::NamespaceArgs;
use super::{CliError, NatsArgs};

// Parsed once per process: the size of `Serve` costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum AuthCommand {
    /// Generate an issuer key and trusted logins, and write the nats-server configuration
    /// that turns broker-enforced plugin rights on.
    ///
    /// Writes `issuer.nk` (the issuer's seed: keep it secret, only `switchyard auth serve`
    /// needs it) and `nats-auth.conf` (include it in the server's configuration, or use it as
    /// the configuration). Refuses to overwrite either.
    Init(InitArgs),
    /// Run the auth callout: authorize plugin connections, answer their rights requests, and
    /// disconnect connections whose rights changed, until SIGTERM or Ctrl-C.
    ///
    /// Connect with `--url` as a trusted user of the plugins' account (the `dispatcher` login
    /// of `auth init`). Several may run; one answers each request.
    Serve(ServeArgs),
    /// Prove that no plugin gets past its rights on this deployment: throwaway plugins try
    /// every subject class and reply trick, alone and colluding, and this login (a trusted
    /// one with full rights, e.g. `admin`) observes what arrives. Prints `N passed, M
    /// failed`; fails when any cell failed. Its plugins are removed at the end.
    Probe(super::probe::ProbeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The directory to write `issuer.nk` and `nats-auth.conf` into (created if missing).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// The server URL to show in the login URLs printed.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    server_url: String,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The issuer's seed file (`issuer.nk` of `auth init`): an account nkey whose public key
    /// the server's `auth_callout { issuer }` names.
    #[arg(long, env = "SWITCHYARD_AUTH_ISSUER_SEED_FILE")]
    issuer_seed_file: PathBuf,
    /// The account plugins are placed in (`auth_callout { account }`, where the streams are).
    #[arg(long, default_value = switchyard_dispatcher::auth::DEFAULT_ACCOUNT)]
    account: String,
    /// A system-account login URL (`nats://system:…@host:4222`), to disconnect plugin
    /// connections whose rights changed. Without it, a change reaches a connection when its
    /// JWT expires (`--ttl`).
    #[arg(long, env = "SWITCHYARD_AUTH_SYSTEM_URL")]
    system_url: Option<String>,
    /// How long a plugin connection's rights are valid before it must reconnect (and be
    /// authorized again). While no auth service runs, a revoked right lasts at most this long.
    #[arg(long, default_value = "60s", value_parser = parse_ttl)]
    ttl: Duration,
    /// How often stale plugin connections are looked for besides every change.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    sweep_interval: Duration,
}

pub(crate) async fn run(command: AuthCommand) -> Result<(), CliError> {
    match command {
        AuthCommand::Init(args) => init(&args),
        AuthCommand::Serve(args) => serve(args).await,
        AuthCommand::Probe(args) => super::probe::run(args).await,
    }
}

fn init(args: &InitArgs) -> Result<(), CliError> {
    let setup = AuthSetup::generate();
    std::fs::create_dir_all(&args.dir).map_err(|source| CliError::Io {
        action: "create the directory",
        path: args.dir.clone(),
        source,
    })?;
    let seed_file = args.dir.join("issuer.nk");
    let config_file = args.dir.join("nats-auth.conf");
    for path in [&seed_file, &config_file] {
        if path.exists() {
            return Err(CliError::Io {
                action: "refuse to overwrite",
                path: path.clone(),
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
    }
    write_private(&seed_file, &format!("{}\n", setup.issuer_seed()))?;
    write_private(&config_file, &setup.server_config())?;
    println!(
        "wrote {} (the issuer's seed: keep it secret)",
        seed_file.display()
    );
    println!("wrote {} (the server configuration)", config_file.display());
    println!();
    println!("trusted logins (they bypass the auth callout; keep them secret):");
    for (role, login) in [
        ("dispatcher and auth callout", &setup.dispatcher),
        ("operator CLI", &setup.admin),
        (
            "system account (disconnects stale plugin connections)",
            &setup.system,
        ),
    ] {
        println!("  {role}: {}", login.url(&args.server_url));
    }
    println!();
    println!("then: nats-server -js -c {}", config_file.display());
    println!(
        "      switchyard auth serve --url <dispatcher URL> --system-url <system URL> --issuer-seed-file {}",
        seed_file.display()
    );
    println!("      switchyard run --url <dispatcher URL>");
    println!("      switchyard plugins credentials <plugin> --url <operator URL>");
    Ok(())
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &str) -> Result<(), CliError> {
    let io = |source| CliError::Io {
        action: "write",
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)
}

async fn serve(args: ServeArgs) -> Result<(), CliError> {
    // The key is checked before connecting: a wrong file is refused with no server needed.
    let seed = std::fs::read_to_string(&args.issuer_seed_file).map_err(|source| CliError::Io {
        action: "read the issuer seed",
        path: args.issuer_seed_file.clone(),
        source,
    })?;
    let config = AuthConfig {
        namespace: args.namespace.prefix,
        issuer: Arc::new(issuer_from_seed(&seed)?),
        account: args.account,
        ttl: args.ttl,
        sweep_interval: args.sweep_interval,
    };
    let client = args.nats.connect_options().connect().await?;
    let system = match &args.system_url {
        Some(url) => {
            let mut options = args.nats.connect_options();
            options.url.clone_from(url);
            options.name = Some("switchyard-auth-system".to_owned());
            Some(options.connect().await?)
        }
        None => None,
    };
    let issuer = config.issuer.public_key();
    let service = AuthService::start(client, system, config).await?;
    println!("switchyard auth callout running (issuer {issuer})");
    switchyard_plugin_sdk::stop_signal().await;
    service.shutdown().await;
    println!("stopped");
    Ok(())
}

/// A JWT lifetime: a duration of at least 5 seconds (shorter ones would have plugin
/// connections reconnecting all the time).
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if ttl < Duration::from_secs(5) {
        return Err(format!("`{text}` is too short: at least 5s"));
    }
    Ok(ttl)
}
