//! Plain-text tables for the terminal, and the number formats they use.

use std::fmt::Write as _;
use std::time::Duration;

/// A table with a title, a header row and rows of cells, printed with aligned columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    /// An empty table.
    pub fn new(title: impl Into<String>, header: &[&str]) -> Self {
        Self {
            title: title.into(),
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            ..Self::default()
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Adds a line printed under the table.
    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The table as text (Markdown-compatible, so it can be pasted into the docs).
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut text = String::from("|");
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let _ = write!(text, " {cell:>width$} |");
            }
            text
        };
        let mut out = format!("\n### {}\n\n{}\n|", self.title, line(&self.header));
        for width in &widths {
            let _ = write!(out, "{}:|", "-".repeat(width + 1));
        }
        for row in &self.rows {
            out.push('\n');
            out.push_str(&line(row));
        }
        out.push('\n');
        for note in &self.notes {
            let _ = write!(out, "\n{note}");
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }
}

/// A rate: `12,345/s`.
pub fn rate(per_second: f64) -> String {
    let whole = per_second.round() as u64;
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{grouped}/s")
}

/// A ratio: `0.93×`.
pub fn ratio(value: f64) -> String {
    format!("{value:.2}×")
}

/// A duration in the unit that reads best: `850 µs`, `12.3 ms`, `1.52 s`.
pub fn duration(value: Duration) -> String {
    let micros = value.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1e6 {
        format!("{:.1} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// A signed difference of two durations: `+120 µs`, `-0.4 ms`.
pub fn difference(later: Duration, earlier: Duration) -> String {
    if later >= earlier {
        format!("+{}", duration(later - earlier))
    } else {
        format!("-{}", duration(earlier - later))
    }
}

/// Bytes in KiB or MiB.
pub fn bytes(value: f64) -> String {
    if value.abs() < 1024.0 * 1024.0 {
        format!("{:.1} KiB", value / 1024.0)
    } else {
        format!("{:.1} MiB", value / 1024.0 / 1024.0)
    }
}

/// A share of one core: `0.35 %`.
pub fn cpu_share(fraction: f64) -> String {
    format!("{:.3} %", fraction * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_well() {
        assert_eq!(rate(12345.4), "12,345/s");
        assert_eq!(rate(999.0), "999/s");
        assert_eq!(ratio(0.934), "0.93×");
        assert_eq!(duration(Duration::from_micros(850)), "850 µs");
        assert_eq!(duration(Duration::from_micros(12_340)), "12.3 ms");
        assert_eq!(
            difference(Duration::from_micros(100), Duration::from_micros(300)),
            "-200 µs"
        );
    }

    #[test]
    fn tables_align_their_columns() {
        let mut table = Table::new("t", &["a", "bbb"]);
        table.row(vec!["1000".into(), "2".into()]);
        let text = table.render();
        assert!(text.contains("|    a | bbb |"), "{text}");
        assert!(text.contains("| 1000 |   2 |"), "{text}");
    }
}
