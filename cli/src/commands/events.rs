//! `switchyard events tail`: print events as the events stream stores them, filtered by
//! tenant, type, or what one plugin is subscribed to.

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use clap::{ArgGroup, Args, Subcommand};
use futures::StreamExt;
use serde::Serialize;
use switchyard_bus::{decode_event, Bus};
use switchyard_control::registry::Registration;
use switchyard_schemas::{EventPattern, Namespace, PluginId, Tenant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::plugins::open_registry;
use super::streams::NamespaceArgs;
use super::{CliError, NatsArgs, OutputArgs};
use crate::render::{parse_plugin_id, parse_tenant, parse_time, preview, timestamp};

#[derive(Debug, Subcommand)]
pub(crate) enum EventsCommand {
    /// Print events as they are stored (from now on unless told where to start), until
    /// Ctrl-C or `--count`. With `--json`, one JSON object per line.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("start").args(["since", "from_sequence", "all"])))]
pub(crate) struct TailArgs {
    #[command(flatten)]
    nats: NatsArgs,
    #[command(flatten)]
    namespace: NamespaceArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Only this tenant's events.
    #[arg(long, value_parser = parse_tenant)]
    tenant: Option<Tenant>,
    /// Only events of this type or pattern (`order.created`, `order.*`, `order.>`).
    #[arg(long = "type", value_name = "PATTERN", value_parser = parse_pattern)]
    event_type: Option<EventPattern>,
    /// Only events this plugin would be sent: of its tenants, matching one of its
    /// subscriptions' types and version ranges, and replays of its own dead letters.
    #[arg(long, value_parser = parse_plugin_id)]
    plugin: Option<PluginId>,
    /// Start with the events stored at or after this time: RFC 3339 or a duration ago (`10m`).
    #[arg(long, value_parser = parse_time)]
    since: Option<OffsetDateTime>,
    /// Start at this stream sequence.
    #[arg(long, value_name = "SEQ")]
    from_sequence: Option<u64>,
    /// Start with the oldest event the stream holds.
    #[arg(long)]
    all: bool,
    /// Stop after printing this many events.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

fn parse_pattern(raw: &str) -> Result<EventPattern, String> {
    EventPattern::new(raw).map_err(|e| e.to_string())
}

pub(crate) async fn run(command: EventsCommand) -> Result<(), CliError> {
    match command {
        EventsCommand::Tail(args) => tail(args).await,
    }
}

/// One printed event; `--json` prints these, one per line.
#[derive(Debug, Serialize)]
struct Line {
    sequence: u64,
    subject: String,
    /// When the stream stored it (RFC 3339).
    stored_at: String,
    /// Present when the event could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<EventLine>,
    /// Why the event could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    unreadable: Option<String>,
    /// The plugin a replay is for, when this is a replay of a dead letter.
    #[serde(skip_serializing_if = "Option::is_none")]
    replay_for: Option<String>,
}

#[derive(Debug, Serialize)]
struct EventLine {
    id: String,
    tenant: String,
    #[serde(rename = "type")]
    event_type: String,
    schema_version: String,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    content_type: &'static str,
    /// The data decoded to JSON, or a preview of the bytes when it does not decode.
    data: serde_json::Value,
}

async fn tail(args: TailArgs) -> Result<(), CliError> {
    let plugin = match &args.plugin {
        Some(plugin) => {
            let registry = open_registry(&args.nats, &args.namespace).await?;
            Some(super::registration_of(&registry, plugin).await?)
        }
        None => None,
    };
    let bus = Bus::connect(&args.nats.connect_options()?)
        .await?
        .with_namespace(args.namespace.prefix.clone());
    let namespace = bus.namespace().clone();
    let stream = bus
        .jetstream()
        .get_stream(&bus.streams().events.name)
        .await
        .map_err(|e| CliError::nats("cannot open the events stream", e))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subjects: filters(
                &namespace,
                args.tenant.as_ref(),
                args.event_type.as_ref(),
                args.plugin.as_ref(),
            ),
            deliver_policy: start(&args),
            ..Default::default()
        })
        .await
        .map_err(|e| CliError::nats("cannot read the events stream", e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| CliError::nats("cannot read the events stream", e))?;

    let mut printed = 0;
    while args.count.is_none_or(|count| printed < count) {
        let message = tokio::select! {
            next = messages.next() => match next {
                Some(Ok(message)) => message,
                Some(Err(error)) => return Err(CliError::nats("reading the events stream failed", error)),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        };
        let line = read_line(&namespace, &message);
        if let Some(registration) = &plugin {
            if !for_plugin(registration, &line) {
                continue;
            }
        }
        if args.output.json {
            println!("{}", serde_json::to_string(&line)?);
        } else {
            println!("{}", render(&line));
        }
        printed += 1;
    }
    Ok(())
}

/// The subjects to read: the events (of the tenant and type, when given) and the replays of
/// dead letters (of the plugin, when given).
fn filters(
    namespace: &Namespace,
    tenant: Option<&Tenant>,
    pattern: Option<&EventPattern>,
    plugin: Option<&PluginId>,
) -> Vec<String> {
    let tenant_token = tenant.map_or("*", Tenant::as_str);
    let type_tokens = pattern.map_or_else(|| ">".to_owned(), ToString::to_string);
    let plugin_token = plugin.map_or("*", PluginId::as_str);
    vec![
        format!("{}.events.{tenant_token}.{type_tokens}", namespace.prefix()),
        format!(
            "{}.redrive.{plugin_token}.*.{tenant_token}.{type_tokens}",
            namespace.prefix()
        ),
    ]
}

fn start(args: &TailArgs) -> DeliverPolicy {
    if let Some(start_time) = args.since {
        DeliverPolicy::ByStartTime { start_time }
    } else if let Some(start_sequence) = args.from_sequence {
        DeliverPolicy::ByStartSequence { start_sequence }
    } else if args.all {
        DeliverPolicy::All
    } else {
        DeliverPolicy::New
    }
}

fn read_line(namespace: &Namespace, message: &async_nats::jetstream::Message) -> Line {
    let (sequence, stored_at) = match message.info() {
        Ok(info) => (
            info.stream_sequence,
            info.published.format(&Rfc3339).unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    };
    let subject = message.subject.to_string();
    let replay_for = subject
        .strip_prefix(&format!("{}.redrive.", namespace.prefix()))
        .and_then(|rest| rest.split('.').next())
        .map(str::to_owned);
    let (event, unreadable) = match decode_event(message.headers.as_ref(), message.payload.clone())
    {
        Ok(event) => (Some(EventLine::of(&event)), None),
        Err(error) => (None, Some(error.to_string())),
    };
    Line {
        sequence,
        subject,
        stored_at,
        event,
        unreadable,
        replay_for,
    }
}

impl EventLine {
    fn of(event: &switchyard_schemas::Event) -> Self {
        let a = &event.attributes;
        let data = a
            .content_type
            .decode_whole(&event.data)
            .unwrap_or_else(|| serde_json::Value::String(preview(&event.data)));
        Self {
            id: a.id.to_string(),
            tenant: a.tenant.to_string(),
            event_type: a.event_type.to_string(),
            schema_version: a.schema_version.to_string(),
            source: a.source.clone(),
            time: a.time.map(timestamp),
            content_type: a.content_type.media_type(),
            data,
        }
    }
}

/// Whether the plugin would be sent this event: a replay meant for it, or an event of its
/// tenants whose type and version one of its subscriptions accepts. Unreadable events go to
/// every plugin whose filters match (and become dead letters there), so they are shown.
fn for_plugin(registration: &Registration, line: &Line) -> bool {
    if let Some(replay_for) = &line.replay_for {
        return replay_for == registration.plugin_id().as_str();
    }
    let Some(event) = &line.event else {
        return true;
    };
    let (Ok(tenant), Ok(event_type), Ok(version)) = (
        Tenant::new(event.tenant.as_str()),
        switchyard_schemas::EventType::new(event.event_type.as_str()),
        event.schema_version.parse(),
    ) else {
        return false;
    };
    registration.tenants.includes(&tenant)
        && registration
            .manifest
            .subscriptions
            .iter()
            .any(|subscription| subscription.accepts(&event_type, &version))
}

/// One line of text: sequence, tenant, type and version, id, then the data as compact JSON.
fn render(line: &Line) -> String {
    let replay = line
        .replay_for
        .as_ref()
        .map(|plugin| format!("  (replay for {plugin})"))
        .unwrap_or_default();
    match (&line.event, &line.unreadable) {
        (Some(event), _) => format!(
            "#{}  {}  {}  {}@{}  {}  {}{replay}",
            line.sequence,
            event.time.as_deref().unwrap_or(&line.stored_at),
            event.tenant,
            event.event_type,
            event.schema_version,
            event.id,
            event.data,
        ),
        (None, reason) => format!(
            "#{}  {}  {}  unreadable: {}{replay}",
            line.sequence,
            line.stored_at,
            line.subject,
            reason.as_deref().unwrap_or("unknown")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_narrow_events_and_replays_alike() {
        let ns = Namespace::default();
        let tenant = Tenant::new("acme").unwrap();
        let pattern = EventPattern::new("order.*").unwrap();
        let plugin = PluginId::new("audit").unwrap();
        assert_eq!(
            filters(&ns, Some(&tenant), Some(&pattern), Some(&plugin)),
            [
                "switchyard.events.acme.order.*",
                "switchyard.redrive.audit.*.acme.order.*"
            ]
        );
        assert_eq!(
            filters(&ns, None, None, None),
            ["switchyard.events.*.>", "switchyard.redrive.*.*.*.>"]
        );
    }
}
