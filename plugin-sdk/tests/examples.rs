//! The example plugins: each builds and fits its manifest, and its handlers behave as its
//! docs say. Each example's `main.rs` is included as a module to reach its `plugin()`; the
//! events are built from this file's own types, as another service would publish them.

#[path = "../examples/audit-logger/main.rs"]
#[allow(dead_code, unreachable_pub)]
mod audit_logger;
#[path = "../examples/flaky-notifier/main.rs"]
#[allow(dead_code, unreachable_pub)]
mod flaky_notifier;
#[path = "../examples/hello/main.rs"]
#[allow(dead_code, unreachable_pub)]
mod hello;
#[path = "../examples/order-validator/main.rs"]
#[allow(dead_code, unreachable_pub)]
mod order_validator;
#[path = "../examples/tax-rates/main.rs"]
#[allow(dead_code, unreachable_pub)]
mod tax_rates;

use serde::{Deserialize, Serialize};
use switchyard_plugin_sdk::{Context, Event, Outcome, Plugin, Tenant, TypedEvent, Version};

#[derive(Serialize, Deserialize)]
struct OrderCreated {
    order_id: String,
    total_cents: u64,
}

impl TypedEvent for OrderCreated {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

#[derive(Serialize, Deserialize)]
struct InvoicePaid {
    invoice_id: String,
    amount_cents: u64,
}

impl TypedEvent for InvoicePaid {
    const TYPE: &'static str = "invoice.paid";
    const SCHEMA_VERSION: Version = Version::new(1, 1, 0);
}

fn event<T: TypedEvent>(data: &T) -> Event {
    Event::builder(Tenant::new("acme").unwrap(), "urn:test")
        .build(data)
        .expect("the event encodes")
}

fn order(id: &str, total_cents: u64) -> Event {
    event(&OrderCreated {
        order_id: id.to_owned(),
        total_cents,
    })
}

/// Handles `event` as attempt `attempt` with the plugin's own `[settings]`, as a worker
/// would.
async fn handle(plugin: &Plugin, event: Event, attempt: u32) -> Outcome {
    let context = Context::for_test(&event)
        .attempt(attempt)
        .settings(plugin.manifest().settings.clone())
        .build();
    plugin.handle(event, context).await
}

#[test]
fn every_example_builds_and_fits_its_manifest() {
    for (name, plugin) in [
        ("hello", hello::plugin()),
        ("order-validator", order_validator::plugin()),
        ("flaky-notifier", flaky_notifier::plugin()),
        ("audit-logger", audit_logger::plugin()),
        ("tax-rates", tax_rates::plugin()),
    ] {
        let plugin = plugin.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(plugin.manifest().plugin.id.as_str(), name);
        plugin.check().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn tax_rates_answers_known_regions_and_refuses_others_for_good() {
    use switchyard_plugin_sdk::{CallContext, HandlerError};
    let plugin = tax_rates::plugin().unwrap();
    let query = |region: &str| tax_rates::TaxQuery {
        region: region.to_owned(),
        total_cents: 1000,
    };
    let rate: tax_rates::TaxRate = plugin
        .handle_call("rate", &query("eu"), CallContext::for_test("rate").build())
        .await
        .unwrap();
    assert_eq!((rate.rate_percent, rate.tax_cents), (20, 200));
    let unknown = plugin
        .handle_call::<_, tax_rates::TaxRate>(
            "rate",
            &query("mars"),
            CallContext::for_test("rate").build(),
        )
        .await;
    assert!(
        matches!(&unknown, Err(HandlerError::Permanent { code, reason })
            if code.as_str() == "tax.unknown-region" && reason.contains("mars")),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn tax_rates_is_called_through_a_dispatcher_in_a_test_bed() {
    let bed = Box::pin(switchyard_plugin_sdk::testing::TestBed::start(
        tax_rates::plugin().unwrap(),
    ))
    .await
    .unwrap();
    let query = tax_rates::TaxQuery {
        region: "us".to_owned(),
        total_cents: 1000,
    };
    let rate: tax_rates::TaxRate = bed.call("acme", "rate", &query).await.unwrap();
    assert_eq!(rate.tax_cents, 70);
    bed.shutdown().await;
}

#[tokio::test]
async fn hello_greets_an_order() {
    let plugin = hello::plugin().unwrap();
    assert_eq!(handle(&plugin, order("o-1", 990), 1).await, Outcome::Done);
}

#[tokio::test]
async fn order_validator_refuses_bad_orders_for_good() {
    let plugin = order_validator::plugin().unwrap();
    assert_eq!(handle(&plugin, order("o-1", 990), 1).await, Outcome::Done);
    for bad in [order("o-2", 0), order("  ", 990)] {
        let outcome = handle(&plugin, bad, 1).await;
        assert!(
            matches!(&outcome, Outcome::Failed { code, .. } if code.as_str() == "order.invalid"),
            "{outcome:?}"
        );
    }
    let Outcome::Failed { reason, .. } = handle(&plugin, order("o-2", 0), 1).await else {
        unreachable!("checked above");
    };
    assert!(
        reason.contains("o-2") && reason.contains("zero total"),
        "{reason}"
    );
}

#[tokio::test]
async fn flaky_notifier_fails_the_first_attempt_and_then_succeeds() {
    let plugin = flaky_notifier::plugin().unwrap();
    assert_eq!(
        plugin.manifest().settings.get("failures_before_success"),
        Some(&1.into()),
        "the manifest says one failure"
    );
    let paid = event(&InvoicePaid {
        invoice_id: "i-1".to_owned(),
        amount_cents: 1200,
    });
    let first = handle(&plugin, paid.clone(), 1).await;
    assert!(
        matches!(&first, Outcome::Retry { after: None, reason, .. } if reason.contains("upstream busy")),
        "{first:?}"
    );
    assert_eq!(handle(&plugin, paid, 2).await, Outcome::Done);
}

#[tokio::test]
async fn audit_logger_appends_a_json_line_per_event() {
    let plugin = audit_logger::plugin().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut settings = plugin.manifest().settings.clone();
    settings.insert("path".to_owned(), path.display().to_string().into());

    let created = order("o-1", 990);
    let paid = event(&InvoicePaid {
        invoice_id: "i-1".to_owned(),
        amount_cents: 1200,
    });
    for e in [created.clone(), paid.clone()] {
        let context = Context::for_test(&e).settings(settings.clone()).build();
        assert_eq!(plugin.handle(e, context).await, Outcome::Done);
    }

    let text = std::fs::read_to_string(&path).expect("the log is written");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["id"], created.attributes.id.as_str());
    assert_eq!(lines[0]["type"], "order.created");
    assert_eq!(lines[0]["tenant"], "acme");
    assert_eq!(lines[0]["data"]["order_id"], "o-1");
    assert_eq!(lines[0]["data"]["total_cents"], 990);
    assert_eq!(lines[1]["id"], paid.attributes.id.as_str());
    assert_eq!(lines[1]["schema_version"], "1.1.0");
}

#[tokio::test]
async fn audit_logger_retries_when_it_cannot_write() {
    let plugin = audit_logger::plugin().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = plugin.manifest().settings.clone();
    let missing = dir.path().join("no-such-dir").join("audit.jsonl");
    settings.insert("path".to_owned(), missing.display().to_string().into());
    let e = order("o-1", 990);
    let context = Context::for_test(&e).settings(settings).build();
    let outcome = plugin.handle(e, context).await;
    assert!(
        matches!(&outcome, Outcome::Retry { reason, .. } if reason.contains("no-such-dir")),
        "{outcome:?}"
    );
}
