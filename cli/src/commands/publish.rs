//! `switchyard publish`: publish events from the command line, one or a paced load.

use std::io::Read as _;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::Serialize;
use switchyard_bus::{Bus, PublishReceipt, Publisher};
use switchyard_schemas::semver::Version;
use switchyard_schemas::{ContentType, Event, EventId, EventType, Tenant};

use super::streams::NamespaceArgs;
use super::{print_json, CliError, NatsArgs, OutputArgs};
use crate::render::parse_tenant;

/// The `source` of events published by this command unless `--source` says otherwise.
const DEFAULT_SOURCE: &str = "urn:switchyard:cli";
/// Acknowledgements outstanding at once while publishing many events.
const WINDOW: usize = 256;
/// A paced load publishes its events in groups about this far apart (further apart below 10
/// events per second: one event per group).
const PACE_TICK: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// The tenant the event is for.
    #[arg(long, value_parser = parse_tenant)]
    tenant: Tenant,
    /// The event type, e.g. `order.created`.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_type)]
    event_type: EventType,
    /// The schema version of the data (semver).
    #[arg(long, default_value = "1.0.0")]
    schema_version: Version,
    /// The data, as JSON text [default: {}].
    #[arg(long, conflicts_with = "data_file")]
    data: Option<String>,
    /// A file holding the data as JSON; `-` reads standard input.
    #[arg(long, value_name = "PATH")]
    data_file: Option<PathBuf>,
    /// How the data is encoded in the event.
    #[arg(long, value_enum, default_value_t = Encoding::Msgpack)]
    content_type: Encoding,
    /// The event's id, for an idempotent publish: publishing the same id again within the
    /// stream's duplicate window stores nothing new [default: a fresh UUIDv7].
    #[arg(long, conflicts_with = "repeat")]
    id: Option<String>,
    /// The CloudEvents `source` naming the producer.
    #[arg(long, default_value = DEFAULT_SOURCE)]
    source: String,
    /// The CloudEvents `subject`: what the event is about, e.g. `order-42`.
    #[arg(long)]
    subject: Option<String>,
    /// Publish this many events (each with a fresh id and the same data).
    #[arg(long, default_value_t = NonZeroUsize::MIN)]
    repeat: NonZeroUsize,
    /// Publish at most this many events per second [default: as fast as the stream
    /// acknowledges them].
    #[arg(long, value_parser = parse_rate)]
    rate: Option<u32>,
}

/// The body encodings `--content-type` offers.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Encoding {
    /// MessagePack (`application/msgpack`), the SDK's default.
    Msgpack,
    /// JSON (`application/json`).
    Json,
}

impl From<Encoding> for ContentType {
    fn from(encoding: Encoding) -> Self {
        match encoding {
            Encoding::Msgpack => ContentType::MessagePack,
            Encoding::Json => ContentType::Json,
        }
    }
}

fn parse_type(raw: &str) -> Result<EventType, String> {
    EventType::new(raw).map_err(|e| e.to_string())
}

fn parse_rate(raw: &str) -> Result<u32, String> {
    match raw.parse::<u32>() {
        Ok(0) | Err(_) => Err(format!(
            "`{raw}` is not a number of events per second (1 or more)"
        )),
        Ok(rate) => Ok(rate),
    }
}

/// One stored event, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Stored {
    id: String,
    stream: String,
    sequence: u64,
    duplicate: bool,
}

impl From<&PublishReceipt> for Stored {
    fn from(receipt: &PublishReceipt) -> Self {
        Self {
            id: receipt.id.to_string(),
            stream: receipt.stream.clone(),
            sequence: receipt.sequence,
            duplicate: receipt.duplicate,
        }
    }
}

/// A load's summary, as `--json` prints it.
#[derive(Debug, Serialize)]
struct LoadReport {
    published: usize,
    stream: String,
    first_sequence: u64,
    last_sequence: u64,
    seconds: f64,
    per_second: f64,
}

