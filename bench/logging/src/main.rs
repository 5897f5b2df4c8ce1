//! `tessera-bench-logging`: how fast records get into logging, beside how fast the same
//! storage takes them with no HTTP in between, on SQLite and PostgreSQL; how fast the
//! query shapes the issue names answer over a large store; and what each index costs
//! the batched inserts. Prints Markdown tables.

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
use tessera_logging::store::{Filter, Store};

/// Benchmark of logging's ingestion beside its storage limit, and of its queries.
#[derive(Debug, Parser)]
#[command(name = "tessera-bench-logging", version)]
struct Args {
    /// Records written per ingestion measurement.
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
    /// Backends to measure.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<String>,
    /// Sections to run: `ingest` (storage limit beside OTLP), `query` (latency over
    /// `--query-records`), `indexes` (what each index costs the storage limit).
    #[arg(long, value_delimiter = ',', default_value = "ingest,query")]
    sections: Vec<String>,
    /// Records loaded through the store before the query run (spread over the last
    /// 24 hours); the database is deleted afterwards.
    #[arg(long, default_value_t = 100_000)]
    query_records: usize,
}

fn now_nanos() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(0)
}

fn hex(n: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..n].to_owned()
}

/// The service of the i-th record.
fn service(i: usize) -> &'static str {
    ["gateway", "profile", "identity"][i % 3]
}

/// The severity of the i-th record: 70 % info, 20 % debug, 8 % warn, 2 % error.
fn severity(i: usize) -> (i32, &'static str) {
    match i % 50 {
        0 => (17, "ERROR"),
        1..=4 => (13, "WARN"),
        5..=14 => (5, "DEBUG"),
        _ => (9, "INFO"),
    }
}

/// A ~250-byte record of a request in a service, at `ts`. Every body has the word
/// `finished`; one in 1,000 has `timeout` (the rare-word query).
fn new_record(i: usize, ts: i64) -> NewRecord {
    let (severity_number, severity_text) = severity(i);
    let outcome = if i.is_multiple_of(1000) {
        "timeout"
    } else {
        "200"
    };
    NewRecord {
        time_unix_nano: ts,
        observed_time_unix_nano: ts,
        service: service(i).to_owned(),
        severity_number,
        severity_text: severity_text.into(),
        body: format!(
            "request {i} finished: GET /v1/profiles/{} status {outcome} in 3.2 ms",
            hex(8)
        ),
        trace_id: Some(hex(32)),
        span_id: Some(hex(16)),
        request_id: Some(uuid::Uuid::now_v7().to_string()),
        attributes_json: r#"{"http.route":"/v1/profiles/{id}","status":200}"#.to_owned(),
        resource_json: Arc::from(r#"{"service.name":"profile","host.name":"node-1"}"#),
    }
}

fn otlp_record(i: usize) -> LogRecord {
    let r = new_record(i, now_nanos());
    let bytes = |h: &str| {
        (0..h.len() / 2)
            .map(|k| u8::from_str_radix(&h[k * 2..k * 2 + 2], 16).unwrap_or(0))
            .collect()
    };
    LogRecord {
        time_unix_nano: u64::try_from(r.time_unix_nano).unwrap_or(0),
        severity_number: r.severity_number,
        severity_text: r.severity_text,
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(r.body)),
        }),
        attributes: vec![
            KeyValue {
                key: "request_id".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(
                        r.request_id.unwrap_or_default(),
                    )),
                }),
                ..KeyValue::default()
            },
            KeyValue {
                key: "http.route".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("/v1/profiles/{id}".into())),
                }),
                ..KeyValue::default()
            },
        ],
        trace_id: bytes(r.trace_id.as_deref().unwrap_or_default()),
        span_id: bytes(r.span_id.as_deref().unwrap_or_default()),
        ..LogRecord::default()
    }
}

/// A fresh database of `backend`, or `None` when PostgreSQL is not configured.
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

