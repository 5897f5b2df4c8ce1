//! Test-only helpers shared by the crates' integration tests: a fresh PostgreSQL database
//! per test, each scenario run on both database backends ([`on_both_backends!`]), the
//! checks on every service's OpenAPI document ([`openapi`]), polling until a condition
//! holds, and servers of a test's own (a private `nats-server` and PostgreSQL cluster to
//! stop and start, a real SMTP server, a recorder standing in for the SMS and push
//! providers).
//!
//! PostgreSQL comes from `TESSERA_TEST_POSTGRES_URL` (set by `.ci/run` and `just test`);
//! without it, tests that need PostgreSQL fail and say how to provide it. They never
//! skip silently.

use std::future::Future;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

mod backend;
mod nats;
pub mod openapi;
mod postgres_cluster;
mod recorder;
mod smtp;

pub use backend::Backend;
pub use nats::{NATS_SERVER_ENV, PrivateNats};
pub use postgres_cluster::{POSTGRES_BIN_ENV, PrivatePostgres};
pub use recorder::{Recorded, Recorder};
pub use smtp::{Mail, SmtpServer};

/// Environment variable naming a PostgreSQL server tests may create databases on.
pub const POSTGRES_URL_ENV: &str = "TESSERA_TEST_POSTGRES_URL";

/// The admin URL of the test PostgreSQL server.
///
/// # Panics
/// When `TESSERA_TEST_POSTGRES_URL` is unset: these tests need a real server.
pub fn postgres_admin_url() -> String {
    std::env::var(POSTGRES_URL_ENV).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_ENV} is not set: this test needs a PostgreSQL server. \
             Run `.ci/run` (installs and starts one), or `just services` and \
             `export {POSTGRES_URL_ENV}=postgres://tessera:tessera@127.0.0.1:5432/postgres`"
        )
    })
}

/// Creates an empty database with a unique name and returns its URL.
///
/// The name carries its creation time (`test_<unix seconds>_<uuid>`): tests do not drop
/// their databases (a failed test's data is worth a look), so the first call of each test
/// process drops the databases older than [`STALE_DATABASE_AGE`] that nobody is
/// connected to. Without that, a developer's server grew to thousands of databases.
///
/// # Panics
/// When the server cannot be reached or refuses: the test cannot run.
pub async fn fresh_postgres_database() -> String {
    let admin_url = postgres_admin_url();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let name = format!("test_{now}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_ENV}: {e}"));
    if !SWEPT.swap(true, std::sync::atomic::Ordering::Relaxed) {
        drop_stale_databases(&mut admin, now).await;
    }
    // The name is generated above from digits only, so formatting it in is safe.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let _ = admin.close().await;
    database_url_with_name(&admin_url, &name)
}

/// Whether this process has already dropped stale test databases.
static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How old a test database must be before another test run drops it.
pub const STALE_DATABASE_AGE: Duration = Duration::from_secs(6 * 3600);

/// Drops `test_<unix seconds>_…` databases created more than [`STALE_DATABASE_AGE`]
/// before `now` that have no open connection. Best effort: a database that cannot be
/// dropped (in use, already gone) is left alone.
async fn drop_stale_databases(admin: &mut PgConnection, now: u64) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT d.datname FROM pg_database d WHERE d.datname ~ '^test_[0-9]+_[0-9a-f]{32}$' \
         AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
    )
    .fetch_all(&mut *admin)
    .await
    else {
        return;
    };
    let stale_before = now.saturating_sub(STALE_DATABASE_AGE.as_secs());
    for name in names {
        let created = name
            .split('_')
            .nth(1)
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| created < stale_before) {
            // The name matched the digits-and-hex pattern above, so formatting it in is safe.
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .execute(&mut *admin)
            .await;
        }
    }
}

/// `url` with its database name replaced by `name`.
pub fn database_url_with_name(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout` with
/// `what` in the message.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_every(Duration::from_millis(20), timeout, what, check).await
}

/// [`eventually`] polling every `interval`: for checks that cost the system under test
/// something, e.g. a request it logs.
pub async fn eventually_every<T, F, Fut>(
    interval: Duration,
    timeout: Duration,
    what: &str,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(interval).await;
    }
}

/// Waits until a service's admin listener at `admin` (`http://host:port`) answers
/// `/readyz` with 200, or panics after `timeout`.
pub async fn wait_until_ready(admin: &str, timeout: Duration) {
    let http = reqwest::Client::new();
    let url = format!("{admin}/readyz");
    eventually(timeout, &format!("{url} to answer 200"), || async {
        let response = http.get(&url).send().await.ok()?;
        (response.status() == reqwest::StatusCode::OK).then_some(())
    })
    .await;
}

/// Sends the services' logs to the test output (shown for failing tests), at `warn`
/// unless `RUST_LOG` says otherwise. Safe to call from every test.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_is_replaced_keeping_credentials_and_options() {
        assert_eq!(
            database_url_with_name("postgres://u:p@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:5432/t1?sslmode=disable"
        );
        assert_eq!(
            database_url_with_name("postgres://u@h", "t2"),
            "postgres://u@h/t2"
        );
    }

    async fn database_exists(admin: &mut PgConnection, name: &str) -> bool {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
        )
        .bind(name)
        .fetch_one(admin)
        .await
        .expect("pg_database")
    }

    #[tokio::test]
    async fn stale_test_databases_nobody_uses_are_dropped_and_recent_ones_kept() {
        let fresh = fresh_postgres_database().await;
        let fresh_name = fresh.rsplit('/').next().expect("a name").to_owned();
        let mut admin = PgConnection::connect(&postgres_admin_url())
            .await
            .expect("admin connection");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let old = format!(
            "test_{}_{}",
            now - STALE_DATABASE_AGE.as_secs() - 60,
            uuid::Uuid::new_v4().simple()
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {old}")))
            .execute(&mut admin)
            .await
            .expect("create an old database");

        drop_stale_databases(&mut admin, now).await;

        assert!(!database_exists(&mut admin, &old).await, "{old} was kept");
        assert!(
            database_exists(&mut admin, &fresh_name).await,
            "{fresh_name} was dropped"
        );
    }
}
