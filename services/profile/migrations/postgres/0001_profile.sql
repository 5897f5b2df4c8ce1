-- Profiles: one per user, keyed by the user's id (the `sub` of their access tokens).
CREATE TABLE profiles (
    user_id      TEXT PRIMARY KEY,
    email        TEXT NOT NULL,
    display_name TEXT NOT NULL,
    locale       TEXT NOT NULL,
    phone        TEXT,
    notify_email BOOLEAN NOT NULL,
    notify_sms   BOOLEAN NOT NULL,
    notify_push  BOOLEAN NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- Transactional outbox: events written in the same transaction as the change they report.
CREATE TABLE outbox (
    id         TEXT PRIMARY KEY,
    subject    TEXT NOT NULL,
    event      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at    BIGINT
);
