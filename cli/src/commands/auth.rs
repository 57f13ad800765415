//! `switchyard auth`: broker-enforced plugin rights (`docs/security.md`).
//!
//! - `init` writes what the nats-server configuration needs: an issuer key and the trusted
//!   logins.
//! - `serve` runs the auth callout: it decides every plugin connection against the registry
//!   and the credentials, and disconnects connections whose rights changed. It is a process of
//!   its own (not part of `switchyard run`) so that the issuer key, which can grant any right,
//!   lives in one small process only; run one or more next to the dispatchers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use switchyard_control::auth::{
    issuer_from_seed, xkey_from_seed, AuthConfig, AuthService, AuthSetup, Listen, Login, TlsFiles,
    MIN_QUOTA_INTERVAL,
};

use super::secrets::{self, write_private, UrlSource};
use super::streams::NamespaceArgs;
use super::{CliError, NatsArgs};

// Parsed once per process: the size of `Serve` costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum AuthCommand {
    /// Generate the keys and trusted logins, and write the nats-server configuration that
    /// turns broker-enforced plugin rights on.
    ///
    /// Writes, each readable by its owner only: `issuer.nk` (the issuer's seed) and `xkey.nk`
    /// (the seed of the key authorization requests are sealed to), which only `switchyard auth
    /// serve` needs; `nats-auth.conf` (include it in the server's configuration, or use it as
    /// the configuration); and the trusted logins' URLs, passwords included, in
    /// `dispatcher.url`, `admin.url` and `system.url`, for `--url-file`. Prints no secret.
    /// Refuses to overwrite any of them.
    Init(InitArgs),
    /// Run the auth callout: authorize plugin connections, answer their rights requests, and
    /// disconnect connections whose rights changed, until SIGTERM or Ctrl-C.
    ///
    /// Connect with `--url-file` as a trusted user of the plugins' account (`dispatcher.url`
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
    /// The directory to write the keys, the configuration and the login URLs into (created if
    /// missing).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Where the server listens for clients. Beyond this machine (not a loopback address),
    /// give --tls-cert and --tls-key too: without TLS, passwords and plugin secrets cross the
    /// network in clear.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:4222")]
    listen: Listen,
    /// The server's TLS certificate (PEM), for a `tls {}` block; needs --tls-key.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The TLS certificate's private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A CA (PEM) client certificates chain to; needs --tls-cert.
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// The server URL the login URLs name [default: from --listen, e.g.
    /// `nats://127.0.0.1:4222`].
    #[arg(long)]
    server_url: Option<String>,
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
    /// The xkey's seed file (`xkey.nk` of `auth init`): the curve key whose public key the
    /// server's `auth_callout { xkey }` names. The server then seals each authorization
    /// request, with the plugin's secret in it, to this key. Without it, requests are in
    /// plaintext, and a server that seals them cannot be answered.
    #[arg(long, env = "SWITCHYARD_AUTH_XKEY_SEED_FILE")]
    xkey_seed_file: Option<PathBuf>,
    /// The account plugins are placed in (`auth_callout { account }`, where the streams are).
    #[arg(long, default_value = switchyard_control::auth::DEFAULT_ACCOUNT)]
    account: String,
    /// A system-account login URL (`nats://system:…@host:4222`), to disconnect plugin
    /// connections whose rights changed [env: SWITCHYARD_AUTH_SYSTEM_URL]. Prefer
    /// --system-url-file: a password here is visible to other users of the machine. Without
    /// either, a change reaches a connection when its JWT expires (`--ttl`).
    #[arg(long, value_name = "URL", conflicts_with = "system_url_file")]
    system_url: Option<String>,
    /// A file holding the system-account login URL (`system.url` of `auth init`) [env:
    /// SWITCHYARD_AUTH_SYSTEM_URL_FILE].
    #[arg(long, value_name = "PATH")]
    system_url_file: Option<PathBuf>,
    /// How long a plugin connection's rights are valid before it must reconnect (and be
    /// authorized again). While no auth service runs, a revoked right lasts at most this long.
    #[arg(long, default_value = "60s", value_parser = parse_ttl)]
    ttl: Duration,
    /// How often every plugin's rights are read afresh to look for stale connections, besides
    /// every change.
    #[arg(long, default_value = "30s", value_parser = parse_sweep_interval)]
    sweep_interval: Duration,
    /// How often plugin connections are checked against their plugins' quotas (subscriptions,
    /// connections, bytes per second; needs the system login). A plugin may exceed a quota for
    /// up to this long.
    #[arg(long, default_value = "1s", value_parser = parse_quota_interval)]
    quota_interval: Duration,
    /// How long a plugin disconnected for exceeding a quota is refused new logins.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    quota_cooldown: Duration,
}

