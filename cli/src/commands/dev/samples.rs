//! The sample events `switchyard dev` publishes: orders, cancellations and paid invoices for
//! two tenants, in both encodings, with some invalid orders for the validator to refuse.

use switchyard_schemas::semver::Version;
use switchyard_schemas::{ContentType, EncodeError, Event, Tenant, TypedEvent};

const SOURCE: &str = "urn:switchyard:dev";

/// An order was placed.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct OrderCreated {
    order_id: String,
    total_cents: u64,
}

impl TypedEvent for OrderCreated {
    const TYPE: &'static str = "order.created";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// An order was cancelled.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct OrderCancelled {
    order_id: String,
    reason: String,
}

impl TypedEvent for OrderCancelled {
    const TYPE: &'static str = "order.cancelled";
    const SCHEMA_VERSION: Version = Version::new(1, 0, 0);
}

/// An invoice was paid.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct InvoicePaid {
    invoice_id: String,
    amount_cents: u64,
}

impl TypedEvent for InvoicePaid {
    const TYPE: &'static str = "invoice.paid";
    const SCHEMA_VERSION: Version = Version::new(1, 1, 0);
}

/// The `i`-th sample event: the mix repeats every 10 events, tenants alternate, every third
/// event is JSON, and every seventh order has a zero total (invalid).
pub(crate) fn sample(i: u64) -> Result<Event, EncodeError> {
    let tenant = if i.is_multiple_of(2) {
        "acme"
    } else {
        "globex"
    };
    let builder = Event::builder(
        Tenant::new(tenant).expect("sample tenants are valid"),
        SOURCE,
    )
    .content_type(if i % 3 == 2 {
        ContentType::Json
    } else {
        ContentType::MessagePack
    });
    match i % 10 {
        0..=5 => builder.subject(format!("o-{i}")).build(&OrderCreated {
            order_id: format!("o-{i}"),
            total_cents: if i % 7 == 3 { 0 } else { 250 + 100 * i },
        }),
        6 => builder
            .subject(format!("o-{}", i - 1))
            .build(&OrderCancelled {
                order_id: format!("o-{}", i - 1),
                reason: "changed my mind".to_owned(),
            }),
        _ => builder.build(&InvoicePaid {
            invoice_id: format!("inv-{i}"),
            amount_cents: 1000 + i,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_every_kind_and_some_invalid_orders() {
        let events: Vec<Event> = (0..70).map(|i| sample(i).unwrap()).collect();
        let count = |ty: &str| {
            events
                .iter()
                .filter(|e| e.attributes.event_type.as_str() == ty)
                .count()
        };
        assert_eq!(count("order.created"), 42);
        assert_eq!(count("order.cancelled"), 7);
        assert_eq!(count("invoice.paid"), 21);
        let invalid = events
            .iter()
            .filter_map(|e| e.data_as::<OrderCreated>().ok())
            .filter(|o| o.total_cents == 0)
            .count();
        assert!(invalid > 0 && invalid < 42, "{invalid}");
    }
}
