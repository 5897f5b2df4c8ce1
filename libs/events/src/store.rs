//! The outbox and inbox tables: writes inside the caller's transaction, and the relay's
//! queries. The SQL is written once with `$n` parameters and runs on both backends.
//!
//! Every service that publishes declares the `outbox` table in its own migrations, and
//! every service that consumes declares the `inbox` table (DDL in the crate docs).

use sqlx::{PgConnection, SqliteConnection};

use crate::envelope::OutboxMessage;

/// A connection (usually `&mut *transaction`) of either backend.
#[derive(Debug)]
pub enum Backend<'c> {
    /// A SQLite connection.
    Sqlite(&'c mut SqliteConnection),
    /// A PostgreSQL connection.
    Postgres(&'c mut PgConnection),
}

/// What the outbox and inbox write through: implemented for SQLite and PostgreSQL
/// connections, so `&mut *tx` of either backend's transaction works.
pub trait EventConnection: Send {
    /// This connection, by backend.
    fn backend(&mut self) -> Backend<'_>;
}

impl EventConnection for SqliteConnection {
    fn backend(&mut self) -> Backend<'_> {
        Backend::Sqlite(self)
    }
}

impl EventConnection for PgConnection {
    fn backend(&mut self) -> Backend<'_> {
        Backend::Postgres(self)
    }
}

/// Runs the same query on whichever backend `$conn` is.
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn.backend() {
            Backend::Sqlite($c) => $body,
            Backend::Postgres($c) => $body,
        }
    };
}

/// Writing events in the caller's transaction.
pub mod outbox {
    use super::{Backend, EventConnection, OutboxMessage};

    /// Adds `message` to the outbox on `conn`: pass `&mut *tx` of the transaction that
    /// makes the change the event reports. It is published only if that transaction
    /// commits; poke the relay ([`crate::RelayHandle::notify`]) after the commit.
    pub async fn write<C: EventConnection + ?Sized>(
        conn: &mut C,
        message: &OutboxMessage,
    ) -> Result<(), sqlx::Error> {
        const INSERT: &str =
            "INSERT INTO outbox (id, subject, event, created_at) VALUES ($1, $2, $3, $4)";
        on_backend!(conn, |c| sqlx::query(INSERT)
            .bind(&message.id)
            .bind(&message.subject)
            .bind(&message.event)
            .bind(message.created_at)
            .execute(c)
            .await
            .map(drop))
    }
}

/// Remembering which events a consumer has already acted on.
pub mod inbox {
    use super::{Backend, EventConnection};

    /// Records that `consumer` handles `event_id`, on `conn` (the transaction that holds
    /// the handler's effect). `true`: first time, go ahead. `false`: this event was already
    /// handled by `consumer`; skip the effect and commit (or roll back) and succeed.
    pub async fn claim<C: EventConnection + ?Sized>(
        conn: &mut C,
        consumer: &str,
        event_id: &str,
        now_unix: i64,
    ) -> Result<bool, sqlx::Error> {
        const INSERT: &str = "INSERT INTO inbox (consumer, event_id, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT (consumer, event_id) DO NOTHING";
        let inserted = on_backend!(conn, |c| sqlx::query(INSERT)
            .bind(consumer)
            .bind(event_id)
            .bind(now_unix)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))?;
        Ok(inserted == 1)
    }

    /// Forgets inbox entries received before `before_unix` (run now and then; keep them
    /// far longer than any redelivery, e.g. 7 days). Returns how many were removed.
    pub async fn prune<C: EventConnection + ?Sized>(
        conn: &mut C,
        before_unix: i64,
    ) -> Result<u64, sqlx::Error> {
        const DELETE: &str = "DELETE FROM inbox WHERE received_at < $1";
        on_backend!(conn, |c| sqlx::query(DELETE)
            .bind(before_unix)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
    }
}

/// A row as the relay reads it.
pub(crate) type Row = (String, String, String, i64);

pub(crate) fn row_into_message((id, subject, event, created_at): Row) -> OutboxMessage {
    OutboxMessage {
        id,
        subject,
        event,
        created_at,
    }
}

/// Oldest unsent rows first; ties (same second) by id, which UUIDv7 orders by creation.
pub(crate) const SELECT_UNSENT: &str = "SELECT id, subject, event, created_at FROM outbox \
     WHERE sent_at IS NULL ORDER BY created_at, id LIMIT $1";
/// The same, claiming the rows so concurrent relays (PostgreSQL replicas) skip them.
pub(crate) const SELECT_UNSENT_LOCKED: &str = "SELECT id, subject, event, created_at FROM outbox \
     WHERE sent_at IS NULL ORDER BY created_at, id LIMIT $1 FOR UPDATE SKIP LOCKED";
/// Unsent rows older than the newest one claimed that another relay holds (or that
/// committed late): their aggregates must wait so no event overtakes an earlier one.
pub(crate) const SELECT_EARLIER_NOT_MINE: &str = "SELECT event FROM outbox \
     WHERE sent_at IS NULL AND (created_at, id) < ($1, $2) AND NOT (id = ANY($3)) LIMIT 10000";
pub(crate) const MARK_SENT_ONE: &str = "UPDATE outbox SET sent_at = $1 WHERE id = $2";
pub(crate) const MARK_SENT_ANY: &str = "UPDATE outbox SET sent_at = $1 WHERE id = ANY($2)";
pub(crate) const COUNT_UNSENT: &str = "SELECT count(*) FROM outbox WHERE sent_at IS NULL";
pub(crate) const DELETE_SENT_BEFORE: &str =
    "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1";
