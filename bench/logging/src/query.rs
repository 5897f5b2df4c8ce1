//! Query latency of the shapes the issue names over a store preloaded through the same
//! storage path, records spread over 24 hours.

use std::future::Future;
use std::time::Instant;

use tessera_logging::record::NewRecord;
use tessera_logging::store::{Filter, Store};

use crate::data::{new_record, now_nanos};
use crate::database::{drop_database, open};

/// p50 and p99 of `runs` executions of `query`, in milliseconds, and the rows the
/// last run returned.
pub(crate) async fn latency<F, Fut>(runs: usize, mut query: F) -> anyhow::Result<(f64, f64, usize)>
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
pub(crate) type FilterFor = Box<dyn Fn(usize) -> Filter>;

/// Loads `records` rows spread evenly over the last 24 hours through the store (two
/// batches in flight on PostgreSQL, one writer on SQLite); returns every 997th trace
/// id and request id for the lookups.
pub(crate) async fn preload(
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
pub(crate) async fn query_latency(url: &str, backend: &str, records: usize) -> anyhow::Result<()> {
    let database = open(url, &[]).await?;
    let store = Store::new(database.pool().clone());
    let parallel = store.parallel_writes();
    let (traces, requests) = preload(&store, records, parallel).await?;
    if let service_kit::Pool::Postgres(pool) = database.pool() {
        sqlx::raw_sql("ANALYZE log_records").execute(pool).await?;
    }
    let since = now_nanos() - 3_600_000_000_000;
    let one = format!("request {} finished", records / 10);
    let shapes: [(&str, FilterFor); 6] = [
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
            "text, a phrase in one old record",
            Box::new(move |_| Filter {
                text: Some(one.clone()),
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
