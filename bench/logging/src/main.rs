//! `tessera-bench-logging`: how fast records get into logging, beside how fast the same
//! storage takes them with no HTTP in between, on SQLite and PostgreSQL; and what each
//! lookup index costs SQLite's batched inserts. Prints Markdown tables.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures_util::future::join_all;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use service_kit::{CancellationToken, Database, DatabaseUrl, Listeners};
use tessera_logging::record::NewRecord;
use tessera_logging::store::Store;

/// Benchmark of logging's ingestion beside its storage limit.
#[derive(Debug, Parser)]
#[command(name = "tessera-bench-logging", version)]
struct Args {
    /// Records written per measurement.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Records per OTLP request (the issue's shape: 500).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Concurrent OTLP senders.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// PostgreSQL server for a fresh database; without it PostgreSQL rows are skipped.
    #[arg(long, env = "TESSERA_TEST_POSTGRES_URL", hide_env_values = true)]
    postgres_url: Option<String>,
}

fn now_nanos() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
}

fn hex(n: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..n].to_owned()
}

/// A ~250-byte record of a request in a service.
fn new_record(i: usize) -> NewRecord {
    let mut attributes = serde_json::Map::new();
    attributes.insert("http.route".into(), "/v1/profiles/{id}".into());
    attributes.insert("status".into(), 200.into());
    NewRecord {
        time_unix_nano: now_nanos(),
        observed_time_unix_nano: now_nanos(),
        service: ["gateway", "profile", "identity"][i % 3].to_owned(),
        severity_number: 9,
        severity_text: "INFO".into(),
        body: format!(
            "request {i} finished: GET /v1/profiles/{} status 200 in 3.2 ms",
            hex(8)
        ),
        trace_id: Some(hex(32)),
        span_id: Some(hex(16)),
        request_id: Some(uuid::Uuid::now_v7().to_string()),
        attributes,
        resource_json: Arc::from(r#"{"service.name":"profile","host.name":"node-1"}"#),
    }
}

fn otlp_record(i: usize) -> LogRecord {
    let r = new_record(i);
    let bytes = |h: &str| {
        (0..h.len() / 2)
            .map(|k| u8::from_str_radix(&h[k * 2..k * 2 + 2], 16).unwrap_or(0))
            .collect()
    };
    LogRecord {
        time_unix_nano: u64::try_from(r.time_unix_nano).unwrap_or(0),
        severity_number: 9,
        severity_text: "INFO".into(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(r.body)),
        }),
        attributes: vec![KeyValue {
            key: "request_id".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(
                    r.request_id.unwrap_or_default(),
                )),
            }),
            ..KeyValue::default()
        }],
        trace_id: bytes(r.trace_id.as_deref().unwrap_or_default()),
        span_id: bytes(r.span_id.as_deref().unwrap_or_default()),
        ..LogRecord::default()
    }
}

async fn database_url(
    backend: &str,
    args: &Args,
    dir: &tempfile::TempDir,
) -> anyhow::Result<Option<String>> {
    Ok(match backend {
        "sqlite" => Some(format!(
            "sqlite:{}",
            dir.path().join(format!("{}.db", hex(6))).display()
        )),
        _ if args.postgres_url.is_some() => Some(testkit::fresh_postgres_database().await),
        _ => None,
    })
}

/// Records per second straight into the store, in transactions of 5,000.
async fn storage_limit(url: &str, records: usize, extra_sql: &[&str]) -> anyhow::Result<f64> {
    let url: DatabaseUrl = url.parse().context("database url")?;
    let database = Database::open_now(&url, 4, &tessera_logging::migrations()).await?;
    for sql in extra_sql {
        service_kit::with_pool!(database.pool(), |p| sqlx::raw_sql(sqlx::AssertSqlSafe(
            *sql
        ))
        .execute(p)
        .await
        .map(drop))?;
    }
    let store = Store::new(database.pool().clone());
    let batches: Vec<Vec<NewRecord>> = (0..records)
        .map(new_record)
        .collect::<Vec<_>>()
        .chunks(5_000)
        .map(<[NewRecord]>::to_vec)
        .collect();
    let started = Instant::now();
    for batch in &batches {
        store.insert(batch).await?;
    }
    let rate = f64::from(u32::try_from(records)?) / started.elapsed().as_secs_f64();
    database.pool().close().await;
    Ok(rate)
}

