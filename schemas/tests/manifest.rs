//! The `plugin.toml` contract: every documented default, every check (each test fails when its
//! check is removed), every problem reported at once, and the round trips used for storage.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use switchyard_schemas::manifest::{
    ManifestLoadError, ParseRateError, PatternError, RunPolicy, DEFAULT_MAX_BYTES_PER_SECOND,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_SUBSCRIPTIONS,
};
use switchyard_schemas::semver::{Version, VersionReq};
use switchyard_schemas::{
    Backoff, ChannelName, DeliveryPolicy, EventPattern, EventType, Limits, Manifest, PluginId,
    ProblemKind, Rate, RatePeriod,
};

// ---- harness ---------------------------------------------------------------------------

const MINIMAL: &str = include_str!("manifests/minimal.toml");

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/manifests")
        .join(name)
}

/// The minimal manifest with `extra` appended; appended keys land in its subscription unless
/// `extra` opens another table.
fn minimal_with(extra: &str) -> String {
    format!("{MINIMAL}\n{extra}\n")
}

/// The minimal manifest with `from` replaced by `to`.
fn minimal_edited(from: &str, to: &str) -> String {
    assert!(
        MINIMAL.contains(from),
        "the minimal manifest has no `{from}`"
    );
    MINIMAL.replacen(from, to, 1)
}

/// The minimal manifest without its subscription.
fn plugin_only() -> &'static str {
    let (plugin, _) = MINIMAL
        .split_once("[[subscriptions]]")
        .expect("the minimal manifest has a subscription");
    plugin
}

/// Parses a manifest that must be valid.
fn parse(text: &str) -> Manifest {
    Manifest::from_toml_str(text).unwrap_or_else(|errors| panic!("{errors}\n--- in ---\n{text}"))
}

/// Every problem of a manifest that must be invalid, as (key, kind).
fn problems(text: &str) -> Vec<(String, ProblemKind)> {
    let errors = Manifest::from_toml_str(text).expect_err("the manifest should be refused");
    errors
        .problems()
        .iter()
        .map(|problem| (problem.key.clone(), problem.kind))
        .collect()
}

/// Asserts that `text` is refused with exactly these problems, in this order.
#[track_caller]
fn assert_problems(text: &str, expected: &[(&str, ProblemKind)]) {
    let found = problems(text);
    let found: Vec<(&str, ProblemKind)> =
        found.iter().map(|(k, kind)| (k.as_str(), *kind)).collect();
    assert_eq!(found, expected, "--- in ---\n{text}");
}

/// The policy of the first subscription.
fn first_policy(text: &str) -> DeliveryPolicy {
    parse(text).subscriptions.remove(0).policy
}

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn millis(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn nz(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).expect("test values are not zero")
}

fn pattern(text: &str) -> EventPattern {
    EventPattern::new(text).expect("test patterns are valid")
}

fn event(text: &str) -> EventType {
    EventType::new(text).expect("test event types are valid")
}

// ---- valid manifests ---------------------------------------------------------------------

#[test]
fn full_manifest_parses_every_field_as_written() {
    let manifest = Manifest::from_path(fixture("full.toml")).expect("full.toml is valid");

    let plugin = &manifest.plugin;
    assert_eq!(plugin.id.as_str(), "audit-log");
    assert_eq!(plugin.version, Version::new(1, 2, 0));
    assert_eq!(plugin.core, VersionReq::parse("^0.1").unwrap());
    assert_eq!(
        plugin.description.as_deref(),
        Some("Writes every order event to the audit log")
    );
    assert_eq!(plugin.author.as_deref(), Some("Example Ltd"));
    assert_eq!(plugin.license.as_deref(), Some("Apache-2.0"));
    assert_eq!(
        plugin.homepage.as_deref(),
        Some("https://example.invalid/audit-log")
    );
    assert_eq!(
        plugin.repository.as_deref(),
        Some("https://example.invalid/audit-log.git")
    );
    let tags: Vec<&str> = plugin.tags.iter().map(|tag| tag.as_str()).collect();
    assert_eq!(tags, ["audit", "orders"]);
    assert_eq!(
        plugin.category.as_ref().map(|c| c.as_str()),
        Some("compliance")
    );

    let [orders, refunds] = &manifest.subscriptions[..] else {
        panic!("two subscriptions expected: {:?}", manifest.subscriptions);
    };
    assert_eq!(orders.name.as_str(), "orders");
    assert_eq!(orders.events, [pattern("order.*"), pattern("invoice.>")]);
    assert_eq!(orders.versions, VersionReq::parse("^1").unwrap());
    assert_eq!(
        orders.policy,
        DeliveryPolicy {
            rate: Some(Rate::new(nz(100), RatePeriod::Second)),
            burst: nz(20),
            max_in_flight: nz(32),
            timeout: secs(2),
            max_attempts: nz(10),
            backoff: Backoff::Fixed(vec![secs(1), secs(10), secs(60)]),
            fail_after_opens: None,
        }
    );
    assert_eq!(refunds.name.as_str(), "refunds");
    assert_eq!(refunds.events, [pattern("refund.issued")]);
    assert_eq!(refunds.versions, VersionReq::STAR);
    assert_eq!(
        refunds.policy,
        DeliveryPolicy {
            rate: Some(Rate::new(nz(100), RatePeriod::Second)),
            burst: nz(20),
            max_in_flight: nz(32),
            timeout: secs(5),
            max_attempts: nz(5),
            backoff: Backoff::Exponential {
                initial: secs(1),
                max: secs(300),
                multiplier: 2.0,
                jitter: 0.2,
            },
            fail_after_opens: None,
        }
    );

    let alerts = ChannelName::new("alerts").unwrap();
    let audit = ChannelName::new("audit").unwrap();
    assert_eq!(manifest.channels.send, std::slice::from_ref(&alerts));
    assert_eq!(manifest.channels.receive, [alerts.clone(), audit.clone()]);
    assert!(manifest.channels.can_send(&alerts) && !manifest.channels.can_send(&audit));
    assert!(manifest.channels.can_receive(&audit));

    assert_eq!(
        manifest.limits,
        Limits {
            max_subscriptions: nz(200),
            max_payload: nz(256 * 1024),
            max_connections: nz(3),
            max_bytes_per_second: nz(2 * 1024 * 1024),
        }
    );

    let requires = BTreeMap::from([(
        PluginId::new("geo-lookup").unwrap(),
        VersionReq::parse("^1.0").unwrap(),
    )]);
    assert_eq!(manifest.dependencies.requires, requires);
    assert_eq!(
        manifest.dependencies.conflicts,
        [PluginId::new("old-audit").unwrap()]
    );

    assert_eq!(
        manifest.settings["webhook_url"].as_str(),
        Some("https://example.invalid/hook")
    );
    assert_eq!(manifest.settings["retention_days"].as_integer(), Some(90));
}