/// Deletes the database at `url` (the SQLite file and its WAL, or the PostgreSQL
/// database), so a large run leaves no data behind.
async fn drop_database(url: &str) -> anyhow::Result<()> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        return Ok(());
    }
    let name = url
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .context("database name")?;
    let pool = sqlx::PgPool::connect(&testkit::database_url_with_name(url, "postgres")).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&pool)
    .await?;
    pool.close().await;
    Ok(())
}

async fn open(url: &str, extra_sql: &[&str]) -> anyhow::Result<Database> {
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
    Ok(database)
}

/// Records per second straight into the store, in transactions of 5,000, with as many
/// in flight as the service's writer keeps.
async fn storage_limit(url: &str, records: usize, extra_sql: &[&str]) -> anyhow::Result<f64> {
    let database = open(url, extra_sql).await?;
    let store = Store::new(database.pool().clone());
    let now = now_nanos();
    let batches: Vec<Vec<NewRecord>> = (0..records)
        .map(|i| new_record(i, now))
        .collect::<Vec<_>>()
        .chunks(5_000)
        .map(<[NewRecord]>::to_vec)
        .collect();
    // As many batches in flight as the service's writer keeps (2 on PostgreSQL).
    let parallel = store.parallel_writes();
    let started = Instant::now();
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    for batch in batches {
        let store = store.clone();
        in_flight.push(async move { store.insert(&batch).await });
        if in_flight.len() >= parallel
            && let Some(result) = futures_util::StreamExt::next(&mut in_flight).await
        {
            result?;
        }
    }
    while let Some(result) = futures_util::StreamExt::next(&mut in_flight).await {
        result?;
    }
    let rate = f64::from(u32::try_from(records)?) / started.elapsed().as_secs_f64();
    database.pool().close().await;
    drop_database(url).await?;
    Ok(rate)
}

/// p50 and p99 of `runs` executions of `query`, in milliseconds, and the rows the
/// last run returned.
async fn latency<F, Fut>(runs: usize, mut query: F) -> anyhow::Result<(f64, f64, usize)>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    let mut samples = Vec::with_capacity(runs);
    let mut rows = 0;
    for i in 0..runs {
        let started = Instant::now();
        rows = query(i).await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    let at = |percent: usize| samples[(samples.len() - 1) * percent / 100];
    Ok((at(50), at(99), rows))
}

/// Builds the filter of the i-th query run.
type FilterFor = Box<dyn Fn(usize) -> Filter>;

/// Loads `records` rows spread evenly over the last 24 hours through the store (two
/// batches in flight on PostgreSQL, one writer on SQLite); returns every 997th trace
/// id and request id for the lookups.
async fn preload(
    store: &Store,
    records: usize,
    parallel: usize,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    const BATCH: usize = 5_000;
    let end = now_nanos() - 1_000_000_000;
    let step = 86_400_000_000_000 / i64::try_from(records.max(1))?;
    let started = Instant::now();
    let mut traces = Vec::new();
    let mut requests = Vec::new();
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    let mut next = 0;
    while next < records {
        let batch: Vec<NewRecord> = (next..(next + BATCH).min(records))
            .map(|i| {
                let back = i64::try_from(records - i)?;
                Ok(new_record(i, end - back * step))
            })
            .collect::<anyhow::Result<_>>()?;
        for (k, record) in batch.iter().enumerate() {
            if (next + k).is_multiple_of(997) {
                traces.extend(record.trace_id.clone());
                requests.extend(record.request_id.clone());
            }
        }
        next += batch.len();
        let store = store.clone();
        in_flight.push(async move { store.insert(&batch).await });
        if in_flight.len() >= parallel {
            use futures_util::StreamExt as _;
            if let Some(result) = in_flight.next().await {
                result?;
            }
        }
    }
    while let Some(result) = futures_util::StreamExt::next(&mut in_flight).await {
        result?;
    }
    eprintln!(
        "loaded {records} records in {:.1} s ({:.0} rows/s)",
        started.elapsed().as_secs_f64(),
        f64::from(u32::try_from(records)?) / started.elapsed().as_secs_f64()
    );
    Ok((traces, requests))
}

