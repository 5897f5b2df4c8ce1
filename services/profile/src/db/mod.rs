//! Profile's SQL. Every query is written once with `$n` parameters and runs on SQLite and
//! PostgreSQL through `with_pool!`; handlers contain no SQL.

pub mod profiles;

use service_kit::Migrations;

/// Profile's embedded migrations.
pub fn migrations() -> Migrations {
    Migrations {
        sqlite: sqlx::migrate!("./migrations/sqlite"),
        postgres: sqlx::migrate!("./migrations/postgres"),
    }
}

/// Every outbox row, oldest first: (subject, event JSON). For tests and operators.
pub async fn outbox_rows(pool: &service_kit::Pool) -> Result<Vec<(String, String)>, sqlx::Error> {
    service_kit::with_pool!(pool, |p| {
        sqlx::query_as("SELECT subject, event FROM outbox ORDER BY created_at, id")
            .fetch_all(p)
            .await
    })
}