#[test]
fn minimal_manifest_gets_every_documented_default() {
    let manifest = parse(MINIMAL);
    assert_eq!(manifest.plugin.description, None);
    assert_eq!(manifest.plugin.author, None);
    assert!(manifest.plugin.tags.is_empty());
    assert_eq!(manifest.plugin.category, None);
    assert_eq!(manifest.subscriptions.len(), 1);
    let orders = &manifest.subscriptions[0];
    assert_eq!(orders.versions, VersionReq::STAR);
    assert_eq!(
        orders.policy,
        DeliveryPolicy {
            rate: None,
            burst: nz(1),
            max_in_flight: nz(16),
            timeout: secs(30),
            max_attempts: nz(5),
            backoff: Backoff::Exponential {
                initial: secs(1),
                max: secs(300),
                multiplier: 2.0,
                jitter: 0.2,
            },
            fail_after_opens: None,
        }
    );
    assert_eq!(orders.policy, DeliveryPolicy::default());
    assert!(manifest.channels.send.is_empty() && manifest.channels.receive.is_empty());
    assert_eq!(
        manifest.limits,
        Limits {
            max_subscriptions: nz(1000),
            max_payload: nz(1024 * 1024),
            max_connections: nz(8),
            max_bytes_per_second: nz(8 * 1024 * 1024),
        }
    );
    assert_eq!(manifest.limits, Limits::default());
    assert_eq!(
        (
            DEFAULT_MAX_SUBSCRIPTIONS,
            DEFAULT_MAX_PAYLOAD,
            DEFAULT_MAX_CONNECTIONS,
            DEFAULT_MAX_BYTES_PER_SECOND
        ),
        (nz(1000), nz(1_048_576), nz(8), nz(8_388_608))
    );
    assert!(
        manifest.dependencies.requires.is_empty() && manifest.dependencies.conflicts.is_empty()
    );
    assert!(manifest.settings.is_empty());
}

/// The limits of the minimal manifest with a `[limits]` table of `keys`.
fn limits(keys: &str) -> Limits {
    parse(&minimal_with(&format!("[limits]\n{keys}"))).limits
}

#[test]
fn limits_keys_are_optional_one_by_one() {
    assert_eq!(limits(""), Limits::default());
    assert_eq!(
        limits("max_subscriptions = 5"),
        Limits {
            max_subscriptions: nz(5),
            ..Limits::default()
        }
    );
    assert_eq!(
        limits("max_payload = \"2KiB\""),
        Limits {
            max_payload: nz(2048),
            ..Limits::default()
        }
    );
    assert_eq!(
        limits("max_connections = 2"),
        Limits {
            max_connections: nz(2),
            ..Limits::default()
        }
    );
    assert_eq!(
        limits("max_bytes_per_second = \"64KiB\""),
        Limits {
            max_bytes_per_second: nz(64 * 1024),
            ..Limits::default()
        }
    );
}

/// The run policy of the minimal manifest with a `[run]` table of `keys`.
fn run(keys: &str) -> RunPolicy {
    parse(&minimal_with(&format!("[run]\n{keys}"))).run
}

#[test]
fn run_keys_are_optional_and_max_instances_follows_min() {
    assert_eq!(run(""), RunPolicy::default());
    let scaled = run("min_instances = 2");
    assert_eq!((scaled.min_instances, scaled.max_instances), (nz(2), nz(2)));
    let policy = run(
        "min_instances = 1\nmax_instances = 3\nmemory = \"64MiB\"\ncpu_millicores = 250\n\
         max_processes = 32\nopen_files = 128\nstop_grace = \"2s\"\ncrash_loop_ends = 3\n\
         crash_loop_window = \"1m\"\nheartbeat_timeout = \"10s\"\nhealth_grace = \"3s\"",
    );
    assert_eq!(
        policy,
        RunPolicy {
            min_instances: nz(1),
            max_instances: nz(3),
            memory_bytes: 64 * 1024 * 1024,
            cpu_millicores: nz(250),
            max_processes: nz(32),
            open_files: nz(128),
            stop_grace: Duration::from_secs(2),
            crash_loop_ends: nz(3),
            crash_loop_window: Duration::from_secs(60),
            heartbeat_timeout: Duration::from_secs(10),
            health_grace: Duration::from_secs(3),
        }
    );
    let manifest = parse(&minimal_with(
        "[run]\nmax_instances = 3\nmemory = \"64MiB\"",
    ));
    assert_eq!(
        Manifest::from_table(&manifest.to_table()).unwrap(),
        manifest
    );
}

/// The operations of the minimal manifest with `[[operations]]` tables of `tables`.
fn operations(tables: &str) -> Vec<switchyard_schemas::Operation> {
    parse(&minimal_with(tables)).operations
}

const QUOTE: &str = "[[operations]]\nname = \"quote\"\n\
    request = { type = \"quote.request\", version = \"1.0.0\" }\n\
    response = { type = \"quote.response\", version = \"1.0.0\" }\n";

#[test]
fn operations_have_documented_defaults_and_round_trip() {
    let quote = &operations(QUOTE)[0];
    assert_eq!(quote.name.as_str(), "quote");
    assert_eq!(quote.timeout, Duration::from_secs(10));
    assert_eq!(quote.rate, None);
    assert_eq!(quote.burst, nz(1));
    assert_eq!(quote.max_in_flight, nz(16));
    assert!(!quote.idempotent);
    assert!(quote.callers.operators);
    assert!(!quote.callers.services);
    assert!(quote.callers.plugins.is_empty());
    assert_eq!(quote.callers.tenants, None);
    assert_eq!(quote.request.name.as_str(), "quote.request");
    let rated = &operations(&format!("{QUOTE}rate = \"30/s\"\n"))[0];
    assert_eq!(
        rated.burst,
        nz(30),
        "burst follows the rate as for deliveries"
    );

    let manifest = Manifest::from_path(fixture("full.toml")).unwrap();
    let lookup = manifest.operation("lookup").expect("declared");
    assert_eq!(lookup.timeout, Duration::from_secs(2));
    assert_eq!(lookup.burst, nz(10));
    assert_eq!(lookup.max_in_flight, nz(8));
    assert!(lookup.idempotent && lookup.callers.services && lookup.callers.operators);
    assert_eq!(lookup.callers.plugins, [PluginId::new("billing").unwrap()]);
    assert_eq!(lookup.request.version, Version::new(1, 1, 0));
    assert_eq!(parse(&manifest.to_toml_string()), manifest);
    let json = serde_json::to_string(&manifest).unwrap();
    assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), manifest);
}

#[test]
fn operation_problems_name_their_key() {
    assert_problems(
        &minimal_with(&format!("{QUOTE}{QUOTE}")),
        &[("operations[1].name", ProblemKind::Duplicate)],
    );
    assert_problems(
        &minimal_with("[[operations]]\nname = \"a b\"\nrequest = { type = \"x\" }\ntimeout = \"16m\"\nwhat = 1"),
        &[
            ("operations[0].what", ProblemKind::UnknownKey),
            ("operations[0].name", ProblemKind::BadName),
            ("operations[0].request.version", ProblemKind::Missing),
            ("operations[0].response", ProblemKind::Missing),
            ("operations[0].timeout", ProblemKind::OutOfRange),
        ],
    );
    assert_problems(
        &minimal_with(&format!(
            "{QUOTE}idempotent = \"yes\"\nmax_in_flight = 0\n\
             callers = {{ services = 1, plugins = [\"admin\", \"b\", \"b\"], tenants = [] }}"
        )),
        &[
            ("operations[0].max_in_flight", ProblemKind::OutOfRange),
            ("operations[0].idempotent", ProblemKind::WrongType),
            ("operations[0].callers.services", ProblemKind::WrongType),
            ("operations[0].callers.plugins[0]", ProblemKind::Reserved),
            ("operations[0].callers.plugins[2]", ProblemKind::Duplicate),
            ("operations[0].callers.tenants", ProblemKind::Missing),
        ],
    );
    let too_many: String = (0..=64)
        .map(|n| QUOTE.replace("\"quote\"", &format!("\"q{n}\"")))
        .collect();
    assert_problems(
        &minimal_with(&too_many),
        &[("operations", ProblemKind::TooLarge)],
    );
}

