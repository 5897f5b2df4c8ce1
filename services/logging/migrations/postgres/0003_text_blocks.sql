-- Text search indexed per block of records instead of per row (README, "Text index
-- per block"): each insert transaction also writes, per run of up to 128 records in
-- time order, one row with the records' (ts, id) box and the keys of every lexeme of
-- their bodies. A text query finds candidate blocks through the GIN index on `words`,
-- then checks the exact phrase on those blocks' rows only.
--
-- A key is a lexeme of `to_tsvector('simple', body)` (the parser and dictionary the
-- phrase match itself uses) hashed into 2^16 buckets: a lexeme always lands in the
-- same bucket, so a block holding it always matches (a superset of the true matches);
-- a collision only costs reading a block that does not match. The bounded key space
-- turns GIN insertions into appends to existing posting lists instead of new entries;
-- with about 270 keys per block a lexeme not in a block still hits it 1 time in 250
-- (measured: bench/README.md, logging, session 4).
CREATE FUNCTION log_text_key(lexeme TEXT) RETURNS INTEGER
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT hashtext(lexeme) & 65535 $$;

CREATE TABLE log_text_blocks (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    min_ts   BIGINT    NOT NULL,
    max_ts   BIGINT    NOT NULL,
    first_id BIGINT    NOT NULL,
    last_id  BIGINT    NOT NULL,
    words    INTEGER[] NOT NULL
);
-- Without the pending list each block's keys go straight into the tree, sorted: with
-- few, long-lived keys that measured cheaper than collecting and merging them (and a
-- text query never scans an unmerged list).
CREATE INDEX log_text_blocks_words ON log_text_blocks USING gin (words) WITH (fastupdate = off);
-- Retention deletes the blocks of expired days by `max_ts`.
CREATE INDEX log_text_blocks_max_ts ON log_text_blocks (max_ts);

-- Records stored before this migration get blocks of 128 in (ts, id) order.
WITH r AS (
    SELECT id, ts, body, (row_number() OVER (ORDER BY ts, id) - 1) / 128 AS blk
    FROM log_records
)
INSERT INTO log_text_blocks (min_ts, max_ts, first_id, last_id, words)
SELECT b.min_ts, b.max_ts, b.first_id, b.last_id, w.words
FROM (
    SELECT blk, min(ts) AS min_ts, max(ts) AS max_ts, min(id) AS first_id, max(id) AS last_id
    FROM r GROUP BY blk
) b
JOIN (
    SELECT blk, array_agg(DISTINCT log_text_key(l)) AS words
    FROM r, unnest(tsvector_to_array(to_tsvector('simple', r.body))) l
    GROUP BY blk
) w USING (blk);

-- The per-row tsvector index is what capped inserts (bench/README.md, logging).
DROP INDEX log_records_body_text;
