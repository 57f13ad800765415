//! Plain-text tables for the commands' output.

use std::fmt::Write as _;

/// Left-aligned columns, two spaces apart; the last column is not padded. Widths count
/// characters, not bytes, so names with accents line up.
pub(crate) fn render_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = header.map(str::to_owned);
    for line in std::iter::once(&header).chain(rows) {
        let mut text = String::new();
        for (i, (cell, width)) in line.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                // Writing to a String cannot fail.
                let _ = write!(text, "{cell:width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render_table;

    #[test]
    fn table_columns_line_up() {
        let rows = [
            ["audit-log".to_owned(), "1.2.0".to_owned(), "x".to_owned()],
            ["ä".to_owned(), "10.0.0".to_owned(), "y".to_owned()],
        ];
        assert_eq!(
            render_table(["PLUGIN", "VERSION", "NOTE"], &rows),
            "PLUGIN     VERSION  NOTE\naudit-log  1.2.0    x\nä          10.0.0   y\n"
        );
    }
}
