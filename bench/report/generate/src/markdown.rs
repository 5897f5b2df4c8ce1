//! Reading the Markdown tables a benchmark printed, for benchmarks that write no JSON
//! (the bash gateway benchmark, the logging benchmark): headings give titles, `|` rows
//! give cells, and the numbers are read back from their printed form.

/// One printed table: the heading above it, its header and its body rows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grid {
    pub(crate) title: String,
    pub(crate) headers: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
}

/// Every table of `text`, each titled by the nearest heading above it (or "table N").
pub(crate) fn parse(text: &str) -> Vec<Grid> {
    let mut grids = Vec::new();
    let mut title: Option<String> = None;
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            title = Some(trimmed.trim_start_matches('#').trim().to_owned());
            continue;
        }
        let is_separator = |l: &str| {
            let cells = split_row(l);
            !cells.is_empty()
                && cells
                    .iter()
                    .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':' | ' ')))
        };
        if !trimmed.starts_with('|') || !lines.peek().is_some_and(|next| is_separator(next)) {
            continue;
        }
        let headers = split_row(trimmed);
        lines.next();
        let mut rows = Vec::new();
        while let Some(next) = lines.peek().map(|l| l.trim()) {
            if !next.starts_with('|') {
                break;
            }
            rows.push(split_row(next));
            lines.next();
        }
        grids.push(Grid {
            title: title
                .take()
                .unwrap_or_else(|| format!("table {}", grids.len() + 1)),
            headers,
            rows,
        });
    }
    grids
}

fn split_row(line: &str) -> Vec<String> {
    let line = line.trim();
    let Some(inner) = line.strip_prefix('|') else {
        return Vec::new();
    };
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

/// The first number of a cell: `12,345` → 12345, `59,403 – 61,764` → 59403, `0.84` →
/// 0.84, `1.02×` → 1.02; `None` for text and dashes.
pub(crate) fn number(cell: &str) -> Option<f64> {
    let start = cell.find(|c: char| c.is_ascii_digit())?;
    // A minus sign directly before the digits belongs to the number.
    let negative = cell[..start].ends_with('-');
    let digits: String = cell[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
        .filter(|c| *c != ',')
        .collect();
    let value: f64 = digits.trim_end_matches('.').parse().ok()?;
    Some(if negative { -value } else { value })
}

/// A latency cell in milliseconds: the cell's own unit (`µs`, `ms`, `s`) wins, else the
/// column header's (`p50 (ms)`, `p99 ms`), else milliseconds.
pub(crate) fn latency_ms(cell: &str, header: &str) -> Option<f64> {
    let value = number(cell)?;
    let unit_of = |text: &str| {
        if text.contains("µs") || text.contains("us)") {
            Some(1e-3)
        } else if text.contains("ms") {
            Some(1.0)
        } else if text.trim_end().ends_with(" s") || text.contains("(s)") {
            Some(1e3)
        } else {
            None
        }
    };
    Some(value * unit_of(cell).or_else(|| unit_of(header)).unwrap_or(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shapes bench/gateway/run and bench/logging print today.
    const PRINTED: &str = "\n2026-11-25; wrk 4.2.0 -c 64 -t 2 -d 10s; 2 CPUs\n\n\
| case                       | requests/s |   p50 ms |   p99 ms | errors | vs direct | CPU µs/req |\n\
| ---                        |       ---: |     ---: |     ---: |   ---: |      ---: |       ---: |\n\
| 1 upstream direct          |      41234 |     1.50 |     4.10 |      0 |     1.00x |       12.3 |\n\
| 6 gateway, ES256 JWT       |      20001 |     3.00 |     9.99 |      0 |     0.49x |       40.0 |\n\
\ngoal (6) >= (4): HOLDS\n\
## Ingestion (5000 records)\n\n\
| backend | storage limit (rows/s) | OTLP/HTTP (records/s) | share |\n\
| --- | ---: | ---: | ---: |\n\
| sqlite | 59,403 | 39,596 | 67 % |\n\
| postgres | skipped (no --postgres-url) | | |\n";

    #[test]
    fn printed_tables_are_found_with_their_titles_and_cells() {
        let grids = parse(PRINTED);
        assert_eq!(grids.len(), 2, "{grids:?}");
        assert_eq!(grids[0].title, "table 1");
        assert_eq!(grids[0].headers[1], "requests/s");
        assert_eq!(grids[0].rows[1][0], "6 gateway, ES256 JWT");
        assert_eq!(grids[1].title, "Ingestion (5000 records)");
        assert_eq!(
            grids[1].rows,
            vec![
                vec!["sqlite", "59,403", "39,596", "67 %"],
                vec!["postgres", "skipped (no --postgres-url)", "", ""],
            ]
        );
    }

    #[test]
    fn numbers_and_latencies_are_read_back_from_their_printed_form() {
        assert_eq!(number("59,403 – 61,764"), Some(59_403.0));
        assert_eq!(number("1.02×"), Some(1.02));
        assert_eq!(number("skipped (no --postgres-url)"), None);
        assert_eq!(number("—"), None);
        assert_eq!(latency_ms("21.3 µs", "p50"), Some(21.3e-3));
        assert_eq!(latency_ms("4.12 ms", "p99"), Some(4.12));
        assert_eq!(latency_ms("1.50 s", "max"), Some(1500.0));
        assert_eq!(latency_ms("0.84", "p50 (ms)"), Some(0.84));
        assert_eq!(latency_ms("3.00", "p50 ms"), Some(3.0));
    }
}
