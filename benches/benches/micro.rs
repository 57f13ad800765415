//! Micro-benchmarks of the pieces every delivery goes through: building, encoding and
//! decoding the envelope, the delivery protocol's headers, the retry decision, and reading a
//! manifest (done on every registry change).
//!
//! `cargo bench -p switchyard-benches` (add a filter, e.g. `-- envelope`, to run some).

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

use criterion::{criterion_main, Criterion};
use switchyard_benches::probe::Probe;
use switchyard_bus::{decode_event, event_headers};
use switchyard_dispatcher::pipeline::decision::{decide, AttemptResult};
use switchyard_schemas::delivery::{DeliveryInfo, ErrorCode, Outcome};
use switchyard_schemas::manifest::{Backoff, DeliveryPolicy, Manifest};
use switchyard_schemas::{Event, PluginId, Tenant};

/// Every section and key of the manifest format (as `docs/manifest.md`'s example).
const FULL_MANIFEST: &str = r#"
[plugin]
id = "audit-log"
version = "1.2.0"
core = "^0.1"
description = "Writes every order event to the audit log"

[defaults]
rate = "100/s"
burst = 20
max_in_flight = 32
timeout = "5s"
max_attempts = 5
backoff = { exponential = { initial = "1s", max = "5m", multiplier = 2.0, jitter = 0.2 } }

[[subscriptions]]
name = "orders"
events = ["order.*", "invoice.>"]
versions = "^1"

[subscriptions.policy]
timeout = "2s"
max_attempts = 10
backoff = { fixed = ["1s", "10s", "1m"] }

[[subscriptions]]
name = "refunds"
events = ["refund.issued"]

[channels]
send = ["alerts"]
receive = ["alerts", "audit"]

[dependencies]
requires = { geo-lookup = "^1.0" }
conflicts = ["old-audit"]

[settings]
webhook_url = "https://example.invalid/hook"
retention_days = 90
"#;

fn tenant() -> Tenant {
    Tenant::new("acme").expect("a valid tenant")
}

fn event(body: usize) -> Event {
    Event::builder(tenant(), "urn:svc:orders")
        .build(&Probe::sized(42, 1_000_000, body))
        .expect("a valid event")
}

fn delivery_info() -> DeliveryInfo {
    DeliveryInfo {
        attempt: 1,
        max_attempts: 5,
        deadline: SystemTime::now() + Duration::from_secs(30),
        timeout: Duration::from_secs(30),
        plugin: PluginId::new("audit-log").expect("a valid id"),
        subscription: "orders".to_owned(),
        stream_sequence: 123_456,
    }
}