pub(crate) async fn run(args: PublishArgs) -> Result<(), CliError> {
    let data = read_data(&args)?;
    let template = Event::builder(args.tenant.clone(), args.source.clone())
        .content_type(args.content_type.into());
    let template = match &args.subject {
        Some(subject) => template.subject(subject.clone()),
        None => template,
    };
    let id = args
        .id
        .as_deref()
        .map(|id| {
            EventId::new(id).map_err(|reason| CliError::BadArgument {
                argument: "--id",
                reason: format!("`{id}`: {reason}"),
            })
        })
        .transpose()?;
    // Built once up front, so that bad data or a bad attribute is refused before anything is
    // published.
    let build = |id: Option<EventId>| {
        let builder = match id {
            Some(id) => template.clone().id(id),
            None => template.clone(),
        };
        builder.build_as(args.event_type.clone(), args.schema_version.clone(), &data)
    };
    let first = build(id)?;

    let bus = Bus::connect(&args.nats.connect_options()?)
        .await?
        .with_namespace(args.namespace.prefix.clone());
    let publisher = bus.publisher(args.source.clone());

    if args.repeat.get() == 1 {
        let receipt = publisher.publish_event(&first).await?;
        if args.output.json {
            return print_json(&Stored::from(&receipt));
        }
        let copy = if receipt.duplicate {
            " (a duplicate: this id was stored before; nothing new was stored)"
        } else {
            ""
        };
        println!(
            "stored event {} as sequence {} in {}{copy}",
            receipt.id, receipt.sequence, receipt.stream
        );
        return Ok(());
    }

    let started = Instant::now();
    let events = std::iter::once(Ok(first))
        .chain((1..args.repeat.get()).map(|_| build(None)))
        .collect::<Result<Vec<_>, _>>()?;
    let receipts = publish_load(&publisher, events, args.rate).await?;
    let seconds = started.elapsed().as_secs_f64();
    let (Some(first), Some(last)) = (receipts.first(), receipts.last()) else {
        return Ok(());
    };
    let report = LoadReport {
        published: receipts.len(),
        stream: first.stream.clone(),
        first_sequence: first.sequence,
        last_sequence: last.sequence,
        seconds,
        per_second: receipts.len() as f64 / seconds.max(f64::EPSILON),
    };
    if args.output.json {
        return print_json(&report);
    }
    println!(
        "stored {} events as sequences {}..={} in {} ({:.1} s, {:.0} events/s)",
        report.published,
        report.first_sequence,
        report.last_sequence,
        report.stream,
        report.seconds,
        report.per_second
    );
    Ok(())
}

/// Publishes the events in order, all at once with a window of acknowledgements in flight,
/// or paced to `rate` per second in groups (see [`pacing`]).
async fn publish_load(
    publisher: &Publisher,
    events: Vec<Event>,
    rate: Option<u32>,
) -> Result<Vec<PublishReceipt>, CliError> {
    let window = NonZeroUsize::new(WINDOW).unwrap_or(NonZeroUsize::MIN);
    let Some(rate) = rate else {
        return Ok(publisher.publish_many(events, window).await?);
    };
    let (per_tick, period) = pacing(rate);
    let mut receipts = Vec::with_capacity(events.len());
    let mut ticks = tokio::time::interval(period);
    // Behind schedule (a slow acknowledgement), the next groups go out at once, so the
    // average rate holds.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        ticks.tick().await;
        let group: Vec<Event> = events.by_ref().take(per_tick).collect();
        receipts.extend(publisher.publish_many(group, window).await?);
    }
    Ok(receipts)
}

/// How many events each group holds, and how far apart groups go, for `rate` events per
/// second: groups about [`PACE_TICK`] apart, each at least one event.
fn pacing(rate: u32) -> (usize, Duration) {
    let ticks_per_second = (Duration::from_secs(1).as_millis() / PACE_TICK.as_millis()) as u32;
    let group = (rate / ticks_per_second).max(1);
    let period = Duration::from_secs(u64::from(group)) / rate;
    (group as usize, period)
}

/// The data from `--data`, `--data-file` or standard input, parsed as JSON.
fn read_data(args: &PublishArgs) -> Result<serde_json::Value, CliError> {
    let (text, origin) = match (&args.data, &args.data_file) {
        (Some(text), _) => (text.clone(), "--data".to_owned()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| CliError::Io {
                    action: "cannot read the data from",
                    path: path.clone(),
                    source,
                })?;
            (text, "standard input".to_owned())
        }
        (None, Some(path)) => (
            std::fs::read_to_string(path).map_err(|source| CliError::Io {
                action: "cannot read the data file",
                path: path.clone(),
                source,
            })?,
            format!("`{}`", path.display()),
        ),
        (None, None) => return Ok(serde_json::json!({})),
    };
    serde_json::from_str(&text).map_err(|error| CliError::BadArgument {
        argument: "data",
        reason: format!("{origin} is not JSON: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_spread_over_the_ticks() {
        assert_eq!(pacing(1000), (100, Duration::from_millis(100)));
        assert_eq!(pacing(10), (1, Duration::from_millis(100)));
        assert_eq!(pacing(4), (1, Duration::from_millis(250)));
        assert_eq!(pacing(15).0, 1);
        assert_eq!(pacing(15).1.as_micros(), 66_666);
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }
}
