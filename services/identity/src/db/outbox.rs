//! The outbox table: batched inserts for audit records (group commit).

use service_kit::{Pool, with_pool};

use super::insert_events;
use crate::events::OutboxEvent;

/// Inserts `events` in one transaction.
pub async fn insert_batch(pool: &Pool, events: &[OutboxEvent]) -> Result<(), sqlx::Error> {
    with_pool!(pool, |p| {
        let mut tx = p.begin().await?;
        insert_events!(tx, events)?;
        tx.commit().await
    })
}

/// Events not yet relayed, oldest first (for tests and the future relay).
pub async fn unsent(pool: &Pool, limit: i64) -> Result<Vec<(String, String)>, sqlx::Error> {
    with_pool!(pool, |p| {
        sqlx::query_as(
            "SELECT subject, event FROM outbox WHERE sent_at IS NULL ORDER BY created_at, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(p)
        .await
    })
}
