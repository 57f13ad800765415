//! `switchyard dev`: the embedded default. One command starts a local nats-server with
//! JetStream in a data directory, the dispatcher and the example plugins, publishes a stream
//! of sample events, and shows per plugin what happens to them: delivered, retried,
//! dead-lettered, in flight. It ends with a summary, or keeps running with `--keep-running`.

mod plugins;
mod samples;
mod view;
mod watch;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use switchyard_bus::Bus;
use switchyard_control::registry::{Registration, Registry, TenantScope};
use switchyard_dispatcher::local_nats::{binary, LocalNatsServer, Port, ServerOptions};
use switchyard_dispatcher::pipeline::breaker::BreakerConfig;
use switchyard_dispatcher::redrive::{DeadLetterFilter, DeadLetters};
use switchyard_dispatcher::{Dispatcher, DispatcherConfig};
use switchyard_schemas::manifest::Manifest;
use switchyard_schemas::Event;
use tokio::time::{interval, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::CliError;
use view::{Frame, LiveView};

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Where nats-server keeps its data, and where the logs and the audit log go.
    #[arg(long, default_value = ".switchyard/dev")]
    data_dir: PathBuf,
    /// The client port of the local nats-server.
    #[arg(long, default_value_t = 4222)]
    port: u16,
    /// How many sample events to publish.
    #[arg(long, default_value_t = 60)]
    events: u64,
    /// Sample events published per second.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rate: u32,
    /// Delete the data directory first, starting from empty streams.
    #[arg(long)]
    fresh: bool,
    /// Keep everything running after the samples (one more event a second) until Ctrl-C, so
    /// that your own plugins and publishers can join.
    #[arg(long)]
    keep_running: bool,
    /// Also run the plugin in this directory (`plugin.toml`, `package.toml` and its files) in
    /// a host, and rebuild, reinstall and restart it whenever its files change; a build that
    /// fails its health check is rolled back to the last good one. Keeps running until Ctrl-C.
    #[arg(long, value_name = "DIR")]
    watch: Option<PathBuf>,
    /// A shell command run in the watched directory before each build is packaged, e.g.
    /// `cargo build --release`; when it fails, the last good build keeps running.
    #[arg(long, value_name = "COMMAND", requires = "watch")]
    build: Option<String>,
    /// The address of the web console and the management API (docs/management-api.md). When
    /// it is busy (another `dev` runs), any free port is used; the URL printed says which.
    #[arg(long, default_value = switchyard_console::DEFAULT_LISTEN, conflicts_with = "no_console")]
    console: std::net::SocketAddr,
    /// Do not serve the web console.
    #[arg(long)]
    no_console: bool,
}

impl DevArgs {
    /// Whether it runs until stopped: asked for, or watching a plugin.
    fn keeps_running(&self) -> bool {
        self.keep_running || self.watch.is_some()
    }

    /// The log file, inside the data directory.
    pub(crate) fn log_file(&self) -> PathBuf {
        self.data_dir.join("switchyard.log")
    }
}

/// The demo's circuit breaker opens sooner and recovers faster than the dispatcher's default
/// (5 failures, 30 s): at high `--rate` the flaky notifier's first attempts fail in a row, and
/// the view then shows the circuit open and close within seconds instead of stalling.
const DEV_BREAKER: BreakerConfig = BreakerConfig {
    failure_threshold: match NonZeroU32::new(10) {
        Some(n) => n,
        None => unreachable!(),
    },
    cooldown: Duration::from_secs(2),
};