pub(crate) async fn run(command: AuthCommand) -> Result<(), CliError> {
    match command {
        AuthCommand::Init(args) => init(args),
        AuthCommand::Serve(args) => Box::pin(serve(args)).await,
        AuthCommand::Probe(args) => super::probe::run(args).await,
    }
}

/// The file each trusted login's URL is written to.
fn url_file(dir: &Path, login: &Login) -> PathBuf {
    dir.join(format!("{}.url", login.user))
}

/// An absolute path, so that the server finds it whatever its working directory.
fn absolute(path: PathBuf) -> Result<PathBuf, CliError> {
    std::path::absolute(&path).map_err(|source| CliError::Io {
        action: "resolve",
        path,
        source,
    })
}

/// The warning for a server that listens beyond this machine without TLS, if it does.
fn clear_text_warning(listen: &Listen) -> Option<String> {
    listen.is_clear_on_the_network().then(|| {
        format!(
            "warning: the server will listen on {listen}, beyond this machine, without TLS: \
             the trusted logins' passwords, plugin secrets and every message will cross the \
             network in clear. Give --tls-cert and --tls-key (and --tls-ca) to write a `tls {{}}` \
             block, or listen on 127.0.0.1."
        )
    })
}

fn init(args: InitArgs) -> Result<(), CliError> {
    let mut setup = AuthSetup::generate();
    setup.listen = Listen {
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: absolute(cert)?,
                key: absolute(key)?,
                ca: args.tls_ca.map(absolute).transpose()?,
            }),
            _ => None,
        },
        ..args.listen
    };
    let server_url = args.server_url.unwrap_or_else(|| setup.listen.client_url());
    std::fs::create_dir_all(&args.dir).map_err(|source| CliError::Io {
        action: "create the directory",
        path: args.dir.clone(),
        source,
    })?;
    let seed_file = args.dir.join("issuer.nk");
    let xkey_file = args.dir.join("xkey.nk");
    let config_file = args.dir.join("nats-auth.conf");
    let logins = [
        (
            &setup.dispatcher,
            "the dispatcher's and the auth callout's login",
        ),
        (&setup.admin, "the operator CLI's login"),
        (
            &setup.system,
            "the system-account login (disconnects stale plugin connections)",
        ),
    ];
    let mut files = vec![
        (
            seed_file.clone(),
            format!("{}\n", setup.issuer_seed()),
            "the issuer's seed",
        ),
        (
            xkey_file.clone(),
            format!("{}\n", setup.xkey_seed()),
            "the seed of the key authorization requests are sealed to",
        ),
        (
            config_file.clone(),
            setup.server_config(),
            "the server configuration",
        ),
    ];
    for (login, role) in logins {
        files.push((
            url_file(&args.dir, login),
            format!("{}\n", login.url(&server_url)),
            role,
        ));
    }
    // Nothing is written unless everything can be: an earlier set-up stays whole.
    for (path, _, _) in &files {
        if path.exists() {
            return Err(CliError::Io {
                action: "refuse to overwrite",
                path: path.clone(),
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
    }
    if let Some(warning) = clear_text_warning(&setup.listen) {
        eprintln!("{warning}");
        eprintln!();
    }
    for (path, contents, what) in &files {
        write_private(path, contents)?;
        println!("wrote {} ({what})", path.display());
    }
    println!();
    println!(
        "Each file is readable by its owner only and holds a secret (the configuration holds \
         the passwords). The server listens on {}.",
        setup.listen
    );
    println!();
    let url = |login| url_file(&args.dir, login).display().to_string();
    println!("then: nats-server -js -c {}", config_file.display());
    println!(
        "      switchyard auth serve --url-file {} --system-url-file {} --issuer-seed-file {} --xkey-seed-file {}",
        url(&setup.dispatcher),
        url(&setup.system),
        seed_file.display(),
        xkey_file.display()
    );
    println!("      switchyard run --url-file {}", url(&setup.dispatcher));
    println!(
        "      switchyard plugins credentials <plugin> --url-file {} --out <plugin>.token",
        url(&setup.admin)
    );
    Ok(())
}

/// Reads a seed file.
fn read_seed(path: &Path, action: &'static str) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Io {
        action,
        path: path.to_owned(),
        source,
    })
}

