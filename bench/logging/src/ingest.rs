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
    // The text index's pending list merged too, inside the timing: a larger pending
    // list must not look faster only by leaving its merge after the clock stops.
    merge_text_index(database.pool()).await?;
    let rate = f64::from(u32::try_from(records)?) / started.elapsed().as_secs_f64();
    database.pool().close().await;
    drop_database(url).await?;
    Ok(rate)
}

/// The service's configuration for the database at `url` with extra `flags`.
pub(crate) fn service_config(
    url: &str,
    flags: &[&str],
) -> anyhow::Result<tessera_logging::config::Config> {
    use clap::Parser as _;
    let mut argv = vec![
        "tessera-logging",
        "--database-url",
        url,
        "--insecure-disable-auth",
        "--max-body-bytes",
        "16777216",
    ];
    argv.extend_from_slice(flags);
    Ok(tessera_logging::config::Config::try_parse_from(argv)?)
}

/// Records per second through `/v1/logs` (protobuf, `batch` records per request).
/// Also returns the p99 (ms) of a rare-word text query sent every 250 ms meanwhile.
pub(crate) async fn otlp_rate(
    url: &str,
    args: &Args,
    flags: &[&str],
) -> anyhow::Result<(f64, f64)> {
    let config = service_config(url, flags)?;
    let shutdown = CancellationToken::new();
    let logging = tessera_logging::build(&config, tessera_logging::Runtime::default(), &shutdown)?;
    let listeners = Listeners::loopback().await?;
    let base = format!("http://{}", listeners.public_addr()?);
    let admin = format!("http://{}", listeners.admin_addr()?);
    let database = logging.state.database.clone();
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
    // A reader beside the senders: the rare-word text query every 250 ms, to see what
    // text queries cost while records arrive.
    let reading = CancellationToken::new();
    let reader = spawn_reader(
        http.clone(),
        format!("{base}/v1/records?q=timeout&limit=100"),
        reading.clone(),
    );
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
    // As in the storage limit: the pending text-index entries merged inside the timing.
    merge_text_index(database.pool()).await?;
    let rate = f64::from(u32::try_from(requests * args.batch)?) / started.elapsed().as_secs_f64();
    reading.cancel();
    let mut samples = reader.await?;
    samples.sort_by(f64::total_cmp);
    let read_p99 = samples
        .get(samples.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or(f64::NAN);
    shutdown.cancel();
    let _ = served.await;
    drop_database(url).await?;
    Ok((rate, read_p99))
}

/// Sends the rare-word text query every 250 ms until `reading` fires; returns the
/// latencies (ms) of the answered ones.
fn spawn_reader(
    http: reqwest::Client,
    url: String,
    reading: CancellationToken,
) -> tokio::task::JoinHandle<Vec<f64>> {
    tokio::spawn(async move {
        let mut samples = Vec::new();
        while !reading.is_cancelled() {
            let started = Instant::now();
            let ok = http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                samples.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            tokio::select! {
                () = reading.cancelled() => {}
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        samples
    })
}

/// Merges what is pending in PostgreSQL's GIN indexes (`gin_clean_pending_list` on
/// every leaf GIN index; nothing on SQLite), so each measurement pays for the text
/// index of every record it stored: with the default 4 MB pending list up to ~13,000
/// records' entries would otherwise be merged only by a later insert or vacuum, after
/// the clock stopped (session 5; a larger pending list looked +25 % faster largely
/// for that reason).
pub(crate) async fn merge_text_index(pool: &service_kit::Pool) -> anyhow::Result<()> {
    if let service_kit::Pool::Postgres(pool) = pool {
        sqlx::query(
            "SELECT gin_clean_pending_list(c.oid) FROM pg_class c \
             JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'gin' AND c.relkind = 'i'",
        )
        .execute(pool)
        .await?;
    }
    Ok(())
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
            "GIN with fastupdate = off (no pending list)",
            vec![
                "DROP INDEX log_records_body_text",
                "CREATE INDEX log_records_body_text ON log_records \
                 USING gin (to_tsvector('simple', body)) WITH (fastupdate = off)",
            ],
        ),
        (
            "GIN pending list 16 MB (gin_pending_list_limit; merged by the inserts)",
            vec![
                "DROP INDEX log_records_body_text",
                "CREATE INDEX log_records_body_text ON log_records \
                 USING gin (to_tsvector('simple', body)) WITH (gin_pending_list_limit = 16384)",
            ],
        ),
        (
            "GIN pending list 64 MB",
            vec![
                "DROP INDEX log_records_body_text",
                "CREATE INDEX log_records_body_text ON log_records \
                 USING gin (to_tsvector('simple', body)) WITH (gin_pending_list_limit = 65536)",
            ],
        ),
        (
            "hash-key indexes as B-trees (before session 5)",
            vec![
                "DROP INDEX log_records_trace_key",
                "DROP INDEX log_records_request_key",
                "CREATE INDEX log_records_trace_key ON log_records (trace_key) \
                 WHERE trace_key IS NOT NULL",
                "CREATE INDEX log_records_request_key ON log_records (request_key) \
                 WHERE request_key IS NOT NULL",
            ],
        ),
        (
            "without the (service, ts, id) index",
            vec!["DROP INDEX log_records_service_ts"],
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
