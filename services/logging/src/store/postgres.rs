//! PostgreSQL: one binary `COPY` per batch (no parameter limit, no per-row statement
//! work) plus its text blocks in the same transaction, daily range partitions created
//! before writing, retention by dropping partitions.

mod copy;
mod text;

use std::collections::BTreeSet;
use std::sync::Mutex;

use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::{Arguments, Row};
use tokio::sync::OnceCell;

use super::filter::{COLUMNS, Dialect, Param, where_clause};
use super::{Bucket, Cursor, DAY_NANOS, Filter};
use crate::record::{INFO, LogRow, NewRecord};

/// What the store remembers about its PostgreSQL database.
#[derive(Debug, Default)]
pub(super) struct State {
    partitions: Partitions,
    /// Whether `lower(body)` lowercases exactly like the text-search dictionary (see
    /// [`text::lowercase_matches_dictionary`]); asked once.
    lowercase_prefilter: OnceCell<bool>,
}

/// Days (since the epoch) whose partition is known to exist.
#[derive(Debug, Default)]
struct Partitions(Mutex<BTreeSet<i64>>);

impl Partitions {
    fn known(&self, day: i64) -> bool {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&day)
    }

    fn add(&self, day: i64) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(day);
    }

    fn forget_before(&self, day: i64) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|d| *d >= day);
    }
}

fn partition_name(day: i64) -> String {
    format!("log_records_d{day}")
}

async fn ensure_partition(
    pool: &PgPool,
    partitions: &Partitions,
    day: i64,
) -> Result<(), sqlx::Error> {
    if partitions.known(day) {
        return Ok(());
    }
    // Only integers are formatted into this statement.
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} PARTITION OF log_records FOR VALUES FROM ({}) TO ({})",
        partition_name(day),
        day * DAY_NANOS,
        (day + 1) * DAY_NANOS
    );
    match sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(pool).await {
        Ok(_) => {}
        // Another replica created it between our check and our statement.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P07") => {}
        Err(e) => return Err(e),
    }
    partitions.add(day);
    Ok(())
}

pub(super) async fn insert(
    pool: &PgPool,
    state: &State,
    records: &[NewRecord],
) -> Result<Vec<i64>, sqlx::Error> {
    let days: BTreeSet<i64> = records
        .iter()
        .map(|r| r.time_unix_nano.div_euclid(DAY_NANOS))
        .collect();
    for day in days {
        ensure_partition(pool, &state.partitions, day).await?;
    }
    let n = i64::try_from(records.len()).unwrap_or(i64::MAX);
    // Rows and text blocks in one transaction: one WAL flush per batch, and a committed
    // row always has its block.
    let mut tx = pool.begin().await?;
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT nextval('log_records_id_seq') FROM generate_series(1, $1)")
            .bind(n)
            .fetch_all(&mut *tx)
            .await?;
    let data = copy::encode_copy(records, &ids);
    let mut copy = tx.copy_in_raw(copy::COPY).await?;
    let sent = copy.send(data).await.map(drop);
    if let Err(error) = sent {
        let _ = copy.abort("sending the rows failed").await;
        return Err(error);
    }
    copy.finish().await?;
    text::insert_blocks(&mut tx, records, &ids).await?;
    tx.commit().await?;
    Ok(ids)
}

