//! Users.

use service_kit::{Pool, with_pool};

use super::{insert_events, is_unique_violation, roles_from_json, roles_to_json};
use crate::events::OutboxEvent;

/// A stored user.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub created_at: i64,
}

type Tuple = (String, String, String, String, bool, i64);

fn from_tuple((id, email, password_hash, roles, disabled, created_at): Tuple) -> UserRow {
    UserRow {
        id,
        email,
        password_hash,
        roles: roles_from_json(&roles),
        disabled,
        created_at,
    }
}

const COLUMNS: &str = "id, email, password_hash, roles, disabled, created_at";

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The email address is taken.
    #[error("email already registered")]
    Duplicate,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Creates `user` and writes `events` to the outbox in the same transaction.
pub async fn create(
    pool: &Pool,
    user: &UserRow,
    events: &[OutboxEvent],
) -> Result<(), CreateError> {
    // An async block, so `?` ends the block (and the error can be classified) rather
    // than returning from the function.
    let result: Result<(), sqlx::Error> = with_pool!(pool, |p| async {
        let mut tx = p.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, roles, disabled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(roles_to_json(&user.roles))
        .bind(user.disabled)
        .bind(user.created_at)
        .execute(&mut *tx)
        .await?;
        insert_events!(tx, events)?;
        tx.commit().await
    }
    .await);
    result.map_err(|e| {
        if is_unique_violation(&e) {
            CreateError::Duplicate
        } else {
            CreateError::Db(e)
        }
    })
}

/// The user with this (normalised) email.
pub async fn by_email(pool: &Pool, email: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM users WHERE email = $1"));
    let row: Option<Tuple> = with_pool!(pool, |p| sqlx::query_as(sql)
        .bind(email)
        .fetch_optional(p)
        .await)?;
    Ok(row.map(from_tuple))
}

/// The user with this id.
pub async fn by_id(pool: &Pool, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM users WHERE id = $1"));
    let row: Option<Tuple> = with_pool!(pool, |p| sqlx::query_as(sql)
        .bind(id)
        .fetch_optional(p)
        .await)?;
    Ok(row.map(from_tuple))
}

/// Users in id (creation) order after `after`, at most `limit`.
pub async fn list(
    pool: &Pool,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<UserRow>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2"
    ));
    let rows: Vec<Tuple> = with_pool!(pool, |p| {
        sqlx::query_as(sql)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .fetch_all(p)
            .await
    })?;
    Ok(rows.into_iter().map(from_tuple).collect())
}

/// Replaces a user's roles. Returns whether the user exists.
pub async fn set_roles(pool: &Pool, id: &str, roles: &[String]) -> Result<bool, sqlx::Error> {
    let affected = with_pool!(pool, |p| {
        sqlx::query("UPDATE users SET roles = $1 WHERE id = $2")
            .bind(roles_to_json(roles))
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(affected == 1)
}

/// Disables a user and revokes all their refresh tokens, with `events`, in one
/// transaction. Returns whether the user exists.
pub async fn disable(
    pool: &Pool,
    id: &str,
    now: i64,
    events: &[OutboxEvent],
) -> Result<bool, sqlx::Error> {
    with_pool!(pool, |p| {
        let mut tx = p.begin().await?;
        let affected = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(true)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if affected == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        insert_events!(tx, events)?;
        tx.commit().await?;
        Ok(true)
    })
}
