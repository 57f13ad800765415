//! `switchyard plugins`: register, remove and list plugins in the registry.

use std::path::PathBuf;

use async_nats::jetstream;
use clap::{ArgGroup, Args, Subcommand};
use futures::StreamExt;
use serde::Serialize;
use switchyard_bus::Streams;
use switchyard_control::auth::{AuthError, CredentialStore};
use switchyard_control::lifecycle::install::{
    Candidate, InstallOptions, PackageAllowances, PackageChoice,
};
use switchyard_control::lifecycle::operate::OperateError;
use switchyard_control::package::{Package, StoreError, MANIFEST_PART};
use switchyard_control::registry::{
    Failure, LifecycleState, Provenance, Registration, Registry, TenantScope,
};
use switchyard_dispatcher::consumer::consumer_name;
use switchyard_dispatcher::pipeline::breaker::CircuitState;
use switchyard_dispatcher::status::{worst, SeenReport, StatusBoard, STALE_AFTER};
use switchyard_schemas::semver::Version;
use switchyard_schemas::{Manifest, Namespace, PluginId, Tenant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::audit::{auditor, ActorArgs};
use super::lifecycle;
use super::package;
use super::secrets::PrivateReplacement;
use super::streams::NamespaceArgs;
use super::{print_json, CliError, NatsArgs, OutputArgs};
use crate::render::{parse_plugin_id, parse_tenant, printable, timestamp};
use crate::table::render_table;

#[derive(Debug, Subcommand)]
pub(crate) enum PluginsCommand {
    /// Install a plugin from a package (a file, or `--package ID[@VERSION]` from the package
    /// store) or, for development, from its manifest alone (it waits for approval unless
    /// `--approve`), or upgrade it (what asks for more than was approved waits for approval).
    ///
    /// A package is verified first (every part's digest, its signature, the trusted keys):
    /// tampered or badly signed packages are refused; unsigned ones, or ones signed by an
    /// untrusted key, unless `--allow-unsigned` / `--allow-untrusted`. The decision is stored
    /// with the registration (`plugins show`, `history`) and in the audit log. A package file
    /// is published to the package store too.
    ///
    /// The manifest is checked first: an invalid one is refused with every problem listed,
    /// and nothing is written. Name the tenants whose events the plugin receives with
    /// `--tenant` (repeatable), or give `--all-tenants`. Adding an id that is already
    /// registered replaces its registration; the bucket keeps earlier revisions.
    ///
    /// Refused, naming the manifest line at fault, when its `core` range does not admit this
    /// Switchyard, a plugin it `requires` is missing or outside the range, it `conflicts`
    /// with an installed plugin (or one conflicts with it), an installed plugin requires it
    /// in a range the new version leaves, or it is older than the installed version (unless
    /// `--allow-downgrade`).
    Add(AddArgs),
    /// Upgrade an installed plugin from a package or manifest: `plugins add` for a plugin
    /// that must be installed already, its tenants kept unless given. What it asks for beyond
    /// what was approved waits for approval while the approved version keeps running.
    Upgrade(AddArgs),
    /// Approve what an installed plugin, or its pending upgrade, asks for (shown); a new
    /// installation is enabled too unless `--disabled`.
    Approve(lifecycle::ApproveArgs),
    /// Reject a pending upgrade (the approved version stays) or a pending installation
    /// (removed).
    Reject(PluginArgs),
    /// List the revisions the registry keeps of a plugin (the last 10): version, state, who
    /// approved it.
    History(StatusArgs),
    /// Go back to an earlier revision (`--to REV`, default: the latest of another version),
    /// with the approval it had; refused when it no longer fits beside the others.
    Rollback(lifecycle::RollbackArgs),
    /// Remove a plugin's registration; the dispatcher stops delivering to it, and its
    /// credential is revoked.
    ///
    /// Fails when no plugin with this id is registered under the prefix, and when installed
    /// plugins require it (listed), unless `--cascade` removes them too.
    Remove(RemoveArgs),
    /// Enable a disabled plugin, or recover a failed one (its failure is cleared): its events
    /// flow again, the held ones included, and (with broker-enforced rights) its workers may
    /// connect again.
    ///
    /// Refused while a plugin it requires is missing, outside the range, or disabled.
    Enable(PluginArgs),
    /// Disable a plugin without removing it: the dispatcher holds its events, and (with
    /// broker-enforced rights, docs/security.md) its workers are disconnected and refused.
    Disable(PluginArgs),
    /// Issue a new secret for a registered plugin's workers and print it (as
    /// `SWITCHYARD_PLUGIN_TOKEN=...`), or write it to a file with `--out`; any earlier secret
    /// stops working, and connections made with it are closed. Only a digest is stored: the
    /// secret is shown this once.
    Credentials(CredentialsArgs),
    /// List the registered plugins with their version, tenants, subscriptions and circuit.
    ///
    /// CIRCUIT is the worst breaker state any running dispatcher reports for the plugin's
    /// subscriptions: `closed` (flowing), `half-open` (probing), `open` (paused after
    /// consecutive failures), or `-` when no live dispatcher reports it (dispatchers presumed
    /// gone do not count).
    List(ListArgs),
    /// Show each subscription of one plugin: its backlog (events not yet pulled), events
    /// under way or waiting for a retry, redeliveries, dead letters, and every dispatcher's
    /// circuit state.
    ///
    /// A dispatcher not heard from for 15 s (three missed 5 s heartbeats) is marked `last
    /// seen Ns ago, presumed gone` and left out of CIRCUIT; a stopped one removes itself.
    Status(StatusArgs),
    /// Show one plugin's registration: tenants, state, when it was registered, and its
    /// manifest in canonical form (every subscription with its full delivery policy).
    Show(StatusArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) nats: NatsArgs,
    #[command(flatten)]
    pub(crate) namespace: NamespaceArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
    /// The plugin's id.
    #[arg(value_parser = parse_plugin_id)]
    pub(crate) plugin: PluginId,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("tenant_scope").args(["tenants", "all_tenants"])))]
