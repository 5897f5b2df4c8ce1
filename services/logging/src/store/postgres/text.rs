//! Text search on PostgreSQL through text blocks (migration 0003, README "Text index per
//! block"): every insert also writes, per run of up to [`BLOCK_ROWS`] records in time
//! order, one `log_text_blocks` row with their `(ts, id)` box and the hashed keys of
//! their lexemes. A query first reads the newest rows (a word in most records fills a
//! page there), then walks the blocks holding every key of the phrase, newest first,
//! and checks the exact phrase on their rows only.

use std::fmt::Write as _;

use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Arguments, Row};

use super::{arguments, row};
use crate::record::{LogRow, NewRecord};
use crate::store::filter::{COLUMNS, Dialect, PG_PHRASE_MATCH, Param, where_clause};
use crate::store::{Bucket, Cursor, Filter};

/// Records per block. Unique tokens (ids, numbers) dominate a block's keys whatever its
/// size, so small blocks cost the insert little more than large ones, while a word in
/// one record of 1,000 then sits in about one block of eight instead of in all of them.
pub(super) const BLOCK_ROWS: usize = 128;

/// Newest rows checked before the blocks are consulted: a word in most records fills a
/// page from these, where its blocks would be every block.
const WALK_ROWS: u32 = 1_000;

/// Blocks read in the first round of the block walk; each further round doubles it.
const FIRST_ROUND_BLOCKS: i64 = 16;
/// Most blocks read in one round.
const MAX_ROUND_BLOCKS: i64 = 2_048;

/// Lexemes (the longest first) checked with `strpos(lower(body), …)` before the
/// phrase match: a cheap test that drops most rows before `to_tsvector` parses them.
const PREFILTER_LEXEMES: usize = 4;

/// The block keys of the rows in each block's `(ts, id)` box: every lexeme of
/// `to_tsvector('simple', body)` (the parser and dictionary the phrase match itself
/// uses) of the stored body, through `log_text_key`. The rows are read back inside the
/// inserting transaction rather than sent again: a second copy of the bodies as one
/// large parameter stalled ~45 ms per batch on loopback (sqlx leaves Nagle's algorithm
/// on). A box may also hold rows of another batch in flight; their keys only widen the
/// block (still a superset). Blocks take the union of their rows' keys in Rust: grouping
/// the lexeme rows in SQL cost more than parsing them (bench/README.md, logging,
/// session 4).
const KEYS_IN_BOXES: &str = "SELECT b.blk, ARRAY(SELECT log_text_key(l) \
         FROM unnest(tsvector_to_array(to_tsvector('simple', r.body))) l) \
     FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[]) WITH ORDINALITY \
         AS b(lo_ts, hi_ts, lo_id, hi_id, blk) \
     CROSS JOIN LATERAL (SELECT body FROM log_records WHERE ts >= b.lo_ts \
         AND ts <= b.hi_ts AND id >= b.lo_id AND id <= b.hi_id) r";

