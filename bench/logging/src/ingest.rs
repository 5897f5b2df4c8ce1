//! Ingestion: the storage limit (`Store::insert` straight into the schema) beside the
//! OTLP/HTTP rate of the in-process service, and the index variants' cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use service_kit::{CancellationToken, Listeners};
use tessera_logging::record::NewRecord;
use tessera_logging::store::Store;

use crate::Args;
use crate::data::{new_record, now_nanos, otlp_record, service};
use crate::database::{drop_database, open};

/// Records per second straight into the store, in transactions of 5,000, with as many
/// in flight as the service's writer keeps.
pub(crate) async fn storage_limit(
    url: &str,
    records: usize,
    limit_batch: usize,
    extra_sql: &[&str],
) -> anyhow::Result<f64> {
    let database = open(url, extra_sql).await?;
    let store = Store::new(database.pool().clone());
    let now = now_nanos();
    let batches: Vec<Vec<NewRecord>> = (0..records)
        .map(|i| new_record(i, now))
        .collect::<Vec<_>>()
        .chunks(limit_batch)
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

/// Records per second through `/v1/logs` (protobuf, `batch` records per request).
pub(crate) async fn otlp_rate(url: &str, args: &Args) -> anyhow::Result<f64> {
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
pub(crate) fn index_variants(backend: &str) -> Vec<(&'static str, Vec<&'static str>)> {
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
