//! A plugin's worker instances as the hosts running them report them: part of
//! `switchyard plugins status`.

use async_nats::jetstream;
use serde::Serialize;
use switchyard_host::report::{InstanceBoard, InstanceReport};
use switchyard_schemas::{Namespace, PluginId};
use time::OffsetDateTime;

use super::CliError;
use crate::table::render_table;

/// A report older than this is from a host presumed gone (the hosts' default timeout).
const REPORT_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// One instance in `plugins status --json`.
#[derive(Debug, Serialize)]
pub(crate) struct InstanceStatus {
    #[serde(flatten)]
    report: InstanceReport,
    /// Seconds since its worker last started, while it runs.
    uptime_secs: Option<u64>,
    /// Seconds since its host last reported it.
    reported_secs_ago: u64,
    /// Its host has not reported it for longer than a host's timeout.
    presumed_gone: bool,
}

/// `plugin`'s instances, as reported (none when no host ever ran in this deployment).
pub(crate) async fn of(
    js: &jetstream::Context,
    namespace: &Namespace,
    plugin: &PluginId,
) -> Result<Vec<InstanceStatus>, CliError> {
    let failed = |e: switchyard_host::place::PlaceError| CliError::Nats {
        action: "read the instance reports",
        reason: e.to_string(),
    };
    let Some(board) = InstanceBoard::open_existing(js, namespace)
        .await
        .map_err(failed)?
    else {
        return Ok(Vec::new());
    };
    let now = OffsetDateTime::now_utc();
    let seconds = |then: OffsetDateTime| u64::try_from((now - then).whole_seconds()).unwrap_or(0);
    Ok(board
        .list(Some(plugin.as_str()))
        .await
        .map_err(failed)?
        .into_iter()
        .map(|report| {
            let reported_secs_ago = seconds(report.reported_at);
            InstanceStatus {
                uptime_secs: report.pid.and(report.started_at).map(seconds),
                presumed_gone: reported_secs_ago > REPORT_STALE_AFTER.as_secs(),
                reported_secs_ago,
                report,
            }
        })
        .collect())
}

/// The instances as a table: instance, host, version, state, pid, uptime, restarts, memory,
/// CPU and how the worker last ended.
pub(crate) fn table(instances: &[InstanceStatus]) -> String {
    let dash = || "-".to_owned();
    let rows: Vec<[String; 10]> = instances
        .iter()
        .map(|i| {
            let r = &i.report;
            let state = if i.presumed_gone {
                format!(
                    "{} (last report {}s ago, host presumed gone)",
                    r.state, i.reported_secs_ago
                )
            } else {
                r.state.to_string()
            };
            [
                format!("{}.{}", r.plugin, r.slot),
                r.host.clone(),
                r.version.clone(),
                state,
                r.pid.map_or_else(dash, |p| p.to_string()),
                i.uptime_secs.map_or_else(dash, |s| format!("{s}s")),
                r.restarts.to_string(),
                r.memory_bytes
                    .map_or_else(dash, |b| format!("{:.1}MiB", b as f64 / 1_048_576.0)),
                r.cpu_millicores.map_or_else(dash, |m| format!("{m}m")),
                r.last_end.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    render_table(
        [
            "INSTANCE", "HOST", "VERSION", "STATE", "PID", "UPTIME", "RESTARTS", "MEMORY", "CPU",
            "LAST END",
        ],
        &rows,
    )
}
