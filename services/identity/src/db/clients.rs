//! Service clients created through the admin API.

use service_kit::{Pool, with_pool};

use super::{insert_events, is_unique_violation, roles_from_json, roles_to_json};
use crate::events::OutboxEvent;

/// A stored client.
#[derive(Debug, Clone)]
pub struct ClientRow {
    pub client_id: String,
    pub secret_hash: Vec<u8>,
    pub roles: Vec<String>,
    pub disabled: bool,
    pub created_at: i64,
}

type Tuple = (String, Vec<u8>, String, bool, i64);

fn from_tuple((client_id, secret_hash, roles, disabled, created_at): Tuple) -> ClientRow {
    ClientRow {
        client_id,
        secret_hash,
        roles: roles_from_json(&roles),
        disabled,
        created_at,
    }
}

/// Creates a client with `events`; `Ok(false)` when the id is taken.
pub async fn create(
    pool: &Pool,
    client: &ClientRow,
    events: &[OutboxEvent],
) -> Result<bool, sqlx::Error> {
    // An async block, so `?` ends the block (and the error can be classified) rather
    // than returning from the function.
    let result: Result<(), sqlx::Error> = with_pool!(pool, |p| async {
        let mut tx = p.begin().await?;
        sqlx::query(
            "INSERT INTO clients (client_id, secret_hash, roles, disabled, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&client.client_id)
        .bind(&client.secret_hash)
        .bind(roles_to_json(&client.roles))
        .bind(client.disabled)
        .bind(client.created_at)
        .execute(&mut *tx)
        .await?;
        insert_events!(tx, events)?;
        tx.commit().await
    }
    .await);
    match result {
        Ok(()) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The client with this id.
pub async fn by_id(pool: &Pool, client_id: &str) -> Result<Option<ClientRow>, sqlx::Error> {
    let row: Option<Tuple> = with_pool!(pool, |p| {
        sqlx::query_as(
            "SELECT client_id, secret_hash, roles, disabled, created_at FROM clients WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(p)
        .await
    })?;
    Ok(row.map(from_tuple))
}

/// Every client, by id.
pub async fn list(pool: &Pool) -> Result<Vec<ClientRow>, sqlx::Error> {
    let rows: Vec<Tuple> = with_pool!(pool, |p| {
        sqlx::query_as("SELECT client_id, secret_hash, roles, disabled, created_at FROM clients ORDER BY client_id")
            .fetch_all(p)
            .await
    })?;
    Ok(rows.into_iter().map(from_tuple).collect())
}

/// Disables a client with `events`. Returns whether it exists.
pub async fn disable(
    pool: &Pool,
    client_id: &str,
    events: &[OutboxEvent],
) -> Result<bool, sqlx::Error> {
    with_pool!(pool, |p| {
        let mut tx = p.begin().await?;
        let affected = sqlx::query("UPDATE clients SET disabled = $1 WHERE client_id = $2")
            .bind(true)
            .bind(client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if affected == 0 {
            return Ok(false);
        }
        insert_events!(tx, events)?;
        tx.commit().await?;
        Ok(true)
    })
}
