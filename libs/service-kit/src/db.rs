//! Database pools for SQLite and PostgreSQL with embedded migrations.
//!
//! A service opens its database at start without waiting for it: the pool connects
//! lazily and a background task runs the migrations, retrying with capped exponential
//! backoff while the database is unreachable. Until that succeeds `/readyz` fails with
//! the reason, so a wrong URL shows up in the readiness probe and the log instead of as a
//! silent crash loop.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::health::Readiness;

/// How long a request waits for a pooled connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long SQLite waits on a locked database before giving up (writers queue here).
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest wait between attempts to reach the database at start.
const RETRY_INITIAL: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Where a service's data lives. Parsed from `sqlite:<path>`, `sqlite::memory:`,
/// `postgres://...` or `postgresql://...`; displays without the password.
#[derive(Clone)]
pub enum DatabaseUrl {
    /// A SQLite file, created with its directory if missing.
    Sqlite(PathBuf),
    /// A private in-memory SQLite database (one connection; gone at exit).
    SqliteMemory,
    /// A PostgreSQL connection URL (may hold a password).
    Postgres(SecretString),
}

/// Why a database URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("expected sqlite:<path>, sqlite::memory: or postgres://user:password@host/db")]
pub struct InvalidDatabaseUrl;

impl FromStr for DatabaseUrl {
    type Err = InvalidDatabaseUrl;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        if url == "sqlite::memory:" {
            return Ok(Self::SqliteMemory);
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(InvalidDatabaseUrl);
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        if (url.starts_with("postgres://") || url.starts_with("postgresql://"))
            && PgConnectOptions::from_str(url).is_ok()
        {
            return Ok(Self::Postgres(SecretString::from(url.to_owned())));
        }
        Err(InvalidDatabaseUrl)
    }
}

impl DatabaseUrl {
    /// A SQLite file URL for `path`.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self::Sqlite(path.into())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Self::SqliteMemory => f.write_str("sqlite::memory:"),
            Self::Postgres(url) => match PgConnectOptions::from_str(url.expose_secret()) {
                Ok(options) => write!(
                    f,
                    "postgres://{}:{}/{}",
                    options.get_host(),
                    options.get_port(),
                    options.get_database().unwrap_or_default()
                ),
                Err(_) => f.write_str("postgres://(invalid)"),
            },
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A service's embedded migrations, one set per backend (SQL dialects differ).
#[derive(Debug)]
pub struct Migrations {
    /// Applied to SQLite databases.
    pub sqlite: Migrator,
    /// Applied to PostgreSQL databases.
    pub postgres: Migrator,
}

/// Runs the same sqlx code on whichever backend `pool` is, binding the concrete pool to
/// `$p`. SQL written once with `$1`-style parameters runs on both SQLite and PostgreSQL;
/// where dialects differ, match on [`Pool`] instead.
///
/// The body is not a closure: `?` in it returns from the enclosing function. To classify
/// an error first, make the body an `async { .. }.await` block.
///
/// ```text
/// let count: i64 = with_pool!(db.pool(), |p| {
///     sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(p).await
/// })?;
/// ```
#[macro_export]
macro_rules! with_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            $crate::db::Pool::Sqlite($p) => $body,
            $crate::db::Pool::Postgres($p) => $body,
        }
    };
}

/// The connection pool, by backend. Services match on it in their `db` module.
#[derive(Debug, Clone)]
pub enum Pool {
    /// SQLite (WAL, foreign keys on).
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

impl Pool {
    /// One round trip to the database.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Self::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
    }

