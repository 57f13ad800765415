//! `switchyard host`: run the plugin host on this machine (docs/host.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use switchyard_host::confine::Confinement;
use switchyard_host::run::{run_host, HostOptions};
use tokio_util::sync::CancellationToken;

use super::streams::NamespaceArgs;
use super::{CliError, NatsArgs};

/// The name under which the `switchyard` binary acts as the trampoline that confines a worker
/// and becomes it: the host links it to its own executable in its state directory.
pub(crate) const ENTER_NAME: &str = "switchyard-enter";

#[derive(Debug, Args)]
pub(crate) struct HostArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// This host's name, unique among the deployment's live hosts (letters, digits, `-`, `_`,
    /// `.`) [default: the machine's name].
    #[arg(long)]
    name: Option<String>,
    /// Where instances are unpacked and run from [default:
    /// $HOME/.local/state/switchyard/host-<name>].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The NATS URL workers connect to [default: the host's URL without its user and
    /// password].
    #[arg(long, value_name = "URL")]
    worker_url: Option<String>,
    /// An environment variable for every worker, e.g. `OTEL_EXPORTER_OTLP_ENDPOINT=...`
    /// (repeatable); workers get nothing else of the host's environment.
    #[arg(long = "worker-env", value_name = "NAME=VALUE", value_parser = parse_env)]
    worker_env: Vec<(String, String)>,
    /// How often the host writes its heartbeat, reads the registry and reports its instances.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// A host not heard from for this long is taken as gone, and its instances are started
    /// elsewhere.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    host_timeout: Duration,
    /// Confine workers with rlimits only, even where cgroups are available (weaker: see
    /// docs/host.md).
    #[arg(long)]
    rlimits_only: bool,
    /// The user ids workers run as, one of its own per instance, e.g. `200000-265535`
    /// [default, when the host runs as root: 1900000000-1900065535]; `none`: as the host's
    /// user.
    #[arg(long, value_name = "FIRST-LAST|none", value_parser = parse_uids)]
    worker_uids: Option<UidRange>,
}

/// `--worker-uids`.
#[derive(Debug, Clone)]
struct UidRange(Option<std::ops::RangeInclusive<u32>>);

fn parse_uids(raw: &str) -> Result<UidRange, String> {
    if raw == "none" {
        return Ok(UidRange(None));
    }
    let (first, last) = raw
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
        .ok_or_else(|| format!("`{raw}` is not FIRST-LAST or none"))?;
    if first == 0 || first > last {
        return Err(format!(
            "`{raw}`: the range must not hold 0 (root) and must not be empty"
        ));
    }
    Ok(UidRange(Some(first..=last)))
}

fn parse_env(raw: &str) -> Result<(String, String), String> {
    let (name, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("`{raw}` is not NAME=VALUE"))?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("`{name}` is not an environment variable name"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

pub(crate) async fn run(args: HostArgs) -> Result<(), CliError> {
    let name = args.name.unwrap_or_else(machine_name);
    let confinement = if args.rlimits_only {
        Confinement::rlimits_only(&name)
    } else {
        Confinement::detect(&name)
    }
    .map_err(|e| CliError::BadArgument {
        argument: "--name",
        reason: e.to_string(),
    })?;
    let state_dir = match args.state_dir {
        Some(dir) => dir,
        None => default_state_dir(&name)?,
    };
    let enter = link_trampoline(&state_dir)?;
    let options = args.nats.connect_options()?;
    let worker_url = args
        .worker_url
        .unwrap_or_else(|| switchyard_bus::without_userinfo(&options.url));
    let client = options.connect().await?;
    let mut host = HostOptions::new(
        &name,
        args.namespace.prefix,
        state_dir.clone(),
        enter,
        worker_url,
    );
    host.worker_env = args.worker_env;
    host.heartbeat = args.heartbeat;
    if let Some(UidRange(uids)) = args.worker_uids {
        if uids.is_some() && !switchyard_host::run::runs_as_root() {
            return Err(CliError::BadArgument {
                argument: "--worker-uids",
                reason: "changing the workers' user needs a host running as root".to_owned(),
            });
        }
        host.worker_uids = uids;
    }
    host.host_timeout = args.host_timeout;
    let users = match &host.worker_uids {
        Some(range) => format!(
            "each worker as a user of its own ({}-{})",
            range.start(),
            range.end()
        ),
        None => "workers as the host's user".to_owned(),
    };
    println!(
        "host {name}: confinement by {}; {users}; instances in {}",
        confinement.mechanism(),
        state_dir.display()
    );
    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        switchyard_plugin_sdk::stop_signal().await;
        signal.cancel();
    });
    Box::pin(run_host(client, host, confinement, stop))
        .await
        .map_err(|e| CliError::Nats {
            action: "run the host",
            reason: e.to_string(),
        })?;
    println!("host {name} stopped");
    Ok(())
}

/// `$HOME/.local/state/switchyard/host-<name>`.
fn default_state_dir(name: &str) -> Result<PathBuf, CliError> {
    let home = std::env::var_os("HOME").ok_or_else(|| CliError::BadArgument {
        argument: "--state-dir",
        reason: "HOME is not set; give --state-dir".to_owned(),
    })?;
    Ok(Path::new(&home)
        .join(".local/state/switchyard")
        .join(format!("host-{name}")))
}

/// Links `<state_dir>/switchyard-enter` to this executable (replacing an older link), so that
/// workers start through it.
pub(crate) fn link_trampoline(state_dir: &Path) -> Result<PathBuf, CliError> {
    let failed = |action: &str, e: std::io::Error| CliError::BadArgument {
        argument: "--state-dir",
        reason: format!("cannot {action} in {}: {e}", state_dir.display()),
    };
    std::fs::create_dir_all(state_dir).map_err(|e| failed("create the directory", e))?;
    // Traversable, not listable: workers reach their own directory below, nothing else.
    std::fs::set_permissions(
        state_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .map_err(|e| failed("set the mode of the directory", e))?;
    let exe = std::env::current_exe().map_err(|e| failed("find this executable", e))?;
    let link = state_dir.join(ENTER_NAME);
    match std::fs::remove_file(&link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed("replace the trampoline link", e)),
    }
    std::os::unix::fs::symlink(&exe, &link).map_err(|e| failed("link the trampoline", e))?;
    Ok(link)
}

/// This machine's name, made fit for a host name.
fn machine_name() -> String {
    let name: String = switchyard_host::run::machine_name()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "host".to_owned()
    } else {
        name
    }
}
