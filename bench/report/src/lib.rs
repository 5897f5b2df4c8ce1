//! What every Tessera benchmark prints: the latency summary of a measured window
//! ([`Stats`]) and the Markdown tables, so a run pastes into `bench/README.md` and every
//! benchmark reads the same.

use std::fmt::Write as _;
use std::time::Duration;

/// What one measured window produced: successful operations, failures, and the latency
/// of the successful ones.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub ops: u64,
    /// Successful answers including warm-up and those finishing after the window.
    pub answered: u64,
    pub errors: u64,
    pub window: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Stats {
    /// Summarises the latencies of the successful operations of one window.
    pub fn from_samples(mut samples: Vec<Duration>, errors: u64, window: Duration) -> Self {
        samples.sort_unstable();
        // Nearest-rank percentile on the sorted samples (integer arithmetic, no casts).
        let pick = |permille: usize| {
            samples
                .len()
                .checked_sub(1)
                .map_or(Duration::ZERO, |last| samples[last * permille / 1000])
        };
        Self {
            ops: samples.len() as u64,
            answered: samples.len() as u64,
            errors,
            window,
            p50: pick(500),
            p99: pick(990),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    /// Successful operations per second of the window.
    #[expect(
        clippy::cast_precision_loss,
        reason = "counts stay far below 2^52; a rate needs no more precision"
    )]
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.window.as_secs_f64()
    }
}

/// One line of a table: a measurement, or why it was not taken.
#[derive(Debug, Clone)]
pub struct Row {
    what: String,
    stats: Option<Stats>,
    beside: String,
    ratio: Option<f64>,
}

impl Row {
    /// A measurement with what it is compared to and the ratio to that.
    pub fn new(what: impl Into<String>, stats: Stats, beside: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            stats: Some(stats),
            beside: beside.into(),
            ratio: None,
        }
    }

    /// Sets the ratio of this row's rate to `reference` operations per second.
    #[must_use]
    pub fn ratio_to(mut self, reference: f64) -> Self {
        self.ratio = self
            .stats
            .filter(|_| reference > 0.0)
            .map(|s| s.rate() / reference);
        self
    }

    /// A row that was not measured, saying why.
    pub fn skipped(what: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            stats: None,
            beside: why.into(),
            ratio: None,
        }
    }
}

/// A titled table with notes printed under it.
#[derive(Debug, Clone)]
pub struct Table {
    title: String,
    unit: &'static str,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Table {
    /// An empty table whose rate column is headed `unit` (e.g. `ops/s`).
    pub fn new(title: impl Into<String>, unit: &'static str) -> Self {
        Self {
            title: title.into(),
            unit,
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The table as Markdown, columns padded for the terminal.
    pub fn render(&self) -> String {
        let header = [
            "what", self.unit, "p50", "p99", "max", "errors", "beside", "ratio",
        ]
        .map(str::to_owned);
        let lines: Vec<[String; 8]> = self.rows.iter().map(cells).collect();
        let mut widths = header.clone().map(|h| h.chars().count());
        for line in &lines {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = format!("### {}\n\n", self.title);
        push_line(&mut out, &header, &widths);
        let rule = widths.map(|w| "-".repeat(w));
        push_line(&mut out, &rule, &widths);
        for line in &lines {
            push_line(&mut out, line, &widths);
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

/// Numbers right-aligned, text left-aligned.
const RIGHT_ALIGNED: [bool; 8] = [false, true, true, true, true, true, false, true];

fn push_line(out: &mut String, cells: &[String; 8], widths: &[usize; 8]) {
    out.push('|');
    for ((cell, width), right) in cells.iter().zip(widths).zip(RIGHT_ALIGNED) {
        let pad = " ".repeat(width - cell.chars().count());
        if right {
            let _ = write!(out, " {pad}{cell} |");
        } else {
            let _ = write!(out, " {cell}{pad} |");
        }
    }
    out.push('\n');
}

fn cells(row: &Row) -> [String; 8] {
    let dash = || "—".to_owned();
    let ratio = row.ratio.map_or_else(dash, |r| format!("{r:.2}×"));
    match &row.stats {
        Some(s) => [
            row.what.clone(),
            rate(s.rate()),
            latency(s.p50),
            latency(s.p99),
            latency(s.max),
            s.errors.to_string(),
            row.beside.clone(),
            ratio,
        ],
        None => [
            row.what.clone(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            row.beside.clone(),
            ratio,
        ],
    }
}

/// A rate with thousands separators; one decimal below 100.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "rates are positive and far below u64::MAX"
)]
pub fn rate(per_second: f64) -> String {
    if per_second < 100.0 {
        return format!("{per_second:.1}");
    }
    let whole = per_second.round() as u64;
    let digits = whole.to_string();
    let mut grouped = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// A latency in the unit that keeps three significant digits readable.
pub fn latency(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 10.0 {
        format!("{micros:.2} µs")
    } else if micros < 1000.0 {
        format!("{micros:.1} µs")
    } else if micros < 1e6 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_on_sorted_samples() {
        let samples = (1..=1000).rev().map(Duration::from_micros).collect();
        let stats = Stats::from_samples(samples, 3, Duration::from_secs(2));
        assert_eq!(
            (stats.ops, stats.errors, stats.p50, stats.p99, stats.max),
            (
                1000,
                3,
                Duration::from_micros(500),
                Duration::from_micros(990),
                Duration::from_micros(1000)
            )
        );
        assert!((stats.rate() - 500.0).abs() < f64::EPSILON);
    }

    #[test]
    fn an_empty_window_reports_zeroes_not_a_panic() {
        let stats = Stats::from_samples(Vec::new(), 0, Duration::from_secs(1));
        assert_eq!(
            (stats.ops, stats.p99, stats.max),
            (0, Duration::ZERO, Duration::ZERO)
        );
    }

    #[test]
    fn rates_group_thousands_and_latencies_pick_a_unit() {
        assert_eq!(
            [rate(5_812.4), rate(1_234_567.0), rate(42.24), rate(999.6)],
            ["5,812", "1,234,567", "42.2", "1,000"].map(str::to_owned)
        );
        assert_eq!(
            [
                latency(Duration::from_nanos(21_340)),
                latency(Duration::from_micros(4_120)),
                latency(Duration::from_millis(1_500)),
            ],
            ["21.3 µs", "4.12 ms", "1.50 s"].map(str::to_owned)
        );
    }

    #[test]
    fn a_table_aligns_its_columns_and_shows_skipped_rows() {
        let stats = Stats::from_samples(vec![Duration::from_millis(2)], 0, Duration::from_secs(1));
        let mut table = Table::new("t", "req/s");
        table.row(Row::new("a", stats, "goal 2/s").ratio_to(2.0));
        table.row(Row::skipped("b", "no URL"));
        let text = table.render();
        let widths: Vec<usize> = text
            .lines()
            .filter(|l| l.starts_with('|'))
            .map(|l| l.chars().count())
            .collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{text}");
        assert!(text.contains("0.50×") && text.contains("no URL"), "{text}");
    }
}