/// Query latency of the shapes the issue names, over a store of `records` rows.
async fn query_latency(url: &str, backend: &str, records: usize) -> anyhow::Result<()> {
    let database = open(url, &[]).await?;
    let store = Store::new(database.pool().clone());
    let parallel = if backend == "postgres" { 2 } else { 1 };
    let (traces, requests) = preload(&store, records, parallel).await?;
    if let service_kit::Pool::Postgres(pool) = database.pool() {
        sqlx::raw_sql("ANALYZE log_records").execute(pool).await?;
    }
    let since = now_nanos() - 3_600_000_000_000;
    let shapes: [(&str, FilterFor); 5] = [
        (
            "service + min severity warn + last hour, 100 newest",
            Box::new(move |_| Filter {
                service: Some("profile".into()),
                min_severity: Some(13),
                since: Some(since),
                ..Filter::default()
            }),
        ),
        (
            "text, a word in every record, 100 newest",
            Box::new(|_| Filter {
                text: Some("finished".into()),
                ..Filter::default()
            }),
        ),
        (
            "text, a word in 1 of 1,000 records, 100 newest",
            Box::new(|_| Filter {
                text: Some("timeout".into()),
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
        (
            "request id",
            Box::new(move |i| Filter {
                request_id: Some(requests[i % requests.len()].clone()),
                ..Filter::default()
            }),
        ),
    ];
    for (name, filter) in shapes {
        let (p50, p99, rows) = latency(200, |i| {
            let (store, filter) = (store.clone(), filter(i));
            async move { Ok(store.query(&filter, None, 100).await?.len()) }
        })
        .await?;
        println!("| {backend} | {name} | {rows} | {p50:.2} | {p99:.2} |");
    }
    database.pool().close().await;
    drop_database(url).await?;
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
    let served = tokio::spawn(logging.service.serve(listeners, shutdown.clone()));
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
                                value: Some(any_value::Value::StringValue(service(r).into())),
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
    let _ = served.await;
    drop_database(url).await?;
    Ok(rate)
}

/// Index variants whose cost on the storage limit is measured, per backend.
fn index_variants(backend: &str) -> Vec<(&'static str, Vec<&'static str>)> {
    if backend == "sqlite" {
        return vec![
            (
                "no trace/request lookup index",
                vec![
                    "DROP INDEX log_records_trace_key",
                    "DROP INDEX log_records_request_key",
                ],
            ),
            (
                "as shipped: 64-bit hash keys (trace_key, request_key)",
                vec![],
            ),
            (
                "plus B-tree indexes on the text trace_id and request_id",
                vec![
                    "CREATE INDEX text_trace ON log_records (trace_id)",
                    "CREATE INDEX text_request ON log_records (request_id)",
                ],
            ),
            (
                "as shipped without the FTS5 table's inserts (no text search)",
                vec![
                    "DROP TABLE log_text",
                    "CREATE TABLE log_text (rowid INTEGER PRIMARY KEY, body TEXT)",
                ],
            ),
        ];
    }
    vec![
        ("as shipped", vec![]),
        (
            "without the tsvector GIN index",
            vec!["DROP INDEX log_records_body_text"],
        ),
        (
            "without the trace/request hash-key indexes",
            vec![
                "DROP INDEX log_records_trace_key",
                "DROP INDEX log_records_request_key",
            ],
        ),
        (
            "no index but (ts, id)",
            vec![
                "DROP INDEX log_records_body_text",
                "DROP INDEX log_records_service_ts",
                "DROP INDEX log_records_trace_key",
                "DROP INDEX log_records_request_key",
            ],
        ),
    ]
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
            let limit = storage_limit(&limit_url, args.records, &[]).await?;
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
                let rate = storage_limit(&url, args.records, &sql).await?;
                println!("| {backend} | {name} | {rate:.0} |");
            }
        }
    }
    Ok(())
}