pub(crate) struct AddArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The plugin's package file (`switchyard package build`), verified and published to the
    /// package store; or its manifest, `plugin.toml`, alone: the development path, where
    /// nothing is verified (recorded as "from manifest, no package"). Told apart by content.
    #[arg(value_name = "PACKAGE|MANIFEST", required_unless_present = "package")]
    source: Option<PathBuf>,
    /// Install a package of the deployment's package store instead: `ID@VERSION`, or `ID`
    /// for its highest published version.
    #[arg(long, value_name = "ID[@VERSION]", conflicts_with = "source")]
    package: Option<String>,
    /// Install the package even though it is unsigned: allowed for this plugin, for this
    /// install, and recorded with the registration and in the audit log.
    #[arg(long)]
    allow_unsigned: bool,
    /// Install the package even though its publisher key is not trusted: allowed for this
    /// plugin, for this install, and recorded with the registration and in the audit log.
    #[arg(long)]
    allow_untrusted: bool,
    /// A tenant whose events the plugin receives; repeat for several. A new plugin needs
    /// these or `--all-tenants`; an upgrade without them keeps the tenants it has.
    #[arg(long = "tenant", value_name = "TENANT", value_parser = parse_tenant)]
    tenants: Vec<Tenant>,
    /// Deliver the events of every tenant, including tenants that appear later.
    #[arg(long)]
    all_tenants: bool,
    /// Accept a version older than the one installed.
    #[arg(long)]
    allow_downgrade: bool,
    /// Approve what it asks for at once (by whoever runs this): a new plugin is enabled, an
    /// upgrade asking for more takes effect. Without it, those wait for `plugins approve`.
    #[arg(long)]
    approve: bool,
    #[command(flatten)]
    actor: ActorArgs,
    /// Set by `plugins upgrade`: the plugin must be installed already.
    #[arg(skip)]
    upgrade_only: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The id of the plugin to remove.
    #[arg(value_parser = parse_plugin_id)]
    plugin: PluginId,
    /// Also remove every installed plugin that requires it, directly or not (dependents
    /// first).
    #[arg(long)]
    cascade: bool,
    #[command(flatten)]
    actor: ActorArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PluginArgs {
    #[command(flatten)]
    pub(crate) nats: NatsArgs,
    #[command(flatten)]
    pub(crate) namespace: NamespaceArgs,
    /// The plugin's id.
    #[arg(value_parser = parse_plugin_id)]
    pub(crate) plugin: PluginId,
    #[command(flatten)]
    pub(crate) actor: ActorArgs,
}

