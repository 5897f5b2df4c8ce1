//! Standalone mode's sealed keyset row, updated by compare-and-swap on `generation` so
//! two replicas rotating at once cannot overwrite each other.

use service_kit::{Pool, with_pool};

/// The stored keyset: its generation and sealed bytes.
pub async fn load(pool: &Pool) -> Result<Option<(i64, Vec<u8>)>, sqlx::Error> {
    with_pool!(pool, |p| {
        sqlx::query_as("SELECT generation, sealed FROM keyset WHERE id = 1")
            .fetch_optional(p)
            .await
    })
}

/// Stores `sealed` as generation `expected + 1` if the row is still at `expected`
/// (`None`: no row yet). Returns whether this call won.
pub async fn compare_and_swap(
    pool: &Pool,
    expected: Option<i64>,
    sealed: &[u8],
    now: i64,
) -> Result<bool, sqlx::Error> {
    let affected = with_pool!(pool, |p| {
        match expected {
            None => sqlx::query(
                "INSERT INTO keyset (id, generation, sealed, updated_at) VALUES (1, 1, $1, $2) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(sealed)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected()),
            Some(generation) => sqlx::query(
                "UPDATE keyset SET generation = generation + 1, sealed = $1, updated_at = $2 \
                 WHERE id = 1 AND generation = $3",
            )
            .bind(sealed)
            .bind(now)
            .bind(generation)
            .execute(p)
            .await
            .map(|r| r.rows_affected()),
        }
    })?;
    Ok(affected == 1)
}