/// How long `dev` waits for the last events to settle before it gives up and summarises.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) async fn run(args: DevArgs) -> Result<(), CliError> {
    if args.fresh && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir).map_err(|source| CliError::Io {
            action: "delete the data directory",
            path: args.data_dir.clone(),
            source,
        })?;
    }
    std::fs::create_dir_all(&args.data_dir).map_err(|source| CliError::Io {
        action: "create the data directory",
        path: args.data_dir.clone(),
        source,
    })?;

    let binary = binary::resolve()
        .await
        .map_err(|e| CliError::LocalServer(e.into()))?;
    // Every write on disk before it is acknowledged, as `auth init` configures production
    // servers (README, "Durability"): the demo's events survive a power loss too.
    let config_file = args.data_dir.join("nats-server.conf");
    std::fs::write(
        &config_file,
        "# Written by `switchyard dev`.\njetstream {\n  sync_interval: always\n}\n",
    )
    .map_err(|source| CliError::Io {
        action: "write the nats-server configuration",
        path: config_file.clone(),
        source,
    })?;
    let mut server = LocalNatsServer::start(ServerOptions {
        store_dir: args.data_dir.join("nats"),
        config_file: Some(config_file),
        log_file: Some(args.data_dir.join("nats-server.log")),
        binary: Some(binary.path.clone()),
        port: Port::Fixed(args.port),
        name: Some("switchyard-dev".to_owned()),
        // Ctrl-C is ours to handle: the server must outlive the graceful stop.
        own_process_group: true,
        ..ServerOptions::default()
    })
    .await?;
    println!(
        "switchyard dev: nats-server {} on {}, data and logs in {}",
        binary.version,
        server.url(),
        args.data_dir.display()
    );

    // Ctrl-C or SIGTERM stops the demo gracefully: workers drain, the dispatcher stops, then
    // the server (in a process group of its own, it would outlive a dev killed outright).
    let stop = CancellationToken::new();
    let interrupt = tokio::spawn({
        let stop = stop.clone();
        async move {
            switchyard_plugin_sdk::stop_signal().await;
            println!("\nstopping");
            stop.cancel();
        }
    });
    let outcome = demo(&args, &server.url(), stop).await;
    interrupt.abort();
    server.stop().await?;
    println!("nats-server stopped");
    outcome
}

