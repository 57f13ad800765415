//! `switchyard dev`: the embedded default. Starts a local nats-server with JetStream in a data
//! directory, provisions the streams, publishes sample events and shows what was stored.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use switchyard_bus::{decode_event, Bus, ConnectOptions};
use switchyard_dispatcher::local_nats::{binary, LocalNatsServer, Port, ServerOptions};
use switchyard_schemas::semver::Version;
use switchyard_schemas::{ContentType, Event, Tenant, TypedEvent};

use super::streams::{describe, print_stream_state};
use super::CliError;

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Where nats-server keeps its data and log.
    #[arg(long, default_value = ".switchyard/dev")]
    data_dir: PathBuf,
    /// The client port of the local nats-server.
    #[arg(long, default_value_t = 4222)]
    port: u16,
    /// How many sample events to publish.
    #[arg(long, default_value_t = 24)]
    events: usize,
    /// Delete the data directory first, starting from empty streams.
    #[arg(long)]
    fresh: bool,
    /// Keep the server running after the samples, until Ctrl-C.
    #[arg(long)]
    keep_running: bool,
}

/// A sample event: an order was placed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct OrderCreated {
    order_id: String,
    total_cents: u64,
}

impl TypedEvent for OrderCreated {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// A sample event: an invoice was paid.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct InvoicePaid {
    invoice_id: String,
    amount_cents: u64,
}

impl TypedEvent for InvoicePaid {
    const TYPE: &'static str = "invoice.paid";
    const SCHEMA_VERSION: Version = Version::new(1, 1, 0);
}

pub(crate) async fn run(args: DevArgs) -> Result<(), CliError> {
    if args.fresh && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir).map_err(|source| CliError::Io {
            action: "delete the data directory",
            path: args.data_dir.clone(),
            source,
        })?;
    }
    println!("switchyard dev: the embedded default");

    let binary = binary::resolve()
        .await
        .map_err(|e| CliError::LocalServer(e.into()))?;
    let mut server = LocalNatsServer::start(ServerOptions {
        store_dir: args.data_dir.clone(),
        binary: Some(binary.path.clone()),
        port: Port::Fixed(args.port),
        name: Some("switchyard-dev".to_owned()),
        ..ServerOptions::default()
    })
    .await?;
    println!(
        "  nats-server {} ({}) on {}, data in {}",
        binary.version,
        binary.path.display(),
        server.url(),
        args.data_dir.display()
    );

    // Run the samples, then stop the server whatever happened; Ctrl-C stops it too.
    let url = server.url();
    let outcome = tokio::select! {
        result = samples(&url, args.events) => result,
        _ = tokio::signal::ctrl_c() => {
            println!("  interrupted");
            Ok(())
        }
    };
    if outcome.is_ok() && args.keep_running {
        println!(
            "  running; publish to {} (see docs/wire-format.md). Ctrl-C stops.",
            server.url()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    server.stop().await?;
    println!("  nats-server stopped");
    outcome
}

async fn samples(url: &str, count: usize) -> Result<(), CliError> {
    let bus = Bus::connect(&ConnectOptions::new(url)).await?;
    let report = bus.provision().await?;
    println!(
        "  streams: {} {}, {} {}",
        bus.streams().events.name,
        describe(report.events),
        bus.streams().dead_letters.name,
        describe(report.dead_letters)
    );

    let events = sample_events(count)?;
    let publisher = bus.publisher("urn:switchyard:dev");
    let started = Instant::now();
    let window = NonZeroUsize::new(32).expect("32 is not zero");
    let receipts = publisher.publish_many(events.clone(), window).await?;
    if let (Some(first), Some(last)) = (receipts.first(), receipts.last()) {
        println!(
            "  published {} sample events in {:.1?}: sequences {}..={}",
            receipts.len(),
            started.elapsed(),
            first.sequence,
            last.sequence
        );
    }

    if let Some(first) = events.first() {
        let again = publisher.publish_event(first).await?;
        println!(
            "  published event {} again: duplicate = {}, still sequence {} (stored once)",
            first.attributes.id, again.duplicate, again.sequence
        );
    }

    print_stream_state(&bus, &bus.streams().events).await?;
    show_last(&bus, 5).await
}

/// Sample events over two tenants and two types, in both encodings, with fresh ids.
fn sample_events(count: usize) -> Result<Vec<Event>, CliError> {
    let tenants = [Tenant::new("acme"), Tenant::new("globex")];
    let mut events = Vec::with_capacity(count);
    for i in 0..count {
        let tenant = tenants[i % 2]
            .clone()
            .expect("sample tenant names are valid");
        let content_type = if i % 3 == 2 {
            ContentType::Json
        } else {
            ContentType::MessagePack
        };
        let builder = Event::builder(tenant, "urn:switchyard:dev").content_type(content_type);
        let event = if i % 4 == 3 {
            builder.build(&InvoicePaid {
                invoice_id: format!("inv-{i}"),
                amount_cents: 1000 + i as u64,
            })
        } else {
            builder.subject(format!("order-{i}")).build(&OrderCreated {
                order_id: format!("o-{i}"),
                total_cents: 250 * i as u64,
            })
        };
        events.push(event.map_err(|e| CliError::Publish(e.into()))?);
    }
    Ok(events)
}

/// Reads the last `n` events back from the stream and prints them decoded.
async fn show_last(bus: &Bus, n: u64) -> Result<(), CliError> {
    let mut stream = bus
        .jetstream()
        .get_stream(&bus.streams().events.name)
        .await
        .map_err(|e| CliError::nats("look up the events stream", e))?;
    let last = stream
        .info()
        .await
        .map_err(|e| CliError::nats("read the events stream", e))?
        .state
        .last_sequence;
    println!("  the last {n} stored events, read back and decoded:");
    for sequence in last.saturating_sub(n - 1).max(1)..=last {
        let message = stream
            .direct_get(sequence)
            .await
            .map_err(|e| CliError::nats("read a stored event", e))?;
        match decode_event(Some(&message.headers), message.payload.clone()) {
            Ok(event) => {
                let a = &event.attributes;
                let data = a
                    .content_type
                    .decode::<serde_json::Value>(&event.data)
                    .map_or_else(|e| format!("<{e}>"), |v| v.to_string());
                println!(
                    "    #{sequence:<5} {:<7} {:<14} v{:<6} {:<20} {data}",
                    a.tenant.as_str(),
                    a.event_type.as_str(),
                    a.schema_version.to_string(),
                    a.content_type.media_type(),
                );
            }
            Err(e) => println!("    #{sequence:<4} not a valid event: {e}"),
        }
    }
    Ok(())
}
