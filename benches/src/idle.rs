//! The cost of registered plugins that receive nothing: dispatcher start-up time until every
//! consumer exists, resident memory, and CPU while idle.
//!
//! Memory is read from this process's `VmRSS`, so the measurement runs in a fresh child
//! process ([`measure_in_child`]): in a process that ran other scenarios before, the
//! allocator would hand freed memory back out and hide the growth.

use std::time::{Duration, Instant};

use switchyard_bus::Bus;
use switchyard_control::registry::{Registration, Registry, TenantScope};
use switchyard_dispatcher::{Dispatcher, DispatcherConfig};

use crate::proc_stat::{rss_bytes, CpuMeter, Pid};
use crate::server::BenchServer;
use crate::switchyard::{benchmark_manifest, poll_until};
use crate::{BenchError, BenchResult, Step};

/// The flag that makes the `e2e` binary run [`measure`] and print its [`IdleReport`].
pub const CHILD_FLAG: &str = "--idle-child";
/// The flag that says how long the child measures idle CPU, in seconds.
pub const CHILD_SECS_FLAG: &str = "--idle-secs";
/// How long allocations and first reports get to settle before memory is read.
const SETTLE: Duration = Duration::from_secs(2);
/// The prefix of the line a child prints.
const LINE_PREFIX: &str = "idle-report";

/// What `plugins` idle plugins cost one dispatcher.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleReport {
    /// How many plugins were registered.
    pub plugins: usize,
    /// Writing their registrations (before the dispatcher started).
    pub registry_writes: Duration,
    /// From `Dispatcher::start` until every plugin's consumer existed.
    pub startup: Duration,
    /// Growth of this process's resident memory from before the dispatcher started until it
    /// had settled.
    pub rss_growth: i64,
    /// This process's CPU while idle, as a fraction of one core.
    pub process_cpu: f64,
    /// nats-server's CPU while idle, as a fraction of one core.
    pub server_cpu: f64,
}

impl IdleReport {
    /// The one line a child prints.
    pub fn to_line(&self) -> String {
        format!(
            "{LINE_PREFIX} {} {} {} {} {} {}",
            self.plugins,
            self.registry_writes.as_nanos(),
            self.startup.as_nanos(),
            self.rss_growth,
            self.process_cpu,
            self.server_cpu
        )
    }

    /// Reads the line a child printed.
    pub fn from_line(line: &str) -> Option<Self> {
        let mut fields = line.strip_prefix(LINE_PREFIX)?.split_whitespace();
        let mut next = || fields.next();
        let nanos = |text: &str| text.parse().ok().map(Duration::from_nanos);
        Some(Self {
            plugins: next()?.parse().ok()?,
            registry_writes: nanos(next()?)?,
            startup: nanos(next()?)?,
            rss_growth: next()?.parse().ok()?,
            process_cpu: next()?.parse().ok()?,
            server_cpu: next()?.parse().ok()?,
        })
    }
}

/// Registers `plugins` idle plugins, starts a dispatcher, and measures it: start-up, memory,
/// and CPU over `idle_for`.
///
/// # Errors
/// When setting up fails or the consumers do not all appear.
pub async fn measure(plugins: usize, idle_for: Duration) -> BenchResult<IdleReport> {
    let server = BenchServer::start().await?;
    let bus = Bus::from_client(server.connect().await?);
    bus.provision().await.step("provision the streams")?;
    let registry = Registry::open(bus.jetstream(), bus.namespace())
        .await
        .step("open the registry")?;
    let writing = Instant::now();
    for i in 0..plugins {
        // Each plugin has its own event type, so each consumer has its own filter.
        let event = format!("idle.e{i}");
        let manifest = benchmark_manifest(&format!("idle-{i}"), &[&event], 16, "")?;
        registry
            .put(&Registration::new(manifest, TenantScope::All))
            .await
            .step("register an idle plugin")?;
    }
    let registry_writes = writing.elapsed();
    let events = bus
        .jetstream()
        .get_stream(&bus.streams().events.name)
        .await
        .step("open the events stream")?;

    tokio::time::sleep(SETTLE).await;
    let rss_before = rss_bytes(Pid::OwnProcess).unwrap_or(0);
    let starting = Instant::now();
    let dispatcher = Dispatcher::start(server.connect().await?, DispatcherConfig::default())
        .await
        .step("start the dispatcher")?;
    let wanted = plugins;
    poll_until(&format!("{wanted} consumers"), || {
        let mut events = events.clone();
        async move {
            events
                .info()
                .await
                .is_ok_and(|info| info.state.consumer_count >= wanted)
        }
    })
    .await?;
    let startup = starting.elapsed();
    tokio::time::sleep(SETTLE).await;
    let rss_after = rss_bytes(Pid::OwnProcess).unwrap_or(0);

    let process = CpuMeter::start(Pid::OwnProcess);
    let nats = server.pid().map(CpuMeter::start);
    tokio::time::sleep(idle_for).await;
    let share = |cpu: Duration| cpu.as_secs_f64() / idle_for.as_secs_f64();
    let report = IdleReport {
        plugins,
        registry_writes,
        startup,
        rss_growth: i64::try_from(rss_after).unwrap_or(i64::MAX)
            - i64::try_from(rss_before).unwrap_or(i64::MAX),
        process_cpu: share(process.used()),
        server_cpu: share(nats.map_or(Duration::ZERO, |m| m.used())),
    };
    dispatcher.shutdown().await;
    Ok(report)
}

/// Runs [`measure`] in a fresh copy of the running binary (which must handle
/// [`CHILD_FLAG`]) and reads its report.
///
/// # Errors
/// When the child cannot run, fails, or prints no report.
pub async fn measure_in_child(plugins: usize, idle_for: Duration) -> BenchResult<IdleReport> {
    let exe = std::env::current_exe().step("find the running binary")?;
    let output = tokio::process::Command::new(exe)
        .arg(CHILD_FLAG)
        .arg(plugins.to_string())
        .arg(CHILD_SECS_FLAG)
        .arg(idle_for.as_secs().to_string())
        .kill_on_drop(true)
        .output()
        .await
        .step("run the idle-plugins child")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(IdleReport::from_line)
        .ok_or_else(|| {
            BenchError::new(
                "the idle-plugins child",
                format!(
                    "no report ({}); stderr:\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_survive_their_line() {
        let report = IdleReport {
            plugins: 1000,
            registry_writes: Duration::from_millis(1234),
            startup: Duration::from_nanos(987_654_321),
            rss_growth: -4096,
            process_cpu: 0.0125,
            server_cpu: 0.5,
        };
        assert_eq!(IdleReport::from_line(&report.to_line()), Some(report));
        assert_eq!(IdleReport::from_line("something else"), None);
    }
}
