//! `tessera-bench-logging`: how fast records get into logging, beside how fast the same
//! storage takes them with no HTTP in between, on SQLite and PostgreSQL; how fast the
//! query shapes the issue names answer over a large store; and what each index costs
//! the batched inserts. Prints Markdown tables.

mod cluster;
mod data;
mod database;
mod ingest;
mod query;

use clap::Parser;

use cluster::Cluster;

use database::{database_url, drop_database};
use ingest::{index_variants, otlp_rate, storage_limit};
use query::query_latency;

/// Benchmark of logging's ingestion beside its storage limit, and of its queries.
#[derive(Debug, Parser)]
#[command(name = "tessera-bench-logging", version)]
pub(crate) struct Args {
    /// Records written per ingestion measurement.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) records: usize,
    /// Records per OTLP request (the shape: 500).
    #[arg(long, default_value_t = 500)]
    pub(crate) batch: usize,
    /// Records per transaction in the storage limit (the service's writer merges
    /// queued requests up to `--ingest-batch-records`, 5,000).
    #[arg(long, default_value_t = 5_000)]
    pub(crate) limit_batch: usize,
    /// Concurrent OTLP senders.
    #[arg(long, default_value_t = 8)]
    pub(crate) concurrency: usize,
    /// PostgreSQL server for a fresh database; without it PostgreSQL rows are skipped.
    #[arg(long, env = "TESSERA_TEST_POSTGRES_URL", hide_env_values = true)]
    pub(crate) postgres_url: Option<String>,
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    pub(crate) backends: Vec<String>,
    /// Sections to run: `ingest` (storage limit beside OTLP), `query` (latency over
    /// `--query-records`), `indexes` (what each index costs the storage limit).
    #[arg(long, value_delimiter = ',', default_value = "ingest,query")]
    pub(crate) sections: Vec<String>,
    /// Records loaded through the store before the query run (spread over the last
    /// 24 hours); the database is deleted afterwards.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) query_records: usize,
    /// Instead of `--postgres-url`, throwaway PostgreSQL clusters started by the bench
    /// with these settings (`packaged`: initdb's defaults; `tuned`: the settings
    /// services/logging/README.md recommends), one row each, deleted afterwards.
    #[arg(long, value_delimiter = ',')]
    pub(crate) postgres_clusters: Vec<String>,
    /// Service flags to compare in the OTLP rate, `;`-separated sets (e.g.
    /// `;--ingest-batch-records 10000`: the defaults, then a larger batch); one row per
    /// set.
    #[arg(long, value_delimiter = ';', default_value = "")]
    pub(crate) service_variants: Vec<String>,
    /// Only the index variants whose name contains one of these (default: all).
    #[arg(long, value_delimiter = ',')]
    pub(crate) index_variants: Vec<String>,
    /// Ingestion rows per target, measured alternately (ABAB…) so that a change in
    /// machine load hits every target alike.
    #[arg(long, default_value_t = 1)]
    pub(crate) repeat: usize,
}

/// Where a row's database lives.
struct Target<'a> {
    label: String,
    backend: String,
    postgres: Option<String>,
    cluster: Option<&'a Cluster>,
}

impl Target<'_> {
    /// CPU seconds of the target's own PostgreSQL cluster and of this process.
    fn cpu(&self) -> (f64, f64) {
        (
            self.cluster.map_or(f64::NAN, Cluster::cpu_seconds),
            cluster::own_cpu_seconds(),
        )
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let section = |name: &str| args.sections.iter().any(|s| s == name);
    let mut clusters = Vec::new();
    for name in &args.postgres_clusters {
        clusters.push((name.clone(), Cluster::start(cluster::settings(name)?)?));
    }
    let mut targets = Vec::new();
    for backend in &args.backends {
        if backend == "sqlite" || clusters.is_empty() {
            targets.push(Target {
                label: backend.clone(),
                backend: backend.clone(),
                postgres: args.postgres_url.clone(),
                cluster: None,
            });
        } else {
            for (name, cluster) in &clusters {
                targets.push(Target {
                    label: format!("{backend}, {name} settings"),
                    backend: backend.clone(),
                    postgres: Some(cluster.url.clone()),
                    cluster: Some(cluster),
                });
            }
        }
    }
    if section("ingest") || section("limit") {
        // `limit` alone: the storage limit without the OTLP run.
        ingestion(&args, &targets, &dir, section("ingest")).await?;
    }
    if section("query") {
        println!(
            "\n## Query latency over {} records (24 hours of them, 200 runs each)\n",
            args.query_records
        );
        println!("| backend | query | rows | p50 (ms) | p99 (ms) |");
        println!("| --- | --- | ---: | ---: | ---: |");
        for target in &targets {
            if let Some(url) =
                database_url(&target.backend, target.postgres.as_deref(), &dir).await?
            {
                query_latency(&url, &target.label, args.query_records).await?;
            }
        }
    }
    if section("indexes") {
        index_costs(&args, &targets, &dir).await?;
    }
    drop(clusters);
    Ok(())
}

