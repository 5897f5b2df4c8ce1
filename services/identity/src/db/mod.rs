//! Identity's SQL. Every query is written once with `$n` parameters and runs on SQLite
//! and PostgreSQL through `with_pool!`; handlers contain no SQL.

pub mod clients;
pub mod keyset;
pub mod outbox;
pub mod refresh;
pub mod users;

use service_kit::Migrations;

/// Identity's embedded migrations.
pub fn migrations() -> Migrations {
    Migrations {
        sqlite: sqlx::migrate!("./migrations/sqlite"),
        postgres: sqlx::migrate!("./migrations/postgres"),
    }
}

/// Roles are stored as a JSON array of names.
fn roles_to_json(roles: &[String]) -> String {
    serde_json::to_string(roles).unwrap_or_else(|_| "[]".to_owned())
}

fn roles_from_json(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// Whether an error is a unique-constraint violation (duplicate key).
fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Inserts outbox rows on an open transaction or connection.
macro_rules! insert_events {
    ($conn:expr, $events:expr) => {{
        let mut result: Result<(), sqlx::Error> = Ok(());
        for event in $events {
            if let Err(error) = sqlx::query(
                "INSERT INTO outbox (id, subject, event, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&event.id)
            .bind(&event.subject)
            .bind(&event.event)
            .bind(event.created_at)
            .execute(&mut *$conn)
            .await
            {
                result = Err(error);
                break;
            }
        }
        result
    }};
}
pub(crate) use insert_events;