async fn serve(args: ServeArgs) -> Result<(), CliError> {
    // The keys are checked before connecting: a wrong file is refused with no server needed.
    let seed = read_seed(&args.issuer_seed_file, "read the issuer seed")?;
    let xkey = match &args.xkey_seed_file {
        Some(path) => Some(Arc::new(xkey_from_seed(&read_seed(
            path,
            "read the xkey seed",
        )?)?)),
        None => {
            tracing::warn!(
                "no --xkey-seed-file: authorization requests, plugin secrets in them, are not sealed, \
                 and a server whose auth_callout names an xkey cannot be answered"
            );
            None
        }
    };
    let config = AuthConfig {
        namespace: args.namespace.prefix,
        issuer: Arc::new(issuer_from_seed(&seed)?),
        account: args.account,
        ttl: args.ttl,
        sweep_interval: args.sweep_interval,
        quota_interval: args.quota_interval,
        quota_cooldown: args.quota_cooldown,
        xkey,
    };
    let system_url = UrlSource {
        url: args.system_url.as_deref(),
        file: args.system_url_file.as_deref(),
        env: "SWITCHYARD_AUTH_SYSTEM_URL",
        env_file: "SWITCHYARD_AUTH_SYSTEM_URL_FILE",
    }
    .resolve(secrets::environment)?;
    let client = args.nats.connect_options()?.connect().await?;
    let system = match &system_url {
        Some(url) => {
            let mut options = args.nats.connect_options()?;
            options.url.clone_from(url);
            options.name = Some("switchyard-auth-system".to_owned());
            Some(options.connect().await?)
        }
        None => None,
    };
    let issuer = config.issuer.public_key();
    let sealed = config.xkey.as_ref().map_or_else(
        || "requests not sealed".to_owned(),
        |key| format!("requests sealed to {}", key.public_key()),
    );
    let service = AuthService::start(client, system, config).await?;
    println!("switchyard auth callout running (issuer {issuer}, {sealed})");
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

/// A sweep interval: at least one second (zero would make the timer spin).
fn parse_sweep_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < Duration::from_secs(1) {
        return Err(format!("`{text}` is too short: at least 1s"));
    }
    Ok(interval)
}

/// A quota interval: at least [`MIN_QUOTA_INTERVAL`].
fn parse_quota_interval(text: &str) -> Result<Duration, String> {
    let interval = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < MIN_QUOTA_INTERVAL {
        return Err(format!(
            "`{text}` is too short: at least {}",
            humantime::format_duration(MIN_QUOTA_INTERVAL)
        ));
    }
    Ok(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_intervals_are_not_zero() {
        assert_eq!(parse_sweep_interval("30s"), Ok(Duration::from_secs(30)));
        assert!(parse_sweep_interval("0s").is_err());
    }

    #[test]
    fn quota_intervals_are_not_too_short() {
        assert_eq!(parse_quota_interval("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_quota_interval("100ms"), Ok(MIN_QUOTA_INTERVAL));
        assert!(parse_quota_interval("0s").is_err());
        assert!(parse_quota_interval("99ms").is_err());
    }

    #[test]
    fn only_a_server_reachable_from_the_network_without_tls_is_warned_about() {
        let listen = |text: &str| text.parse::<Listen>().unwrap();
        assert_eq!(clear_text_warning(&Listen::default()), None);
        assert_eq!(clear_text_warning(&listen("[::1]:4222")), None);
        let warning = clear_text_warning(&listen("0.0.0.0:4222")).expect("a warning");
        assert!(warning.contains("0.0.0.0:4222"), "{warning}");
        assert!(warning.contains("in clear"), "{warning}");
        assert!(warning.contains("--tls-cert"), "{warning}");
        let with_tls = Listen {
            tls: Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into(),
                ca: None,
            }),
            ..listen("0.0.0.0:4222")
        };
        assert_eq!(clear_text_warning(&with_tls), None);
    }
}
