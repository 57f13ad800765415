//! `deploy/grafana/switchyard.json` and `deploy/prometheus/switchyard-alerts.yml` query only
//! metrics and labels that Switchyard emits, under the names Prometheus gives them.
//!
//! OpenTelemetry names reach Prometheus translated (the Collector's `prometheus` exporter, or
//! Prometheus's own OTLP receiver with `UnderscoreEscapingWithSuffixes`): dots become
//! underscores, the unit is appended (`s` → `_seconds`), monotonic counters get `_total`,
//! histograms are `_bucket`/`_sum`/`_count`, gauges and up-down counters keep the bare name.
//! Attribute keys become labels the same way; the resource's `service.name` becomes `job` and
//! `service.instance.id` becomes `instance`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;
use switchyard_schemas::telemetry::{attr, metric, ALL_NAMES};

// ---- what Switchyard emits ---------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Instrument {
    Counter,
    UpDownCounter,
    Gauge,
    Histogram,
}

impl Instrument {
    /// The instrument as `docs/telemetry.md` names it.
    fn from_doc(word: &str) -> Self {
        match word {
            "counter" => Instrument::Counter,
            "up-down counter" => Instrument::UpDownCounter,
            "gauge" => Instrument::Gauge,
            "histogram" => Instrument::Histogram,
            other => {
                panic!("docs/telemetry.md names an instrument this test does not know: {other:?}")
            }
        }
    }
}

struct Metric {
    name: &'static str,
    instrument: Instrument,
    unit: &'static str,
    /// Attributes besides the plugin and subscription, which every metric carries.
    extra_labels: &'static [&'static str],
    /// The values of `switchyard.outcome`, for metrics that carry it.
    outcomes: &'static [&'static str],
}

/// Being added to `schemas::telemetry` at the same time as the files this test reads; it is
/// accepted whether or not `ALL_NAMES` has it yet.
const WORKERS_PRESENT: &str = "switchyard.workers.present";

const SETTLED: &[&str] = &["acked", "retried", "dead_lettered", "unsettled"];
const REPLIED: &[&str] = &["done", "retry", "failed", "timeout", "bad_reply"];

/// Every metric, with what its Prometheus name depends on. `docs/telemetry.md` must agree.
const METRICS: &[Metric] = &[
    Metric {
        name: metric::DELIVERIES,
        instrument: Instrument::Counter,
        unit: "",
        extra_labels: &[attr::OUTCOME],
        outcomes: SETTLED,
    },
    Metric {
        name: metric::ATTEMPTS,
        instrument: Instrument::Counter,
        unit: "",
        extra_labels: &[],
        outcomes: &[],
    },
    Metric {
        name: metric::HANDLER_DURATION,
        instrument: Instrument::Histogram,
        unit: "s",
        extra_labels: &[attr::OUTCOME],
        outcomes: REPLIED,
    },
    Metric {
        name: metric::RATE_LIMIT_WAIT,
        instrument: Instrument::Histogram,
        unit: "s",
        extra_labels: &[],
        outcomes: &[],
    },
    Metric {
        name: metric::IN_FLIGHT,
        instrument: Instrument::UpDownCounter,
        unit: "",
        extra_labels: &[],
        outcomes: &[],
    },
    Metric {
        name: metric::DEAD_LETTERS,
        instrument: Instrument::Counter,
        unit: "",
        extra_labels: &[attr::ERROR_CODE],
        outcomes: &[],
    },
    Metric {
        name: metric::CONSUMER_PENDING,
        instrument: Instrument::Gauge,
        unit: "",
        extra_labels: &[],
        outcomes: &[],
    },
    Metric {
        name: metric::CIRCUIT_STATE,
        instrument: Instrument::Gauge,
        unit: "",
        extra_labels: &[],
        outcomes: &[],
    },
    Metric {
        name: metric::HANDLE_DURATION,
        instrument: Instrument::Histogram,
        unit: "s",
        extra_labels: &[attr::OUTCOME],
        outcomes: REPLIED,
    },
    // Operations' metrics: labelled with the operation instead of the subscription (no
    // dashboard panel or alert reads them yet).
    Metric {
        name: metric::CALLS,
        instrument: Instrument::Counter,
        unit: "",
        extra_labels: &[attr::OUTCOME],
        outcomes: &[],
    },
    Metric {
        name: metric::CALL_DURATION,
        instrument: Instrument::Histogram,
        unit: "s",
        extra_labels: &[attr::OUTCOME],
        outcomes: &[],
    },
    Metric {
        name: metric::CALLS_IN_FLIGHT,
        instrument: Instrument::UpDownCounter,
        unit: "",
        extra_labels: &[],
        outcomes: &[],
    },
    Metric {
        name: WORKERS_PRESENT,
        instrument: Instrument::Gauge,
        unit: "",
        extra_labels: &[],
        outcomes: &[],
    },
];