/// The ingestion rows: storage limit (and OTLP rate when `with_otlp`) per target and
/// service variant, `--repeat` rounds.
async fn ingestion(
    args: &Args,
    targets: &[Target<'_>],
    dir: &tempfile::TempDir,
    with_otlp: bool,
) -> anyhow::Result<()> {
    println!(
        "## Ingestion ({} records, OTLP batches of {}, {} senders)\n",
        args.records, args.batch, args.concurrency
    );
    println!(
        "| backend | service flags | storage limit (rows/s) | OTLP/HTTP (records/s) | share | rare-word query p99 during OTLP (ms) | CPU µs/record, PostgreSQL + bench process: limit / OTLP | WAL per record, checkpoints during the runs | load |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |");
    for _ in 0..args.repeat {
        for target in targets {
            for variant in &args.service_variants {
                let flags: Vec<&str> = variant.split_whitespace().collect();
                let (Some(limit_url), Some(otlp_url)) = (
                    database_url(&target.backend, target.postgres.as_deref(), dir).await?,
                    database_url(&target.backend, target.postgres.as_deref(), dir).await?,
                ) else {
                    println!(
                        "| {} | skipped (no --postgres-url) | | | | | | | |",
                        target.label
                    );
                    continue;
                };
                let before = load_average();
                // WAL and checkpoints are the PostgreSQL server's: none for SQLite rows.
                let server = if target.backend == "postgres" {
                    target.postgres.as_deref()
                } else {
                    None
                };
                let wal_before = wal_stats(server).await?;
                let cpu0 = target.cpu();
                let limit = storage_limit(&limit_url, args.records, args.limit_batch, &[]).await?;
                let cpu1 = target.cpu();
                let (otlp, read_p99) = if with_otlp {
                    otlp_rate(&otlp_url, args, &flags).await?
                } else {
                    drop_database(&otlp_url).await?;
                    (f64::NAN, f64::NAN)
                };
                let cpu2 = target.cpu();
                let per = |a: f64, b: f64| per_record(1e6 * (b - a), args.records);
                let cpu = format!(
                    "{} + {} / {} + {}",
                    micros(per(cpu0.0, cpu1.0)),
                    micros(per(cpu0.1, cpu1.1)),
                    micros(per(cpu1.0, cpu2.0)),
                    micros(per(cpu1.1, cpu2.1))
                );
                let runs = if with_otlp { 2 } else { 1 };
                // Each run ends with a DROP DATABASE, which forces a checkpoint: not
                // counted.
                let wal = match (wal_before, wal_stats(server).await?) {
                    (Some((b0, c0)), Some((b1, c1))) => format!(
                        "{} B, {} checkpoints",
                        (b1 - b0) / (runs * i64::try_from(args.records)?),
                        (c1 - c0 - runs).max(0)
                    ),
                    _ => "—".to_owned(),
                };
                println!(
                    "| {} | {} | {limit:.0} | {otlp:.0} | {:.0} % | {read_p99:.1} | {cpu} | {wal} | {before} → {} |",
                    target.label,
                    if variant.is_empty() {
                        "(defaults)"
                    } else {
                        variant
                    },
                    100.0 * otlp / limit,
                    load_average()
                );
            }
        }
    }
    Ok(())
}

/// The storage limit of each index variant per target, `--repeat` rounds.
async fn index_costs(
    args: &Args,
    targets: &[Target<'_>],
    dir: &tempfile::TempDir,
) -> anyhow::Result<()> {
    println!(
        "\n## Cost of each index on the storage limit ({} rows, transactions of 5,000)\n",
        args.records
    );
    println!("| backend | schema | rows/s | CPU µs/record, PostgreSQL + bench | load |");
    println!("| --- | --- | ---: | --- | --- |");
    let rounds = targets
        .iter()
        .flat_map(|t| std::iter::repeat_n(t, args.repeat));
    for target in rounds {
        for (name, sql) in index_variants(&target.backend) {
            if !args.index_variants.is_empty()
                && !args
                    .index_variants
                    .iter()
                    .any(|v| name.contains(v.as_str()))
            {
                continue;
            }
            let Some(url) = database_url(&target.backend, target.postgres.as_deref(), dir).await?
            else {
                continue;
            };
            let cpu0 = target.cpu();
            let rate = storage_limit(&url, args.records, args.limit_batch, &sql).await?;
            let cpu1 = target.cpu();
            println!(
                "| {} | {name} | {rate:.0} | {} + {} | {} |",
                target.label,
                micros(per_record(1e6 * (cpu1.0 - cpu0.0), args.records)),
                micros(per_record(1e6 * (cpu1.1 - cpu0.1), args.records)),
                load_average()
            );
        }
    }
    Ok(())
}

/// WAL bytes written and checkpoints done so far by the PostgreSQL server at
/// `admin_url` (server-wide: the throwaway clusters serve only the bench).
async fn wal_stats(admin_url: Option<&str>) -> anyhow::Result<Option<(i64, i64)>> {
    let Some(url) = admin_url else {
        return Ok(None);
    };
    let pool = sqlx::PgPool::connect(url).await?;
    let row: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT wal_bytes::bigint FROM pg_stat_wal), \
                (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter)",
    )
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    Ok(Some(row))
}

/// Microseconds with one decimal, or `—` where nothing was measured (no throwaway
/// cluster to read PostgreSQL's CPU time from, or SQLite).
fn micros(value: f64) -> String {
    if value.is_nan() {
        "—".to_owned()
    } else {
        format!("{value:.1}")
    }
}

/// `amount` per record.
fn per_record(amount: f64, records: usize) -> f64 {
    u32::try_from(records).map_or(f64::NAN, |n| amount / f64::from(n))
}

/// The one-minute load average (`/proc/loadavg`), for the rows' conditions.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}