/// p50 and p99 of `runs` executions of `query`, in milliseconds.
async fn latency<F, Fut>(runs: usize, mut query: F) -> anyhow::Result<(f64, f64)>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let started = Instant::now();
        query(i).await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    let at = |percent: usize| samples[(samples.len() - 1) * percent / 100];
    Ok((at(50), at(99)))
}

/// Builds the filter of the i-th query run.
type FilterFor = Box<dyn Fn(usize) -> tessera_logging::store::Filter>;

/// Query latency of the three shapes the issue names, over a store of `records` rows.
async fn query_latency(url: &str, records: usize) -> anyhow::Result<()> {
    use tessera_logging::store::Filter;
    let url: DatabaseUrl = url.parse().context("database url")?;
    let database = Database::open_now(&url, 4, &tessera_logging::migrations()).await?;
    let store = Store::new(database.pool().clone());
    let all: Vec<NewRecord> = (0..records).map(new_record).collect();
    let traces: Vec<String> = all
        .iter()
        .filter_map(|r| r.trace_id.clone())
        .step_by(997)
        .collect();
    for batch in all.chunks(5_000) {
        store.insert(batch).await?;
    }
    let since = now_nanos() - 3_600_000_000_000;
    let shapes: [(&str, FilterFor); 3] = [
        (
            "service + min severity + last hour, 100 newest",
            Box::new(move |_| Filter {
                service: Some("profile".into()),
                min_severity: Some(9),
                since: Some(since),
                ..Filter::default()
            }),
        ),
        (
            "text (one word), 100 newest",
            Box::new(|_| Filter {
                text: Some("finished".into()),
                ..Filter::default()
            }),
        ),
        (
            "trace id",
            Box::new(move |i| Filter {
                trace_id: Some(traces[i % traces.len()].clone()),
                ..Filter::default()
            }),
        ),
    ];
    for (name, filter) in shapes {
        let (p50, p99) = latency(200, |i| {
            let (store, filter) = (store.clone(), filter(i));
            async move {
                store.query(&filter, None, 100).await?;
                Ok(())
            }
        })
        .await?;
        println!(
            "| {} | {name} | {p50:.2} | {p99:.2} |",
            url.to_string().split(':').next().unwrap_or_default()
        );
    }
    database.pool().close().await;
    Ok(())
}