#[derive(Debug, Args)]
pub(crate) struct CredentialsArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The plugin's id.
    #[arg(value_parser = parse_plugin_id)]
    plugin: PluginId,
    /// Revoke the plugin's secret instead of issuing one: its workers are refused.
    #[arg(long, conflicts_with = "out")]
    revoke: bool,
    /// Write the secret (the token alone) to this file, readable by its owner only, instead
    /// of printing it; replaces the file. Give it to the workers as
    /// `SWITCHYARD_PLUGIN_TOKEN_FILE`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    actor: ActorArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    #[command(flatten)]
    output: OutputArgs,
}

pub(crate) async fn run(command: PluginsCommand) -> Result<(), CliError> {
    match command {
        // Boxed: an install holds the registrations before and after across its requests.
        PluginsCommand::Add(args) => Box::pin(add(args)).await,
        PluginsCommand::Upgrade(mut args) => {
            args.upgrade_only = true;
            Box::pin(add(args)).await
        }
        PluginsCommand::Approve(args) => Box::pin(lifecycle::approve(args)).await,
        PluginsCommand::Reject(args) => lifecycle::reject(args).await,
        PluginsCommand::History(args) => lifecycle::history(args).await,
        PluginsCommand::Rollback(args) => Box::pin(lifecycle::rollback(args)).await,
        PluginsCommand::Remove(args) => remove(args).await,
        PluginsCommand::Enable(args) => Box::pin(set_enabled(args, true)).await,
        PluginsCommand::Disable(args) => Box::pin(set_enabled(args, false)).await,
        PluginsCommand::Credentials(args) => credentials(args).await,
        PluginsCommand::List(args) => list(args).await,
        PluginsCommand::Status(args) => status(args).await,
        PluginsCommand::Show(args) => show(args).await,
    }
}

pub(crate) async fn open_registry(
    nats: &NatsArgs,
    namespace: &NamespaceArgs,
) -> Result<Registry, CliError> {
    let client = nats.connect_options()?.connect().await?;
    Ok(Registry::open(&jetstream::new(client), &namespace.prefix).await?)
}

/// What `plugins add` installs from.
enum Source {
    /// A manifest alone (the development path): its path, the manifest and its text.
    Manifest {
        path: PathBuf,
        manifest: Box<Manifest>,
        text: String,
    },
    /// A package.
    Package(PackageRef),
}

/// Which package `plugins add` installs.
enum PackageRef {
    /// A package file.
    File {
        path: PathBuf,
        package: Box<Package>,
    },
    /// A package of the package store: the plugin, and its version (`None`: the latest).
    Stored {
        plugin: PluginId,
        version: Option<Version>,
    },
}

