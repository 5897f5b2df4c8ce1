//! Refresh tokens: stored as SHA-256 hashes, rotated on every use, grouped in families.

use service_kit::{Pool, with_pool};

use super::insert_events;
use crate::events::OutboxEvent;

/// A refresh token to store.
#[derive(Debug, Clone)]
pub struct NewRefresh<'a> {
    pub token_hash: &'a [u8],
    pub family_id: &'a str,
    pub user_id: &'a str,
    pub parent_hash: Option<&'a [u8]>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current: it is now spent and `child` replaces it.
    Rotated { user_id: String },
    /// The token was spent moments ago and its replacement is unused (a concurrent
    /// refresh by the same client): a sibling replacement was issued.
    GraceReuse { user_id: String },
    /// A spent token came back outside the grace window: the family is revoked.
    ReuseDetected { user_id: String, family_id: String },
    /// Unknown, expired, revoked, or its user is disabled.
    Invalid,
}

macro_rules! insert_on {
    ($conn:expr, $token:expr) => {
        sqlx::query(
            "INSERT INTO refresh_tokens \
             (token_hash, family_id, user_id, parent_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind($token.token_hash)
        .bind($token.family_id)
        .bind($token.user_id)
        .bind($token.parent_hash)
        .bind($token.created_at)
        .bind($token.expires_at)
        .execute(&mut *$conn)
        .await
        .map(drop)
    };
}

/// `(user_id, family_id, used_at, revoked_at, expires_at)` of a presented token.
type SpentRow = (String, String, Option<i64>, Option<i64>, i64);

/// Stores a new token (first of a family, at login).
pub async fn insert(pool: &Pool, token: &NewRefresh<'_>) -> Result<(), sqlx::Error> {
    with_pool!(pool, |p| {
        let mut conn = p.acquire().await?;
        insert_on!(conn, token)
    })
}

/// Reuse detected: revokes the family, records `reuse_event`, commits, and evaluates to
/// the `ReuseDetected` outcome.
macro_rules! revoke_family {
    ($tx:ident, $now:expr, $user_id:expr, $family_id:expr, $reuse_event:expr) => {{
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL",
        )
        .bind($now)
        .bind(&$family_id)
        .execute(&mut *$tx)
        .await?;
        let event = $reuse_event(&$user_id, &$family_id);
        insert_events!($tx, [&event])?;
        $tx.commit().await?;
        Ok(Rotation::ReuseDetected {
            user_id: $user_id,
            family_id: $family_id,
        })
    }};
}

/// The user a stored token (spent or not) belongs to.
pub async fn user_of(pool: &Pool, hash: &[u8]) -> Result<Option<String>, sqlx::Error> {
    with_pool!(pool, |p| {
        sqlx::query_scalar("SELECT user_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(hash)
            .fetch_optional(p)
            .await
    })
}

/// Presents `hash`; on success stores `child_hash` as its replacement (same family) and
/// writes `issued` (the records of what the caller hands out for it) in the same
/// transaction, so that nothing can fail once the token is spent. `reuse_event` is
/// written when reuse is detected.
#[allow(
    clippy::too_many_arguments,
    reason = "one transaction's inputs; a struct would only rename them"
)]
pub async fn rotate(
    pool: &Pool,
    hash: &[u8],
    child_hash: &[u8],
    now: i64,
    expires_at: i64,
    grace_secs: i64,
    issued: &[OutboxEvent],
    reuse_event: impl FnOnce(&str, &str) -> OutboxEvent,
) -> Result<Rotation, sqlx::Error> {
    with_pool!(pool, |p| {
        let mut tx = p.begin().await?;
        // The conditional update is the lock: of two concurrent presentations exactly one
        // sees `used_at IS NULL`.
        let current: Option<(String, String)> = sqlx::query_as(
            "UPDATE refresh_tokens SET used_at = $1 \
             WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1 \
               AND user_id IN (SELECT id FROM users WHERE disabled = $3) \
             RETURNING user_id, family_id",
        )
        .bind(now)
        .bind(hash)
        .bind(false)
        .fetch_optional(&mut *tx)
        .await?;
        // Either the token is current, or it was spent moments ago and its replacement is
        // still unused; anything else spent is reuse.
        let (user_id, family_id, grace) = if let Some((user_id, family_id)) = current {
            (user_id, family_id, false)
        } else {
            let spent: Option<SpentRow> = sqlx::query_as(
                "SELECT user_id, family_id, used_at, revoked_at, expires_at FROM refresh_tokens \
                 WHERE token_hash = $1",
            )
            .bind(hash)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((user_id, family_id, Some(used_at), None, token_expiry)) = spent else {
                return Ok(Rotation::Invalid);
            };
            if token_expiry <= now {
                return Ok(Rotation::Invalid);
            }
            // Grace applies to the immediate parent of a still-unused token only.
            let live_children: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM refresh_tokens \
                 WHERE parent_hash = $1 AND used_at IS NULL AND revoked_at IS NULL",
            )
            .bind(hash)
            .fetch_one(&mut *tx)
            .await?;
            if now - used_at > grace_secs || live_children == 0 {
                return revoke_family!(tx, now, user_id, family_id, reuse_event);
            }
            (user_id, family_id, true)
        };
        let replacement = NewRefresh {
            token_hash: child_hash,
            family_id: &family_id,
            user_id: &user_id,
            parent_hash: Some(hash),
            created_at: now,
            expires_at,
        };
        insert_on!(tx, replacement)?;
        insert_events!(tx, issued)?;
        tx.commit().await?;
        Ok(if grace {
            Rotation::GraceReuse { user_id }
        } else {
            Rotation::Rotated { user_id }
        })
    })
}

/// Revokes the family of the token with `hash`. Returns whether such a token exists.
pub async fn revoke_family_of(pool: &Pool, hash: &[u8], now: i64) -> Result<bool, sqlx::Error> {
    let affected = with_pool!(pool, |p| {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND family_id = \
             (SELECT family_id FROM refresh_tokens WHERE token_hash = $2)",
        )
        .bind(now)
        .bind(hash)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(affected > 0)
}
