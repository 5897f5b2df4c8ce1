//! SQLite: multi-row inserts in one transaction (the single writer task calls this),
//! FTS5 for text, row deletes for retention.

use sqlx::sqlite::{SqliteArguments, SqlitePool, SqliteRow};
use sqlx::{Arguments, Row};

use super::filter::{COLUMNS, Dialect, Param, fts_phrase, where_clause};
use super::{Bucket, Cursor, Filter};
use crate::record::{INFO, LogRow, NewRecord, lookup_key};

/// Rows per INSERT statement: 12 parameters each stays far below SQLite's limit of
/// 32,766, and one statement per 200 rows amortises the per-statement cost.
const ROWS_PER_STATEMENT: usize = 200;

/// The writer's page cache (KiB, SQLite's negative `cache_size`): random trace and
/// request keys touch pages all over their indexes; with SQLite's default 2 MiB the
/// cache spills dirty pages to the WAL mid-transaction and re-reads them, and inserts
/// fell from ~70k to ~15k rows/s between 50,000 and 1 million rows (bench/logging).
const WRITER_CACHE_KIB: i64 = 262_144;

/// Rows deleted per retention statement, so the writer is never blocked for long.
const EXPIRE_CHUNK: i64 = 5_000;

pub(super) async fn insert(
    pool: &SqlitePool,
    records: &[NewRecord],
) -> Result<Vec<i64>, sqlx::Error> {
    // IMMEDIATE takes the write lock up front, so a busy database makes us wait (busy
    // timeout) instead of failing when a read transaction would have to upgrade.
    let mut conn = pool.acquire().await?;
    // Per connection; cheap to repeat, and whichever pooled connection writes gets it.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "PRAGMA cache_size = -{WRITER_CACHE_KIB}"
    )))
    .execute(&mut *conn)
    .await?;
    let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
    // The writer task is the only one inserting: ids continue from the largest.
    let max: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM log_records")
        .fetch_one(&mut *tx)
        .await?;
    let first = max.unwrap_or(0) + 1;
    let ids: Vec<i64> = (first..).take(records.len()).collect();
    for (chunk, chunk_ids) in records
        .chunks(ROWS_PER_STATEMENT)
        .zip(ids.chunks(ROWS_PER_STATEMENT))
    {
        let mut sql = String::from(
            "INSERT INTO log_records (id, ts, observed_ts, service, severity_number, \
             severity_text, body, trace_id, span_id, request_id, trace_key, request_key, \
             attributes, resource) VALUES ",
        );
        let mut text_sql = String::from("INSERT INTO log_text (rowid, body) VALUES ");
        let mut args = SqliteArguments::default();
        let mut text_args = SqliteArguments::default();
        for (i, (record, id)) in chunk.iter().zip(chunk_ids).enumerate() {
            if i > 0 {
                sql.push(',');
                text_sql.push(',');
            }
            sql.push_str("(?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
            text_sql.push_str("(?,?)");
            bind_record(&mut args, record, *id).map_err(sqlx::Error::Encode)?;
            text_args.add(*id).map_err(sqlx::Error::Encode)?;
            text_args
                .add(record.body.clone())
                .map_err(sqlx::Error::Encode)?;
        }
        sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .execute(&mut *tx)
            .await?;
        sqlx::query_with(sqlx::AssertSqlSafe(text_sql), text_args)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(ids)
}

fn bind_record(
    args: &mut SqliteArguments,
    record: &NewRecord,
    id: i64,
) -> Result<(), sqlx::error::BoxDynError> {
    args.add(id)?;
    args.add(record.time_unix_nano)?;
    args.add(record.observed_time_unix_nano)?;
    args.add(record.service.clone())?;
    args.add(record.severity_number)?;
    args.add(record.severity_text.clone())?;
    args.add(record.body.clone())?;
    args.add(record.trace_id.clone())?;
    args.add(record.span_id.clone())?;
    args.add(record.request_id.clone())?;
    args.add(record.trace_id.as_deref().map(lookup_key))?;
    args.add(record.request_id.as_deref().map(lookup_key))?;
    args.add(record.attributes_json.clone())?;
    args.add(record.resource_json.to_string())?;
    Ok(())
}

fn arguments(params: Vec<Param>) -> Result<SqliteArguments, sqlx::Error> {
    let mut args = SqliteArguments::default();
    for param in params {
        match param {
            Param::Int(i) => args.add(i),
            Param::Text(t) => args.add(t),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

/// Above this many FTS5 matches a text query reads records newest first and probes the
/// index per row; at or below it, it collects the matches and sorts them.
const FEW_MATCHES: i64 = 10_000;

/// How to run a text condition: collecting every match of a common word costs seconds
/// at millions of records, probing row by row for a rare word costs a full scan. One
/// bounded count of the matches (at most `FEW_MATCHES + 1` rowids read) decides.
async fn text_dialect(pool: &SqlitePool, filter: &Filter) -> Result<Dialect, sqlx::Error> {
    let Some(text) = &filter.text else {
        return Ok(Dialect::Sqlite);
    };
    let matches: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT rowid FROM log_text WHERE log_text MATCH $1 LIMIT $2)",
    )
    .bind(fts_phrase(text))
    .bind(FEW_MATCHES + 1)
    .fetch_one(pool)
    .await?;
    Ok(if matches > FEW_MATCHES {
        Dialect::SqliteManyMatches
    } else {
        Dialect::Sqlite
    })
}

pub(super) async fn query(
    pool: &SqlitePool,
    filter: &Filter,
    cursor: Option<Cursor>,
    limit: u32,
) -> Result<Vec<LogRow>, sqlx::Error> {
    let dialect = text_dialect(pool, filter).await?;
    let (clause, params) = where_clause(filter, cursor, dialect);
    let sql = format!(
        "SELECT {COLUMNS}, attributes, resource FROM log_records WHERE {clause} \
         ORDER BY ts DESC, id DESC LIMIT {limit}"
    );
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), arguments(params)?)
        .fetch_all(pool)
        .await?;
    rows.iter().map(row).collect()
}

fn row(row: &SqliteRow) -> Result<LogRow, sqlx::Error> {
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
    pool: &SqlitePool,
    filter: &Filter,
    bucket: i64,
) -> Result<Vec<Bucket>, sqlx::Error> {
    let (clause, params) = where_clause(filter, None, Dialect::Sqlite);
    // `bucket` is a validated integer, formatted in as a constant so SQLite can fold it.
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
    pool: &SqlitePool,
    debug_cutoff: i64,
    cutoff: i64,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM log_records WHERE ts < $1 OR (ts < $2 AND severity_number < $3) \
             LIMIT $4",
        )
        .bind(cutoff)
        .bind(debug_cutoff)
        .bind(INFO)
        .bind(EXPIRE_CHUNK)
        .fetch_all(&mut *tx)
        .await?;
        if ids.is_empty() {
            return Ok(total);
        }
        let list = serde_json::to_string(&ids).unwrap_or_default();
        sqlx::query("DELETE FROM log_text WHERE rowid IN (SELECT value FROM json_each($1))")
            .bind(&list)
            .execute(&mut *tx)
            .await?;
        let done =
            sqlx::query("DELETE FROM log_records WHERE id IN (SELECT value FROM json_each($1))")
                .bind(&list)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        total += done.rows_affected();
    }
}