#[test]
fn run_values_out_of_their_ranges_are_refused_by_key() {
    for (keys, key, kind) in [
        (
            "min_instances = 0",
            "run.min_instances",
            ProblemKind::OutOfRange,
        ),
        (
            "min_instances = 65",
            "run.min_instances",
            ProblemKind::OutOfRange,
        ),
        (
            "min_instances = 3\nmax_instances = 2",
            "run.max_instances",
            ProblemKind::Inconsistent,
        ),
        ("memory = \"15MiB\"", "run.memory", ProblemKind::OutOfRange),
        ("memory = \"1MB\"", "run.memory", ProblemKind::BadSize),
        (
            "cpu_millicores = 9",
            "run.cpu_millicores",
            ProblemKind::OutOfRange,
        ),
        (
            "max_processes = 7",
            "run.max_processes",
            ProblemKind::OutOfRange,
        ),
        ("open_files = 63", "run.open_files", ProblemKind::OutOfRange),
        (
            "stop_grace = \"0s\"",
            "run.stop_grace",
            ProblemKind::OutOfRange,
        ),
        (
            "crash_loop_ends = 1",
            "run.crash_loop_ends",
            ProblemKind::OutOfRange,
        ),
        (
            "crash_loop_window = \"1s\"",
            "run.crash_loop_window",
            ProblemKind::OutOfRange,
        ),
        (
            "heartbeat_timeout = \"4s\"",
            "run.heartbeat_timeout",
            ProblemKind::OutOfRange,
        ),
        (
            "health_grace = \"11m\"",
            "run.health_grace",
            ProblemKind::OutOfRange,
        ),
        ("instances = 2", "run.instances", ProblemKind::UnknownKey),
    ] {
        assert_eq!(
            problems(&minimal_with(&format!("[run]\n{keys}"))),
            [(key.to_owned(), kind)],
            "{keys}"
        );
    }
}

#[test]
fn max_payload_is_a_size_or_a_number_of_bytes() {
    for (written, bytes) in [
        ("2048", 2048),
        ("\"2048\"", 2048),
        ("\"2049B\"", 2049),
        ("\"256KiB\"", 256 * 1024),
        ("\"1 MiB\"", 1024 * 1024),
        ("\"3MiB\"", 3 * 1024 * 1024),
    ] {
        assert_eq!(
            limits(&format!("max_payload = {written}")).max_payload,
            nz(bytes),
            "{written}"
        );
    }
}

#[test]
fn limits_are_accepted_at_their_bounds_and_refused_one_past() {
    for accepted in [
        "max_subscriptions = 1",
        "max_subscriptions = 100000",
        "max_payload = 1024",
        "max_payload = \"1KiB\"",
        "max_payload = 67108864",
        "max_payload = \"64MiB\"",
        "max_connections = 1",
        "max_connections = 10000",
        "max_bytes_per_second = 1024",
        "max_bytes_per_second = \"1GiB\"",
    ] {
        parse(&minimal_with(&format!("[limits]\n{accepted}")));
    }
    let refused = [
        ("max_subscriptions = 0", "max_subscriptions"),
        ("max_subscriptions = 100001", "max_subscriptions"),
        ("max_subscriptions = -1", "max_subscriptions"),
        ("max_payload = 1023", "max_payload"),
        ("max_payload = \"1023B\"", "max_payload"),
        ("max_payload = 67108865", "max_payload"),
        ("max_payload = \"65537KiB\"", "max_payload"),
        ("max_payload = \"1GiB\"", "max_payload"),
        ("max_payload = 0", "max_payload"),
        ("max_payload = -2048", "max_payload"),
        ("max_payload = \"99999999999999999999MiB\"", "max_payload"),
        ("max_connections = 0", "max_connections"),
        ("max_connections = 10001", "max_connections"),
        ("max_bytes_per_second = 1023", "max_bytes_per_second"),
        ("max_bytes_per_second = \"1025MiB\"", "max_bytes_per_second"),
    ];
    for (setting, key) in refused {
        assert_problems(
            &minimal_with(&format!("[limits]\n{setting}")),
            &[(format!("limits.{key}").as_str(), ProblemKind::OutOfRange)],
        );
    }
}

#[test]
fn limit_problems_name_their_key() {
    assert_problems(
        &minimal_with(
            "[limits]\nmax_sessions = 3\nmax_subscriptions = \"5\"\nmax_payload = 1.5\n\
             max_connections = \"3\"\nmax_bytes_per_second = true",
        ),
        &[
            ("limits.max_sessions", ProblemKind::UnknownKey),
            ("limits.max_subscriptions", ProblemKind::WrongType),
            ("limits.max_payload", ProblemKind::WrongType),
            ("limits.max_connections", ProblemKind::WrongType),
            ("limits.max_bytes_per_second", ProblemKind::WrongType),
        ],
    );
    for size in ["1MB", "1M", "1.5MiB", "lots", "1kib", ""] {
        assert_problems(
            &minimal_with(&format!("[limits]\nmax_payload = \"{size}\"")),
            &[("limits.max_payload", ProblemKind::BadSize)],
        );
    }
    assert_problems(
        &format!("limits = 5\n{MINIMAL}"),
        &[("limits", ProblemKind::WrongType)],
    );
    let errors =
        Manifest::from_toml_str(&minimal_with("[limits]\nmax_payload = \"1MB\"")).unwrap_err();
    let message = &errors.problems()[0].message;
    assert!(message.contains("KiB, MiB"), "{message}");
    let errors =
        Manifest::from_toml_str(&minimal_with("[limits]\nmax_payload = \"65MiB\"")).unwrap_err();
    let message = &errors.problems()[0].message;
    assert!(message.contains("from 1KiB to 64MiB"), "{message}");
}

#[test]
fn catalog_metadata_is_checked_key_by_key() {
    let long = "x".repeat(257);
    let text = minimal_edited(
        "core = \"^0.1\"",
        &format!(
            "core = \"^0.1\"\nauthor = \"{long}\"\nlicense = \" \"\n\
             homepage = \"ftp://example.invalid\"\nrepository = \"https:// x\"\n\
             tags = [\"audit\", \"two words\", \"audit\"]\ncategory = \"a.b\""
        ),
    );
    assert_problems(
        &text,
        &[
            ("plugin.author", ProblemKind::TooLarge),
            ("plugin.license", ProblemKind::BadText),
            ("plugin.homepage", ProblemKind::BadText),
            ("plugin.repository", ProblemKind::BadText),
            ("plugin.tags[1]", ProblemKind::BadName),
            ("plugin.tags[2]", ProblemKind::Duplicate),
            ("plugin.category", ProblemKind::BadName),
        ],
    );
    let control = minimal_edited(
        "core = \"^0.1\"",
        "core = \"^0.1\"\nauthor = \"a\\u001b[31m\"",
    );
    assert_problems(&control, &[("plugin.author", ProblemKind::BadText)]);
    let many: Vec<String> = (0..33).map(|n| format!("\"t{n}\"")).collect();
    let too_many = minimal_edited(
        "core = \"^0.1\"",
        &format!("core = \"^0.1\"\ntags = [{}]", many.join(", ")),
    );
    assert_problems(&too_many, &[("plugin.tags", ProblemKind::TooLarge)]);
}

#[test]
fn a_plugin_may_have_no_subscriptions() {
    assert!(parse(plugin_only()).subscriptions.is_empty());
}

#[test]
fn subscription_overrides_merge_key_by_key_over_defaults_then_builtins() {
    let manifest = parse(&minimal_with(
        r#"
        [subscriptions.policy]
        rate = "1000/s"
        timeout = "2s"

        [[subscriptions]]
        name = "invoices"
        events = ["invoice.paid"]

        [defaults]
        rate = "100/s"
        burst = 20
        timeout = "5s"
        backoff = { exponential = { initial = "2s", max = "1m" } }
        "#,
    ));
    let [orders, invoices] = &manifest.subscriptions[..] else {
        panic!("two subscriptions expected");
    };
    let backoff = Backoff::Exponential {
        initial: secs(2),
        max: secs(60),
        multiplier: 2.0,
        jitter: 0.2,
    };
    // Its own rate and timeout; burst and backoff from [defaults]; the rest built in.
    assert_eq!(
        orders.policy,
        DeliveryPolicy {
            rate: Some(Rate::new(nz(1000), RatePeriod::Second)),
            burst: nz(20),
            timeout: secs(2),
            backoff: backoff.clone(),
            ..DeliveryPolicy::default()
        }
    );
    assert_eq!(
        invoices.policy,
        DeliveryPolicy {
            rate: Some(Rate::new(nz(100), RatePeriod::Second)),
            burst: nz(20),
            timeout: secs(5),
            backoff,
            ..DeliveryPolicy::default()
        }
    );
}

