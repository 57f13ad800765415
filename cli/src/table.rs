//! Plain-text tables for the commands' output.

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
                // Padded by hand: `format!`'s width is limited to u16, and a cell may be longer.
                text.push_str(cell);
                let pad = width.saturating_sub(cell.chars().count()) + 2;
                text.extend(std::iter::repeat_n(' ', pad));
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
    fn a_cell_longer_than_a_format_width_is_fine() {
        let long = "x".repeat(70_000);
        let table = render_table(["A", "B"], &[[long.clone(), "y".to_owned()]]);
        assert!(table.contains(&format!("{long}  y")));
    }

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
