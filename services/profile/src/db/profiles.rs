//! The `profiles` table.

use service_kit::{Pool, with_pool};

use tessera_events::{OutboxMessage, outbox};

/// A stored profile.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProfileRow {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub locale: String,
    pub phone: Option<String>,
    pub notify_email: bool,
    pub notify_sms: bool,
    pub notify_push: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// Why a profile could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The user already has a profile.
    #[error("the user already has a profile")]
    Exists,
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

const COLUMNS: &str = "user_id, email, display_name, locale, phone, notify_email, notify_sms, \
    notify_push, created_at, updated_at";

/// Inserts `row` and its `user.created` event in one transaction: the event exists if and
/// only if the profile does.
pub async fn create(
    pool: &Pool,
    row: &ProfileRow,
    event: &OutboxMessage,
) -> Result<(), CreateError> {
    let result: Result<(), sqlx::Error> = with_pool!(pool, |p| async {
        let mut tx = p.begin().await?;
        sqlx::query(
            "INSERT INTO profiles (user_id, email, display_name, locale, phone, notify_email, \
             notify_sms, notify_push, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&row.user_id)
        .bind(&row.email)
        .bind(&row.display_name)
        .bind(&row.locale)
        .bind(&row.phone)
        .bind(row.notify_email)
        .bind(row.notify_sms)
        .bind(row.notify_push)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await?;
        outbox::write(&mut *tx, event).await?;
        tx.commit().await
    }
    .await);
    match result {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(CreateError::Exists),
        other => Ok(other?),
    }
}

/// The profile of `user_id`, if any.
pub async fn get(pool: &Pool, user_id: &str) -> Result<Option<ProfileRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM profiles WHERE user_id = $1");
    with_pool!(pool, |p| {
        sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(user_id)
            .fetch_optional(p)
            .await
    })
}

/// Writes every mutable column of `row`; `false` when the profile does not exist.
pub async fn update(pool: &Pool, row: &ProfileRow) -> Result<bool, sqlx::Error> {
    let affected = with_pool!(pool, |p| {
        sqlx::query(
            "UPDATE profiles SET email = $2, display_name = $3, locale = $4, phone = $5, \
             notify_email = $6, notify_sms = $7, notify_push = $8, updated_at = $9 \
             WHERE user_id = $1",
        )
        .bind(&row.user_id)
        .bind(&row.email)
        .bind(&row.display_name)
        .bind(&row.locale)
        .bind(&row.phone)
        .bind(row.notify_email)
        .bind(row.notify_sms)
        .bind(row.notify_push)
        .bind(row.updated_at)
        .execute(p)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(affected == 1)
}