/// Whether the file starts like a package (a ustar archive) rather than a manifest.
fn is_package_file(path: &std::path::Path) -> Result<bool, CliError> {
    use std::io::Read as _;
    let io = |source| CliError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let mut head = Vec::with_capacity(USTAR_MAGIC_END);
    std::fs::File::open(path)
        .map_err(io)?
        .take(USTAR_MAGIC_END as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    Ok(head.get(USTAR_MAGIC_START..USTAR_MAGIC_END) == Some(b"ustar".as_slice()))
}

/// Where a ustar header holds its magic `ustar`.
const USTAR_MAGIC_START: usize = 257;
const USTAR_MAGIC_END: usize = 262;

impl Source {
    /// Reads what `plugins add` was given; a file is read before connecting, so that a bad
    /// one is refused even with no server.
    fn read(args: &AddArgs) -> Result<Self, CliError> {
        if let Some(wanted) = &args.package {
            let (plugin, version) = package::parse_package_ref(wanted)?;
            return Ok(Self::Package(PackageRef::Stored { plugin, version }));
        }
        // clap makes sure one of the two is given.
        let path = args.source.clone().unwrap_or_default();
        if is_package_file(&path)? {
            let package = Package::read_file(&path)?;
            return Ok(Self::Package(PackageRef::File {
                path,
                package: Box::new(package),
            }));
        }
        let manifest = Manifest::from_path(&path)?;
        // Read again for the lines of a refusal; a file changed in between only moves them.
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        Ok(Self::Manifest {
            path,
            manifest: Box::new(manifest),
            text,
        })
    }
}

async fn add(args: AddArgs) -> Result<(), CliError> {
    let source = Source::read(&args)?;
    // None: keep the installed plugin's tenants (a new one must name them).
    let tenants = if args.all_tenants {
        Some(TenantScope::All)
    } else if args.tenants.is_empty() {
        None
    } else {
        Some(TenantScope::only(args.tenants.clone())?)
    };
    // Before anything is written: a log that cannot be used refuses the change.
    let operator = lifecycle::operator(&args.nats, &args.namespace, &args.actor).await?;
    let candidate = match source {
        Source::Manifest {
            path,
            manifest,
            text,
        } => Candidate::from_manifest(*manifest, path.display().to_string(), text),
        Source::Package(package) => {
            let (choice, label) = match package {
                PackageRef::File { path, package } => (PackageChoice::Given(package), Some(path)),
                PackageRef::Stored { plugin, version } => {
                    (PackageChoice::Stored { plugin, version }, None)
                }
            };
            let allow = PackageAllowances {
                unsigned: args.allow_unsigned,
                untrusted: args.allow_untrusted,
            };
            let verified = Box::pin(Candidate::from_package(
                operator.jetstream(),
                operator.namespace(),
                choice,
                allow,
                &operator.auditor().actor().name,
            ))
            .await
            .map_err(install_error)?;
            if let Some(name) = &verified.published {
                println!(
                    "published {name} to {}",
                    package_bucket(&args.namespace.prefix)
                );
            }
            let mut candidate = verified.candidate;
            if let Some(path) = label {
                candidate.label = path.join(MANIFEST_PART).display().to_string();
            }
            candidate
        }
    };
    let options = InstallOptions {
        tenants,
        allow_downgrade: args.allow_downgrade,
        approve: args.approve,
        upgrade_only: args.upgrade_only,
    };
    let outcome = Box::pin(operator.install(&candidate, &options))
        .await
        .map_err(install_error)?;
    lifecycle::print_outcome(&outcome);
    if let Some(registration) = outcome.registration.as_ref().filter(|_| outcome.changed) {
        let id = registration.plugin_id();
        if registration.pending_upgrade.is_some() {
            println!("approve it with `switchyard plugins approve {id}`, or `plugins reject {id}`");
        } else if registration.awaiting_approval {
            println!("approve it with `switchyard plugins approve {id}`");
        }
    }
    Ok(())
}

/// An installation's refusal in the CLI's words: its options named.
fn install_error(error: OperateError) -> CliError {
    match error {
        OperateError::NotInstalled(plugin) => CliError::BadArgument {
            argument: "PACKAGE|MANIFEST",
            reason: format!("{plugin} is not installed; install it with `switchyard plugins add`"),
        },
        OperateError::NeedsTenants(plugin) => CliError::BadArgument {
            argument: "--tenant",
            reason: format!(
                "{plugin} is not installed: name the tenants whose events it receives \
                 (--tenant, repeatable, or --all-tenants)"
            ),
        },
        OperateError::TenantsWithUpgrade(_) => CliError::BadArgument {
            argument: "--tenant",
            reason: "an upgrade that asks for more cannot change the tenants too: change them \
                     first, or approve at once with --approve"
                .to_owned(),
        },
        OperateError::NoPackage(reason) => CliError::BadArgument {
            argument: "--package",
            reason,
        },
        OperateError::PackageStore(store) => match *store {
            StoreError::VersionExists { object, existing } => CliError::BadArgument {
                argument: "package",
                reason: format!(
                    "another package is published as {object} (sha256 {existing}); install \
                     that one with `--package {}`, publish this one with `switchyard package \
                     publish --replace`, or give it a new version",
                    object.replace('/', "@")
                ),
            },
            other => other.into(),
        },
        other => other.into(),
    }
}

/// The package store's bucket, for a message.
fn package_bucket(namespace: &Namespace) -> String {
    switchyard_control::package::store_bucket_name(namespace)
}

async fn remove(args: RemoveArgs) -> Result<(), CliError> {
    let operator = lifecycle::operator(&args.nats, &args.namespace, &args.actor).await?;
    let outcome =
        operator
            .remove(&args.plugin, args.cascade)
            .await
            .map_err(|error| match error {
                switchyard_control::lifecycle::operate::OperateError::Incompatible {
                    what,
                    problems,
                } => CliError::Incompatible {
                    what: what.replace("with cascade", "with --cascade"),
                    problems,
                },
                other => other.into(),
            })?;
    lifecycle::print_outcome(&outcome);
    Ok(())
}

async fn set_enabled(args: PluginArgs, enabled: bool) -> Result<(), CliError> {
    let operator = lifecycle::operator(&args.nats, &args.namespace, &args.actor).await?;
    lifecycle::print_outcome(&operator.set_enabled(&args.plugin, enabled).await?);
    Ok(())
}

async fn credentials(args: CredentialsArgs) -> Result<(), CliError> {
    let client = args.nats.connect_options()?.connect().await?;
    let js = jetstream::new(client.clone());
    let ns = &args.namespace.prefix;
    let credentials = CredentialStore::open(&js, ns).await?;
    let auditor = auditor(&args.nats, &client, ns, &args.actor).await?;
    if args.revoke {
        if credentials
            .revoke_audited(&args.plugin, None, &auditor)
            .await?
        {
            println!("revoked the credential of {}", args.plugin);
        } else {
            println!("{} had no credential", args.plugin);
        }
        return Ok(());
    }
    let registry = Registry::open(&js, ns).await?;
    if registry.get(&args.plugin).await?.is_none() {
        return Err(CliError::NotRegistered {
            plugin: args.plugin,
            bucket: registry.bucket().to_owned(),
        });
    }
    // The file is created before the secret: a path that cannot be written to fails before
    // the old secret is replaced.
    let out = args
        .out
        .as_deref()
        .map(PrivateReplacement::begin)
        .transpose()?;
    // A secret issued whose entry could not be stored still reaches its workers (the earlier
    // one no longer works); the command then fails, saying so.
    let (secret, unrecorded) = match credentials.issue_audited(&args.plugin, &auditor).await {
        Ok(secret) => (secret, None),
        Err(AuthError::IssuedNotRecorded { secret, audit }) => (secret, Some(audit)),
        Err(other) => return Err(other.into()),
    };
    if let Some(out) = out {
        let path = out.target().to_owned();
        out.commit(&format!("{}\n", secret.expose()))?;
        println!(
            "issued a new secret for {} and wrote it to {} (any earlier one no longer works); \
             give it to its workers as SWITCHYARD_PLUGIN_TOKEN_FILE",
            args.plugin,
            path.display()
        );
    } else {
        eprintln!(
            "issued a new secret for {}; give it to its workers (any earlier one no longer works):",
            args.plugin
        );
        println!("SWITCHYARD_PLUGIN_TOKEN={}", secret.expose());
    }
    match unrecorded {
        Some(audit) => Err(audit.into()),
        None => Ok(()),
    }
}

async fn list(args: ListArgs) -> Result<(), CliError> {
    let registry = open_registry(&args.nats, &args.namespace).await?;
    let registrations = registry.list().await?;
    if registrations.is_empty() && !args.output.json {
        println!("no plugins are registered in {}", registry.bucket());
        return Ok(());
    }
    let client = args.nats.connect_options()?.connect().await?;
    let reports = StatusBoard::open(&jetstream::new(client), &args.namespace.prefix)
        .await?
        .circuits()
        .await?;
    let now = OffsetDateTime::now_utc();
    if args.output.json {
        let plugins = registrations
            .iter()
            .map(|registration| PluginSummary {
                registration: RegistrationJson::of(registration),
                circuit: circuit_of(&reports, registration.plugin_id(), None, now),
            })
            .collect();
        return print_json(&PluginList { plugins });
    }
    let rows: Vec<[String; 6]> = registrations
        .iter()
        .map(|registration| {
            let [id, version, tenants, subscriptions] = row(registration);
            let circuit = circuit_of(&reports, registration.plugin_id(), None, now);
            [
                id,
                version,
                tenants,
                state_name(registration).to_owned(),
                circuit.unwrap_or("-").to_owned(),
                subscriptions,
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            [
                "PLUGIN",
                "VERSION",
                "TENANTS",
                "STATE",
                "CIRCUIT",
                "SUBSCRIPTIONS"
            ],
            &rows
        )
    );
    Ok(())
}

fn state_name(registration: &Registration) -> String {
    let state = registration.state().to_string();
    if registration.pending_upgrade.is_some() {
        format!("{state}, upgrade pending approval")
    } else {
        state
    }
}

/// `plugins list --json`.
#[derive(Debug, Serialize)]
struct PluginList {
    plugins: Vec<PluginSummary>,
}

/// One plugin in `plugins list --json`.
#[derive(Debug, Serialize)]
struct PluginSummary {
    #[serde(flatten)]
    registration: RegistrationJson,
    /// The worst state live dispatchers report, or null.
    circuit: Option<&'static str>,
}

/// A registration's fields shared by `list`, `status` and `show --json`.
#[derive(Debug, Serialize)]
struct RegistrationJson {
    id: String,
    version: String,
    description: Option<String>,
    /// Null when the plugin receives every tenant's events (`all_tenants`).
    tenants: Option<Vec<String>>,
    all_tenants: bool,
    enabled: bool,
    /// `pending_approval`, `enabled`, `disabled` or `failed`.
    state: LifecycleState,
    /// The version of an upgrade waiting for approval, or null.
    pending_upgrade: Option<String>,
    /// Who approved what it asks for, or null (approved by the program that stored it).
    approved_by: Option<String>,
    /// Why and since when it is failed (`reason`, `since`, `by`), or null.
    failure: Option<Failure>,
    /// Where it was installed from (`from`: `package` or `manifest`, and for a package the
    /// object, its sha256, the verdict, the publisher and who allowed it), or null.
    provenance: Option<Provenance>,
    #[serde(with = "time::serde::rfc3339")]
    registered_at: OffsetDateTime,
    subscriptions: Vec<SubscriptionJson>,
}

/// A subscription's name and event patterns.
#[derive(Debug, Serialize)]
struct SubscriptionJson {
    name: String,
    events: Vec<String>,
}

impl RegistrationJson {
    fn of(registration: &Registration) -> Self {
        let info = &registration.manifest.plugin;
        let tenants = match &registration.tenants {
            TenantScope::All => None,
            TenantScope::Only(tenants) => Some(tenants.iter().map(ToString::to_string).collect()),
        };
        Self {
            id: info.id.to_string(),
            version: info.version.to_string(),
            description: info.description.clone(),
            all_tenants: tenants.is_none(),
            tenants,
            enabled: registration.enabled,
            state: registration.state(),
            pending_upgrade: registration
                .pending_upgrade
                .as_ref()
                .map(|p| p.manifest.plugin.version.to_string()),
            approved_by: registration.approval.as_ref().map(|a| a.by.clone()),
            failure: registration.failure.clone(),
            provenance: registration.provenance.clone(),
            registered_at: registration.registered_at,
            subscriptions: registration
                .manifest
                .subscriptions
                .iter()
                .map(|s| SubscriptionJson {
                    name: s.name.to_string(),
                    events: s.events.iter().map(|p| p.as_str().to_owned()).collect(),
                })
                .collect(),
        }
    }
}

/// The worst state live dispatchers report for a plugin (or one of its subscriptions).
fn circuit_of(
    reports: &[SeenReport],
    plugin: &PluginId,
    subscription: Option<&str>,
    now: OffsetDateTime,
) -> Option<&'static str> {
    let states = reports
        .iter()
        .filter(|r| !r.is_stale(now))
        .map(|r| &r.report)
        .filter(|r| &r.plugin == plugin && subscription.is_none_or(|s| r.subscription == s))
        .map(|r| r.state);
    worst(states).map(CircuitState::name)
}

async fn show(args: StatusArgs) -> Result<(), CliError> {
    let registry = open_registry(&args.nats, &args.namespace).await?;
    let registration = super::registration_of(&registry, &args.plugin).await?;
    if args.output.json {
        return print_json(&PluginShow {
            registration: RegistrationJson::of(&registration),
            manifest: &registration.manifest,
        });
    }
    let info = &registration.manifest.plugin;
    println!("plugin:        {} {}", info.id, info.version);
    if let Some(description) = &info.description {
        println!("description:   {description}");
    }
    println!("tenants:       {}", registration.tenants);
    println!("state:         {}", state_name(&registration));
    if let Some(failure) = &registration.failure {
        println!(
            "failed:        since {} (marked by {}): {}",
            timestamp(failure.since),
            printable(&failure.by),
            printable(&failure.reason)
        );
    }
    println!(
        "installed from: {}",
        registration.provenance.as_ref().map_or_else(
            || "not recorded".to_owned(),
            |provenance| printable(&provenance.to_string())
        )
    );
    if let Some(approval) = &registration.approval {
        println!(
            "approved by:   {} at {}",
            printable(&approval.by),
            timestamp(approval.at)
        );
    }
    println!(
        "registered at: {}",
        registration
            .registered_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| registration.registered_at.to_string())
    );
    if !registration.manifest.operations.is_empty() {
        println!("operations:");
        for operation in &registration.manifest.operations {
            println!("  {}", operation_line(operation));
        }
    }
    println!("manifest (canonical form):");
    print!("{}", registration.manifest.to_toml_string());
    Ok(())
}

