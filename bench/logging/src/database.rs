//! Fresh databases per measurement (a SQLite file or a PostgreSQL database), migrated
//! with the service's own migrations, and deleted afterwards.

use anyhow::Context as _;
use service_kit::{Database, DatabaseUrl};

use crate::Args;
use crate::data::hex;

/// A fresh database of `backend`, or `None` when PostgreSQL is not configured.
pub(crate) async fn database_url(
    backend: &str,
    args: &Args,
    dir: &tempfile::TempDir,
) -> anyhow::Result<Option<String>> {
    Ok(match backend {
        "sqlite" => Some(format!(
            "sqlite:{}",
            dir.path().join(format!("{}.db", hex(6))).display()
        )),
        _ if args.postgres_url.is_some() => Some(testkit::fresh_postgres_database().await),
        _ => None,
    })
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
