-- A notification: one message for one user, rendered from a template, on one or more
-- channels (one job per channel).
CREATE TABLE notifications (
    id           TEXT PRIMARY KEY,                -- UUIDv7
    user_id      TEXT NOT NULL,
    template     TEXT NOT NULL,
    locale       TEXT,                            -- NULL: the recipient's profile locale
    data         TEXT NOT NULL,                   -- JSON object handed to the template
    critical     INTEGER NOT NULL,                     -- sent regardless of preferences
    origin       TEXT NOT NULL,                   -- 'api' or 'event'
    requested_by TEXT NOT NULL,                   -- client id, or the event's source
    created_at   INTEGER NOT NULL                      -- unix seconds
);

-- Delivery of a notification on one channel. Times in unix milliseconds.
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY,             -- UUIDv7; the SMTP Message-ID and provider idempotency key
    notification_id TEXT NOT NULL REFERENCES notifications (id),
    channel         TEXT NOT NULL,                -- 'email', 'sms', 'push'
    address         TEXT,                         -- NULL: taken from the profile at delivery
    status          TEXT NOT NULL,                -- pending, sending, delivered, failed, skipped
    attempts        INTEGER NOT NULL,
    due_at          INTEGER NOT NULL,                  -- next attempt (pending)
    lease_until     INTEGER,                           -- a 'sending' job whose lease ran out is retried
    last_error      TEXT,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX jobs_by_notification ON jobs (notification_id);
CREATE INDEX jobs_due ON jobs (due_at) WHERE status IN ('pending', 'sending');

-- Every finished attempt of a job.
CREATE TABLE attempts (
    job_id      TEXT NOT NULL REFERENCES jobs (id),
    number      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,                      -- unix milliseconds
    finished_at INTEGER NOT NULL,
    outcome     TEXT NOT NULL,                    -- delivered, transient, permanent, skipped
    detail      TEXT,
    PRIMARY KEY (job_id, number)
);

-- Idempotency-Key of API requests, per caller; kept at least 24 h.
CREATE TABLE idempotency_keys (
    caller          TEXT NOT NULL,
    key             TEXT NOT NULL,
    request_hash    TEXT NOT NULL,                -- SHA-256 of the canonical JSON body
    notification_id TEXT NOT NULL,
    created_at      INTEGER NOT NULL,                  -- unix seconds
    PRIMARY KEY (caller, key)
);

-- tessera-events: the transactional outbox (delivery.failed) and the consumer's inbox.
CREATE TABLE outbox (
    id         TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    event      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at    INTEGER
);
CREATE INDEX outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL;

CREATE TABLE inbox (
    consumer    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
