//! `bench-report`: writes `bench/REPORT.md` from the runs `bench/report/run` collected,
//! one directory per benchmark, with its printed tables and a PNG chart of throughput and
//! of latency for each table (rows of a table stand beside their peers and limits).
//!
//! A run directory holds `command`, `status` (exit code), `seconds`, `stdout.txt`,
//! `stderr.txt` and `json/` (the tables written through `TESSERA_BENCH_OUT`); the runs
//! directory also holds `machine.md`, the stamp. Tables come from the JSON when there
//! is some, else from the Markdown the benchmark printed.

mod chart;
mod markdown;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Parser;
use tessera_bench_report::TableData;

#[derive(Parser)]
#[command(about = "Writes bench/REPORT.md from collected benchmark runs")]
struct Args {
    /// The directory of runs (one sub-directory per benchmark, in report order).
    #[arg(long)]
    runs: PathBuf,
    /// The report to write.
    #[arg(long, default_value = "bench/REPORT.md")]
    out: PathBuf,
    /// Where the PNG charts go (replaced); linked relative to the report.
    #[arg(long, default_value = "bench/report/charts")]
    charts: PathBuf,
    /// Marks the report as a smoke test with short windows.
    #[arg(long)]
    quick: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let report = generate(&args)?;
    std::fs::write(&args.out, report).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn generate(args: &Args) -> anyhow::Result<String> {
    if args.charts.exists() {
        std::fs::remove_dir_all(&args.charts)
            .with_context(|| format!("clearing {}", args.charts.display()))?;
    }
    std::fs::create_dir_all(&args.charts)?;
    let charts_link = relative_link(&args.out, &args.charts);
    let mut out = String::from("# Tessera benchmark report\n\n");
    out.push_str(
        "Written by `just bench-report` (bench/report/run): every benchmark of `bench/` \
         in one run on one machine; each measurement stands beside its peer or limit, in \
         the same table and the same chart.\n\n",
    );
    if args.quick {
        out.push_str(
            "**Quick mode**: short windows and small data sets, a smoke test of the \
             benchmarks and of this report, not numbers to quote.\n\n",
        );
    }
    let machine = std::fs::read_to_string(args.runs.join("machine.md")).unwrap_or_default();
    out.push_str(machine.trim_end());
    out.push_str("\n\n");

    let mut runs: Vec<PathBuf> = std::fs::read_dir(&args.runs)
        .with_context(|| format!("reading {}", args.runs.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    runs.sort();
    for run in &runs {
        section(&mut out, run, &args.charts, &charts_link)?;
    }
    Ok(out)
}

/// One benchmark's section: how it ran, what it printed, its charts.
fn section(out: &mut String, run: &Path, charts: &Path, link: &str) -> anyhow::Result<()> {
    let read = |name: &str| {
        std::fs::read_to_string(run.join(name))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let dir_name = run
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Directories are `N-name` so that they sort in report order.
    let name = dir_name
        .split_once('-')
        .map_or(dir_name.as_str(), |(_, n)| n)
        .to_owned();
    let status = read("status");
    let _ = writeln!(out, "## {name}\n");
    let _ = writeln!(
        out,
        "`{}` — {} in {} s.\n",
        read("command"),
        if status == "0" {
            "exit 0".to_owned()
        } else {
            format!("**FAILED** (exit {status})")
        },
        read("seconds"),
    );
    let stdout = read("stdout.txt");
    if status != "0" {
        let stderr = read("stderr.txt");
        let tail: Vec<&str> = stderr.lines().rev().take(25).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let _ = writeln!(
            out,
            "Last lines of its stderr:\n\n```text\n{}\n```\n",
            tail.join("\n")
        );
    }
    if !stdout.is_empty() {
        out.push_str(&demote_headings(&stdout));
        out.push_str("\n\n");
    }

    let json_dir = run.join("json");
    let tables = if json_dir.is_dir() {
        TableData::read_dir(&json_dir)?
    } else {
        Vec::new()
    };
    let (source, charts_of): (&str, Vec<chart::Chart>) = if tables.is_empty() {
        (
            "parsed from the printed tables",
            markdown::parse(&stdout)
                .into_iter()
                .map(|mut grid| {
                    // An untitled table is named after its benchmark.
                    if grid.title.starts_with("table ") {
                        grid.title = format!("{name}: {}", grid.title);
                    }
                    grid
                })
                .flat_map(|grid| chart::from_grid(&grid))
                .collect(),
        )
    } else {
        (
            "from the JSON tables",
            tables.iter().flat_map(chart::from_table).collect(),
        )
    };
    if !charts_of.is_empty() {
        let _ = writeln!(out, "#### Charts ({name}, {source})\n");
        for (i, c) in charts_of.iter().enumerate() {
            let file = format!("{name}-{i:02}.png");
            chart::draw(c, &charts.join(&file))?;
            let _ = writeln!(
                out,
                "![{}]({link}/{file})\n",
                c.title.replace(['[', ']'], "")
            );
        }
    }
    Ok(())
}

/// Headings two levels deeper, so a benchmark's own `#` titles nest under its section.
fn demote_headings(text: &str) -> String {
    text.lines()
        .map(|line| {
            if line.starts_with('#') {
                format!("##{line}")
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `charts` as seen from the directory of `report` (both relative to the same root, as
/// the defaults are), else `charts` as given.
fn relative_link(report: &Path, charts: &Path) -> String {
    let base = report.parent().unwrap_or(Path::new(""));
    charts
        .strip_prefix(base)
        .unwrap_or(charts)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_has_every_run_its_stamp_and_working_chart_links() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let ok = runs.join("1-identity");
        std::fs::create_dir_all(ok.join("json")).unwrap();
        std::fs::write(runs.join("machine.md"), "Machine: 2 CPUs, test").unwrap();
        std::fs::write(ok.join("command"), "just bench-identity").unwrap();
        std::fs::write(ok.join("status"), "0").unwrap();
        std::fs::write(ok.join("seconds"), "12").unwrap();
        let mut table = tessera_bench_report::Table::new("Tokens", "tokens/s");
        let stats = tessera_bench_report::Stats::from_samples(
            vec![std::time::Duration::from_millis(1)],
            0,
            std::time::Duration::from_secs(1),
        );
        table.row(tessera_bench_report::Row::new(
            "client_credentials",
            stats,
            "limit",
        ));
        std::fs::write(
            ok.join("stdout.txt"),
            format!("# identity\n\n{}", table.render()),
        )
        .unwrap();
        table.data().write_json(&ok.join("json")).unwrap();
        let printed = runs.join("2-logging");
        std::fs::create_dir_all(&printed).unwrap();
        std::fs::write(printed.join("status"), "0").unwrap();
        std::fs::write(
            printed.join("stdout.txt"),
            "## Ingestion\n\n| backend | storage limit (rows/s) | OTLP/HTTP (records/s) |\n\
             | --- | ---: | ---: |\n| sqlite | 59,403 | 39,596 |\n",
        )
        .unwrap();
        let failed = runs.join("3-gateway");
        std::fs::create_dir_all(&failed).unwrap();
        std::fs::write(failed.join("status"), "1").unwrap();
        std::fs::write(failed.join("stderr.txt"), "wrk: not found").unwrap();

        let args = Args {
            runs,
            out: dir.path().join("bench/REPORT.md"),
            charts: dir.path().join("bench/report/charts"),
            quick: true,
        };
        let report = generate(&args).unwrap();
        assert!(report.contains("Machine: 2 CPUs, test"), "{report}");
        assert!(report.contains("**Quick mode**"), "{report}");
        assert!(report.contains("## identity\n\n`just bench-identity` — exit 0 in 12 s."));
        assert!(
            report.contains("### identity"),
            "headings demoted: {report}"
        );
        assert!(report.contains("#### Charts (logging, parsed from the printed tables)"));
        assert!(report.contains("**FAILED** (exit 1)") && report.contains("wrk: not found"));
        let links: Vec<&str> = report
            .lines()
            .filter_map(|l| l.strip_prefix("![")?.split_once("](")?.1.strip_suffix(')'))
            .collect();
        assert_eq!(
            links,
            [
                "report/charts/identity-00.png",
                "report/charts/identity-01.png",
                "report/charts/logging-00.png"
            ]
        );
        for link in links {
            let png = dir.path().join("bench").join(link);
            assert!(
                std::fs::metadata(&png).unwrap().len() > 1_000,
                "{}",
                png.display()
            );
        }
    }
}