#[test]
fn a_backoff_override_replaces_the_default_backoff_whole() {
    let policy = first_policy(&minimal_with(
        r#"
        policy = { backoff = { fixed = ["3s"] } }
        [defaults]
        backoff = { exponential = { initial = "2s" } }
        "#,
    ));
    assert_eq!(policy.backoff, Backoff::Fixed(vec![secs(3)]));
}

#[test]
fn burst_defaults_to_the_per_second_rate_rounded_up() {
    for (rate, burst) in [
        ("250/s", 250),
        ("90/m", 2),
        ("30/m", 1),
        ("7200/h", 2),
        ("1/h", 1),
    ] {
        let policy = first_policy(&minimal_with(&format!("policy = {{ rate = \"{rate}\" }}")));
        assert_eq!(policy.burst, nz(burst), "rate {rate}");
    }
}

#[test]
fn number_keys_accept_integers_for_floats() {
    let policy = first_policy(&minimal_with(
        r#"policy = { backoff = { exponential = { multiplier = 3, jitter = 0 } } }"#,
    ));
    assert_eq!(
        policy.backoff,
        Backoff::Exponential {
            initial: secs(1),
            max: secs(300),
            multiplier: 3.0,
            jitter: 0.0,
        }
    );
}

// ---- one test per problem kind ----------------------------------------------------------

#[test]
fn syntax_error_is_one_problem_with_line_and_column() {
    let errors = Manifest::from_toml_str("[plugin]\nid = \"a\"\nversion = \n").unwrap_err();
    let [problem] = errors.problems() else {
        panic!("one problem expected: {errors}");
    };
    assert_eq!(problem.kind, ProblemKind::Syntax);
    assert_eq!(problem.key, "");
    assert!(
        problem.message.contains("line 3, column"),
        "{}",
        problem.message
    );
}

#[test]
fn unknown_keys_are_named_at_every_level() {
    assert_problems(
        &minimal_with(
            r#"
            policy = { retries = 3, backoff = { linear = "1s", fixed = ["1s"] } }
            [plugin2]
            x = 1
            [channels]
            publish = ["a"]
            "#,
        )
        .replacen("core =", "autor = \"me\"\ncore =", 1),
        &[
            ("plugin2", ProblemKind::UnknownKey),
            ("plugin.autor", ProblemKind::UnknownKey),
            ("subscriptions[0].policy.retries", ProblemKind::UnknownKey),
            (
                "subscriptions[0].policy.backoff.linear",
                ProblemKind::UnknownKey,
            ),
            ("channels.publish", ProblemKind::UnknownKey),
        ],
    );
}

#[test]
fn missing_required_keys_and_empty_lists() {
    assert_problems(
        &minimal_edited("core = \"^0.1\"", ""),
        &[("plugin.core", ProblemKind::Missing)],
    );
    assert_problems(
        &minimal_edited("[plugin]", "[other]"),
        &[
            ("other", ProblemKind::UnknownKey),
            ("plugin", ProblemKind::Missing),
        ],
    );
    assert_problems(
        &minimal_edited("name = \"orders\"", ""),
        &[("subscriptions[0].name", ProblemKind::Missing)],
    );
    assert_problems(
        &minimal_edited("events = [\"order.created\"]", "events = []"),
        &[("subscriptions[0].events", ProblemKind::Missing)],
    );
    assert_problems(
        &minimal_with("policy = { backoff = { fixed = [] } }"),
        &[(
            "subscriptions[0].policy.backoff.fixed",
            ProblemKind::Missing,
        )],
    );
    assert_problems(
        &minimal_with("policy = { backoff = {} }"),
        &[("subscriptions[0].policy.backoff", ProblemKind::Missing)],
    );
}

#[test]
fn wrong_types_are_named() {
    assert_problems(
        &minimal_with(
            r#"
            policy = { max_in_flight = "32", timeout = 5, backoff = { exponential = { jitter = "0.2" } } }
            [channels]
            send = "alerts"
            "#,
        )
        .replacen("version = \"1.2.0\"", "version = 1", 1),
        &[
            ("plugin.version", ProblemKind::WrongType),
            ("subscriptions[0].policy.max_in_flight", ProblemKind::WrongType),
            ("subscriptions[0].policy.timeout", ProblemKind::WrongType),
            (
                "subscriptions[0].policy.backoff.exponential.jitter",
                ProblemKind::WrongType,
            ),
            ("channels.send", ProblemKind::WrongType),
        ],
    );
    assert_problems(
        &format!(
            "subscriptions = \"orders\"\nsettings = 5\n{}",
            plugin_only()
        ),
        &[
            ("subscriptions", ProblemKind::WrongType),
            ("settings", ProblemKind::WrongType),
        ],
    );
}

#[test]
fn bad_semver_version() {
    assert_problems(
        &minimal_edited("version = \"1.2.0\"", "version = \"1.2\""),
        &[("plugin.version", ProblemKind::BadSemver)],
    );
}

#[test]
fn bad_version_requirements() {
    let text = minimal_edited("core = \"^0.1\"", "core = \"latest\"")
        + "versions = \">>1\"\n[dependencies]\nrequires = { geo = \"one\" }\n";
    assert_problems(
        &text,
        &[
            ("plugin.core", ProblemKind::BadVersionReq),
            ("subscriptions[0].versions", ProblemKind::BadVersionReq),
            ("dependencies.requires.geo", ProblemKind::BadVersionReq),
        ],
    );
}

#[test]
fn bad_durations() {
    assert_problems(
        &minimal_with(
            r#"policy = { timeout = "5 parsecs", backoff = { fixed = ["1s", "soon"] } }"#,
        ),
        &[
            ("subscriptions[0].policy.timeout", ProblemKind::BadDuration),
            (
                "subscriptions[0].policy.backoff.fixed[1]",
                ProblemKind::BadDuration,
            ),
        ],
    );
}

#[test]
fn bad_rates() {
    for rate in ["100", "100/d", "/s", "-1/s", "1.5/s", "100 / s", "ten/s"] {
        assert_problems(
            &minimal_with(&format!("policy = {{ rate = \"{rate}\" }}")),
            &[("subscriptions[0].policy.rate", ProblemKind::BadRate)],
        );
    }
}

#[test]
fn fail_after_opens_is_off_by_default_merges_from_defaults_and_round_trips() {
    let off = first_policy(&minimal_with(""));
    assert_eq!(off.fail_after_opens, None);
    let own = first_policy(&minimal_with(
        "[subscriptions.policy]\nfail_after_opens = 3",
    ));
    assert_eq!(own.fail_after_opens, Some(nz(3)));
    let text = format!("[defaults]\nfail_after_opens = 7\n{}", minimal_with(""));
    let manifest = parse(&text);
    assert_eq!(
        manifest.subscriptions[0].policy.fail_after_opens,
        Some(nz(7))
    );
    let canonical = manifest.to_toml_string();
    assert!(canonical.contains("fail_after_opens = 7"), "{canonical}");
    assert_eq!(parse(&canonical), manifest);
    assert!(!parse(&minimal_with(""))
        .to_toml_string()
        .contains("fail_after_opens"));
}

