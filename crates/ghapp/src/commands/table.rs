//! Plain-text tables with aligned columns, for `ghapp status`.

/// Renders `header` and `rows` as left-aligned columns separated by two spaces, each line
/// indented by two spaces; an empty table renders as `  (none)`.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "  (none)\n".to_string();
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::from("  ");
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(cell.chars().count());
                line.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let rows = vec![
            vec!["a".to_string(), "bbbb".to_string()],
            vec!["ccc".to_string(), "d".to_string()],
        ];
        assert_eq!(
            render(&["X", "Y"], &rows),
            "  X    Y\n  a    bbbb\n  ccc  d\n"
        );
        assert_eq!(render(&["X"], &[]), "  (none)\n");
    }
}