/// Records per second through `/v1/logs` (protobuf, `batch` records per request).
async fn otlp_rate(url: &str, args: &Args) -> anyhow::Result<f64> {
    use clap::Parser as _;
    let config = tessera_logging::config::Config::try_parse_from([
        "tessera-logging",
        "--database-url",
        url,
        "--insecure-disable-auth",
        "--max-body-bytes",
        "16777216",
    ])?;
    let shutdown = CancellationToken::new();
    let logging = tessera_logging::build(&config, tessera_logging::Runtime::default(), &shutdown)?;
    let listeners = Listeners::loopback().await?;
    let base = format!("http://{}", listeners.public_addr()?);
    let admin = format!("http://{}", listeners.admin_addr()?);
    tokio::spawn(logging.service.serve(listeners, shutdown.clone()));
    testkit::wait_until_ready(&admin, Duration::from_secs(30)).await;
    let requests = args.records / args.batch;
    let bodies: Vec<Vec<u8>> = (0..requests)
        .map(|r| {
            ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    resource: Some(Resource {
                        attributes: vec![KeyValue {
                            key: "service.name".into(),
                            value: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("bench".into())),
                            }),
                            ..KeyValue::default()
                        }],
                        ..Resource::default()
                    }),
                    scope_logs: vec![ScopeLogs {
                        log_records: (0..args.batch)
                            .map(|i| otlp_record(r * args.batch + i))
                            .collect(),
                        ..ScopeLogs::default()
                    }],
                    schema_url: String::new(),
                }],
            }
            .encode_to_vec()
        })
        .collect();
    let http = reqwest::Client::new();
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let senders = (0..args.concurrency).map(|_| {
        let (http, queue, url) = (http.clone(), queue.clone(), format!("{base}/v1/logs"));
        async move {
            loop {
                let Some(body) = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop()
                else {
                    return Ok::<(), anyhow::Error>(());
                };
                loop {
                    let response = http
                        .post(&url)
                        .header("content-type", "application/x-protobuf")
                        .body(body.clone())
                        .send()
                        .await?;
                    match response.status().as_u16() {
                        200 => break,
                        429 | 503 => tokio::time::sleep(Duration::from_millis(50)).await,
                        other => anyhow::bail!("logging answered {other}"),
                    }
                }
            }
        }
    });
    for result in join_all(senders).await {
        result?;
    }
    let rate = f64::from(u32::try_from(requests * args.batch)?) / started.elapsed().as_secs_f64();
    shutdown.cancel();
    Ok(rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    println!(
        "## Ingestion ({} records, OTLP batches of {}, {} senders)\n",
        args.records, args.batch, args.concurrency
    );
    println!("| backend | storage limit (rows/s) | OTLP/HTTP (records/s) | share |");
    println!("| --- | ---: | ---: | ---: |");
    for backend in ["sqlite", "postgres"] {
        let (Some(limit_url), Some(otlp_url)) = (
            database_url(backend, &args, &dir).await?,
            database_url(backend, &args, &dir).await?,
        ) else {
            println!("| {backend} | skipped (no --postgres-url) | | |");
            continue;
        };
        let limit = storage_limit(&limit_url, args.records, &[]).await?;
        let otlp = otlp_rate(&otlp_url, &args).await?;
        println!(
            "| {backend} | {limit:.0} | {otlp:.0} | {:.0} % |",
            100.0 * otlp / limit
        );
    }
    println!(
        "\n## Query latency over {} records (200 runs each)\n",
        args.records
    );
    println!("| backend | query | p50 (ms) | p99 (ms) |");
    println!("| --- | --- | ---: | ---: |");
    for backend in ["sqlite", "postgres"] {
        if let Some(url) = database_url(backend, &args, &dir).await? {
            query_latency(&url, args.records).await?;
        }
    }
    if let Some(url) = database_url("postgres", &args, &dir).await? {
        let rate = storage_limit(&url, args.records, &["DROP INDEX log_records_body_text"]).await?;
        println!("\nPostgreSQL storage limit without the tsvector GIN index: {rate:.0} rows/s");
    }
    println!(
        "\n## SQLite: cost of the lookup indexes ({} rows, transactions of 5,000)\n",
        args.records
    );
    println!("| schema | rows/s |");
    println!("| --- | ---: |");
    let variants: [(&str, &[&str]); 3] = [
        (
            "no trace/request lookup index",
            &[
                "DROP INDEX log_records_trace_key",
                "DROP INDEX log_records_request_key",
            ],
        ),
        ("as shipped: 64-bit hash keys (trace_key, request_key)", &[]),
        (
            "plus B-tree indexes on the text trace_id and request_id",
            &[
                "CREATE INDEX text_trace ON log_records (trace_id)",
                "CREATE INDEX text_request ON log_records (request_id)",
            ],
        ),
    ];
    for (name, sql) in variants {
        let url = database_url("sqlite", &args, &dir)
            .await?
            .unwrap_or_default();
        let rate = storage_limit(&url, args.records, sql).await?;
        println!("| {name} | {rate:.0} |");
    }
    Ok(())
}
