//! Fresh databases per measurement (a SQLite file or a PostgreSQL database), migrated
//! with the service's own migrations, and deleted afterwards.

use anyhow::Context as _;
use service_kit::{Database, DatabaseUrl};

use crate::data::hex;

/// A fresh database of `backend` (`postgres` on the server at `postgres`, the shared
/// test server's URL or a throwaway cluster's), or `None` when PostgreSQL is not
/// configured.
pub(crate) async fn database_url(
    backend: &str,
    postgres: Option<&str>,
    dir: &tempfile::TempDir,
) -> anyhow::Result<Option<String>> {
    Ok(match (backend, postgres) {
        ("sqlite", _) => Some(format!(
            "sqlite:{}",
            dir.path().join(format!("{}.db", hex(6))).display()
        )),
        (_, Some(admin_url)) => Some(fresh_postgres(admin_url).await?),
        (_, None) => None,
    })
}

/// Creates a database with a random name on the server of `admin_url`.
async fn fresh_postgres(admin_url: &str) -> anyhow::Result<String> {
    let name = format!("bench_{}", hex(12));
    let pool = sqlx::PgPool::connect(admin_url).await?;
    // The name is hex digits generated above: formatting it in is safe.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(testkit::database_url_with_name(admin_url, &name))
}

/// Deletes the database at `url` (the SQLite file and its WAL, or the PostgreSQL
/// database), so a large run leaves no data behind.
pub(crate) async fn drop_database(url: &str) -> anyhow::Result<()> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        return Ok(());
    }
    let name = url
        .split('?')
        .next()
        .and_then(|u| u.rsplit('/').next())
        .context("database name")?;
    let pool = sqlx::PgPool::connect(&testkit::database_url_with_name(url, "postgres")).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&pool)
    .await?;
    pool.close().await;
    Ok(())
}

pub(crate) async fn open(url: &str, extra_sql: &[&str]) -> anyhow::Result<Database> {
    let url: DatabaseUrl = url.parse().context("database url")?;
    let database = Database::open_now(&url, 4, &tessera_logging::migrations()).await?;
    for sql in extra_sql {
        service_kit::with_pool!(database.pool(), |p| sqlx::raw_sql(sqlx::AssertSqlSafe(
            *sql
        ))
        .execute(p)
        .await
        .map(drop))?;
    }
    Ok(database)
}