fn lookup<'a>(headers: &'a [(&'static str, String)]) -> impl Fn(&str) -> Option<&'a str> + 'a {
    move |name| {
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn envelope(c: &mut Criterion) {
    let mut group = c.benchmark_group("envelope");
    for body in [128, 1024] {
        let probe = Probe::sized(42, 1_000_000, body);
        group.bench_function(format!("build/{body}B"), |b| {
            b.iter(|| {
                Event::builder(tenant(), "urn:svc:orders")
                    .build(black_box(&probe))
                    .expect("builds")
            })
        });
        let event = event(body);
        group.bench_function(format!("data_as/{body}B"), |b| {
            b.iter(|| black_box(&event).data_as::<Probe>().expect("decodes"))
        });
    }
    let event = event(128);
    group.bench_function("headers", |b| b.iter(|| black_box(&event).headers()));
    let pairs = event.headers();
    group.bench_function("decode/from pairs", |b| {
        b.iter(|| Event::decode(lookup(black_box(&pairs)), event.data.clone()).expect("decodes"))
    });
    group.finish();
}

fn headers(c: &mut Criterion) {
    let mut group = c.benchmark_group("headers");
    let event = event(128);
    group.bench_function("bus::event_headers", |b| {
        b.iter(|| event_headers(black_box(&event)))
    });
    let map = event_headers(&event);
    group.bench_function("bus::decode_event", |b| {
        b.iter(|| decode_event(Some(black_box(&map)), event.data.clone()).expect("decodes"))
    });
    // The same decode with a lookup that scans the map instead of `HeaderMap::get(&str)`,
    // which builds (and allocates) a `HeaderName` per lookup: what that costs.
    group.bench_function("decode_event, scanning lookup", |b| {
        b.iter(|| {
            let map = black_box(&map);
            let lookup = |name: &str| {
                map.iter()
                    .find(|(key, _)| AsRef::<str>::as_ref(*key) == name)
                    .and_then(|(_, values)| values.first())
                    .map(|value| value.as_str())
            };
            Event::decode(lookup, event.data.clone()).expect("decodes")
        })
    });
    group.bench_function("HeaderMap::clone", |b| b.iter(|| black_box(&map).clone()));
    let info = delivery_info();
    group.bench_function("DeliveryInfo::headers", |b| {
        b.iter(|| black_box(&info).headers())
    });
    let info_headers = info.headers();
    group.bench_function("DeliveryInfo::decode", |b| {
        b.iter(|| DeliveryInfo::decode(lookup(black_box(&info_headers))).expect("decodes"))
    });
    let outcomes = [
        ("done", Outcome::Done),
        (
            "retry",
            Outcome::Retry {
                after: Some(Duration::from_millis(1500)),
                code: Some(ErrorCode::new("upstream.busy").expect("a valid code")),
                reason: "the upstream is busy".to_owned(),
            },
        ),
    ];
    for (name, outcome) in outcomes {
        group.bench_function(format!("Outcome::to_reply/{name}"), |b| {
            b.iter(|| black_box(&outcome).to_reply())
        });
        let (pairs, body) = outcome.to_reply();
        group.bench_function(format!("Outcome::from_reply/{name}"), |b| {
            b.iter(|| Outcome::from_reply(lookup(black_box(&pairs)), &body).expect("reads"))
        });
    }
    group.finish();
}

fn policy(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy");
    let policy = DeliveryPolicy {
        max_attempts: NonZeroU32::new(5).expect("not zero"),
        ..DeliveryPolicy::default()
    };
    group.bench_function("decide/done", |b| {
        b.iter(|| {
            decide(
                AttemptResult::Replied(Outcome::Done),
                black_box(1),
                &policy,
                0.5,
            )
        })
    });
    group.bench_function("decide/timeout", |b| {
        b.iter(|| decide(AttemptResult::TimedOut, black_box(2), &policy, 0.3))
    });
    let backoff = Backoff::default();
    group.bench_function("Backoff::delay/exponential", |b| {
        b.iter(|| backoff.delay(black_box(4), black_box(0.3)))
    });
    group.finish();
}

fn manifest(c: &mut Criterion) {
    c.bench_function("manifest/from_toml_str", |b| {
        b.iter(|| Manifest::from_toml_str(black_box(FULL_MANIFEST)).expect("a valid manifest"))
    });
    // A subscription at the pattern limit: the duplicate and overlap checks once compared
    // every pair (30 to 45 s); now linear. Half a second or more here means a regression.
    let events: Vec<String> = (0..switchyard_schemas::MAX_PATTERNS_PER_SUBSCRIPTION)
        .map(|i| match i % 3 {
            0 => format!("\"t{i}.created\""),
            1 => format!("\"t{i}.*.done\""),
            _ => format!("\"svc.t{i}.>\""),
        })
        .collect();
    let many = format!(
        "[plugin]\nid = \"many\"\nversion = \"1.0.0\"\ncore = \"*\"\n\
         [[subscriptions]]\nname = \"all\"\nevents = [{}]\n",
        events.join(", ")
    );
    let mut group = c.benchmark_group("manifest");
    group.sample_size(10);
    group.bench_function("from_toml_str/10000 patterns", |b| {
        b.iter(|| Manifest::from_toml_str(black_box(&many)).expect("a valid manifest"))
    });
    group.finish();
}

/// Every group, with the command line's options (what `criterion_group!` would generate,
/// written out because the macro's function carries no documentation).
fn benches() {
    let mut criterion = Criterion::default().configure_from_args();
    envelope(&mut criterion);
    headers(&mut criterion);
    policy(&mut criterion);
    manifest(&mut criterion);
}

criterion_main!(benches);