/// Runs the dispatcher, the plugins and the publisher; returns when done or stopped.
async fn demo(args: &DevArgs, url: &str, stop: CancellationToken) -> Result<(), CliError> {
    let connect = || async { switchyard_bus::ConnectOptions::new(url).connect().await };
    let bus = Bus::connect(&switchyard_bus::ConnectOptions::new(url)).await?;
    bus.ensure_streams().await?;
    let dispatcher = Dispatcher::start(
        connect().await?,
        DispatcherConfig {
            breaker: DEV_BREAKER,
            ..DispatcherConfig::default()
        },
    )
    .await?;

    let plugins = plugins::example_plugins(&args.data_dir)?;
    let registry = Registry::open(bus.jetstream(), bus.namespace()).await?;
    let manifests: Vec<Manifest> = plugins.iter().map(|p| p.manifest().clone()).collect();
    for manifest in &manifests {
        registry
            .put(&Registration::new(manifest.clone(), TenantScope::All))
            .await?;
    }
    let console = if args.no_console {
        None
    } else {
        Some(Box::pin(open_console(&bus, args.console)).await?)
    };

    let workers = CancellationToken::new();
    for plugin in plugins {
        let client = connect().await?;
        let namespace = bus.namespace().clone();
        let stop = workers.clone();
        tokio::spawn(async move {
            let id = plugin.manifest().plugin.id.clone();
            if let Err(error) = plugin
                .serve(client, namespace, stop.cancelled_owned(), None, None)
                .await
            {
                eprintln!("example plugin {id} stopped: {error}");
            }
        });
    }
    println!(
        "plugins: {} (registered for all tenants)",
        manifests
            .iter()
            .map(|m| m.plugin.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let watching = match &args.watch {
        Some(dir) => Some(start_watching(args, dir, url, &bus, &stop).await?),
        None => None,
    };
    if args.keeps_running() {
        println!(
            "in another terminal: `cargo switchyard plugins list`, `cargo switchyard dlq list`, \
             or add a plugin of your own (README, \"Writing a plugin\")"
        );
    }

    let result = publish_and_watch(args, &bus, &dispatcher, &manifests, &stop).await;

    if let Some(watching) = watching {
        watching.stop().await;
    }
    workers.cancel();
    let dropped = dispatcher.shutdown().await;
    if dropped > 0 {
        println!("{dropped} deliveries left for redelivery at the next start");
    }
    if result.is_ok() {
        summarise(&bus).await?;
    }
    drop(console);
    result
}

/// Serves the web console on `listen` (any free port when it is busy), with an admin operator
/// `dev` whose new token is in the URL printed: the console signs in with it.
async fn open_console(
    bus: &Bus,
    listen: std::net::SocketAddr,
) -> Result<switchyard_console::Console, CliError> {
    use switchyard_console::{Console, ConsoleError};
    let console = match Console::start(bus, listen).await {
        Err(ConsoleError::Listen { source, .. })
            if source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            Console::start(bus, std::net::SocketAddr::new(listen.ip(), 0)).await?
        }
        other => other?,
    };
    let auditor = switchyard_control::audit::Auditor::new(
        switchyard_control::audit::AuditLog::open(bus.jetstream(), bus.namespace()).await?,
        switchyard_control::audit::Actor::declared("switchyard dev"),
    );
    let name: switchyard_console::OperatorName = "dev".parse().expect("a valid operator name");
    let token = console
        .management()
        .operators()
        .add(&name, switchyard_console::Role::Admin, &auditor)
        .await?;
    println!(
        "console: {}#token={} (operator `dev`, admin; open while dev runs)",
        console.url(),
        token.expose()
    );
    Ok(console)
}

/// The host and the watcher of `dev --watch`.
struct Watching {
    host: tokio::task::JoinHandle<()>,
    host_stop: CancellationToken,
    watcher: tokio::task::JoinHandle<()>,
}

impl Watching {
    /// Stops the watcher, then the host (its workers within their grace periods).
    async fn stop(self) {
        self.watcher.abort();
        self.host_stop.cancel();
        let _ = self.host.await;
    }
}

/// Starts a host inside `dev` (named `dev-<port>`, its state in the data directory) and the
/// watcher of `dir`.
async fn start_watching(
    args: &DevArgs,
    dir: &std::path::Path,
    url: &str,
    bus: &Bus,
    stop: &CancellationToken,
) -> Result<Watching, CliError> {
    let name = format!("dev-{}", args.port);
    let confinement = switchyard_host::confine::Confinement::detect(&name)
        .or_else(|_| switchyard_host::confine::Confinement::rlimits_only(&name))
        .map_err(|e| CliError::BadArgument {
            argument: "--watch",
            reason: e.to_string(),
        })?;
    let state_dir = args.data_dir.join("host");
    let enter = super::host::link_trampoline(&state_dir)?;
    let mut options = switchyard_host::run::HostOptions::new(
        &name,
        bus.namespace().clone(),
        state_dir,
        enter,
        url,
    );
    options.heartbeat = Duration::from_secs(1);
    options.host_timeout = Duration::from_secs(5);
    let client = switchyard_bus::ConnectOptions::new(url).connect().await?;
    let host_stop = CancellationToken::new();
    let host = tokio::spawn({
        let host_stop = host_stop.clone();
        async move {
            if let Err(error) = Box::pin(switchyard_host::run::run_host(
                client,
                options,
                confinement,
                host_stop,
            ))
            .await
            {
                println!("watch: the host stopped: {error}");
            }
        }
    });
    println!(
        "watch: running {} in host {name}; edit its files to rebuild",
        dir.display()
    );
    let watcher = tokio::spawn(watch::run(
        watch::Watch {
            dir: dir.to_owned(),
            build: args.build.clone(),
            out: args.data_dir.join("watch"),
            url: url.to_owned(),
        },
        bus.jetstream().clone(),
        bus.namespace().clone(),
        stop.clone(),
    ));
    Ok(Watching {
        host,
        host_stop,
        watcher,
    })
}

/// Publishes the samples at the requested rate and redraws the live view until every event
/// has settled for every plugin (or, with `--keep-running`, until stopped).
async fn publish_and_watch(
    args: &DevArgs,
    bus: &Bus,
    dispatcher: &Dispatcher,
    manifests: &[Manifest],
    stop: &CancellationToken,
) -> Result<(), CliError> {
    let publisher = bus.publisher("urn:switchyard:dev");
    // Watching, the terminal is shared with what the builds print: no redrawing in place.
    let mut view = LiveView::new(std::io::stdout().is_terminal() && args.watch.is_none());
    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut published = 0u64;
    let mut publish_tick = interval(Duration::from_secs(1) / args.rate);
    let mut draw_tick = interval(Duration::from_millis(200));
    for tick in [&mut publish_tick, &mut draw_tick] {
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    }
    let mut batch_done_at: Option<Instant> = None;
    let mut publish_failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = publish_tick.tick() => {
                let in_batch = published < args.events;
                if in_batch || args.keeps_running() {
                    let event = samples::sample(published).map_err(|e| CliError::Publish(e.into()))?;
                    // A server too busy to acknowledge one sample (other publishers flooding
                    // it) does not end the session: that sample is tried again next tick.
                    if let Err(error) = publisher.publish_event(&event).await {
                        if !publish_failing {
                            eprintln!("warning: a sample event was not stored ({error}); trying again");
                        }
                        publish_failing = true;
                        continue;
                    }
                    if publish_failing {
                        eprintln!("sample events are stored again");
                        publish_failing = false;
                    }
                    count_expected(&mut expected, manifests, &event);
                    published += 1;
                    if published == args.events {
                        batch_done_at = Some(Instant::now());
                        if args.keeps_running() {
                            publish_tick = interval(Duration::from_secs(1));
                        }
                    }
                }
            }
            _ = draw_tick.tick() => {
                let stats = dispatcher.stats();
                let circuits: Vec<_> = dispatcher
                    .circuit_states()
                    .into_iter()
                    .map(|(p, s, state)| (p.to_string(), s, state))
                    .collect();
                let settled = expected.iter().all(|((plugin, subscription), want)| {
                    stats.iter().any(|s| {
                        s.plugin.as_str() == plugin
                            && &s.subscription == subscription
                            && s.counts.delivered + s.counts.dead_lettered >= *want
                    })
                });
                let done = !args.keeps_running() && published == args.events && settled;
                let timed_out = !args.keeps_running()
                    && batch_done_at.is_some_and(|at| at.elapsed() > SETTLE_TIMEOUT);
                view.draw(
                    &Frame {
                        published,
                        planned: (!args.keeps_running() || published < args.events)
                            .then_some(args.events),
                        stats: &stats,
                        circuits: &circuits,
                    },
                    done || timed_out,
                );
                if done {
                    return Ok(());
                }
                if timed_out {
                    println!("some events had not settled after {SETTLE_TIMEOUT:?}; summarising anyway");
                    return Ok(());
                }
            }
        }
    }
}