#[test]
fn out_of_range_numbers_and_durations() {
    let cases = [
        ("max_in_flight = 0", "max_in_flight"),
        ("max_in_flight = 10001", "max_in_flight"),
        ("max_attempts = 0", "max_attempts"),
        ("max_attempts = 1001", "max_attempts"),
        ("fail_after_opens = 0", "fail_after_opens"),
        ("fail_after_opens = 1001", "fail_after_opens"),
        ("burst = 0", "burst"),
        ("burst = -3", "burst"),
        ("timeout = \"0s\"", "timeout"),
        ("timeout = \"15min 1s\"", "timeout"),
        ("rate = \"0/s\"", "rate"),
        ("rate = \"5000000000/s\"", "rate"),
        (
            "backoff = { exponential = { jitter = 1.5 } }",
            "backoff.exponential.jitter",
        ),
        (
            "backoff = { exponential = { jitter = -0.1 } }",
            "backoff.exponential.jitter",
        ),
        (
            "backoff = { exponential = { multiplier = 0.5 } }",
            "backoff.exponential.multiplier",
        ),
        (
            "backoff = { exponential = { multiplier = inf } }",
            "backoff.exponential.multiplier",
        ),
        (
            "backoff = { exponential = { initial = \"0s\" } }",
            "backoff.exponential.initial",
        ),
    ];
    for (setting, key) in cases {
        assert_problems(
            &minimal_with(&format!("[subscriptions.policy]\n{setting}")),
            &[(
                format!("subscriptions[0].policy.{key}").as_str(),
                ProblemKind::OutOfRange,
            )],
        );
    }
    // The bounds themselves are accepted.
    let policy = first_policy(&minimal_with(
        "policy = { max_in_flight = 10000, max_attempts = 1000, timeout = \"15m\" }",
    ));
    assert_eq!(
        (policy.max_in_flight, policy.max_attempts, policy.timeout),
        (nz(10_000), nz(1000), secs(900))
    );
    assert_eq!(
        first_policy(&minimal_with("policy = { timeout = \"1ms\" }")).timeout,
        millis(1)
    );
}

#[test]
fn bad_names() {
    let text = minimal_edited("id = \"audit-log\"", "id = \"audit.log\"").replacen(
        "name = \"orders\"",
        "name = \"new orders\"",
        1,
    ) + r#"
        [channels]
        receive = ["al*rts"]
        [dependencies]
        requires = { "geo lookup" = "^1" }
        conflicts = [""]
        "#;
    assert_problems(
        &text,
        &[
            ("plugin.id", ProblemKind::BadName),
            ("subscriptions[0].name", ProblemKind::BadName),
            ("channels.receive[0]", ProblemKind::BadName),
            ("dependencies.requires.\"geo lookup\"", ProblemKind::BadName),
            ("dependencies.conflicts[0]", ProblemKind::BadName),
        ],
    );
}

#[test]
fn the_ids_of_trusted_logins_are_reserved() {
    for reserved in ["dispatcher", "admin", "system", "Admin"] {
        let text = minimal_edited("id = \"audit-log\"", &format!("id = \"{reserved}\""));
        let errors = Manifest::from_toml_str(&text).expect_err("a reserved id is refused");
        let problems = errors.problems();
        assert_eq!(problems.len(), 1, "{errors}");
        assert_eq!(problems[0].key, "plugin.id");
        assert_eq!(problems[0].kind, ProblemKind::Reserved);
        assert_eq!(
            problems[0].message,
            format!("plugin id `{reserved}` is reserved for a trusted login")
        );
    }
    // Only the whole id is reserved.
    parse(&minimal_edited(
        "id = \"audit-log\"",
        "id = \"admin-audit\"",
    ));
}

#[test]
fn bad_event_patterns() {
    for bad in [
        "order.>.late",
        "order..created",
        "order created",
        "order.cre*ted",
        ">>",
        "",
    ] {
        assert_problems(
            &minimal_edited("[\"order.created\"]", &format!("[\"ok\", {bad:?}]")),
            &[("subscriptions[0].events[1]", ProblemKind::BadPattern)],
        );
    }
}

#[test]
fn duplicates_are_reported_where_they_repeat() {
    let text = minimal_edited(
        "[\"order.created\"]",
        "[\"order.created\", \"invoice.*\", \"order.created\"]",
    ) + r#"
        [[subscriptions]]
        name = "orders"
        events = ["refund.issued"]
        [channels]
        send = ["alerts", "alerts"]
        [dependencies]
        conflicts = ["old", "old"]
        "#;
    assert_problems(
        &text,
        &[
            ("subscriptions[1].name", ProblemKind::Duplicate),
            ("subscriptions[0].events[2]", ProblemKind::Duplicate),
            ("channels.send[1]", ProblemKind::Duplicate),
            ("dependencies.conflicts[1]", ProblemKind::Duplicate),
        ],
    );
}

#[test]
fn duplicate_subscription_names_are_found_even_when_the_subscription_is_invalid() {
    assert_problems(
        &minimal_with("[[subscriptions]]\nname = \"orders\"\nevents = []"),
        &[
            ("subscriptions[1].name", ProblemKind::Duplicate),
            ("subscriptions[1].events", ProblemKind::Missing),
        ],
    );
}

#[test]
fn patterns_that_cover_each_other_within_a_subscription_overlap() {
    assert_problems(
        &minimal_edited(
            "[\"order.created\"]",
            "[\"order.created\", \"order.*\", \"invoice.>\", \"invoice.paid.*\", \"*.created\"]",
        ),
        &[
            ("subscriptions[0].events[1]", ProblemKind::Overlap),
            ("subscriptions[0].events[3]", ProblemKind::Overlap),
            ("subscriptions[0].events[4]", ProblemKind::Overlap),
        ],
    );
    // Patterns that only share some types (neither covers the other) are accepted, as by
    // JetStream, and two subscriptions may listen to the same events.
    parse(&minimal_edited(
        "[\"order.created\"]",
        "[\"order.*\", \"*.paid\"]",
    ));
    parse(&minimal_with(
        "[[subscriptions]]\nname = \"again\"\nevents = [\"order.created\"]",
    ));
}

#[test]
fn contradictory_values_are_inconsistent() {
    assert_problems(
        &minimal_with(
            r#"
            policy = { backoff = { exponential = { initial = "10m" } } }
            [defaults]
            backoff = { exponential = { initial = "1s" }, fixed = ["1s"] }
            "#,
        ),
        &[
            ("defaults.backoff", ProblemKind::Inconsistent),
            // Longer than the default max of 5m.
            (
                "subscriptions[0].policy.backoff.exponential.initial",
                ProblemKind::Inconsistent,
            ),
        ],
    );
    assert_problems(
        &minimal_with(
            r#"policy = { backoff = { exponential = { initial = "1m", max = "30s" } } }"#,
        ),
        &[(
            "subscriptions[0].policy.backoff.exponential.initial",
            ProblemKind::Inconsistent,
        )],
    );
    assert_problems(
        &minimal_with("[dependencies]\nrequires = { geo = \"^1\" }\nconflicts = [\"geo\"]"),
        &[("dependencies.conflicts[0]", ProblemKind::Inconsistent)],
    );
}

#[test]
fn a_plugin_cannot_depend_on_itself() {
    assert_problems(
        &minimal_with("[dependencies]\nrequires = { audit-log = \"^1\" }"),
        &[("dependencies.requires.audit-log", ProblemKind::Inconsistent)],
    );
    assert_problems(
        &minimal_with("[dependencies]\nconflicts = [\"other\", \"audit-log\"]"),
        &[("dependencies.conflicts[1]", ProblemKind::Inconsistent)],
    );
}