/// Labels that come from the resource (`service.name`, `service.instance.id`) and from
/// histogram buckets, rather than from an attribute.
const RESOURCE_LABELS: &[&str] = &["job", "instance"];
const BUCKET_LABEL: &str = "le";

// ---- the OTLP → Prometheus translation ---------------------------------------------------

/// A name with every character Prometheus does not allow replaced by `_`.
fn escape(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The suffix Prometheus appends for an OpenTelemetry unit.
fn unit_suffix(unit: &str) -> Option<&'static str> {
    match unit {
        "" => None,
        "s" => Some("seconds"),
        other => panic!("no Prometheus suffix known for unit {other:?}: add it to unit_suffix"),
    }
}

/// The series names Prometheus holds for `metric`.
fn prometheus_names(metric: &Metric) -> Vec<String> {
    let mut base = escape(metric.name);
    if let Some(suffix) = unit_suffix(metric.unit) {
        if !base.ends_with(&format!("_{suffix}")) {
            base = format!("{base}_{suffix}");
        }
    }
    match metric.instrument {
        Instrument::Counter if base.ends_with("_total") => vec![base],
        Instrument::Counter => vec![format!("{base}_total")],
        Instrument::UpDownCounter | Instrument::Gauge => vec![base],
        Instrument::Histogram => ["bucket", "sum", "count"]
            .iter()
            .map(|s| format!("{base}_{s}"))
            .collect(),
    }
}

/// The labels a metric's series carry, Prometheus-named; `le` only on `_bucket`.
fn series_labels(metric: &Metric, series: &str) -> BTreeSet<String> {
    let mut labels: BTreeSet<String> = [attr::PLUGIN, attr::SUBSCRIPTION]
        .iter()
        .chain(metric.extra_labels)
        .map(|l| escape(l))
        .collect();
    labels.extend(RESOURCE_LABELS.iter().map(|l| (*l).to_owned()));
    if series.ends_with("_bucket") {
        labels.insert(BUCKET_LABEL.to_owned());
    }
    labels
}

/// Every series name, to the metric it belongs to.
fn series() -> BTreeMap<String, &'static Metric> {
    METRICS
        .iter()
        .flat_map(|m| prometheus_names(m).into_iter().map(move |n| (n, m)))
        .collect()
}

/// Every label any file may name.
fn allowed_labels() -> BTreeSet<String> {
    let mut labels: BTreeSet<String> = [
        attr::PLUGIN,
        attr::SUBSCRIPTION,
        attr::OUTCOME,
        attr::ERROR_CODE,
    ]
    .iter()
    .map(|l| escape(l))
    .collect();
    labels.extend(RESOURCE_LABELS.iter().map(|l| (*l).to_owned()));
    labels.insert(BUCKET_LABEL.to_owned());
    labels
}

