//! `tessera-bench-logging`: how fast records get into logging, beside how fast the same
//! storage takes them with no HTTP in between, on SQLite and PostgreSQL; how fast the
//! query shapes the issue names answer over a large store; and what each index costs
//! the batched inserts. Prints Markdown tables.

mod data;
mod database;
mod ingest;
mod query;

use clap::Parser;

use database::database_url;
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let section = |name: &str| args.sections.iter().any(|s| s == name);
    if section("ingest") {
        println!(
            "## Ingestion ({} records, OTLP batches of {}, {} senders)\n",
            args.records, args.batch, args.concurrency
        );
        println!("| backend | storage limit (rows/s) | OTLP/HTTP (records/s) | share |");
        println!("| --- | ---: | ---: | ---: |");
        for backend in &args.backends {
            let (Some(limit_url), Some(otlp_url)) = (
                database_url(backend, &args, &dir).await?,
                database_url(backend, &args, &dir).await?,
            ) else {
                println!("| {backend} | skipped (no --postgres-url) | | |");
                continue;
            };
            let limit = storage_limit(&limit_url, args.records, args.limit_batch, &[]).await?;
            let otlp = otlp_rate(&otlp_url, &args).await?;
            println!(
                "| {backend} | {limit:.0} | {otlp:.0} | {:.0} % |",
                100.0 * otlp / limit
            );
        }
    }
    if section("query") {
        println!(
            "\n## Query latency over {} records (24 hours of them, 200 runs each)\n",
            args.query_records
        );
        println!("| backend | query | rows | p50 (ms) | p99 (ms) |");
        println!("| --- | --- | ---: | ---: | ---: |");
        for backend in &args.backends {
            if let Some(url) = database_url(backend, &args, &dir).await? {
                query_latency(&url, backend, args.query_records).await?;
            }
        }
    }
    if section("indexes") {
        println!(
            "\n## Cost of each index on the storage limit ({} rows, transactions of 5,000)\n",
            args.records
        );
        println!("| backend | schema | rows/s |");
        println!("| --- | --- | ---: |");
        for backend in &args.backends {
            for (name, sql) in index_variants(backend) {
                let Some(url) = database_url(backend, &args, &dir).await? else {
                    continue;
                };
                let rate = storage_limit(&url, args.records, args.limit_batch, &sql).await?;
                println!("| {backend} | {name} | {rate:.0} |");
            }
        }
    }
    Ok(())
}
