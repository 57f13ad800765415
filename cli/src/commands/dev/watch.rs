//! `switchyard dev --watch <dir>`: the plugin in `<dir>` rebuilt, packaged, installed and run
//! by a host inside `dev` each time its files change.
//!
//! Each build gets a version of its own (`<version>-dev.<milliseconds>`, so that each is an
//! upgrade of the one before), and is installed as an operator would (`plugins add` of an
//! unsigned package, approved for all tenants). The host runs it and upgrades the instance as
//! it upgrades any plugin: a build that does not pass its health check (it exits, say) is
//! rolled back by the host to the last good build, which kept running meanwhile. A build whose
//! `--build` command fails is not installed at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchyard_control::registry::{LifecycleState, Registry};
use switchyard_host::report::{InstanceBoard, InstanceState};
use switchyard_schemas::manifest::toml;
use switchyard_schemas::semver::{Prerelease, Version};
use switchyard_schemas::Namespace;
use tokio_util::sync::CancellationToken;

/// How often the directory is looked at for changes.
const POLL: Duration = Duration::from_millis(500);
/// How long a build's outcome (running, or rolled back) is waited for before moving on.
const OUTCOME_WAIT: Duration = Duration::from_secs(120);
/// Files read per look at most: a directory far larger is not a plugin's source.
const MAX_FILES: usize = 20_000;

/// What to watch and how to build it.
pub(crate) struct Watch {
    /// The plugin's source directory: `plugin.toml`, `package.toml` and the files they name.
    pub(crate) dir: PathBuf,
    /// A shell command run in `dir` before each packaging, e.g. `cargo build --release`.
    pub(crate) build: Option<String>,
    /// Where the packages are written.
    pub(crate) out: PathBuf,
    /// The local server's URL.
    pub(crate) url: String,
}

/// Builds and installs once, then again after each change, until `stop`.
pub(crate) async fn run(
    watch: Watch,
    js: async_nats::jetstream::Context,
    namespace: Namespace,
    stop: CancellationToken,
) {
    let Ok(registry) = Registry::open(&js, &namespace).await else {
        return println!("watch: cannot open the registry");
    };
    let board = InstanceBoard::open(&js, &namespace).await.ok();
    loop {
        let built = build_and_install(&watch).await;
        // What the build itself wrote is not an edit: only changes after it start another.
        let seen = snapshot(&watch.dir);
        match built {
            Ok(installed) => report_outcome(&registry, board.as_ref(), &installed, &stop).await,
            Err(why) => println!("watch: {why}; the last good build keeps running"),
        }
        println!("watch: waiting for changes in {}", watch.dir.display());
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
            }
            let now = snapshot(&watch.dir);
            if now != seen {
                // Let an editor finish writing (several files, a rename) before building.
                tokio::time::sleep(POLL).await;
                break;
            }
        }
    }
}

/// The plugin and version a build installed.
struct Installed {
    plugin: switchyard_schemas::PluginId,
    version: String,
}

/// Runs the build command, packages the directory under a fresh version and installs it.
async fn build_and_install(watch: &Watch) -> Result<Installed, String> {
    if let Some(command) = &watch.build {
        println!("watch: building: {command}");
        let output = tokio::process::Command::new("sh")
            .args(["-c", command])
            .current_dir(&watch.dir)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run the build command: {e}"))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
            for line in tail.iter().rev() {
                println!("  {line}");
            }
            return Err(format!("the build failed ({})", output.status));
        }
    }
    let manifest_path = watch.dir.join("plugin.toml");
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
    let (manifest_text, plugin, version) = with_dev_version(&text)?;
    let dir = watch.dir.clone();
    let package = tokio::task::spawn_blocking(move || {
        switchyard_control::package::build_from_dir_with_manifest(&dir, manifest_text.into_bytes())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot package it: {e}"))?;
    std::fs::create_dir_all(&watch.out)
        .map_err(|e| format!("cannot create {}: {e}", watch.out.display()))?;
    let file = watch.out.join(format!("{plugin}-{version}.pkg"));
    std::fs::write(&file, package.bytes())
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let file = file.display().to_string();
    crate::commands::run_plugins(&[
        "add",
        &file,
        "--all-tenants",
        "--approve",
        "--allow-unsigned",
        "--allow-downgrade",
        "--url",
        &watch.url,
    ])
    .await
    .map_err(|e| format!("cannot install {plugin} {version}: {e}"))?;
    Ok(Installed {
        plugin: switchyard_schemas::PluginId::new(plugin.as_str()).map_err(|e| e.to_string())?,
        version,
    })
}

/// `text` (a manifest) with its version made `<version>-dev.<milliseconds since 1970>`; the
/// new text, the plugin id and the new version.
fn with_dev_version(text: &str) -> Result<(String, String, String), String> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| format!("plugin.toml is not TOML: {e}"))?;
    let plugin = table
        .get_mut("plugin")
        .and_then(toml::Value::as_table_mut)
        .ok_or("plugin.toml has no [plugin]")?;
    let id = plugin
        .get("id")
        .and_then(toml::Value::as_str)
        .ok_or("plugin.toml has no plugin.id")?
        .to_owned();
    let mut version: Version = plugin
        .get("version")
        .and_then(toml::Value::as_str)
        .ok_or("plugin.toml has no plugin.version")?
        .parse()
        .map_err(|e| format!("plugin.version: {e}"))?;
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    version.pre = Prerelease::new(&format!("dev.{millis}")).map_err(|e| e.to_string())?;
    version.build = switchyard_schemas::semver::BuildMetadata::EMPTY;
    plugin.insert("version".into(), version.to_string().into());
    Ok((table.to_string(), id, version.to_string()))
}

/// Says how a build went: running, rolled back to the last good one, or failed.
async fn report_outcome(
    registry: &Registry,
    board: Option<&InstanceBoard>,
    installed: &Installed,
    stop: &CancellationToken,
) {
    let deadline = tokio::time::Instant::now() + OUTCOME_WAIT;
    let Installed { plugin, version } = installed;
    while tokio::time::Instant::now() < deadline && !stop.is_cancelled() {
        let registration = registry.get(plugin).await.ok().flatten();
        let Some(registration) = registration else {
            return;
        };
        let registered = registration.manifest.plugin.version.to_string();
        if &registered != version {
            println!(
                "watch: {plugin} {version} failed its health check; rolled back to {registered} \
                 (why: `switchyard audit`; its output: `switchyard logs {plugin}`)"
            );
            return;
        }
        if registration.state() == LifecycleState::Failed {
            println!(
                "watch: {plugin} {version} keeps crashing and is marked failed; fix it and save \
                 (why: `switchyard logs {plugin}`)"
            );
            return;
        }
        if let Some(board) = board {
            let reports = board.list(Some(plugin.as_str())).await.unwrap_or_default();
            if !reports.is_empty()
                && reports
                    .iter()
                    .all(|r| &r.version == version && r.state == InstanceState::Running)
            {
                println!("watch: {plugin} {version} runs");
                return;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The files under `dir` with their size and time of change; hidden entries and `target/`
/// are left out (the build writes there).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                pending.push(entry.path());
            } else if files.len() < MAX_FILES {
                files.insert(entry.path(), (metadata.len(), metadata.modified().ok()));
            }
        }
    }
    files
}