#[test]
fn a_bad_value_does_not_cause_follow_up_problems() {
    // `max` cannot be read, so `initial` is not compared with the default max.
    assert_problems(
        &minimal_with(r#"policy = { backoff = { exponential = { initial = "10m", max = "x" } } }"#),
        &[(
            "subscriptions[0].policy.backoff.exponential.max",
            ProblemKind::BadDuration,
        )],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
        [plugin]
        id = "audit log"
        version = "one"
        core = "^0.1"
        colour = "blue"

        [defaults]
        timeout = "forever"

        [[subscriptions]]
        name = "orders"
        events = ["order.created", "order.created"]
        [subscriptions.policy]
        max_in_flight = 0
        rate = "fast"

        [[subscriptions]]
        name = "orders"
        events = ["order.>.x"]

        [limits]
        max_payload = "1MB"
    "#;
    let errors = Manifest::from_toml_str(text).unwrap_err();
    assert_problems(
        text,
        &[
            ("plugin.colour", ProblemKind::UnknownKey),
            ("plugin.id", ProblemKind::BadName),
            ("plugin.version", ProblemKind::BadSemver),
            ("defaults.timeout", ProblemKind::BadDuration),
            ("subscriptions[1].name", ProblemKind::Duplicate),
            ("subscriptions[0].events[1]", ProblemKind::Duplicate),
            ("subscriptions[0].policy.rate", ProblemKind::BadRate),
            (
                "subscriptions[0].policy.max_in_flight",
                ProblemKind::OutOfRange,
            ),
            ("subscriptions[1].events[0]", ProblemKind::BadPattern),
            ("limits.max_payload", ProblemKind::BadSize),
        ],
    );
    // A header line, then one line per problem, each starting with its key.
    let shown = errors.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 1 + errors.len(), "{shown}");
    assert!(lines[0].contains("10 problems"), "{shown}");
    for (line, problem) in lines[1..].iter().zip(errors.problems()) {
        assert!(
            line.trim_start().starts_with(&format!("{}: ", problem.key)),
            "{line}"
        );
    }
}

#[test]
fn from_path_names_the_file_it_cannot_read_or_refuses() {
    let missing = fixture("no-such-manifest.toml");
    let err = Manifest::from_path(&missing).unwrap_err();
    assert!(matches!(err, ManifestLoadError::Read { ref path, .. } if *path == missing));
    assert!(err.to_string().contains("no-such-manifest.toml"), "{err}");

    let dir = std::env::temp_dir().join(format!("switchyard-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("plugin.toml");
    std::fs::write(
        &bad,
        minimal_edited("version = \"1.2.0\"", "version = \"x\""),
    )
    .unwrap();
    let err = Manifest::from_path(&bad).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    let ManifestLoadError::Invalid { path, errors } = err else {
        panic!("expected Invalid, got {err}");
    };
    assert_eq!(path, bad);
    assert_eq!(errors.problems()[0].key, "plugin.version");
}

// ---- storage round trips ----------------------------------------------------------------

fn full() -> Manifest {
    Manifest::from_path(fixture("full.toml")).expect("full.toml is valid")
}

#[test]
fn toml_round_trip_is_lossless() {
    let manifest = full();
    let written = manifest.to_toml_string();
    assert_eq!(parse(&written), manifest, "--- written ---\n{written}");
    // The canonical form has no [defaults]: each subscription carries its whole policy.
    assert!(!written.contains("[defaults]"), "{written}");
}

#[test]
fn the_canonical_form_writes_the_limits_even_when_they_are_the_defaults() {
    let manifest = parse(MINIMAL);
    let table = manifest.to_table();
    let limits = table["limits"].as_table().expect("a [limits] table");
    assert_eq!(limits["max_subscriptions"].as_integer(), Some(1000));
    assert_eq!(limits["max_payload"].as_str(), Some("1MiB"));
    assert_eq!(limits["max_connections"].as_integer(), Some(8));
    assert_eq!(limits["max_bytes_per_second"].as_str(), Some("8MiB"));
    assert_eq!(parse(&manifest.to_toml_string()), manifest);

    let odd = parse(&minimal_with("[limits]\nmax_payload = 2049"));
    assert_eq!(
        odd.to_table()["limits"]["max_payload"].as_str(),
        Some("2049B")
    );
    assert_eq!(parse(&odd.to_toml_string()), odd);
}

#[test]
fn a_stored_manifest_without_limits_reads_with_the_defaults() {
    // Registrations stored before `[limits]` existed have none.
    let mut json = serde_json::to_value(full()).unwrap();
    json.as_object_mut().unwrap().remove("limits");
    let read: Manifest = serde_json::from_value(json).unwrap();
    assert_eq!(read.limits, Limits::default());
}

#[test]
fn round_trip_keeps_odd_durations_rates_and_settings() {
    let manifest = parse(&minimal_with(
        r#"
        policy = { rate = "7/h", timeout = "1m 30s 250ms", backoff = { fixed = ["0s", "1500ms"] } }
        [settings]
        when = 1979-05-27T07:32:00Z
        nested = { list = [1, 2.5, "x"], on = true }
        "#,
    ));
    assert_eq!(parse(&manifest.to_toml_string()), manifest);
    let json = serde_json::to_string(&manifest).unwrap();
    assert_eq!(
        serde_json::from_str::<Manifest>(&json).unwrap(),
        manifest,
        "{json}"
    );
}

#[test]
fn json_round_trip_is_lossless_and_readable() {
    let manifest = full();
    let json = serde_json::to_value(&manifest).unwrap();
    assert_eq!(json["plugin"]["id"], "audit-log");
    assert_eq!(json["subscriptions"][0]["policy"]["timeout"], "2s");
    assert_eq!(json["subscriptions"][1]["policy"]["rate"], "100/s");
    assert_eq!(json["limits"]["max_payload"], "256KiB");
    let read: Manifest = serde_json::from_value(json).unwrap();
    assert_eq!(read, manifest);
}

#[test]
fn deserializing_validates_again() {
    let mut json = serde_json::to_value(full()).unwrap();
    json["subscriptions"][0]["policy"]["timeout"] = "1h".into();
    json["plugin"]["id"] = "a.b".into();
    let err = serde_json::from_value::<Manifest>(json)
        .unwrap_err()
        .to_string();
    assert!(err.contains("subscriptions[0].policy.timeout"), "{err}");
    assert!(err.contains("plugin.id"), "{err}");
}

#[test]
fn settings_can_be_read_into_the_plugins_own_type() {
    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct AuditSettings {
        webhook_url: String,
        retention_days: u32,
    }
    let settings: AuditSettings = full().settings.try_into().unwrap();
    assert_eq!(
        settings,
        AuditSettings {
            webhook_url: "https://example.invalid/hook".into(),
            retention_days: 90,
        }
    );
}

// ---- event patterns -------------------------------------------------------------------

#[test]
fn star_matches_exactly_one_token() {
    let orders = pattern("order.*");
    assert!(orders.matches(&event("order.created")));
    assert!(!orders.matches(&event("order.created.v2")));
    assert!(!orders.matches(&event("order")));
    assert!(!orders.matches(&event("invoice.created")));
    assert!(pattern("*.created").matches(&event("order.created")));
    assert!(pattern("*").matches(&event("order")));
}

#[test]
fn rest_matches_one_or_more_tokens() {
    let invoices = pattern("invoice.>");
    assert!(invoices.matches(&event("invoice.paid")));
    assert!(invoices.matches(&event("invoice.paid.late")));
    assert!(!invoices.matches(&event("invoice")));
    assert!(!invoices.matches(&event("order.paid")));
    assert!(pattern(">").matches(&event("anything.at.all")));
}

#[test]
fn literal_patterns_match_only_themselves() {
    let created = pattern("order.created");
    assert!(created.matches(&event("order.created")));
    assert!(!created.matches(&event("order.created.v2")));
    assert!(!created.matches(&event("order")));
}

#[test]
fn covers_is_the_subset_relation() {
    let covers = |a: &str, b: &str| pattern(a).covers(&pattern(b));
    assert!(covers("order.*", "order.created"));
    assert!(covers("order.>", "order.*"));
    assert!(covers("order.>", "order.created.late"));
    assert!(covers(">", "*"));
    assert!(covers("order.created", "order.created"));
    assert!(!covers("order.created", "order.*"));
    assert!(!covers("order.*", "order.>"));
    assert!(!covers("order.*", "*.created"));
    assert!(!covers("order.>", "order"));
    assert!(!covers("order.*", "order.created.late"));
}

#[test]
fn pattern_errors_say_what_is_wrong() {
    assert!(matches!(
        EventPattern::new("order.>.late"),
        Err(PatternError::MisplacedRest { .. })
    ));
    assert!(matches!(
        EventPattern::new("a.b.c.d.e.f.g.h.i"),
        Err(PatternError::TooManyTokens { max: 8, .. })
    ));
    assert!(matches!(
        EventPattern::new("order.cr eated"),
        Err(PatternError::BadToken { .. })
    ));
    assert_eq!(pattern("order.*").as_str(), "order.*");
}

#[test]
fn a_subscription_accepts_matching_types_in_its_version_range() {
    let manifest = full();
    let orders = &manifest.subscriptions[0];
    assert!(orders.accepts(&event("order.created"), &Version::new(1, 4, 0)));
    assert!(!orders.accepts(&event("order.created"), &Version::new(2, 0, 0)));
    assert!(!orders.accepts(&event("refund.issued"), &Version::new(1, 0, 0)));
}

// ---- rates ------------------------------------------------------------------------------

#[test]
fn rates_read_and_show_exactly() {
    let rate: Rate = "30/m".parse().unwrap();
    assert_eq!(rate, Rate::new(nz(30), RatePeriod::Minute));
    assert_eq!(rate.to_string(), "30/m");
    assert!((rate.per_second() - 0.5).abs() < f64::EPSILON);
    assert_eq!(RatePeriod::Hour.duration(), secs(3600));
    assert!(matches!(
        "0/s".parse::<Rate>(),
        Err(ParseRateError::CountOutOfRange { .. })
    ));
    assert!(matches!(
        "5/fortnight".parse::<Rate>(),
        Err(ParseRateError::Malformed { .. })
    ));
}

// ---- backoff math ---------------------------------------------------------------------

const NO_JITTER: f64 = 0.5;

fn exponential(initial: Duration, max: Duration, multiplier: f64, jitter: f64) -> Backoff {
    Backoff::Exponential {
        initial,
        max,
        multiplier,
        jitter,
    }
}

#[test]
fn exponential_backoff_grows_then_caps_at_max() {
    let backoff = exponential(secs(1), secs(60), 2.0, 0.2);
    let delays: Vec<Duration> = (1..=8).map(|n| backoff.delay(n, NO_JITTER)).collect();
    let expected = [1, 2, 4, 8, 16, 32, 60, 60].map(secs);
    assert_eq!(delays, expected);
    assert_eq!(
        backoff.delay(0, NO_JITTER),
        secs(1),
        "attempt 0 is read as 1"
    );
    assert_eq!(backoff.delay(u32::MAX, NO_JITTER), secs(60), "no overflow");
    let triple = exponential(millis(100), secs(10), 3.0, 0.0);
    assert_eq!(triple.delay(3, 0.99), millis(900));
}

#[test]
fn jitter_spreads_delays_within_its_bounds_and_never_past_max() {
    let backoff = exponential(secs(10), secs(300), 2.0, 0.2);
    assert_eq!(backoff.delay(1, 0.0), secs(8));
    assert_eq!(backoff.delay(1, 0.25), secs(9));
    assert_eq!(backoff.delay(1, 0.75), secs(11));
    let near_top = backoff.delay(1, 0.999_999);
    assert!(near_top > secs(11) && near_top <= secs(12), "{near_top:?}");
    for step in 0..100 {
        let delay = backoff.delay(2, f64::from(step) / 100.0);
        assert!((secs(16)..=secs(24)).contains(&delay), "{delay:?}");
    }
    // At the cap, jitter may shorten the delay but never lengthens it past max.
    assert_eq!(backoff.delay(20, 0.999), secs(300));
    assert_eq!(backoff.delay(20, 0.0), secs(240));
    // Out-of-range random numbers are clamped, NaN means no jitter.
    assert_eq!(backoff.delay(1, -3.0), secs(8));
    assert_eq!(backoff.delay(1, f64::NAN), secs(10));
}

#[test]
fn fixed_backoff_walks_the_list_then_repeats_the_last() {
    let backoff = Backoff::Fixed(vec![secs(1), secs(10), secs(60)]);
    let delays: Vec<Duration> = (1..=5).map(|n| backoff.delay(n, 0.9)).collect();
    assert_eq!(delays, [1, 10, 60, 60, 60].map(secs));
    assert_eq!(backoff.delay(0, 0.1), secs(1));
    assert_eq!(Backoff::Fixed(Vec::new()).delay(3, 0.5), Duration::ZERO);
}

// ---- limits ------------------------------------------------------------------------------

/// The minimal manifest whose one subscription lists `count` distinct patterns, none covering
/// another.
fn with_patterns(count: usize) -> String {
    let events: Vec<String> = (0..count)
        .map(|i| match i % 3 {
            0 => format!("\"t{i}.created\""),
            1 => format!("\"t{i}.*.done\""),
            _ => format!("\"svc.t{i}.>\""),
        })
        .collect();
    minimal_edited("[\"order.created\"]", &format!("[{}]", events.join(", ")))
}

#[test]
fn a_subscription_may_list_up_to_the_pattern_limit_and_no_more() {
    use switchyard_schemas::MAX_PATTERNS_PER_SUBSCRIPTION as MAX;
    // At the limit it is valid, and reads back from its stored forms (the registry's JSON and
    // the canonical TOML), which validate again.
    let manifest = parse(&with_patterns(MAX));
    assert_eq!(manifest.subscriptions[0].events.len(), MAX);
    let json = serde_json::to_string(&manifest).unwrap();
    assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), manifest);
    assert_eq!(parse(&manifest.to_toml_string()), manifest);

    let errors = Manifest::from_toml_str(&with_patterns(MAX + 1)).unwrap_err();
    let problem = &errors.problems()[0];
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (problem.key.as_str(), problem.kind),
        ("subscriptions[0].events", ProblemKind::TooLarge)
    );
    assert!(
        problem
            .message
            .contains("at most 10000 (MAX_PATTERNS_PER_SUBSCRIPTION)"),
        "{problem}"
    );
}

