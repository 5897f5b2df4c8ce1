//! What every Tessera benchmark prints: the latency summary of a measured window
//! ([`Stats`]) and the Markdown tables, so a run pastes into `bench/README.md` and every
//! benchmark reads the same. [`Table::print`] also writes each table as JSON
//! ([`TableData`]) into `$TESSERA_BENCH_OUT` when set, for `just bench-report`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The directory [`Table::print`] writes JSON tables into, when set.
pub const OUT_DIR_ENV: &str = "TESSERA_BENCH_OUT";

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
        self.data().render()
    }

    /// The table as plain data: what the JSON file holds.
    pub fn data(&self) -> TableData {
        TableData {
            title: self.title.clone(),
            unit: self.unit.to_owned(),
            rows: self.rows.iter().map(Row::data).collect(),
            notes: self.notes.clone(),
        }
    }

    /// Prints the table (and a blank line) to stdout and, when `$TESSERA_BENCH_OUT` is
    /// set, also writes it there as JSON. A failed write is reported on stderr and does
    /// not stop the benchmark: the printed table is the result.
    pub fn print(&self) {
        println!("{}", self.render());
        if let Some(dir) = std::env::var_os(OUT_DIR_ENV) {
            let dir = Path::new(&dir);
            match self.data().write_json(dir) {
                Ok(path) => eprintln!("table written to {}", path.display()),
                Err(error) => eprintln!(
                    "could not write the table JSON into {}: {error}",
                    dir.display()
                ),
            }
        }
    }
}

/// A table as plain data, the JSON schema every benchmark writes (other benchmarks,
/// such as the bash gateway benchmark, write the same fields):
///
/// ```json
/// {"title": "...", "unit": "req/s",
///  "rows": [{"what": "...", "rate": 5812.4, "p50_us": 21.3, "p99_us": 80.0,
///            "max_us": 900.0, "errors": 0, "beside": "nginx", "ratio": 1.02}],
///  "notes": ["..."]}
/// ```
///
/// A row not measured has `rate`, the latencies and `errors` null and says why in
/// `beside`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableData {
    pub title: String,
    /// Heading of the rate column, e.g. `req/s`.
    pub unit: String,
    pub rows: Vec<RowData>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One row of a [`TableData`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowData {
    pub what: String,
    /// Operations per second in the table's unit.
    pub rate: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    #[serde(default)]
    pub max_us: Option<f64>,
    #[serde(default)]
    pub errors: Option<u64>,
    #[serde(default)]
    pub beside: String,
    #[serde(default)]
    pub ratio: Option<f64>,
}

impl Row {
    fn data(&self) -> RowData {
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        RowData {
            what: self.what.clone(),
            rate: self.stats.map(|s| s.rate()),
            p50_us: self.stats.map(|s| micros(s.p50)),
            p99_us: self.stats.map(|s| micros(s.p99)),
            max_us: self.stats.map(|s| micros(s.max)),
            errors: self.stats.map(|s| s.errors),
            beside: self.beside.clone(),
            ratio: self.ratio,
        }
    }
}

impl TableData {
    /// The table as Markdown, columns padded for the terminal.
    pub fn render(&self) -> String {
        let header = [
            "what",
            self.unit.as_str(),
            "p50",
            "p99",
            "max",
            "errors",
            "beside",
            "ratio",
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

    /// Writes the table as `NN-<title>.json` into `dir` (created if missing), `NN`
    /// counting the JSON files already there, so a reader keeps the printed order.
    pub fn write_json(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let existing = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count();
        let path = dir.join(format!("{existing:02}-{}.json", slug(&self.title)));
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&path, json + "\n")?;
        Ok(path)
    }

    /// Reads the tables of `dir` written by [`Self::write_json`], in their order.
    pub fn read_dir(dir: &Path) -> std::io::Result<Vec<Self>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        paths.sort();
        paths
            .iter()
            .map(|path| {
                let text = std::fs::read_to_string(path)?;
                serde_json::from_str(&text).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })
            })
            .collect()
    }
}

/// Lower-case letters and digits of `title`, runs of anything else as one `-`.
fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    trimmed.chars().take(60).collect()
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

fn cells(row: &RowData) -> [String; 8] {
    let dash = || "—".to_owned();
    let ratio = row.ratio.map_or_else(dash, |r| format!("{r:.2}×"));
    let micros = |us: Option<f64>| {
        us.filter(|us| us.is_finite() && *us >= 0.0)
            .map_or_else(dash, |us| latency(Duration::from_secs_f64(us / 1e6)))
    };
    [
        row.what.clone(),
        row.rate.map_or_else(dash, rate),
        micros(row.p50_us),
        micros(row.p99_us),
        micros(row.max_us),
        row.errors.map_or_else(dash, |e| e.to_string()),
        row.beside.clone(),
        ratio,
    ]
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

    fn sample_table() -> Table {
        let stats = Stats::from_samples(
            (1..=100).map(Duration::from_micros).collect(),
            2,
            Duration::from_secs(1),
        );
        let mut table = Table::new("Tokens / s (SQLite)", "tokens/s");
        table.row(Row::new("client_credentials", stats, "EdDSA signing").ratio_to(400.0));
        table.row(Row::skipped("PostgreSQL", "no --postgres-url"));
        table.note("a note");
        table
    }

    #[test]
    fn a_table_written_as_json_reads_back_and_renders_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let table = sample_table();
        let mut second = Table::new("JWKS", "req/s");
        second.row(Row::skipped("x", "y"));
        let first_path = table.data().write_json(dir.path()).unwrap();
        second.data().write_json(dir.path()).unwrap();
        assert_eq!(
            first_path.file_name().unwrap().to_str().unwrap(),
            "00-tokens-s-sqlite.json"
        );
        let read = TableData::read_dir(dir.path()).unwrap();
        assert_eq!(read, vec![table.data(), second.data()]);
        assert_eq!(read[0].render(), table.render());
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(first_path).unwrap()).unwrap();
        assert_eq!(json["rows"][0]["errors"], 2);
        assert_eq!(json["rows"][0]["p99_us"], 99.0);
        assert_eq!(json["rows"][1]["rate"], serde_json::Value::Null);
    }

    #[test]
    fn json_from_another_benchmark_needs_only_the_measured_fields() {
        // What bench/gateway (bash + wrk) writes: no max, no ratio.
        let text = r#"{"title":"Gateway","unit":"req/s","rows":[
            {"what":"nginx","rate":12000.4,"p50_us":1500,"p99_us":4100,"beside":"peer"}]}"#;
        let table: TableData = serde_json::from_str(text).unwrap();
        let rendered = table.render();
        assert!(
            rendered
                .contains("| nginx | 12,000 | 1.50 ms | 4.10 ms |   — |      — | peer   |     — |"),
            "{rendered}"
        );
    }
}
