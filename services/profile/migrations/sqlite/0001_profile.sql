-- Profiles: one per user, keyed by the user's id (the `sub` of their access tokens).
CREATE TABLE profiles (
    user_id      TEXT PRIMARY KEY,
    email        TEXT NOT NULL,
    display_name TEXT NOT NULL,
    locale       TEXT NOT NULL,
    phone        TEXT,
    notify_email INTEGER NOT NULL,
    notify_sms   INTEGER NOT NULL,
    notify_push  INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- Transactional outbox: events written in the same transaction as the change they report.
CREATE TABLE outbox (
    id         TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    event      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at    INTEGER
);
