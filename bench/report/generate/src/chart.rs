//! Horizontal grouped bar charts as PNG: one bar per row and series, so each
//! measurement stands beside its peer or limit (rows of the same table).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context as _, bail};
use plotters::prelude::*;
use tessera_bench_report::TableData;

use crate::markdown::{Grid, latency_ms, number};

/// Where a TTF font is looked for when `TESSERA_BENCH_FONT` is not set (Debian's
/// fonts-dejavu-core, then fonts-liberation).
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// A chart: labels down the side, one coloured bar per series for each label.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Chart {
    pub(crate) title: String,
    /// Axis caption, e.g. `req/s` or `latency (ms)`.
    pub(crate) axis: String,
    pub(crate) labels: Vec<String>,
    pub(crate) series: Vec<(String, Vec<Option<f64>>)>,
}

impl Chart {
    fn has_values(&self) -> bool {
        self.series
            .iter()
            .any(|(_, values)| values.iter().flatten().any(|v| *v > 0.0))
    }
}

/// The throughput and latency charts of a table written as JSON.
pub(crate) fn from_table(table: &TableData) -> Vec<Chart> {
    let labels: Vec<String> = table.rows.iter().map(|r| r.what.clone()).collect();
    let rate = Chart {
        title: table.title.clone(),
        axis: table.unit.clone(),
        labels: labels.clone(),
        series: vec![(
            table.unit.clone(),
            table.rows.iter().map(|r| r.rate).collect(),
        )],
    };
    let ms = |us: Option<f64>| us.map(|us| us / 1e3);
    let latency = Chart {
        title: format!("{} — latency", table.title),
        axis: "latency (ms)".to_owned(),
        labels,
        series: vec![
            (
                "p50".to_owned(),
                table.rows.iter().map(|r| ms(r.p50_us)).collect(),
            ),
            (
                "p99".to_owned(),
                table.rows.iter().map(|r| ms(r.p99_us)).collect(),
            ),
        ],
    };
    [rate, latency]
        .into_iter()
        .filter(Chart::has_values)
        .collect()
}

/// The charts of a printed table: columns headed `…/s` are throughput, `p50`/`p90`/
/// `p99`/`max` columns latency; the leading text columns label the rows.
pub(crate) fn from_grid(grid: &Grid) -> Vec<Chart> {
    let is_rate = |h: &str| h.contains("/s");
    let is_latency = |h: &str| {
        let h = h.to_ascii_lowercase();
        ["p50", "p90", "p95", "p99", "max"]
            .iter()
            .any(|p| h.starts_with(p))
    };
    // Label columns: the leading text columns that are neither rates nor latencies (a
    // numeric column such as a row count ends them).
    let numeric = |i: usize| {
        grid.rows.iter().all(|row| {
            row.get(i)
                .is_none_or(|c| c.is_empty() || number(c).is_some())
        })
    };
    let label_columns = grid
        .headers
        .iter()
        .enumerate()
        .take_while(|(i, h)| !is_rate(h) && !is_latency(h) && (*i == 0 || !numeric(*i)))
        .count()
        .max(1);
    let labels: Vec<String> = grid
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .take(label_columns)
                .filter(|c| !c.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" · ")
        })
        .collect();
    let column = |i: usize, read: &dyn Fn(&str) -> Option<f64>| -> Vec<Option<f64>> {
        grid.rows
            .iter()
            .map(|row| row.get(i).and_then(|c| read(c)))
            .collect()
    };
    let mut rate = Chart {
        title: grid.title.clone(),
        axis: String::new(),
        labels: labels.clone(),
        series: Vec::new(),
    };
    let mut latency = Chart {
        title: format!("{} — latency", grid.title),
        axis: "latency (ms)".to_owned(),
        labels,
        series: Vec::new(),
    };
    for (i, header) in grid.headers.iter().enumerate() {
        if is_rate(header) {
            rate.series.push((header.clone(), column(i, &number)));
        } else if is_latency(header) {
            latency
                .series
                .push((header.clone(), column(i, &|c| latency_ms(c, header))));
        }
    }
    rate.axis = match rate.series.as_slice() {
        [(only, _)] => only.clone(),
        _ => "per second".to_owned(),
    };
    [rate, latency]
        .into_iter()
        .filter(Chart::has_values)
        .collect()
}

/// The font every chart uses, registered once.
fn font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let candidates: Vec<String> = std::env::var("TESSERA_BENCH_FONT")
                .into_iter()
                .chain(FONT_PATHS.iter().map(|p| (*p).to_owned()))
                .collect();
            let (path, bytes) = candidates
                .iter()
                .find_map(|p| std::fs::read(p).ok().map(|b| (p, b)))
                .ok_or_else(|| {
                    format!(
                        "no TTF font found (tried {}); install fonts-dejavu-core or set \
                         TESSERA_BENCH_FONT",
                        candidates.join(", ")
                    )
                })?;
            // Registered fonts live as long as the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{path} is not a usable TTF font"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// Draws `chart` into the PNG file `path`.