pub(super) fn arguments(params: Vec<Param>) -> Result<PgArguments, sqlx::Error> {
    let mut args = PgArguments::default();
    for param in params {
        match param {
            Param::Int(i) => args.add(i),
            Param::Text(t) => args.add(t),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

pub(super) async fn query(
    pool: &PgPool,
    state: &State,
    filter: &Filter,
    cursor: Option<Cursor>,
    limit: u32,
) -> Result<Vec<LogRow>, sqlx::Error> {
    if filter.text.is_some() {
        let prefilter = lowercase_prefilter(pool, state).await?;
        return text::query(pool, prefilter, filter, cursor, limit).await;
    }
    let (clause, params) = where_clause(filter, cursor, Dialect::Postgres);
    let sql = format!(
        "SELECT {COLUMNS}, attributes::text AS attributes, resource::text AS resource \
         FROM log_records WHERE {clause} ORDER BY ts DESC, id DESC LIMIT {limit}"
    );
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments(params)?)
        .fetch_all(pool)
        .await?;
    rows.iter().map(row).collect()
}

pub(super) fn row(row: &PgRow) -> Result<LogRow, sqlx::Error> {
    let attributes: String = row.try_get("attributes")?;
    let resource: String = row.try_get("resource")?;
    Ok(LogRow {
        id: row.try_get("id")?,
        time_unix_nano: row.try_get("ts")?,
        observed_time_unix_nano: row.try_get("observed_ts")?,
        service: row.try_get("service")?,
        severity_number: row.try_get("severity_number")?,
        severity_text: row.try_get("severity_text")?,
        body: row.try_get("body")?,
        trace_id: row.try_get("trace_id")?,
        span_id: row.try_get("span_id")?,
        request_id: row.try_get("request_id")?,
        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
        resource: serde_json::from_str(&resource).unwrap_or_default(),
    })
}

/// Whether [`text`] may narrow rows with `lower(body)` before the phrase match.
async fn lowercase_prefilter(pool: &PgPool, state: &State) -> Result<bool, sqlx::Error> {
    state
        .lowercase_prefilter
        .get_or_try_init(|| text::lowercase_matches_dictionary(pool))
        .await
        .copied()
}

pub(super) async fn histogram(
    pool: &PgPool,
    state: &State,
    filter: &Filter,
    bucket: i64,
) -> Result<Vec<Bucket>, sqlx::Error> {
    if filter.text.is_some() {
        let prefilter = lowercase_prefilter(pool, state).await?;
        return text::histogram(pool, prefilter, filter, bucket).await;
    }
    let (clause, params) = where_clause(filter, None, Dialect::Postgres);
    let sql = format!(
        "SELECT (ts / {bucket}) * {bucket} AS b, count(*) AS n FROM log_records \
         WHERE {clause} GROUP BY b ORDER BY b"
    );
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments(params)?)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Bucket {
                start_unix_nano: r.try_get("b")?,
                count: r.try_get("n")?,
            })
        })
        .collect()
}

pub(super) async fn expire(
    pool: &PgPool,
    state: &State,
    debug_cutoff: i64,
    cutoff: i64,
) -> Result<u64, sqlx::Error> {
    // Whole days before the cutoff: drop their partitions.
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i \
         JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent \
         WHERE p.relname = 'log_records' AND c.relname LIKE 'log_records_d%'",
    )
    .fetch_all(pool)
    .await?;
    let first_kept_day = cutoff.div_euclid(DAY_NANOS);
    let mut dropped = 0u64;
    for name in names {
        let Some(day) = name
            .strip_prefix("log_records_d")
            .and_then(|d| d.parse::<i64>().ok())
        else {
            continue;
        };
        if day < first_kept_day {
            // The name was parsed back to an integer: formatting it in is safe.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP TABLE IF EXISTS {}",
                partition_name(day)
            )))
            .execute(pool)
            .await?;
            dropped += 1;
        }
    }
    state.partitions.forget_before(first_kept_day);
    // Text blocks of expired records (by then they match no row; reading them would
    // only cost time). Blocks of deleted debug rows stay: a superset is still correct.
    sqlx::query("DELETE FROM log_text_blocks WHERE max_ts < $1")
        .bind(cutoff)
        .execute(pool)
        .await?;
    // Partial days and debug records: row deletes, pruned to the old partitions.
    let deleted =
        sqlx::query("DELETE FROM log_records WHERE ts < $1 OR (ts < $2 AND severity_number < $3)")
            .bind(cutoff)
            .bind(debug_cutoff)
            .bind(INFO)
            .execute(pool)
            .await?;
    Ok(dropped + deleted.rows_affected())
}
