//! `switchyard dlq`: list, show, replay and purge dead letters.

use std::fmt::Write as _;

use clap::{ArgGroup, Args, Subcommand};
use switchyard_bus::Bus;
use switchyard_dispatcher::redrive::json::{DeadLetterList, RecordJson, SummaryJson};
use switchyard_dispatcher::redrive::{
    DeadLetterFilter, DeadLetterRecord, DeadLetterSummary, DeadLetters, OriginalForm, Selection,
};
use switchyard_schemas::{header as ce, PluginId};
use time::OffsetDateTime;

use super::audit::{auditor, ActorArgs};
use super::streams::NamespaceArgs;
use super::{print_json, CliError, NatsArgs, OutputArgs};
use crate::render::{parse_plugin_id, parse_time, preview, render_body, timestamp};
use crate::table::render_table;

/// Reasons longer than this are cut in `dlq list`; `dlq show` prints them whole.
const REASON_WIDTH: usize = 60;

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters, oldest first: who failed which event, when, and why.
    List(ListArgs),
    /// Show one dead letter in full: its failure, the event's original headers and its body.
    Show(ShowArgs),
    /// Send a plugin's dead letters back to that plugin only, then remove them.
    ///
    /// Without sequences, every dead letter of the plugin is replayed. Each is removed only
    /// once the events stream has stored its replay, so nothing is lost if this stops
    /// partway; running it again finishes the work without delivering twice.
    Replay(ReplayArgs),
    /// Delete dead letters of a plugin without replaying them.
    ///
    /// Name the sequences to delete, or give `--all` to delete every dead letter of the
    /// plugin.
    Purge(PurgeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Only this plugin's dead letters.
    #[arg(long, value_parser = parse_plugin_id)]
    plugin: Option<PluginId>,
    /// Only those with this error code, e.g. `delivery.timeout`.
    #[arg(long)]
    code: Option<String>,
    /// Only those that last failed at or after this time: RFC 3339
    /// (`2026-11-22T10:00:00Z`) or a duration ago (`1h`, `30m`, `2d`).
    #[arg(long, value_parser = parse_time)]
    since: Option<OffsetDateTime>,
    /// Only those that last failed at or before this time (same forms as --since).
    #[arg(long, value_parser = parse_time)]
    until: Option<OffsetDateTime>,
    /// At most this many, the oldest first.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// The dead letter's sequence, as `dlq list` prints it.
    sequence: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The plugin whose dead letters to replay; they go to it alone.
    #[arg(long, value_parser = parse_plugin_id)]
    plugin: PluginId,
    /// Replay only these dead letters (all of the plugin's when none are given). Each must
    /// belong to the plugin, or nothing is replayed.
    #[arg(value_name = "SEQ")]
    sequences: Vec<u64>,
    #[command(flatten)]
    actor: ActorArgs,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["sequences", "all"])))]
pub(crate) struct PurgeArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    /// The plugin whose dead letters to delete.
    #[arg(long, value_parser = parse_plugin_id)]
    plugin: PluginId,
    /// Delete these dead letters. Each must belong to the plugin, or nothing is deleted.
    #[arg(value_name = "SEQ")]
    sequences: Vec<u64>,
    /// Delete every dead letter of the plugin (required when no sequence is given).
    #[arg(long, conflicts_with = "sequences")]
    all: bool,
    #[command(flatten)]
    actor: ActorArgs,
}

pub(crate) async fn run(command: DlqCommand) -> Result<(), CliError> {
    match command {
        DlqCommand::List(args) => list(args).await,
        DlqCommand::Show(args) => show(args).await,
        DlqCommand::Replay(args) => replay(args).await,
        DlqCommand::Purge(args) => purge(args).await,
    }
}

async fn open(nats: &NatsArgs, namespace: &NamespaceArgs) -> Result<DeadLetters, CliError> {
    let bus = Bus::connect(&nats.connect_options()?)
        .await?
        .with_namespace(namespace.prefix.clone());
    Ok(DeadLetters::new(
        bus.jetstream().clone(),
        bus.namespace().clone(),
        bus.streams(),
    ))
}

async fn list(args: ListArgs) -> Result<(), CliError> {
    let dead_letters = open(&args.nats, &args.namespace).await?;
    let filter = DeadLetterFilter {
        plugin: args.plugin,
        code: args.code,
        since: args.since,
        until: args.until,
        limit: args.limit,
    };
    let found = dead_letters.list(&filter).await?;
    if args.output.json {
        return print_json(&DeadLetterList {
            dead_letters: found.iter().map(SummaryJson::of).collect(),
        });
    }
    if found.is_empty() {
        println!("no dead letters match");
        return Ok(());
    }
    let header = [
        "SEQ",
        "PLUGIN",
        "SUBSCRIPTION",
        "CODE",
        "ATTEMPTS",
        "LAST FAILURE",
        "TENANT",
        "TYPE",
        "EVENT ID",
        "REASON",
    ];
    let rows: Vec<[String; 10]> = found.iter().map(row).collect();
    print!("{}", render_table(header, &rows));
    Ok(())
}

/// One line of `dlq list`.
fn row(letter: &DeadLetterSummary) -> [String; 10] {
    let failure = &letter.failure;
    [
        letter.sequence.to_string(),
        failure.plugin.to_string(),
        failure.subscription.clone(),
        failure.code.to_string(),
        failure.attempts.to_string(),
        timestamp(failure.last_failure),
        letter.tenant.to_string(),
        letter.event_type.to_string(),
        letter
            .event_id
            .as_ref()
            .map_or_else(|| "-".to_owned(), |id| id.as_str().to_owned()),
        cut(&failure.reason, REASON_WIDTH),
    ]
}