#[expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "row and series counts are tiny; pixel sizes are small positive numbers"
)]
pub(crate) fn draw(chart: &Chart, path: &Path) -> anyhow::Result<()> {
    font()?;
    if chart.labels.is_empty() || chart.series.is_empty() {
        bail!("chart {:?} has nothing to draw", chart.title);
    }
    let rows = chart.labels.len();
    let groups = chart.series.len();
    let height = 90 + 26 * (rows * groups).max(2) as u32 + 16 * rows as u32;
    let longest = chart
        .labels
        .iter()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);
    let label_area = (longest as u32 * 7 + 16).clamp(80, 380);
    let top = chart
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0_f64, |a, b| a.max(*b));
    // Headroom for the value labels and the legend.
    let top = if top > 0.0 { top * 1.35 } else { 1.0 };
    {
        let root = BitMapBackend::new(path, (960, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut ctx = ChartBuilder::on(&root)
            .caption(&chart.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(label_area)
            .build_cartesian_2d(0.0..top, 0.0..rows as f64)?;
        let labels = chart.labels.clone();
        ctx.configure_mesh()
            .disable_y_mesh()
            .y_labels(rows * 2 + 1)
            .y_label_formatter(&move |y| {
                // Labels sit at the middle of each row's band (rows drawn top down).
                let band = *y - y.floor();
                if (band - 0.5).abs() > 0.01 {
                    return String::new();
                }
                let index = rows - 1 - y.floor() as usize;
                labels.get(index).cloned().unwrap_or_default()
            })
            .x_desc(&chart.axis)
            .x_label_formatter(&|x| short(*x))
            .label_style(("sans-serif", 13))
            .draw()?;
        let band = 0.8 / groups as f64;
        for (g, (name, values)) in chart.series.iter().enumerate() {
            let color = PALETTE[g % PALETTE.len()];
            let bars = values.iter().enumerate().filter_map(|(i, v)| {
                let v = (*v)?;
                let y0 = (rows - 1 - i) as f64 + 0.9 - band * (g as f64 + 1.0);
                Some(Rectangle::new(
                    [(0.0, y0), (v, y0 + band * 0.9)],
                    color.filled(),
                ))
            });
            ctx.draw_series(bars)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
            let texts = values.iter().enumerate().filter_map(|(i, v)| {
                let v = (*v)?;
                let y0 = (rows - 1 - i) as f64 + 0.9 - band * (g as f64 + 1.0);
                Some(Text::new(
                    short(v),
                    (v + top * 0.005, y0 + band * 0.75),
                    ("sans-serif", 12),
                ))
            });
            ctx.draw_series(texts)?;
        }
        if groups > 1 {
            ctx.configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .label_font(("sans-serif", 13))
                .draw()?;
        }
        root.present()
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A bar's value label: three significant digits, thousands grouped.
fn short(v: f64) -> String {
    if v == 0.0 {
        "0".to_owned()
    } else if v >= 100.0 {
        tessera_bench_report::rate(v)
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::markdown::parse;
    use tessera_bench_report::RowData;

    fn table() -> TableData {
        let row = |what: &str, rate: Option<f64>| RowData {
            what: what.to_owned(),
            rate,
            p50_us: rate.map(|_| 1_500.0),
            p99_us: rate.map(|_| 9_000.0),
            max_us: None,
            errors: Some(0),
            beside: String::new(),
            ratio: None,
        };
        TableData {
            title: "Gateway".to_owned(),
            unit: "req/s".to_owned(),
            rows: vec![
                row("upstream direct", Some(40_000.0)),
                row("gateway", Some(21_000.0)),
                row("not measured", None),
            ],
            notes: Vec::new(),
        }
    }

    #[test]
    fn a_json_table_gives_a_throughput_and_a_latency_chart() {
        let charts = from_table(&table());
        assert_eq!(charts.len(), 2);
        assert_eq!(
            charts[0].series[0].1,
            vec![Some(40_000.0), Some(21_000.0), None]
        );
        assert_eq!(charts[1].series[1].0, "p99");
        assert_eq!(charts[1].series[1].1[0], Some(9.0));
    }

    #[test]
    fn printed_rate_columns_stand_beside_each_other() {
        let grids = parse(
            "## Ingestion\n\n| backend | storage limit (rows/s) | OTLP/HTTP (records/s) | share |\n\
             | --- | ---: | ---: | ---: |\n| sqlite | 59,403 | 39,596 | 67 % |\n\n\
             | backend | query | rows | p50 (ms) | p99 (ms) |\n| --- | --- | ---: | ---: | ---: |\n\
             | sqlite | by request id | 1 | 0.84 | 5.72 |\n",
        );
        let ingestion = from_grid(&grids[0]);
        assert_eq!(ingestion.len(), 1, "no latency columns, no latency chart");
        assert_eq!(ingestion[0].series.len(), 2);
        assert_eq!(ingestion[0].series[1].1, vec![Some(39_596.0)]);
        let queries = from_grid(&grids[1]);
        assert_eq!(queries[0].labels, vec!["sqlite · by request id"]);
        assert_eq!(queries[0].series[1].1, vec![Some(5.72)]);
    }

    #[test]
    fn a_chart_is_written_as_a_png_file() {
        let dir = tempfile::tempdir().unwrap();
        for (i, chart) in from_table(&table()).iter().enumerate() {
            let path = dir.path().join(format!("{i}.png"));
            draw(chart, &path).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            assert!(bytes.len() > 1_000, "{} bytes", bytes.len());
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        }
    }
}