#[test]
fn overlaps_among_many_patterns_are_all_found() {
    // The last of 10 000 patterns covers the first; another pair sits in the middle.
    let mut text = with_patterns(9_997);
    text = text.replacen("\"t0.created\"", "\"t0.created\", \"mid.*\", \"mid.x\"", 1);
    let end = text.rfind(']').expect("the events list ends the text");
    text.replace_range(end..end, ", \"t0.*\"");
    assert_problems(
        &text,
        &[
            ("subscriptions[0].events[2]", ProblemKind::Overlap),
            ("subscriptions[0].events[9999]", ProblemKind::Overlap),
        ],
    );
}

#[test]
fn a_manifest_may_have_up_to_the_subscription_limit_and_no_more() {
    use switchyard_schemas::MAX_SUBSCRIPTIONS as MAX;
    let subscriptions = |count: usize| {
        let mut text = plugin_only().to_owned();
        for i in 0..count {
            text.push_str(&format!(
                "[[subscriptions]]\nname = \"s{i}\"\nevents = [\"order.created\"]\n"
            ));
        }
        text
    };
    assert_eq!(parse(&subscriptions(MAX)).subscriptions.len(), MAX);
    let errors = Manifest::from_toml_str(&subscriptions(MAX + 1)).unwrap_err();
    assert_eq!(errors.len(), 1);
    let problem = &errors.problems()[0];
    assert_eq!(
        (problem.key.as_str(), problem.kind),
        ("subscriptions", ProblemKind::TooLarge)
    );
    assert!(
        problem.message.contains("at most 256 (MAX_SUBSCRIPTIONS)"),
        "{problem}"
    );
}