/// Writes the text blocks of `records`, just copied with `ids`, in the caller's
/// transaction. Records are grouped in time order, so each block's `ts` range is as
/// narrow as the batch allows and a record far from the others in time lands in a
/// block of its own neighbours.
pub(super) async fn insert_blocks(
    conn: &mut PgConnection,
    records: &[NewRecord],
    ids: &[i64],
) -> Result<(), sqlx::Error> {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_unstable_by_key(|&i| (records[i].time_unix_nano, ids[i]));
    let blocks = order.len().div_ceil(BLOCK_ROWS);
    let (mut lo_ts, mut hi_ts) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks));
    let (mut lo_id, mut hi_id) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks));
    for chunk in order.chunks(BLOCK_ROWS) {
        lo_ts.push(records[chunk[0]].time_unix_nano);
        hi_ts.push(records[chunk[chunk.len() - 1]].time_unix_nano);
        lo_id.push(chunk.iter().map(|&i| ids[i]).min().unwrap_or_default());
        hi_id.push(chunk.iter().map(|&i| ids[i]).max().unwrap_or_default());
    }
    let keyed: Vec<(i64, Vec<i32>)> = sqlx::query_as(KEYS_IN_BOXES)
        .bind(&lo_ts)
        .bind(&hi_ts)
        .bind(&lo_id)
        .bind(&hi_id)
        .fetch_all(&mut *conn)
        .await?;
    let mut words: Vec<Vec<i32>> = vec![Vec::new(); blocks];
    for (blk, keys) in keyed {
        if let Some(block) = usize::try_from(blk - 1).ok().and_then(|b| words.get_mut(b)) {
            block.extend(keys);
        }
    }
    // Only integers go into this statement, formatted: one message, no parameters.
    let mut sql = String::from(
        "INSERT INTO log_text_blocks (min_ts, max_ts, first_id, last_id, words) VALUES ",
    );
    let mut written = 0;
    for (b, mut keys) in words.into_iter().enumerate() {
        if keys.is_empty() {
            // No lexeme in any body: no text query can match these records.
            continue;
        }
        keys.sort_unstable();
        keys.dedup();
        let _ = write!(
            sql,
            "{}({}, {}, {}, {}, '{{",
            if written == 0 { "" } else { ", " },
            lo_ts[b],
            hi_ts[b],
            lo_id[b],
            hi_id[b]
        );
        for (k, key) in keys.iter().enumerate() {
            let _ = write!(sql, "{}{key}", if k == 0 { "" } else { "," });
        }
        sql.push_str("}')");
        written += 1;
    }
    if written > 0 {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Whether `lower(body)` lowercases each character exactly as the `simple` dictionary
/// does (`towlower` of the database's `LC_CTYPE`): true for the libc locale provider
/// with UTF-8. Then every lexeme of a body is a substring of `lower(body)`, because the
/// parser's tokens are substrings of the body; under ICU `lower` works on whole strings
/// and may differ, so the prefilter is left out.
pub(super) async fn lowercase_matches_dictionary(pool: &PgPool) -> Result<bool, sqlx::Error> {
    // `datlocprovider` exists from PostgreSQL 15 on; before, only libc existed.
    sqlx::query_scalar(
        "SELECT coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') = 'c' \
         AND pg_encoding_to_char(d.encoding) = 'UTF8' \
         FROM pg_database d WHERE d.datname = current_database()",
    )
    .fetch_one(pool)
    .await
}

/// The phrase's lexemes and their block keys, from the parser the match uses.
async fn terms(pool: &PgPool, text: &str) -> Result<(Vec<String>, Vec<i32>), sqlx::Error> {
    let row = sqlx::query(
        "SELECT w, ARRAY(SELECT DISTINCT log_text_key(l) FROM unnest(w) l) AS keys \
         FROM (SELECT tsvector_to_array(to_tsvector('simple', $1)) AS w) q",
    )
    .bind(text)
    .fetch_one(pool)
    .await?;
    Ok((row.try_get("w")?, row.try_get("keys")?))
}

/// The filter's conditions without the text, then the text conditions, numbered on.
fn conditions(
    filter: &Filter,
    cursor: Option<Cursor>,
    lexemes: &[String],
    prefilter: bool,
) -> (String, String, Vec<Param>) {
    let without_text = Filter {
        text: None,
        ..filter.clone()
    };
    let (clause, mut params) = where_clause(&without_text, cursor, Dialect::Postgres);
    let mut text = String::from("TRUE");
    if prefilter {
        let mut longest: Vec<&String> = lexemes.iter().collect();
        longest.sort_by_key(|l| std::cmp::Reverse(l.len()));
        for lexeme in longest.into_iter().take(PREFILTER_LEXEMES) {
            params.push(Param::Text(lexeme.clone()));
            let _ = write!(text, " AND strpos(lower(body), ${}) > 0", params.len());
        }
    }
    params.push(Param::Text(filter.text.clone().unwrap_or_default()));
    text.push_str(" AND ");
    text.push_str(&PG_PHRASE_MATCH.replace("{0}", &format!("${}", params.len())));
    (clause, text, params)
}

/// Bounds on a block's `min_ts`/`max_ts` for blocks that can hold a row of the range
/// and before the cursor: `max_ts >= low` and `min_ts < high`.
fn block_bounds(filter: &Filter, cursor: Option<Cursor>) -> (i64, i64) {
    let low = filter.since.unwrap_or(i64::MIN);
    let mut high = filter.until.unwrap_or(i64::MAX);
    if let Some(cursor) = cursor {
        high = high.min(cursor.ts.saturating_add(1));
    }
    (low, high)
}

const SELECTED: &str = "attributes::text AS attributes, resource::text AS resource";

pub(super) async fn query(
    pool: &PgPool,
    prefilter: bool,
    filter: &Filter,
    cursor: Option<Cursor>,
    limit: u32,
) -> Result<Vec<LogRow>, sqlx::Error> {
    let (lexemes, keys) = terms(pool, filter.text.as_deref().unwrap_or_default()).await?;
    if keys.is_empty() {
        // No lexeme (only punctuation): the phrase match is false for every row.
        return Ok(Vec::new());
    }
    let (clause, text, params) = conditions(filter, cursor, &lexemes, prefilter);
    let walk = format!(
        "SELECT {COLUMNS}, {SELECTED} FROM (SELECT * FROM log_records WHERE {clause} \
         ORDER BY ts DESC, id DESC LIMIT {WALK_ROWS}) w \
         WHERE {text} ORDER BY ts DESC, id DESC LIMIT {limit}"
    );
    let mut found: Vec<LogRow> =
        sqlx::query_with(sqlx::AssertSqlSafe(walk), arguments(params.clone())?)
            .fetch_all(pool)
            .await?
            .iter()
            .map(row)
            .collect::<Result<_, _>>()?;
    let limit = limit as usize;
    if found.len() == limit {
        return Ok(found);
    }
    let n = params.len();
    let rows_in_blocks = format!(
        "SELECT {COLUMNS}, {SELECTED} \
         FROM unnest(${}::int8[], ${}::int8[], ${}::int8[], ${}::int8[]) \
             AS blk(b_min_ts, b_max_ts, b_first_id, b_last_id) \
         CROSS JOIN LATERAL (SELECT * FROM log_records WHERE ts >= b_min_ts AND ts <= b_max_ts \
             AND id >= b_first_id AND id <= b_last_id AND {clause} AND {text}) r \
         ORDER BY ts DESC, id DESC LIMIT {limit}",
        n + 1,
        n + 2,
        n + 3,
        n + 4
    );
    let (low, high) = block_bounds(filter, cursor);
    let mut after = (i64::MAX, i64::MAX);
    let mut round = FIRST_ROUND_BLOCKS;
    loop {
        let blocks: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT max_ts, id, min_ts, first_id, last_id FROM log_text_blocks \
             WHERE words @> $1 AND max_ts >= $2 AND min_ts < $3 AND (max_ts, id) < ($4, $5) \
             ORDER BY max_ts DESC, id DESC LIMIT $6",
        )
        .bind(&keys)
        .bind(low)
        .bind(high)
        .bind(after.0)
        .bind(after.1)
        .bind(round)
        .fetch_all(pool)
        .await?;
        let Some(&(oldest_max_ts, oldest_id, ..)) = blocks.last() else {
            break;
        };
        let mut args = arguments(params.clone())?;
        let column = |pick: fn(&(i64, i64, i64, i64, i64)) -> i64| -> Vec<i64> {
            blocks.iter().map(pick).collect()
        };
        args.add(column(|b| b.2)).map_err(sqlx::Error::Encode)?;
        args.add(column(|b| b.0)).map_err(sqlx::Error::Encode)?;
        args.add(column(|b| b.3)).map_err(sqlx::Error::Encode)?;
        args.add(column(|b| b.4)).map_err(sqlx::Error::Encode)?;
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(rows_in_blocks.clone()), args)
            .fetch_all(pool)
            .await?;
        for r in &rows {
            found.push(row(r)?);
        }
        // Blocks' boxes may overlap (batches in flight together): a row can come twice.
        found.sort_unstable_by_key(|r| std::cmp::Reverse((r.time_unix_nano, r.id)));
        found.dedup_by_key(|r| r.id);
        found.truncate(limit);
        // Every block not read yet ends at or before `oldest_max_ts`: once the page's
        // last row is newer than that, no unread row can belong on the page.
        let full = found.len() == limit
            && found
                .last()
                .is_some_and(|r| r.time_unix_nano > oldest_max_ts);
        if full || i64::try_from(blocks.len()).unwrap_or(i64::MAX) < round {
            break;
        }
        after = (oldest_max_ts, oldest_id);
        round = (round * 2).min(MAX_ROUND_BLOCKS);
    }
    Ok(found)
}