async fn show(args: ShowArgs) -> Result<(), CliError> {
    let dead_letters = open(&args.nats, &args.namespace).await?;
    let record = dead_letters.show(args.sequence).await?;
    if args.output.json {
        return print_json(&RecordJson::of(&record));
    }
    print!("{}", describe(&record));
    Ok(())
}

/// Everything `dlq show` prints about one dead letter.
fn describe(record: &DeadLetterRecord) -> String {
    let summary = &record.summary;
    let failure = &summary.failure;
    let event_id = summary
        .event_id
        .as_ref()
        .map_or("-", |id| id.as_str())
        .to_owned();
    let fields = [
        ("sequence", summary.sequence.to_string()),
        ("stored", timestamp(summary.stored)),
        ("plugin", failure.plugin.to_string()),
        ("subscription", failure.subscription.clone()),
        ("code", failure.code.to_string()),
        ("reason", failure.reason.clone()),
        ("attempts", failure.attempts.to_string()),
        ("first failure", timestamp(failure.first_failure)),
        ("last failure", timestamp(failure.last_failure)),
        ("original subject", failure.original_subject.clone()),
        ("stream sequence", failure.stream_sequence.to_string()),
        ("tenant", summary.tenant.to_string()),
        ("type", summary.event_type.to_string()),
        ("event id", event_id),
        (
            "event",
            if record.event.is_some() {
                "valid CloudEvents attributes".to_owned()
            } else {
                "the headers are not a valid event".to_owned()
            },
        ),
    ];
    let mut out = String::new();
    // Writing to a String cannot fail.
    for (name, value) in fields {
        let _ = writeln!(out, "{:<18}{value}", format!("{name}:"));
    }
    let mut headers: Vec<(String, &str)> = record
        .headers
        .iter()
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |value| (name.to_string(), value.as_str()))
        })
        .collect();
    headers.sort();
    let _ = writeln!(out, "headers:");
    for (name, value) in headers {
        let _ = writeln!(out, "  {name}: {value}");
    }
    match &record.form {
        OriginalForm::Copy => {
            let content_type = record.headers.get(ce::CONTENT_TYPE).map(|v| v.as_str());
            let _ = writeln!(
                out,
                "body ({}, {} bytes):",
                content_type.unwrap_or("no content-type"),
                record.body.len()
            );
            let _ = writeln!(out, "{}", render_body(content_type, &record.body));
        }
        OriginalForm::Raw { header_len } => {
            // The event's header block could not be read (or copied): both parts as stored.
            let split = (*header_len).min(record.body.len());
            let (block, body) = record.body.split_at(split);
            let _ = writeln!(
                out,
                "original header block ({} bytes, as stored):",
                block.len()
            );
            let _ = writeln!(out, "{}", preview(block));
            let _ = writeln!(out, "original body ({} bytes):", body.len());
            let _ = writeln!(out, "{}", preview(body));
        }
        OriginalForm::Omitted { why } => {
            let _ = writeln!(out, "original: not kept: {why}");
        }
    }
    out
}

/// The dead letters, and who is changing them.
async fn open_audited(
    nats: &NatsArgs,
    namespace: &NamespaceArgs,
    actor: &ActorArgs,
) -> Result<(DeadLetters, switchyard_control::audit::Auditor), CliError> {
    let bus = Bus::connect(&nats.connect_options()?)
        .await?
        .with_namespace(namespace.prefix.clone());
    let auditor = auditor(nats, bus.client(), bus.namespace(), actor).await?;
    let dead_letters = DeadLetters::new(
        bus.jetstream().clone(),
        bus.namespace().clone(),
        bus.streams(),
    );
    Ok((dead_letters, auditor))
}

async fn replay(args: ReplayArgs) -> Result<(), CliError> {
    let (dead_letters, auditor) = open_audited(&args.nats, &args.namespace, &args.actor).await?;
    let selection = if args.sequences.is_empty() {
        Selection::all(args.plugin.clone())
    } else {
        Selection::sequences(args.plugin.clone(), args.sequences)
    };
    let report = dead_letters.replay(&selection, &auditor).await?;
    println!(
        "replayed {} dead letters of {}",
        report.count(),
        args.plugin
    );
    if !report.gone.is_empty() {
        println!(
            "{} were gone already (replayed or purged meanwhile): {}",
            report.gone.len(),
            join(&report.gone)
        );
    }
    if !report.skipped.is_empty() {
        println!(
            "left {} unreadable dead letters in place (see `switchyard dlq show`): {}",
            report.skipped.len(),
            join(&report.skipped)
        );
    }
    Ok(())
}

async fn purge(args: PurgeArgs) -> Result<(), CliError> {
    let (dead_letters, auditor) = open_audited(&args.nats, &args.namespace, &args.actor).await?;
    // clap's group makes sure there are sequences when `--all` is absent.
    let selection = if args.all {
        Selection::all(args.plugin)
    } else {
        Selection::sequences(args.plugin, args.sequences)
    };
    println!("purged {}", dead_letters.purge(&selection, &auditor).await?);
    Ok(())
}

fn join(sequences: &[u64]) -> String {
    sequences
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_are_cut_with_a_mark() {
        assert_eq!(cut("short", 10), "short");
        let long = cut(&"x".repeat(100), REASON_WIDTH);
        assert_eq!(long.chars().count(), REASON_WIDTH);
        assert!(long.ends_with('…'));
    }

    #[test]
    fn table_columns_line_up() {
        let rows = [
            ["12".to_owned(), "audit".to_owned(), "x".to_owned()],
            ["3".to_owned(), "a".to_owned(), "y".to_owned()],
        ];
        assert_eq!(
            render_table(["SEQ", "PLUGIN", "REASON"], &rows),
            "SEQ  PLUGIN  REASON\n12   audit   x\n3    a       y\n"
        );
    }
}
