//! `switchyard explain <event-id>`: where an event is for each plugin, and why.

use std::fmt::Write as _;

use clap::{ArgGroup, Args};
use switchyard_bus::Bus;
use switchyard_dispatcher::explain::{explain, Explanation, PluginView, SearchFrom, Status};
use time::OffsetDateTime;

use super::streams::NamespaceArgs;
use super::{print_json, CliError, NatsArgs, OutputArgs};
use crate::render::{parse_time, timestamp};
use crate::table::render_table;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("from").args(["since", "from_sequence"])))]
pub(crate) struct ExplainArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// The event's id (its `ce-id`, as `publish` and `events tail` print it).
    event_id: String,
    /// Search only the events stored at or after this time (RFC 3339 or a duration ago):
    /// the search reads every stored event's headers from where it starts.
    #[arg(long, value_parser = parse_time)]
    since: Option<OffsetDateTime>,
    /// Search from this stream sequence on.
    #[arg(long, value_name = "SEQ")]
    from_sequence: Option<u64>,
}

pub(crate) async fn run(args: ExplainArgs) -> Result<(), CliError> {
    let bus = Bus::connect(&args.nats.connect_options()?)
        .await?
        .with_namespace(args.namespace.prefix.clone());
    let from = match (args.since, args.from_sequence) {
        (Some(time), _) => SearchFrom::Time(time),
        (None, Some(sequence)) => SearchFrom::Sequence(sequence),
        (None, None) => SearchFrom::Start,
    };
    let explanation = explain(&bus, &args.event_id, from).await?;
    if explanation.copies.is_empty() {
        return Err(CliError::EventNotFound {
            id: args.event_id,
            stream: bus.streams().events.name.clone(),
        });
    }
    if args.output.json {
        return print_json(&explanation);
    }
    print!("{}", describe(&explanation));
    Ok(())
}

/// The explanation as text: each stored copy, then a table of the plugins.
fn describe(explanation: &Explanation) -> String {
    let mut out = String::new();
    for copy in &explanation.copies {
        let what = match (&copy.tenant, &copy.event_type) {
            (Some(tenant), Some(event_type)) => format!(
                "tenant {tenant}, type {event_type}@{}",
                copy.schema_version.as_deref().unwrap_or("?")
            ),
            _ => "unreadable subject".to_owned(),
        };
        let replay = copy
            .replay_for
            .as_ref()
            .map(|(plugin, subscription)| format!(", a replay for {plugin}/{subscription}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "event {} at sequence {}, stored {} ({what}{replay})",
            explanation.event_id,
            copy.sequence,
            timestamp(copy.stored_at)
        );
        if copy.plugins.is_empty() {
            let _ = writeln!(out, "  no plugin is registered");
        }
        let rows: Vec<[String; 3]> = copy.plugins.iter().map(row).collect();
        for line in render_table(["PLUGIN", "SUBSCRIPTION", "WHERE"], &rows).lines() {
            let _ = writeln!(out, "  {line}");
        }
        for view in copy.plugins.iter().filter(|view| view.note.is_some()) {
            let _ = writeln!(
                out,
                "  note ({}): {}",
                view.plugin,
                view.note.as_deref().unwrap_or_default()
            );
        }
    }
    let _ = writeln!(
        out,
        "dispatchers asked: {} answered{}",
        explanation.dispatchers_answered.len(),
        if explanation.dispatchers_silent.is_empty() {
            String::new()
        } else {
            format!(
                ", silent (their events unknown): {}",
                explanation.dispatchers_silent.join(", ")
            )
        }
    );
    out
}

fn row(view: &PluginView) -> [String; 3] {
    [
        view.plugin.clone(),
        view.subscription.clone().unwrap_or_else(|| "-".to_owned()),
        status_text(&view.status),
    ]
}

/// One status in words.
fn status_text(status: &Status) -> String {
    match status {
        Status::NotMatched { why } => format!("not matched: {why}"),
        Status::Pending => "pending: not yet sent".to_owned(),
        Status::UnderWay {
            instance,
            attempt,
            since,
        } => format!(
            "under way: attempt {attempt} since {} (dispatcher {instance})",
            timestamp(*since)
        ),
        Status::WaitingRetry {
            instance,
            attempts,
            until,
            last_failure,
        } => {
            let failure = last_failure
                .as_ref()
                .map(|f| format!("; last failure {}: {}", f.code, f.reason))
                .unwrap_or_default();
            format!(
                "waiting for a retry: {} made, next at {} (dispatcher {instance}){failure}",
                attempts_text(*attempts),
                timestamp(*until)
            )
        }
        Status::Done => "done: handled and acknowledged".to_owned(),
        Status::DeadLettered {
            dead_letter,
            code,
            reason,
            attempts,
        } => format!(
            "dead-lettered after {}: {code}: {reason} (switchyard dlq show {dead_letter})",
            attempts_text(*attempts)
        ),
        Status::Unknown { why } => format!("unknown: {why}"),
    }
}

fn attempts_text(attempts: u32) -> String {
    if attempts == 1 {
        "1 attempt".to_owned()
    } else {
        format!("{attempts} attempts")
    }
}