#[test]
fn the_translation_gives_the_expected_names() {
    let names =
        |name: &str| prometheus_names(METRICS.iter().find(|m| m.name == name).expect("in METRICS"));
    assert_eq!(names(metric::DELIVERIES), ["switchyard_deliveries_total"]);
    assert_eq!(
        names(metric::HANDLER_DURATION),
        [
            "switchyard_handler_duration_seconds_bucket",
            "switchyard_handler_duration_seconds_sum",
            "switchyard_handler_duration_seconds_count"
        ]
    );
    assert_eq!(
        names(metric::IN_FLIGHT),
        ["switchyard_deliveries_in_flight"]
    );
    assert_eq!(names(metric::CIRCUIT_STATE), ["switchyard_circuit_state"]);
    assert_eq!(names(WORKERS_PRESENT), ["switchyard_workers_present"]);
    assert_eq!(escape(attr::PLUGIN), "switchyard_plugin_id");
    assert_eq!(escape(attr::ERROR_CODE), "switchyard_error_code");
}

// ---- the table agrees with the code and with docs/telemetry.md ---------------------------

/// The rows of the "Metrics" table: name, instrument, unit, extra labels.
fn documented_metrics() -> Vec<(String, String, String, Vec<String>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/telemetry.md");
    let text = std::fs::read_to_string(path).expect("docs/telemetry.md exists");
    let section = text
        .split("\n## Metrics")
        .nth(1)
        .expect("docs/telemetry.md has a Metrics section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let backquoted = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    section
        .lines()
        .filter(|l| l.starts_with("| `switchyard."))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert!(cells.len() >= 4, "a Metrics row with too few cells: {line}");
            (
                backquoted(cells[0]).remove(0),
                cells[1].to_owned(),
                cells[2].to_owned(),
                backquoted(cells[3]),
            )
        })
        .collect()
}

#[test]
fn the_metric_table_agrees_with_the_code_and_the_docs() {
    let documented = documented_metrics();
    assert!(
        !documented.is_empty(),
        "no rows read from the Metrics table"
    );
    for (name, instrument, unit, labels) in &documented {
        let m = METRICS.iter().find(|m| m.name == name).unwrap_or_else(|| {
            panic!("{name} is in docs/telemetry.md but not in this test's METRICS table")
        });
        assert_eq!(
            m.instrument,
            Instrument::from_doc(instrument),
            "{name}: instrument"
        );
        assert_eq!(m.unit, unit, "{name}: unit");
        assert_eq!(m.extra_labels, labels.as_slice(), "{name}: extra labels");
    }
    for m in METRICS {
        if m.name == WORKERS_PRESENT {
            continue;
        }
        assert!(
            ALL_NAMES.contains(&m.name),
            "{} is not in ALL_NAMES",
            m.name
        );
        assert!(
            documented.iter().any(|(name, ..)| name == m.name),
            "{} is not in docs/telemetry.md's Metrics table",
            m.name
        );
    }
}

// ---- reading PromQL ------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number,
    Punct(&'static str),
}

/// PromQL split into tokens; ranges (`[5m]`, `[$__rate_interval]`, subqueries) and Grafana
/// variables outside strings are dropped.
fn tokens(expr: &str) -> Vec<Token> {
    const PUNCT: &[&str] = &[
        "=~", "!~", "!=", "==", ">=", "<=", "=", "(", ")", "{", "}", ",", "+", "-", "*", "/", "%",
        "^", "<", ">", "@",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            let mut s = String::new();
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' {
                    i += 1;
                }
                s.extend(chars.get(i));
                i += 1;
            }
            assert!(i < chars.len(), "unterminated string in {expr:?}");
            i += 1;
            out.push(Token::Str(s));
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            assert!(i < chars.len(), "unterminated range in {expr:?}");
            i += 1;
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Number);
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let p = PUNCT
                .iter()
                .find(|p| rest.starts_with(**p))
                .unwrap_or_else(|| panic!("unexpected {c:?} in {expr:?}"));
            out.push(Token::Punct(p));
            i += p.chars().count();
        }
    }
    out
}

/// A metric named in an expression, with its label matchers (label, value).
#[derive(Debug)]
struct Selector {
    metric: String,
    matchers: Vec<(String, String)>,
}

/// What an expression names: metrics with their matchers, and every label (in matchers and
/// in `by`, `without`, `on`, `ignoring`, `group_left`, `group_right`).
#[derive(Debug, Default)]
struct Named {
    selectors: Vec<Selector>,
    labels: BTreeSet<String>,
}

