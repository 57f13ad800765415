//! The live view of `switchyard dev`: one line per plugin subscription, redrawn in place on a
//! terminal, and the summary at the end.

use std::fmt::Write as _;
use std::io::Write;

use switchyard_dispatcher::pipeline::breaker::CircuitState;
use switchyard_dispatcher::SubscriptionStats;

use crate::table::render_table;

/// What the view shows at one moment.
pub(crate) struct Frame<'a> {
    pub(crate) published: u64,
    pub(crate) planned: Option<u64>,
    pub(crate) stats: &'a [SubscriptionStats],
    pub(crate) circuits: &'a [(String, String, CircuitState)],
}

/// How often frames are printed when the output is not a terminal (a log, a pipe).
const PLAIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Draws frames; on a terminal each replaces the previous one, elsewhere one is printed every
/// [`PLAIN_INTERVAL`].
pub(crate) struct LiveView {
    redraw: bool,
    lines_drawn: usize,
    last_plain: Option<std::time::Instant>,
}

impl LiveView {
    pub(crate) fn new(redraw: bool) -> Self {
        Self {
            redraw,
            lines_drawn: 0,
            last_plain: None,
        }
    }

    /// Draws a frame; `last` forces it out even between plain-output intervals.
    pub(crate) fn draw(&mut self, frame: &Frame<'_>, last: bool) {
        if !self.redraw && !last {
            if self
                .last_plain
                .is_some_and(|at| at.elapsed() < PLAIN_INTERVAL)
            {
                return;
            }
            self.last_plain = Some(std::time::Instant::now());
        }
        let text = render(frame);
        let mut out = std::io::stdout().lock();
        if self.redraw && self.lines_drawn > 0 {
            // Up to the first line of the previous frame, and clear everything below it.
            let _ = write!(out, "\x1b[{}A\x1b[J", self.lines_drawn);
        }
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        self.lines_drawn = text.lines().count();
    }
}

fn render(frame: &Frame<'_>) -> String {
    let mut text = String::new();
    match frame.planned {
        Some(planned) => {
            let width = 30;
            let done = (frame.published * width / planned.max(1)).min(width) as usize;
            let _ = writeln!(
                text,
                "published {:>4}/{planned}  [{}{}]",
                frame.published,
                "#".repeat(done),
                ".".repeat(width as usize - done)
            );
        }
        None => {
            let _ = writeln!(text, "published {:>4} (Ctrl-C stops)", frame.published);
        }
    }
    let rows: Vec<[String; 7]> = frame
        .stats
        .iter()
        .map(|s| {
            let circuit = frame
                .circuits
                .iter()
                .find(|(p, sub, _)| p == s.plugin.as_str() && *sub == s.subscription)
                .map_or("-", |(_, _, state)| state.name());
            [
                s.plugin.to_string(),
                s.subscription.clone(),
                s.counts.delivered.to_string(),
                s.counts.retried.to_string(),
                s.counts.dead_lettered.to_string(),
                s.counts.in_flight.to_string(),
                circuit.to_owned(),
            ]
        })
        .collect();
    text.push_str(&render_table(
        [
            "PLUGIN",
            "SUBSCRIPTION",
            "DELIVERED",
            "RETRIED",
            "DEAD-LETTERED",
            "IN-FLIGHT",
            "CIRCUIT",
        ],
        &rows,
    ));
    text
}

#[cfg(test)]
mod tests {
    use switchyard_dispatcher::pipeline::stats::StatsSnapshot;
    use switchyard_schemas::PluginId;

    use super::*;

    #[test]
    fn a_frame_shows_progress_and_each_subscription() {
        let stats = [SubscriptionStats {
            plugin: PluginId::new("audit").unwrap(),
            subscription: "orders".into(),
            counts: StatsSnapshot {
                delivered: 7,
                retried: 2,
                dead_lettered: 1,
                unsettled: 0,
                in_flight: 3,
            },
        }];
        let circuits = [("audit".to_owned(), "orders".to_owned(), CircuitState::Open)];
        let text = render(&Frame {
            published: 15,
            planned: Some(30),
            stats: &stats,
            circuits: &circuits,
        });
        assert!(
            text.starts_with("published   15/30  [###############...............]"),
            "{text}"
        );
        let row = text.lines().nth(2).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells, ["audit", "orders", "7", "2", "1", "3", "open"]);
    }
}