pub(super) async fn histogram(
    pool: &PgPool,
    prefilter: bool,
    filter: &Filter,
    bucket: i64,
) -> Result<Vec<Bucket>, sqlx::Error> {
    let (lexemes, keys) = terms(pool, filter.text.as_deref().unwrap_or_default()).await?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (clause, text, params) = conditions(filter, None, &lexemes, prefilter);
    let (low, high) = block_bounds(filter, None);
    let n = params.len();
    let sql = format!(
        "SELECT (ts / {bucket}) * {bucket} AS b, count(*) AS n FROM (\
           SELECT DISTINCT r.id, r.ts FROM (\
             SELECT min_ts AS b_min_ts, max_ts AS b_max_ts, first_id AS b_first_id, \
                    last_id AS b_last_id FROM log_text_blocks \
             WHERE words @> ${} AND max_ts >= ${} AND min_ts < ${}) blk \
           CROSS JOIN LATERAL (SELECT id, ts FROM log_records WHERE ts >= b_min_ts \
             AND ts <= b_max_ts AND id >= b_first_id AND id <= b_last_id \
             AND {clause} AND {text}) r) m \
         GROUP BY b ORDER BY b",
        n + 1,
        n + 2,
        n + 3
    );
    let mut args = arguments(params)?;
    args.add(keys).map_err(sqlx::Error::Encode)?;
    args.add(low).map_err(sqlx::Error::Encode)?;
    args.add(high).map_err(sqlx::Error::Encode)?;
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
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
