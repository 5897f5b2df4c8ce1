-- Log records, range-partitioned by day on `ts` (nanoseconds since the epoch) so
-- retention drops whole partitions. The service creates partitions before writing.
-- `trace_key`/`request_key`: 64-bit hashes of the ids, indexed instead of the text
-- (README, "Indexes").
CREATE SEQUENCE log_records_id_seq;
CREATE TABLE log_records (
    id              BIGINT  NOT NULL DEFAULT nextval('log_records_id_seq'),
    ts              BIGINT  NOT NULL,
    observed_ts     BIGINT  NOT NULL,
    service         TEXT    NOT NULL,
    severity_number INTEGER NOT NULL,
    severity_text   TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    trace_id        TEXT,
    span_id         TEXT,
    request_id      TEXT,
    trace_key       BIGINT,
    request_key     BIGINT,
    attributes      JSONB   NOT NULL,
    resource        JSONB   NOT NULL
) PARTITION BY RANGE (ts);
CREATE INDEX log_records_ts ON log_records (ts, id);
CREATE INDEX log_records_service_ts ON log_records (service, ts);
CREATE INDEX log_records_trace_key ON log_records (trace_key) WHERE trace_key IS NOT NULL;
CREATE INDEX log_records_request_key ON log_records (request_key) WHERE request_key IS NOT NULL;
-- Word search over bodies ('simple': no stemming or stop words, like SQLite's FTS5).
CREATE INDEX log_records_body_text ON log_records USING gin (to_tsvector('simple', body));

CREATE TABLE audit_records (
    seq         BIGINT  PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE,
    event_time  TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    subject     TEXT,
    data        TEXT    NOT NULL,
    received_at BIGINT  NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
CREATE INDEX audit_records_type ON audit_records (event_type, seq);

CREATE FUNCTION audit_records_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only';
END;
$$;
CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_append_only();
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_records_append_only();