/// Adds the event to the count of each subscription that receives it.
fn count_expected(
    expected: &mut BTreeMap<(String, String), u64>,
    manifests: &[Manifest],
    event: &Event,
) {
    let a = &event.attributes;
    for manifest in manifests {
        for subscription in &manifest.subscriptions {
            if subscription.accepts(&a.event_type, &a.schema_version) {
                *expected
                    .entry((
                        manifest.plugin.id.to_string(),
                        subscription.name.to_string(),
                    ))
                    .or_default() += 1;
            }
        }
    }
}

/// What ended up in the dead letters, and where to go from here.
async fn summarise(bus: &Bus) -> Result<(), CliError> {
    let dead_letters = DeadLetters::new(
        bus.jetstream().clone(),
        bus.namespace().clone(),
        bus.streams(),
    );
    let letters = dead_letters.list(&DeadLetterFilter::default()).await?;
    let mut by_cause: BTreeMap<(String, String), usize> = BTreeMap::new();
    for letter in &letters {
        *by_cause
            .entry((
                letter.failure.plugin.to_string(),
                letter.failure.code.to_string(),
            ))
            .or_default() += 1;
    }
    println!(
        "dead letters stored (this run and earlier ones): {}",
        letters.len()
    );
    for ((plugin, code), count) in by_cause {
        println!("  {plugin}: {count} × {code}");
    }
    println!(
        "`cargo switchyard dev --keep-running` keeps it all running, so that other terminals can \
         inspect it (`cargo switchyard dlq list`) or add plugins"
    );
    Ok(())
}