/// One operation in `plugins show`: its types, limits and callers on one line.
fn operation_line(operation: &switchyard_schemas::Operation) -> String {
    let mut limits = vec![format!(
        "timeout {}",
        humantime::format_duration(operation.timeout)
    )];
    if let Some(rate) = operation.rate {
        limits.push(format!("rate {rate} (burst {})", operation.burst));
    }
    limits.push(format!("{} in flight", operation.max_in_flight));
    if operation.idempotent {
        limits.push("idempotent".to_owned());
    }
    let callers = &operation.callers;
    let mut who = Vec::new();
    if callers.operators {
        who.push("operators".to_owned());
    }
    if callers.services {
        who.push("services".to_owned());
    }
    who.extend(callers.plugins.iter().map(|p| format!("plugin {p}")));
    if who.is_empty() {
        who.push("nobody".to_owned());
    }
    let tenants = callers.tenants.as_ref().map_or_else(
        || "every tenant of the plugin".to_owned(),
        |tenants| {
            tenants
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    format!(
        "{} ({} {} -> {} {}): {}; callers: {}; tenants: {}",
        operation.name,
        operation.request.name,
        operation.request.version,
        operation.response.name,
        operation.response.version,
        limits.join(", "),
        who.join(", "),
        tenants
    )
}

/// `plugins show --json`.
#[derive(Debug, Serialize)]
struct PluginShow<'a> {
    #[serde(flatten)]
    registration: RegistrationJson,
    /// The manifest's canonical form, shaped like `plugin.toml`.
    manifest: &'a Manifest,
}

/// `plugins status --json`.
#[derive(Debug, Serialize)]
struct PluginStatus {
    plugin: RegistrationJson,
    dead_letters: u64,
    /// How long a dispatcher may go unheard before it is presumed gone.
    stale_after_secs: u64,
    subscriptions: Vec<SubscriptionStatus>,
    /// Its worker instances as the hosts running them report them (empty when no host runs
    /// it).
    instances: Vec<super::instances::InstanceStatus>,
}

/// One subscription in `plugins status --json`; counts are null until a dispatcher has
/// created its consumer.
#[derive(Debug, Serialize)]
struct SubscriptionStatus {
    name: String,
    backlog: Option<u64>,
    under_way: Option<u64>,
    redelivered: Option<u64>,
    circuit: Option<&'static str>,
    dispatchers: Vec<DispatcherStatus>,
}

/// One dispatcher's report about a subscription.
#[derive(Debug, Serialize)]
struct DispatcherStatus {
    instance: String,
    circuit: &'static str,
    last_seen_secs_ago: u64,
    presumed_gone: bool,
}

async fn status(args: StatusArgs) -> Result<(), CliError> {
    let client = args.nats.connect_options()?.connect().await?;
    let js = jetstream::new(client);
    let ns = &args.namespace.prefix;
    let registry = Registry::open(&js, ns).await?;
    let registration = super::registration_of(&registry, &args.plugin).await?;
    let reports = StatusBoard::open(&js, ns).await?.circuits().await?;
    let now = OffsetDateTime::now_utc();
    let streams = Streams::defaults(ns);
    let events = js
        .get_stream(&streams.events.name)
        .await
        .map_err(|e| CliError::nats("open the events stream", e))?;
    let dead_letters = count_dead_letters(&js, &streams, ns, &args.plugin).await?;

    let mut subscriptions = Vec::new();
    for subscription in &registration.manifest.subscriptions {
        let name = consumer_name(&args.plugin, subscription.name.as_str());
        // No dispatcher has created the consumer yet when it is missing.
        let counts = events.consumer_info(&name).await.ok();
        subscriptions.push(SubscriptionStatus {
            name: subscription.name.to_string(),
            backlog: counts.as_ref().map(|c| c.num_pending),
            under_way: counts.as_ref().map(|c| c.num_ack_pending as u64),
            redelivered: counts.as_ref().map(|c| c.num_redelivered as u64),
            circuit: circuit_of(
                &reports,
                &args.plugin,
                Some(subscription.name.as_str()),
                now,
            ),
            dispatchers: reports
                .iter()
                .filter(|r| {
                    r.report.plugin == args.plugin
                        && r.report.subscription == subscription.name.as_str()
                })
                .map(|r| DispatcherStatus {
                    instance: r.report.instance.clone(),
                    circuit: r.report.state.name(),
                    last_seen_secs_ago: r.age(now).as_secs(),
                    presumed_gone: r.is_stale(now),
                })
                .collect(),
        });
    }
    let instances = super::instances::of(&js, ns, &args.plugin).await?;
    if args.output.json {
        return print_json(&PluginStatus {
            plugin: RegistrationJson::of(&registration),
            dead_letters,
            stale_after_secs: STALE_AFTER.as_secs(),
            subscriptions,
            instances,
        });
    }

    let info = &registration.manifest.plugin;
    println!(
        "{} {} for {}; {} dead letters",
        info.id, info.version, registration.tenants, dead_letters
    );
    let count = |n: Option<u64>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let rows: Vec<[String; 6]> = subscriptions
        .iter()
        .map(|s| {
            let instances: Vec<String> = s
                .dispatchers
                .iter()
                .map(|d| {
                    if d.presumed_gone {
                        format!(
                            "{}={} (last seen {}s ago, presumed gone)",
                            d.instance, d.circuit, d.last_seen_secs_ago
                        )
                    } else {
                        format!("{}={}", d.instance, d.circuit)
                    }
                })
                .collect();
            [
                s.name.clone(),
                count(s.backlog),
                count(s.under_way),
                count(s.redelivered),
                s.circuit.unwrap_or("-").to_owned(),
                if instances.is_empty() {
                    "no dispatcher running".to_owned()
                } else {
                    instances.join(" ")
                },
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            [
                "SUBSCRIPTION",
                "BACKLOG",
                "UNDER-WAY",
                "REDELIVERED",
                "CIRCUIT",
                "DISPATCHERS"
            ],
            &rows
        )
    );
    if instances.is_empty() {
        println!("no host runs its workers");
    } else {
        print!("{}", super::instances::table(&instances));
    }
    Ok(())
}

/// How many dead letters the plugin has: the dead-letter stream's count for its subjects.
async fn count_dead_letters(
    js: &jetstream::Context,
    streams: &Streams,
    namespace: &Namespace,
    plugin: &PluginId,
) -> Result<u64, CliError> {
    let stream = js
        .get_stream(&streams.dead_letters.name)
        .await
        .map_err(|e| CliError::nats("open the dead-letter stream", e))?;
    let mut subjects = stream
        .info_with_subjects(namespace.dead_letter_filter(Some(plugin)))
        .await
        .map_err(|e| CliError::nats("count dead letters", e))?;
    let mut total = 0;
    while let Some(entry) = subjects.next().await {
        let (_, count) = entry.map_err(|e| CliError::nats("count dead letters", e))?;
        total += count as u64;
    }
    Ok(total)
}

/// One line of `plugins list`.
fn row(registration: &Registration) -> [String; 4] {
    let info = &registration.manifest.plugin;
    let subscriptions = registration
        .manifest
        .subscriptions
        .iter()
        .map(|subscription| {
            let patterns: Vec<&str> = subscription.events.iter().map(|p| p.as_str()).collect();
            format!("{}: {}", subscription.name, patterns.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ");
    [
        info.id.to_string(),
        info.version.to_string(),
        registration.tenants.to_string(),
        subscriptions,
    ]
}
