//! `docs/telemetry.md` lists exactly the telemetry names defined in `schemas::telemetry`.

use std::collections::BTreeSet;

use switchyard_schemas::telemetry::ALL_NAMES;

/// Every back-quoted `messaging.*`, `switchyard.*`, `server.*` or `error.*` name in the
/// document.
fn documented_names() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/telemetry.md");
    let text = std::fs::read_to_string(path).expect("docs/telemetry.md exists");
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| {
            ["messaging.", "switchyard.", "server.", "error."]
                .iter()
                .any(|prefix| name.starts_with(prefix))
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || "._".contains(c))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_document_and_the_code_name_the_same_things() {
    let documented = documented_names();
    let defined: BTreeSet<String> = ALL_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let undocumented: Vec<_> = defined.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&defined).collect();
    assert!(
        undocumented.is_empty() && unknown.is_empty(),
        "defined but not in docs/telemetry.md: {undocumented:?}; documented but not defined: {unknown:?}"
    );
}
