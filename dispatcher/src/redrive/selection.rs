//! Which dead letters an operation concerns: a filter for listing, a selection for replaying
//! and purging.

use std::collections::BTreeSet;

use switchyard_schemas::PluginId;
use time::OffsetDateTime;

use super::DeadLetterSummary;

/// Which dead letters [`DeadLetters::list`](super::DeadLetters::list) returns. The default
/// matches every dead letter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only this plugin's (filtered by the server, on the dead letters' subjects).
    pub plugin: Option<PluginId>,
    /// Only those with this error code.
    pub code: Option<String>,
    /// Only those whose last failure is at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only those whose last failure is at or before this time.
    pub until: Option<OffsetDateTime>,
    /// At most this many, the oldest first.
    pub limit: Option<usize>,
}

impl DeadLetterFilter {
    /// Whether `summary` passes the filter's code and time conditions (the plugin is
    /// filtered on the subject before a dead letter is read).
    pub fn matches(&self, summary: &DeadLetterSummary) -> bool {
        let failure = &summary.failure;
        self.plugin.as_ref().is_none_or(|p| *p == failure.plugin)
            && self
                .code
                .as_deref()
                .is_none_or(|code| code == failure.code.as_str())
            && self.since.is_none_or(|since| failure.last_failure >= since)
            && self.until.is_none_or(|until| failure.last_failure <= until)
    }
}

/// The dead letters of one plugin that a replay or a purge handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The plugin whose dead letters these are.
    pub plugin: PluginId,
    /// All of them, or some.
    pub scope: Scope,
}

/// All of a plugin's dead letters, or some by sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every dead letter of the plugin stored when the operation starts.
    All,
    /// These dead letters (sequences in the dead-letter stream). Each must exist and belong
    /// to the plugin, or nothing is done.
    Sequences(BTreeSet<u64>),
}

impl Selection {
    /// Every dead letter of `plugin`.
    pub fn all(plugin: PluginId) -> Self {
        Self {
            plugin,
            scope: Scope::All,
        }
    }

    /// The dead letters of `plugin` with these sequences (repeats count once).
    pub fn sequences(plugin: PluginId, sequences: impl IntoIterator<Item = u64>) -> Self {
        Self {
            plugin,
            scope: Scope::Sequences(sequences.into_iter().collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use switchyard_schemas::delivery::ErrorCode;
    use switchyard_schemas::{EventType, Tenant};
    use time::macros::datetime;

    use super::*;
    use crate::dead_letter::Failure;

    fn summary(plugin: &str, code: &str, last_failure: OffsetDateTime) -> DeadLetterSummary {
        DeadLetterSummary {
            sequence: 1,
            stored: last_failure,
            failure: Failure {
                plugin: PluginId::new(plugin).unwrap(),
                subscription: "orders".into(),
                code: ErrorCode::new(code).unwrap(),
                reason: "no".into(),
                attempts: 1,
                first_failure: last_failure,
                last_failure,
                original_subject: "switchyard.events.acme.order.created".into(),
                stream_sequence: 1,
            },
            tenant: Tenant::new("acme").unwrap(),
            event_type: EventType::new("order.created").unwrap(),
            event_id: None,
        }
    }

    #[test]
    fn each_condition_narrows_and_bounds_are_inclusive() {
        let at = datetime!(2026-11-22 10:00 UTC);
        let letter = summary("audit", "order.invalid", at);
        assert!(DeadLetterFilter::default().matches(&letter));
        let code = |c: &str| DeadLetterFilter {
            code: Some(c.into()),
            ..Default::default()
        };
        assert!(code("order.invalid").matches(&letter));
        assert!(!code("order.late").matches(&letter));
        let window = |since, until| DeadLetterFilter {
            since,
            until,
            ..Default::default()
        };
        assert!(window(Some(at), Some(at)).matches(&letter));
        assert!(!window(Some(datetime!(2026-11-22 10:01 UTC)), None).matches(&letter));
        assert!(!window(None, Some(datetime!(2026-11-22 09:59 UTC))).matches(&letter));
        let other_plugin = DeadLetterFilter {
            plugin: Some(PluginId::new("billing").unwrap()),
            ..Default::default()
        };
        assert!(!other_plugin.matches(&letter));
    }

    #[test]
    fn a_selection_of_sequences_counts_repeats_once() {
        let plugin = PluginId::new("audit").unwrap();
        let selection = Selection::sequences(plugin, [3, 1, 3]);
        assert_eq!(selection.scope, Scope::Sequences(BTreeSet::from([1, 3])));
    }
}
