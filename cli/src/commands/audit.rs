//! `switchyard audit`: the audit log, and what the commands that change something share to
//! record it (who is acting).

use async_nats::jetstream;
use clap::Args;
use serde::Serialize;
use switchyard_control::audit::{Action, Actor, AuditFilter, AuditLog, Auditor, StoredEntry};
use switchyard_schemas::{Namespace, PluginId};
use time::OffsetDateTime;

use super::streams::NamespaceArgs;
use super::{print_json, CliError, NatsArgs, OutputArgs};
use crate::render::{parse_plugin_id, parse_time, timestamp};
use crate::table::render_table;

/// Details longer than this are cut in the table; `--json` prints them whole.
const DETAIL_WIDTH: usize = 80;

/// `--actor`, on every command that changes something: who is acting, as the audit log
/// records it.
#[derive(Debug, Clone, Args)]
pub(crate) struct ActorArgs {
    /// Who is acting, for the audit log (e.g. your name or a ticket), recorded beside the
    /// NATS user and the OS user and host, which are recorded in any case.
    #[arg(long = "actor", value_name = "NAME", env = "SWITCHYARD_ACTOR")]
    declared: Option<String>,
}

/// Opens the audit log on `client` and says who is acting: the changes a command makes are
/// recorded through what this returns. Called before the change, so that a log that cannot
/// be used refuses the change.
pub(crate) async fn auditor(
    nats: &NatsArgs,
    client: &async_nats::Client,
    namespace: &Namespace,
    actor: &ActorArgs,
) -> Result<Auditor, CliError> {
    // Boxed: kept off the futures of the commands that call this.
    let log = Box::pin(AuditLog::open(&jetstream::new(client.clone()), namespace)).await?;
    let url = nats.url().ok();
    let actor = Box::pin(Actor::detect(
        client,
        url.as_deref(),
        actor.declared.clone(),
    ))
    .await;
    Ok(Auditor::new(log, actor))
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Only entries about this plugin.
    #[arg(long, value_parser = parse_plugin_id, conflicts_with = "target")]
    plugin: Option<PluginId>,
    /// Only entries about this target, whatever its kind.
    #[arg(long)]
    target: Option<String>,
    /// Only entries of this action, e.g. `plugin_removed`. Reads through the management API
    /// (`api_viewed`) are listed only when asked for by this option.
    #[arg(long, value_parser = parse_action)]
    action: Option<Action>,
    /// Only entries by this actor: its NATS user, OS user (or `user@host`), the name given
    /// with `--actor`, or the whole actor as listed.
    #[arg(long, value_name = "WHO")]
    actor: Option<String>,
    /// Only entries stored at or after this time: RFC 3339 (`2026-11-22T10:00:00Z`) or a
    /// duration ago (`1h`, `30m`, `2d`).
    #[arg(long, value_parser = parse_time)]
    since: Option<OffsetDateTime>,
    /// Only entries stored at or before this time (same forms as --since).
    #[arg(long, value_parser = parse_time)]
    until: Option<OffsetDateTime>,
    /// At most this many, the oldest first.
    #[arg(long)]
    limit: Option<usize>,
}

fn parse_action(raw: &str) -> Result<Action, String> {
    raw.parse()
        .map_err(|e: switchyard_control::audit::UnknownAction| e.to_string())
}

/// `audit --json`.
#[derive(Debug, Serialize)]
struct AuditList<'a> {
    entries: &'a [StoredEntry],
}

pub(crate) async fn run(args: AuditArgs) -> Result<(), CliError> {
    let client = args.nats.connect_options()?.connect().await?;
    let log = AuditLog::open(&jetstream::new(client), &args.namespace.prefix).await?;
    let filter = AuditFilter {
        actor: args.actor,
        action: args.action,
        target: args.plugin.map(|plugin| plugin.to_string()).or(args.target),
        since: args.since,
        until: args.until,
        limit: args.limit,
    };
    let mut entries = log.list(&filter).await?;
    if args.action.is_none() {
        entries.retain(|stored| stored.entry.action != Action::ApiViewed);
    }
    if args.output.json {
        return print_json(&AuditList { entries: &entries });
    }
    if entries.is_empty() {
        println!("no audit entries match (in {})", log.stream());
        return Ok(());
    }
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|stored| {
            let entry = &stored.entry;
            [
                stored.sequence.to_string(),
                timestamp(stored.stored),
                entry.actor.name.clone(),
                entry.action.to_string(),
                entry.target.clone(),
                cut(entry.detail.as_deref().unwrap_or("-"), DETAIL_WIDTH),
            ]
        })
        .collect();
    print!(
        "{}",
        render_table(
            ["SEQ", "STORED", "ACTOR", "ACTION", "TARGET", "DETAIL"],
            &rows
        )
    );
    Ok(())
}

/// At most `width` characters, the last one `…` when text was cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(width.saturating_sub(1)).collect();
    short.push('…');
    short
}
