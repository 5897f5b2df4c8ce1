-- Identity's tables (PostgreSQL). Times are Unix seconds; ids are UUIDv7 text.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,          -- normalised (trimmed, lowercased)
    password_hash TEXT NOT NULL,                 -- Argon2id PHC string
    roles         TEXT NOT NULL,                 -- JSON array of role names
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL
);

-- Opaque refresh tokens, stored as SHA-256 hashes. A family is one login's chain of
-- rotations; reuse of a spent token outside the grace window revokes the family.
CREATE TABLE refresh_tokens (
    token_hash  BYTEA PRIMARY KEY,
    family_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id),
    parent_hash BYTEA,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);

-- Service clients created through the admin API (registry-file clients live in memory).
CREATE TABLE clients (
    client_id   TEXT PRIMARY KEY,
    secret_hash BYTEA NOT NULL,                   -- HMAC-SHA-256(pepper, secret)
    roles       TEXT NOT NULL,                   -- JSON array
    disabled    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL
);

-- Transactional outbox: events written in the same transaction as the change they report.
CREATE TABLE outbox (
    id         TEXT PRIMARY KEY,                 -- CloudEvents id (UUIDv7)
    subject    TEXT NOT NULL,                    -- NATS subject
    event      TEXT NOT NULL,                    -- CloudEvents JSON (structured mode)
    created_at BIGINT NOT NULL,
    sent_at    BIGINT
);
CREATE INDEX outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL;

-- Standalone mode's keyset: one row, sealed (AES-256-GCM) with the configured key.
-- `generation` makes concurrent rotations by several replicas safe (compare-and-swap).
CREATE TABLE keyset (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    generation BIGINT NOT NULL,
    sealed     BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);
