//! PostgreSQL: one binary `COPY` per batch (no parameter limit, no per-row statement
//! work), daily range partitions created before writing, retention by dropping
//! partitions.

use std::collections::BTreeSet;
use std::sync::Mutex;

use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::{Arguments, Row};

use super::filter::{COLUMNS, Dialect, Param, where_clause};
use super::{Bucket, Cursor, DAY_NANOS, Filter};
use crate::record::{INFO, LogRow, NewRecord, lookup_key};

/// Days (since the epoch) whose partition is known to exist.
#[derive(Debug, Default)]
pub(super) struct Partitions(Mutex<BTreeSet<i64>>);

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

/// The binary COPY statement; column order matches [`encode_copy`].
const COPY: &str = "COPY log_records (id, ts, observed_ts, service, severity_number, \
     severity_text, body, trace_id, span_id, request_id, trace_key, request_key, attributes, \
     resource) FROM STDIN (FORMAT binary)";

/// Columns per row in [`COPY`].
const COPY_COLUMNS: i16 = 14;

pub(super) async fn insert(
    pool: &PgPool,
    partitions: &Partitions,
    records: &[NewRecord],
) -> Result<Vec<i64>, sqlx::Error> {
    let days: BTreeSet<i64> = records
        .iter()
        .map(|r| r.time_unix_nano.div_euclid(DAY_NANOS))
        .collect();
    for day in days {
        ensure_partition(pool, partitions, day).await?;
    }
    let mut conn = pool.acquire().await?;
    let n = i64::try_from(records.len()).unwrap_or(i64::MAX);
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT nextval('log_records_id_seq') FROM generate_series(1, $1)")
            .bind(n)
            .fetch_all(&mut *conn)
            .await?;
    let data = encode_copy(records, &ids);
    // One COPY is one statement: all rows or none, without an explicit transaction.
    let mut copy = conn.copy_in_raw(COPY).await?;
    let sent = copy.send(data).await.map(drop);
    if let Err(error) = sent {
        let _ = copy.abort("sending the rows failed").await;
        return Err(error);
    }
    copy.finish().await?;
    Ok(ids)
}

/// `records` with `ids` in PostgreSQL's binary COPY format: a header, per row the field
/// count and each field as a length (-1 for NULL) and its bytes (big-endian integers,
/// UTF-8 text, `jsonb` as version 1 and the JSON text), and a trailer.
pub(super) fn encode_copy(records: &[NewRecord], ids: &[i64]) -> Vec<u8> {
    fn int8(out: &mut Vec<u8>, v: i64) {
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&v.to_be_bytes());
    }
    fn opt_int8(out: &mut Vec<u8>, v: Option<i64>) {
        match v {
            Some(v) => int8(out, v),
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    fn len(n: usize) -> [u8; 4] {
        i32::try_from(n).unwrap_or(i32::MAX).to_be_bytes()
    }
    // PostgreSQL text cannot hold NUL (OTLP strings can), nor jsonb the `\u0000` escape.
    fn text(out: &mut Vec<u8>, v: &str) {
        let cleaned;
        let v = if v.contains('\0') {
            cleaned = v.replace('\0', "\u{fffd}");
            cleaned.as_str()
        } else {
            v
        };
        out.extend_from_slice(&len(v.len()));
        out.extend_from_slice(v.as_bytes());
    }
    fn opt_text(out: &mut Vec<u8>, v: Option<&str>) {
        match v {
            Some(v) => text(out, v),
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    fn jsonb(out: &mut Vec<u8>, v: &str) {
        let cleaned;
        let v = if v.contains("\\u0000") {
            cleaned = v.replace("\\u0000", "\\ufffd");
            cleaned.as_str()
        } else {
            v
        };
        out.extend_from_slice(&len(v.len() + 1));
        out.push(1);
        out.extend_from_slice(v.as_bytes());
    }
    let estimate: usize = records
        .iter()
        .map(|r| 160 + r.body.len() + r.attributes_json.len() + r.resource_json.len())
        .sum();
    let mut out = Vec::with_capacity(estimate + 32);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    for (r, id) in records.iter().zip(ids) {
        out.extend_from_slice(&COPY_COLUMNS.to_be_bytes());
        int8(&mut out, *id);
        int8(&mut out, r.time_unix_nano);
        int8(&mut out, r.observed_time_unix_nano);
        text(&mut out, &r.service);
        out.extend_from_slice(&4i32.to_be_bytes());
        out.extend_from_slice(&r.severity_number.to_be_bytes());
        text(&mut out, &r.severity_text);
        text(&mut out, &r.body);
        opt_text(&mut out, r.trace_id.as_deref());
        opt_text(&mut out, r.span_id.as_deref());
        opt_text(&mut out, r.request_id.as_deref());
        opt_int8(&mut out, r.trace_id.as_deref().map(lookup_key));
        opt_int8(&mut out, r.request_id.as_deref().map(lookup_key));
        jsonb(&mut out, &r.attributes_json);
        jsonb(&mut out, &r.resource_json);
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

fn arguments(params: Vec<Param>) -> Result<PgArguments, sqlx::Error> {
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
    filter: &Filter,
    cursor: Option<Cursor>,
    limit: u32,
) -> Result<Vec<LogRow>, sqlx::Error> {
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

fn row(row: &PgRow) -> Result<LogRow, sqlx::Error> {
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

pub(super) async fn histogram(
    pool: &PgPool,
    filter: &Filter,
    bucket: i64,
) -> Result<Vec<Bucket>, sqlx::Error> {
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
    partitions: &Partitions,
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
    partitions.forget_before(first_kept_day);
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
