//! The outbox table: batched inserts for audit records (group commit).

use service_kit::{Pool, with_pool};

use crate::events::OutboxEvent;

/// Rows per INSERT statement: 4 binds each keeps a statement far below SQLite's 32,766
/// and PostgreSQL's 65,535 bind limits.
const ROWS_PER_STATEMENT: usize = 512;

/// Inserts `events` with multi-row statements (one round trip per 512 rows, not per row)
/// in one transaction.
pub async fn insert_batch(pool: &Pool, events: &[OutboxEvent]) -> Result<(), sqlx::Error> {
    with_pool!(pool, |p| {
        let mut tx = p.begin().await?;
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let mut insert =
                sqlx::QueryBuilder::new("INSERT INTO outbox (id, subject, event, created_at) ");
            insert.push_values(chunk, |mut row, event| {
                row.push_bind(&event.id)
                    .push_bind(&event.subject)
                    .push_bind(&event.event)
                    .push_bind(event.created_at);
            });
            insert.build().execute(&mut *tx).await?;
        }
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
