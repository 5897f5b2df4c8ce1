//! Shared test plumbing: a fresh database per test (SQLite file or PostgreSQL), a private
//! stream and subject tree on the real JetStream server and typed test events (the outage
//! tests' private `nats-server` is `testkit::PrivateNats`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_kit::{Database, DatabaseUrl, Migrations, Pool, with_pool};
use tessera_events::{Event, JetStreamBus, NatsConfig, OutboxMessage, outbox};
use time::OffsetDateTime;

/// Environment variable naming the JetStream server tests use.
pub(crate) const NATS_URL_ENV: &str = "TESSERA_TEST_NATS_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// A test database with the outbox, inbox and effects tables.
pub(crate) struct TestDb {
    pub(crate) pool: Pool,
    /// Keeps the SQLite file alive for the test.
    _dir: Option<tempfile::TempDir>,
}

pub(crate) fn migrations() -> Migrations {
    Migrations {
        sqlite: sqlx::migrate!("./tests/events/migrations/sqlite"),
        postgres: sqlx::migrate!("./tests/events/migrations/postgres"),
    }
}

pub(crate) async fn database(backend: Backend) -> TestDb {
    let (url, dir) = match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            (DatabaseUrl::sqlite(dir.path().join("events.db")), Some(dir))
        }
        Backend::Postgres => (
            testkit::fresh_postgres_database()
                .await
                .parse()
                .expect("postgres url"),
            None,
        ),
    };
    let database = Database::open_now(&url, 8, &migrations())
        .await
        .expect("database");
    TestDb {
        pool: database.pool().clone(),
        _dir: dir,
    }
}

impl TestDb {
    /// Writes `messages` in one committed transaction.
    pub(crate) async fn commit(&self, messages: &[OutboxMessage]) {
        with_pool!(&self.pool, |p| {
            let mut tx = p.begin().await.expect("begin");
            for message in messages {
                outbox::write(&mut *tx, message).await.expect("write");
            }
            tx.commit().await.expect("commit");
        });
    }

    /// Writes `messages` in a transaction that is rolled back.
    pub(crate) async fn roll_back(&self, messages: &[OutboxMessage]) {
        with_pool!(&self.pool, |p| {
            let mut tx = p.begin().await.expect("begin");
            for message in messages {
                outbox::write(&mut *tx, message).await.expect("write");
            }
            tx.rollback().await.expect("rollback");
        });
    }

    pub(crate) async fn unsent(&self) -> i64 {
        with_pool!(&self.pool, |p| {
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                .fetch_one(p)
                .await
                .expect("count")
        })
    }

    pub(crate) async fn effects(&self, consumer: &str) -> Vec<String> {
        with_pool!(&self.pool, |p| {
            sqlx::query_scalar("SELECT event_id FROM effects WHERE consumer = $1 ORDER BY event_id")
                .bind(consumer)
                .fetch_all(p)
                .await
                .expect("effects")
        })
    }
}

/// The consumer's effect, guarded by the inbox in the same transaction. `Ok(true)` when
/// the effect happened now, `Ok(false)` when the inbox said it already had.
pub(crate) async fn apply_once(
    pool: &Pool,
    consumer: &str,
    event_id: &str,
) -> Result<bool, sqlx::Error> {
    with_pool!(pool, |p| async {
        let mut tx = p.begin().await?;
        if !tessera_events::inbox::claim(&mut *tx, consumer, event_id, 0).await? {
            return Ok(false);
        }
        sqlx::query("INSERT INTO effects (consumer, event_id) VALUES ($1, $2)")
            .bind(consumer)
            .bind(event_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
    .await)
}

/// A test event: `seq` counts per aggregate so order can be checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Thing {
    pub(crate) aggregate: String,
    pub(crate) seq: u32,
}

impl Event for Thing {
    const SERVICE: &'static str = "test";
    const ENTITY: &'static str = "thing";
    const VERB: &'static str = "happened";
    fn subject(&self) -> String {
        self.aggregate.clone()
    }
}

/// Another type on the same subject, which consumers of `Thing` have no handler for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Other {
    pub(crate) note: String,
}

impl Event for Other {
    const SERVICE: &'static str = "test";
    const ENTITY: &'static str = "thing";
    const VERB: &'static str = "happened";
    const VERSION: u32 = 9;
    fn subject(&self) -> String {
        "other".to_owned()
    }
}

pub(crate) fn thing(aggregate: &str, seq: u32) -> OutboxMessage {
    OutboxMessage::new(
        &Thing {
            aggregate: aggregate.to_owned(),
            seq,
        },
        OffsetDateTime::now_utc(),
    )
}

pub(crate) fn nats_url() -> String {
    std::env::var(NATS_URL_ENV).unwrap_or_else(|_| {
        panic!(
            "{NATS_URL_ENV} is not set: these tests need a NATS server with JetStream. Run \
             `tools/services up` and `source /var/tmp/tessera-services/env`"
        )
    })
}

/// A JetStream bus on a private stream and subject root, so tests run in parallel.
pub(crate) async fn private_bus(url: &str) -> JetStreamBus {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let mut config = NatsConfig::new(url, "events-test");
    config.stream = format!("TEST_{unique}");
    config.subject_root = format!("t{unique}");
    // Leftovers of a failed run expire instead of piling up.
    config.max_age = Duration::from_secs(600);
    config.publish_timeout = Duration::from_secs(2);
    JetStreamBus::connect(config).await.expect("connect")
}

/// Every message of the bus' stream, in stream order.
pub(crate) async fn stream_messages(
    bus: &JetStreamBus,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let mut stream = bus
        .context()
        .get_stream(&bus.config().stream)
        .await
        .expect("stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let mut messages = Vec::new();
    for sequence in 1..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            messages.push(message);
        }
    }
    messages
}

pub(crate) async fn delete_stream(bus: &JetStreamBus) {
    let _ = bus.context().delete_stream(&bus.config().stream).await;
}

pub(crate) fn header<'a>(
    message: &'a async_nats::jetstream::message::StreamMessage,
    name: &str,
) -> Option<&'a str> {
    message
        .headers
        .get(name)
        .map(async_nats::HeaderValue::as_str)
}

macro_rules! on_both_backends {
    ($(async fn $name:ident($backend:ident: Backend) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { let $backend = crate::support::Backend::Sqlite; $body } )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { let $backend = crate::support::Backend::Postgres; $body } )*
        }
    };
}
pub(crate) use on_both_backends;