#[test]
fn a_manifest_text_longer_than_the_byte_limit_is_not_parsed() {
    use switchyard_schemas::MAX_MANIFEST_BYTES as MAX;
    // Padded with a comment up to the limit exactly: read.
    let pad = |to: usize| {
        let mut text = format!("{MINIMAL}\n#");
        text.push_str(&"x".repeat(to - text.len()));
        text
    };
    parse(&pad(MAX));
    let errors = Manifest::from_toml_str(&pad(MAX + 1)).unwrap_err();
    assert_eq!(errors.len(), 1);
    let problem = &errors.problems()[0];
    assert_eq!(
        (problem.key.as_str(), problem.kind),
        ("", ProblemKind::TooLarge)
    );
    assert!(
        problem
            .message
            .contains("at most 1048576 are read (MAX_MANIFEST_BYTES)"),
        "{problem}"
    );
}

// ---- settings ----------------------------------------------------------------------------

const SETTINGS: &str = r#"
[settings]
greeting = "hello"
retries = 3

[settings_schema.greeting]
type = "string"
description = "How messages start"
max_length = 16

[settings_schema.retries]
type = "integer"
min = 0
max = 10

[settings_schema.mode]
type = "string"
choices = ["fast", "safe"]

[settings_schema.api_key]
type = "string"
secret = true
required = true
"#;

#[test]
fn a_settings_schema_is_read_and_round_trips() {
    use switchyard_schemas::manifest::SettingKind;
    let manifest = parse(&format!("{}{SETTINGS}", plugin_only()));
    let schema = &manifest.settings_schema;
    assert!(schema.is_declared());
    let key = schema.spec("api_key").unwrap();
    assert!(key.secret && key.required);
    assert_eq!(schema.spec("retries").unwrap().kind, SettingKind::Integer);
    assert_eq!(schema.secrets().collect::<Vec<_>>(), ["api_key"]);
    assert_eq!(parse(&manifest.to_toml_string()), manifest);
    let json = serde_json::to_string(&manifest).unwrap();
    assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), manifest);
}

#[test]
fn without_a_schema_each_default_declares_its_type() {
    let manifest = parse(&minimal_with("[settings]\nlevel = 2"));
    assert!(!manifest.settings_schema.is_declared());
    assert!(manifest
        .settings_schema
        .check_value("level", &toml::Value::Integer(5))
        .is_ok());
    assert!(manifest
        .settings_schema
        .check_value("level", &toml::Value::from("high"))
        .is_err());
}

#[test]
fn defaults_must_fit_the_declared_settings() {
    let text = format!(
        "{}{}",
        plugin_only(),
        r#"
[settings]
retries = 11
greeting = 5
other = 1
api_key = "in the manifest"

[settings_schema.retries]
type = "integer"
max = 10

[settings_schema.greeting]
type = "string"

[settings_schema.api_key]
type = "string"
secret = true
"#
    );
    assert_problems(
        &text,
        &[
            ("settings.retries", ProblemKind::OutOfRange),
            ("settings.greeting", ProblemKind::WrongType),
            ("settings.other", ProblemKind::UnknownKey),
            ("settings.api_key", ProblemKind::Inconsistent),
        ],
    );
}

#[test]
fn declared_settings_are_checked() {
    let text = format!(
        "{}{}",
        plugin_only(),
        r#"
[settings_schema.a]
type = "date"

[settings_schema.b]
type = "string"
min = 1

[settings_schema.c]
type = "integer"
secret = true

[settings_schema.d]
type = "float"
min = 5
max = 1

[settings_schema.e]
type = "integer"
choices = ["x"]
colour = "blue"

[settings_schema."bad name"]
type = "string"
"#
    );
    assert_problems(
        &text,
        &[
            ("settings_schema.a.type", ProblemKind::WrongType),
            ("settings_schema.b.min", ProblemKind::Inconsistent),
            ("settings_schema.c", ProblemKind::Inconsistent),
            ("settings_schema.d", ProblemKind::Inconsistent),
            ("settings_schema.e.colour", ProblemKind::UnknownKey),
            ("settings_schema.e.choices[0]", ProblemKind::WrongType),
            ("settings_schema.\"bad name\"", ProblemKind::BadName),
        ],
    );
}

#[test]
fn what_json_cannot_carry_is_refused_not_stored() {
    // NaN and infinity would be stored as null and make the registry entry unreadable.
    for extra in [
        "[settings]\nr = nan",
        "[settings]\nr = { x = inf }",
        "[settings]\nr = [1.0, -inf]",
    ] {
        let found = problems(&minimal_with(extra));
        assert_eq!(
            found,
            [("settings.r".to_owned(), ProblemKind::OutOfRange)],
            "{extra}"
        );
    }
    let text = format!(
        "{}{}",
        plugin_only(),
        r#"
[settings_schema.a]
type = "float"
min = nan

[settings_schema.b]
type = "float"
max = inf

[settings_schema.c]
type = "float"
choices = [nan, 1.0]

[settings_schema.d]
type = "integer"
min = 0.5

[settings_schema.e]
type = "string"
choices = []

[settings_schema.f]
type = "string"
choices = ["x", "x"]

[settings_schema.g]
type = "integer"
max = 3
choices = [7]

[settings_schema.h]
type = "string"
secret = true
choices = ["alpha"]
"#
    );
    assert_problems(
        &text,
        &[
            ("settings_schema.a.min", ProblemKind::OutOfRange),
            ("settings_schema.b.max", ProblemKind::OutOfRange),
            ("settings_schema.c.choices[0]", ProblemKind::WrongType),
            ("settings_schema.d.min", ProblemKind::WrongType),
            ("settings_schema.e.choices", ProblemKind::Missing),
            ("settings_schema.f.choices[1]", ProblemKind::Duplicate),
            ("settings_schema.g", ProblemKind::Inconsistent),
            ("settings_schema.h", ProblemKind::Inconsistent),
        ],
    );
}

#[test]
fn settings_without_a_schema_are_held_to_the_same_names_and_count() {
    let many: String = (0..=256).map(|n| format!("s{n} = 1\n")).collect();
    let found = problems(&minimal_with(&format!("[settings]\n{many}")));
    assert_eq!(found, [("settings".to_owned(), ProblemKind::TooLarge)]);
    let found = problems(&minimal_with("[settings]\n\"a.b\" = 1"));
    assert_eq!(
        found,
        [("settings.\"a.b\"".to_owned(), ProblemKind::BadName)]
    );
}

#[test]
fn a_policy_float_that_is_nan_or_infinite_is_refused() {
    for backoff in [
        "{ exponential = { initial = \"1s\", max = \"5s\", multiplier = nan } }",
        "{ exponential = { initial = \"1s\", max = \"5s\", multiplier = inf } }",
        "{ exponential = { initial = \"1s\", max = \"5s\", multiplier = 2.0, jitter = nan } }",
    ] {
        let text = minimal_with(&format!("policy = {{ backoff = {backoff} }}"));
        assert!(Manifest::from_toml_str(&text).is_err(), "{backoff}");
    }
}
