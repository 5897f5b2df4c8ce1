-- Log records: one row each. `trace_key`/`request_key` are 64-bit hashes of the ids:
-- their partial indexes are far cheaper to maintain than an index on the 32-hex text
-- (README, "Indexes"); queries also compare the full id.
CREATE TABLE log_records (
    id              INTEGER PRIMARY KEY,
    ts              INTEGER NOT NULL,
    observed_ts     INTEGER NOT NULL,
    service         TEXT    NOT NULL,
    severity_number INTEGER NOT NULL,
    severity_text   TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    trace_id        TEXT,
    span_id         TEXT,
    request_id      TEXT,
    trace_key       INTEGER,
    request_key     INTEGER,
    attributes      TEXT    NOT NULL,
    resource        TEXT    NOT NULL
);
CREATE INDEX log_records_ts ON log_records (ts);
CREATE INDEX log_records_service_ts ON log_records (service, ts);
CREATE INDEX log_records_trace_key ON log_records (trace_key) WHERE trace_key IS NOT NULL;
CREATE INDEX log_records_request_key ON log_records (request_key) WHERE request_key IS NOT NULL;

-- Full-text index of bodies; contentless (the text lives in log_records) with deletes
-- allowed so retention can remove entries.
CREATE VIRTUAL TABLE log_text USING fts5 (body, content = '', contentless_delete = 1);

-- The audit chain: append-only, gapless `seq`, each hash over the record and the
-- previous hash.
CREATE TABLE audit_records (
    seq         INTEGER PRIMARY KEY,
    event_id    TEXT    NOT NULL UNIQUE,
    event_time  TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    subject     TEXT,
    data        TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
CREATE INDEX audit_records_type ON audit_records (event_type, seq);

CREATE TRIGGER audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;
CREATE TRIGGER audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;