/// Words that are neither metrics nor functions called with parentheses right after them.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn read_promql(expr: &str) -> Named {
    let tokens = tokens(expr);
    let mut named = Named::default();
    let mut i = 0;
    let ident = |i: usize| match tokens.get(i) {
        Some(Token::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let punct = |i: usize, p: &str| matches!(tokens.get(i), Some(Token::Punct(q)) if *q == p);
    while i < tokens.len() {
        match &tokens[i] {
            Token::Ident(word) if GROUPING.contains(&word.as_str()) => {
                i += 1;
                if punct(i, "(") {
                    i += 1;
                    while !punct(i, ")") {
                        match &tokens[i] {
                            Token::Ident(label) => {
                                named.labels.insert(label.clone());
                            }
                            Token::Punct(",") => {}
                            other => panic!("unexpected {other:?} in a label list of {expr:?}"),
                        }
                        i += 1;
                    }
                    i += 1;
                }
            }
            Token::Ident(word) if KEYWORDS.contains(&word.as_str()) => i += 1,
            Token::Ident(_) if punct(i + 1, "(") => i += 1,
            Token::Ident(_) | Token::Punct("{") => {
                let metric = ident(i).map(str::to_owned);
                if metric.is_some() {
                    i += 1;
                }
                let mut matchers = Vec::new();
                if punct(i, "{") {
                    i += 1;
                    while !punct(i, "}") {
                        let label = ident(i)
                            .unwrap_or_else(|| panic!("a matcher without a label in {expr:?}"));
                        assert!(
                            ["=", "!=", "=~", "!~"].iter().any(|op| punct(i + 1, op)),
                            "a matcher without an operator in {expr:?}"
                        );
                        let Some(Token::Str(value)) = tokens.get(i + 2) else {
                            panic!("a matcher without a string value in {expr:?}")
                        };
                        named.labels.insert(label.to_owned());
                        matchers.push((label.to_owned(), value.clone()));
                        i += 3;
                        if punct(i, ",") {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                let metric = metric.unwrap_or_else(|| {
                    panic!("a selector without a metric name in {expr:?}: name the metric")
                });
                named.selectors.push(Selector { metric, matchers });
            }
            _ => i += 1,
        }
    }
    named
}

/// Every `switchyard_[a-z_]+` word in `text`, however it is used.
fn switchyard_words(text: &str) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("switchyard_") {
        let before = rest[..at].chars().next_back();
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        rest = &rest[at + word.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        words.insert(word);
    }
    words
}

/// Checks one PromQL expression; returns its problems, each naming `place`.
fn check_expr(place: &str, expr: &str) -> Vec<String> {
    let series = series();
    let allowed = allowed_labels();
    let mut problems = Vec::new();
    let named = read_promql(expr);
    for selector in &named.selectors {
        let Some(metric) = series.get(&selector.metric) else {
            problems.push(format!(
                "{place}: `{}` is not a metric Switchyard emits (Prometheus names: {:?})",
                selector.metric,
                series.keys().collect::<Vec<_>>()
            ));
            continue;
        };
        let carried = series_labels(metric, &selector.metric);
        for (label, value) in &selector.matchers {
            if !carried.contains(label) {
                problems.push(format!(
                    "{place}: `{}` has no label `{label}`",
                    selector.metric
                ));
            }
            if *label == escape(attr::OUTCOME) && !value.contains('$') {
                for v in value.split('|') {
                    if !metric.outcomes.contains(&v) {
                        problems.push(format!(
                            "{place}: `{}` has no outcome {v:?} (it has {:?})",
                            selector.metric, metric.outcomes
                        ));
                    }
                }
            }
        }
    }
    for label in &named.labels {
        if !allowed.contains(label) {
            problems.push(format!(
                "{place}: `{label}` is not a label Switchyard's metrics carry"
            ));
        }
    }
    for word in switchyard_words(expr) {
        if !series.contains_key(&word) && !allowed.contains(&word) {
            problems.push(format!(
                "{place}: `{word}` is neither a metric nor a label Switchyard emits"
            ));
        }
    }
    if named.selectors.is_empty() {
        problems.push(format!("{place}: no metric in {expr:?}"));
    }
    problems
}

/// The labels a template names: `{{label}}` (Grafana legends) and `$labels.label` (alert
/// annotations).
fn template_labels(text: &str) -> BTreeSet<String> {
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut labels: BTreeSet<String> = text.split("$labels.").skip(1).map(word).collect();
    labels.extend(
        text.split("{{")
            .skip(1)
            .map(|s| s.trim_start())
            .filter(|s| s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
            .map(word),
    );
    labels
}

#[test]
fn the_promql_reader_finds_metrics_and_labels() {
    let named = read_promql(
        r#"sum by (le, switchyard_plugin_id) (rate(switchyard_handler_duration_seconds_bucket{job=~"$job", switchyard_outcome="done"}[$__rate_interval])) / on (job) group_left max(switchyard_circuit_state offset 5m) > 0.5"#,
    );
    let metrics: Vec<_> = named.selectors.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(
        metrics,
        [
            "switchyard_handler_duration_seconds_bucket",
            "switchyard_circuit_state"
        ]
    );
    assert_eq!(
        named.labels,
        ["job", "le", "switchyard_outcome", "switchyard_plugin_id"]
            .map(String::from)
            .into()
    );
    assert!(check_expr(
        "ok",
        r#"rate(switchyard_deliveries_total{switchyard_outcome=~"retried|acked"}[5m])"#
    )
    .is_empty());
    // Each of these must be caught.
    for bad in [
        "rate(switchyard_deliveries[5m])",
        "switchyard_handler_duration_seconds",
        "up",
        "sum by (switchyard_plugin) (switchyard_circuit_state)",
        r#"switchyard_dead_letters_total{switchyard_outcome="acked"}"#,
        r#"switchyard_deliveries_total{switchyard_outcome="done"}"#,
        r#"switchyard_consumer_pending{le="1"}"#,
        r#"{__name__="switchyard_consumer_pending"}"#,
    ] {
        let caught = std::panic::catch_unwind(|| check_expr("bad", bad));
        assert!(
            caught.map_or(true, |problems| !problems.is_empty()),
            "{bad:?} was not caught"
        );
    }
}

// ---- the files -----------------------------------------------------------------------------

fn deploy(path: &str) -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path, text)
}

/// A Prometheus duration: one or more `<number><unit>`, units `ms s m h d w y`.
fn is_duration(text: &str) -> bool {
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = ["ms", "s", "m", "h", "d", "w", "y"]
            .into_iter()
            .find(|u| rest.starts_with(u))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    #[serde(default)]
    interval: Option<String>,
    rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: Option<String>,
    record: Option<String>,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[test]
fn the_alert_rules_use_only_what_switchyard_emits() {
    let (path, text) = deploy("prometheus/switchyard-alerts.yml");
    let file: RuleFile = serde_norway::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a Prometheus rule file: {e}", path.display()));
    let allowed = allowed_labels();
    let mut problems = Vec::new();
    let mut alerts = BTreeSet::new();
    let mut absent = false;
    assert!(!file.groups.is_empty(), "no rule groups");
    for group in &file.groups {
        if let Some(interval) = &group.interval {
            assert!(
                is_duration(interval),
                "group {}: interval {interval:?}",
                group.name
            );
        }
        for rule in &group.rules {
            let Some(name) = &rule.alert else {
                problems.push(format!(
                    "group {}: a rule that is not an alert ({:?})",
                    group.name, rule.record
                ));
                continue;
            };
            assert!(alerts.insert(name.clone()), "alert {name} is defined twice");
            let place = format!("alert {name}");
            problems.extend(check_expr(&place, &rule.expr));
            absent |= rule.expr.contains("absent(");
            match &rule.for_ {
                Some(d) if is_duration(d) => {}
                other => problems.push(format!("{place}: `for` is {other:?}, not a duration")),
            }
            if let Some(d) = &rule.keep_firing_for {
                assert!(is_duration(d), "{place}: keep_firing_for {d:?}");
            }
            match rule.labels.get("severity").map(String::as_str) {
                Some("critical" | "warning" | "info") => {}
                other => problems.push(format!("{place}: severity is {other:?}")),
            }
            let summary = rule
                .annotations
                .get("summary")
                .map(String::as_str)
                .unwrap_or("");
            if summary.trim().is_empty() {
                problems.push(format!("{place}: no summary annotation"));
            }
            if !rule.annotations.contains_key("description") {
                problems.push(format!("{place}: no description annotation"));
            }
            // Every alert about a plugin names it; `absent()` has no plugin to name.
            if !rule.expr.contains("absent(")
                && !summary.contains(&format!("$labels.{}", escape(attr::PLUGIN)))
            {
                problems.push(format!("{place}: the summary does not name the plugin"));
            }
            for label in rule.labels.keys().filter(|l| *l != "severity") {
                problems.push(format!(
                    "{place}: label `{label}`: only `severity` is set here"
                ));
            }
            for label in rule.annotations.values().flat_map(|a| template_labels(a)) {
                if !allowed.contains(&label) {
                    problems.push(format!(
                        "{place}: an annotation names `{label}`, not a label Switchyard's metrics carry"
                    ));
                }
            }
        }
    }
    assert!(absent, "no alert fires when the metrics are absent");
    assert!(
        problems.is_empty(),
        "{}:\n{}",
        path.display(),
        problems.join("\n")
    );
}

#[test]
fn the_dashboard_uses_only_what_switchyard_emits() {
    let (path, text) = deploy("grafana/switchyard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let allowed = allowed_labels();
    let mut problems = Vec::new();

    let schema = dashboard["schemaVersion"]
        .as_u64()
        .expect("a schemaVersion");
    assert!(schema >= 36, "schemaVersion {schema} < 36");

    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("template variables");
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    let datasource = variable("datasource").expect("a `datasource` variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    for name in ["job", &escape(attr::PLUGIN)] {
        assert!(variable(name).is_some(), "no `{name}` template variable");
    }
    for v in variables.iter().filter(|v| v["type"] == "query") {
        let place = format!("variable {}", v["name"]);
        assert_eq!(
            v["datasource"]["uid"], "${datasource}",
            "{place}: data source"
        );
        let query = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .expect("a query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{place}: not label_values(...): {query}"));
        let (selector, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        problems.extend(check_expr(&place, selector));
        if !allowed.contains(label.trim()) {
            problems.push(format!(
                "{place}: label `{}` is not one Switchyard's metrics carry",
                label.trim()
            ));
        }
    }

    let mut panels = Vec::new();
    let mut stack: Vec<&serde_json::Value> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .collect();
    while let Some(p) = stack.pop() {
        if let Some(inner) = p["panels"].as_array() {
            stack.extend(inner);
        }
        panels.push(p);
    }
    let mut ids = BTreeSet::new();
    let mut queried = 0;
    for panel in panels {
        let place = format!("panel {}", panel["title"]);
        assert!(
            ids.insert(panel["id"].as_u64().expect("a panel id")),
            "{place}: duplicate id"
        );
        // Rows only group panels; they query nothing.
        if panel["type"] == "row" {
            continue;
        }
        queried += 1;
        if panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!("{place}: data source is not ${{datasource}}"));
        }
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{place}: no target"));
        }
        for target in targets {
            let place = format!("{place} target {}", target["refId"]);
            let Some(expr) = target["expr"].as_str() else {
                problems.push(format!("{place}: no expr"));
                continue;
            };
            problems.extend(check_expr(&place, expr));
            if target["datasource"]["uid"] != "${datasource}" {
                problems.push(format!("{place}: data source is not ${{datasource}}"));
            }
            for label in template_labels(target["legendFormat"].as_str().unwrap_or("")) {
                if !allowed.contains(&label) {
                    problems.push(format!(
                        "{place}: legend names `{label}`, not a label Switchyard's metrics carry"
                    ));
                }
            }
        }
    }
    assert!(queried > 0, "no panels");
    assert!(
        problems.is_empty(),
        "{}:\n{}",
        path.display(),
        problems.join("\n")
    );
}
