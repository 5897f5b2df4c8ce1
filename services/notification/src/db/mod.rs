//! Notification's SQL. Queries are written once with `$n` parameters and run on SQLite
//! and PostgreSQL through `with_pool!` (where dialects differ, per backend); handlers and
//! the worker contain no SQL.

pub mod jobs;
pub mod notifications;

use service_kit::Migrations;

/// Notification's embedded migrations.
pub fn migrations() -> Migrations {
    Migrations {
        sqlite: sqlx::migrate!("./migrations/sqlite"),
        postgres: sqlx::migrate!("./migrations/postgres"),
    }
}