    async fn migrate(&self, migrations: &Migrations) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Self::Sqlite(pool) => migrations.sqlite.run(pool).await,
            Self::Postgres(pool) => migrations.postgres.run(pool).await,
        }
    }

    /// Closes every connection, waiting for checked-out ones to come back.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// Errors opening a database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The SQLite file's directory could not be created.
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database could not be reached or queried.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed or the database holds migrations this binary does not know.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A pool plus the state of its start-up migration.
#[derive(Debug, Clone)]
pub struct Database {
    pool: Pool,
    migrated: watch::Receiver<bool>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Database {
    /// Opens the pool without waiting for the database and migrates it in the background,
    /// retrying with backoff until it succeeds or `shutdown` fires. Fails only when the
    /// SQLite directory cannot be created.
    pub fn open(
        url: &DatabaseUrl,
        max_connections: u32,
        migrations: Migrations,
        shutdown: CancellationToken,
    ) -> Result<Self, DbError> {
        let pool = lazy_pool(url, max_connections)?;
        let (migrated_tx, migrated) = watch::channel(false);
        let last_error = Arc::new(Mutex::new(Some("migrations not run yet".to_owned())));
        let database = Self {
            pool,
            migrated,
            last_error,
        };
        let task = database.clone();
        let target = url.to_string();
        tokio::spawn(async move {
            let mut delay = RETRY_INITIAL;
            for attempt in 1u32.. {
                match task.pool.migrate(&migrations).await {
                    Ok(()) => {
                        *task
                            .last_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = None;
                        let _ = migrated_tx.send(true);
                        tracing::info!(database = %target, "database ready and migrated");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(
                            database = %target, attempt, retry_in_ms = delay.as_millis(),
                            error = %error, "database not usable yet; retrying"
                        );
                        *task
                            .last_error
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(jittered(delay)) => {}
                }
                delay = (delay * 2).min(RETRY_MAX);
            }
        });
        Ok(database)
    }

    /// Opens the pool and migrates now, failing at once when the database is unusable.
    /// For command-line tools and tests.
    pub async fn open_now(
        url: &DatabaseUrl,
        max_connections: u32,
        migrations: &Migrations,
    ) -> Result<Self, DbError> {
        let pool = lazy_pool(url, max_connections)?;
        pool.migrate(migrations).await?;
        let (_, migrated) = watch::channel(true);
        Ok(Self {
            pool,
            migrated,
            last_error: Arc::new(Mutex::new(None)),
        })
    }

    /// The pool, for the service's queries.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Whether the start-up migration has completed.
    pub fn is_migrated(&self) -> bool {
        *self.migrated.borrow()
    }

    /// Waits until the start-up migration has completed.
    pub async fn wait_migrated(&self) {
        let mut migrated = self.migrated.clone();
        // An error means the migration task ended without success (shutdown): stop waiting.
        let _ = migrated.wait_for(|done| *done).await;
    }

    /// Registers the `database` readiness check: migrated and answering a query.
    pub fn add_readiness_check(&self, readiness: &Readiness) {
        let database = self.clone();
        readiness.add("database", move || {
            let database = database.clone();
            async move {
                if !database.is_migrated() {
                    let error = database
                        .last_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    return Err(error.clone().unwrap_or_else(|| "not migrated".to_owned()));
                }
                database.pool.ping().await.map_err(|e| e.to_string())
            }
        });
    }
}

fn lazy_pool(url: &DatabaseUrl, max_connections: u32) -> Result<Pool, DbError> {
    Ok(match url {
        DatabaseUrl::Sqlite(path) => {
            create_parent_dir(path)?;
            let options = sqlite_options().filename(path).create_if_missing(true);
            Pool::Sqlite(
                SqlitePoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options),
            )
        }
        DatabaseUrl::SqliteMemory => Pool::Sqlite(
            // Every connection to :memory: is a separate database: keep exactly one, forever.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_lazy_with(sqlite_options().in_memory(true)),
        ),
        DatabaseUrl::Postgres(url) => {
            let options = PgConnectOptions::from_str(url.expose_secret())?;
            Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options),
            )
        }
    })
}

fn sqlite_options() -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .journal_mode(SqliteJournalMode::Wal)
        // With WAL, NORMAL loses no committed transaction on a process crash, only on power
        // loss, and avoids an fsync per commit.
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true)
}

fn create_parent_dir(path: &Path) -> Result<(), DbError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| DbError::CreateDir {
                path: dir.to_owned(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// `delay` plus up to 20 % so many replicas do not retry in lockstep.
fn jittered(delay: Duration) -> Duration {
    let extra = rand::random_range(0..=delay.as_millis() / 5);
    delay + Duration::from_millis(u64::try_from(extra).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_by_scheme() {
        assert!(
            matches!("sqlite:./data/x.db".parse(), Ok(DatabaseUrl::Sqlite(p)) if p == Path::new("./data/x.db"))
        );
        assert!(
            matches!("sqlite:///tmp/x.db".parse(), Ok(DatabaseUrl::Sqlite(p)) if p == Path::new("/tmp/x.db"))
        );
        assert!(matches!(
            "sqlite::memory:".parse(),
            Ok(DatabaseUrl::SqliteMemory)
        ));
        assert!(matches!(
            "postgres://u:p@localhost/db".parse::<DatabaseUrl>(),
            Ok(DatabaseUrl::Postgres(_))
        ));
        for bad in ["", "mysql://localhost/db", "sqlite:", "localhost:5432"] {
            assert_eq!(
                bad.parse::<DatabaseUrl>().err(),
                Some(InvalidDatabaseUrl),
                "{bad}"
            );
        }
    }

    #[test]
    fn postgres_urls_display_without_the_password() {
        let url: DatabaseUrl = "postgres://tessera:hunter2@db.internal:6432/identity"
            .parse()
            .expect("valid");
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.internal:6432/identity"), "{shown}");
    }
}
