//! Creating notifications with their jobs, guarded by the consumer's inbox or the API's
//! idempotency key in the same transaction, and reading them back.

use service_kit::{Pool, with_pool};
use tessera_events::inbox;

use crate::channel::ChannelKind;

/// A notification to store.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub id: String,
    pub user_id: String,
    pub template: String,
    pub locale: Option<String>,
    /// JSON object.
    pub data: String,
    pub critical: bool,
    /// `api` or `event`.
    pub origin: &'static str,
    pub requested_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A job to store with it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub channel: ChannelKind,
    pub address: Option<String>,
}

/// What makes a creation happen at most once.
#[derive(Debug, Clone, Copy)]
pub enum Guard<'a> {
    /// An event: the consumer's inbox row.
    Inbox {
        consumer: &'a str,
        event_id: &'a str,
    },
    /// An API request: the caller's idempotency key and the hash of the request body.
    Idempotency {
        caller: &'a str,
        key: &'a str,
        hash: &'a str,
    },
    /// Nothing (API request without a key).
    None,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Stored, jobs queued.
    New,
    /// The event was handled before: nothing stored.
    AlreadyHandled,
    /// The idempotency key was used before, with this notification and body hash.
    KeyUsed {
        notification_id: String,
        request_hash: String,
    },
}

/// Binds a new notification's columns, in the order `INSERT INTO notifications (id,
/// user_id, template, locale, data, critical, origin, requested_by, created_at)` lists
/// them, to the next nine placeholders of `$query`.
macro_rules! bind_notification {
    ($query:expr, $notification:expr) => {
        $query
            .bind(&$notification.id)
            .bind(&$notification.user_id)
            .bind(&$notification.template)
            .bind(&$notification.locale)
            .bind(&$notification.data)
            .bind($notification.critical)
            .bind($notification.origin)
            .bind(&$notification.requested_by)
            .bind($notification.created_at)
    };
}

/// Stores `notification` and `jobs` (due now) in one transaction with its guard.
pub async fn create(
    pool: &Pool,
    notification: &NewNotification,
    jobs: &[NewJob],
    guard: Guard<'_>,
    now_ms: i64,
) -> Result<Created, sqlx::Error> {
    if let Guard::Inbox { consumer, event_id } = guard {
        return create_for_event(pool, notification, jobs, (consumer, event_id), now_ms).await;
    }
    let created = with_pool!(pool, |p| {
        async {
        let mut tx = p.begin().await?;
        match guard {
            Guard::Inbox { consumer, event_id } => {
                if !inbox::claim(&mut *tx, consumer, event_id, now_ms / 1000).await? {
                    return Ok(Created::AlreadyHandled);
                }
            }
            Guard::Idempotency { caller, key, hash } => {
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys (caller, key, request_hash, notification_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (caller, key) DO NOTHING",
                )
                .bind(caller)
                .bind(key)
                .bind(hash)
                .bind(&notification.id)
                .bind(notification.created_at)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    let (notification_id, request_hash): (String, String) = sqlx::query_as(
                        "SELECT notification_id, request_hash FROM idempotency_keys \
                         WHERE caller = $1 AND key = $2",
                    )
                    .bind(caller)
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                    return Ok(Created::KeyUsed {
                        notification_id,
                        request_hash,
                    });
                }
            }
            Guard::None => {}
        }
        bind_notification!(
            sqlx::query(
                "INSERT INTO notifications (id, user_id, template, locale, data, critical, \
                 origin, requested_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            ),
            notification
        )
        .execute(&mut *tx)
        .await?;
        for job in jobs {
            sqlx::query(
                "INSERT INTO jobs (id, notification_id, channel, address, status, attempts, due_at, \
                 updated_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
            )
            .bind(&job.id)
            .bind(&notification.id)
            .bind(job.channel.as_str())
            .bind(&job.address)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok::<_, sqlx::Error>(Created::New)
    }
    .await
    })?;
    Ok(created)
}

/// The inbox row, the notification and its jobs for an event, all or nothing, in as few
/// statements as the backend allows: every welcome mail starts here, and on SQLite each
/// statement is a hand-off to the connection's thread and back (five of them before:
/// begin, inbox, notification, job, commit). The inbox row is the one
/// `tessera_events::inbox::claim` writes (`ON CONFLICT DO NOTHING`); an event seen before
/// stores nothing.
async fn create_for_event(
    pool: &Pool,
    notification: &NewNotification,
    jobs: &[NewJob],
    (consumer, event_id): (&str, &str),
    now_ms: i64,
) -> Result<Created, sqlx::Error> {
    const INBOX: &str = "INSERT INTO inbox (consumer, event_id, received_at) \
         VALUES ($1, $2, $3) ON CONFLICT (consumer, event_id) DO NOTHING";
    const NOTIFICATION: &str = "INSERT INTO notifications (id, user_id, template, locale, \
         data, critical, origin, requested_by, created_at) \
         SELECT $4, $5, $6, $7, $8, $9, $10, $11, $12";
    // $13 is the jobs' due time; each job then has three parameters from $14 on.
    let job_values = |row: &str| {
        (0..jobs.len())
            .map(|i| {
                let n = 14 + 3 * i;
                row.replace("$a", &format!("${n}"))
                    .replace("$b", &format!("${}", n + 1))
                    .replace("$c", &format!("${}", n + 2))
            })
            .collect::<Vec<_>>()
    };
    // The parameters in the order of the placeholders above.
    macro_rules! bind_event {
        ($query:expr) => {{
            let mut query = bind_notification!(
                $query.bind(consumer).bind(event_id).bind(now_ms / 1000),
                notification
            )
            .bind(now_ms);
            for job in jobs {
                query = query
                    .bind(&job.id)
                    .bind(job.channel.as_str())
                    .bind(&job.address);
            }
            query
        }};
    }
    let new = match pool {
        // One statement, atomic by itself: each insert feeds the next, so an event seen
        // before (no inbox row inserted) inserts nothing further.
        Pool::Postgres(p) => {
            let job = if jobs.is_empty() {
                String::new()
            } else {
                format!(
                    ", job AS (INSERT INTO jobs (id, notification_id, channel, address, \
                     status, attempts, due_at, updated_at) SELECT v.id, notification.id, \
                     v.channel, v.address, 'pending', 0, $13, $13 FROM notification \
                     CROSS JOIN (VALUES {}) AS v (id, channel, address))",
                    job_values("($a, $b, $c)").join(", ")
                )
            };
            let sql = format!(
                "WITH inbox_row AS ({INBOX} RETURNING 1), \
                 notification AS ({NOTIFICATION} FROM inbox_row RETURNING id){job} \
                 SELECT count(*) FROM notification"
            );
            let stored: i64 = bind_event!(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)))
                .fetch_one(p)
                .await?;
            stored == 1
        }
        // SQLite has no data-modifying `WITH`: the three inserts in one query string,
        // run by the connection's thread in one go inside the transaction. Each insert
        // after the inbox's goes ahead only if the one before it inserted (`changes()`:
        // the rows of the last statement completed).
        Pool::Sqlite(p) => {
            let job = if jobs.is_empty() {
                String::new()
            } else {
                let row = "SELECT $a, $4, $b, $c, 'pending', 0, $13, $13 WHERE changes() = 1";
                format!(
                    "; INSERT INTO jobs (id, notification_id, channel, address, status, \
                     attempts, due_at, updated_at) {}",
                    job_values(row).join(" UNION ALL ")
                )
            };
            let sql = format!("{INBOX}; {NOTIFICATION} WHERE changes() = 1{job}");
            let mut tx = p.begin().await?;
            let inserted = bind_event!(sqlx::query(sqlx::AssertSqlSafe(sql)))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            inserted > 0
        }
    };
    Ok(if new {
        Created::New
    } else {
        Created::AlreadyHandled
    })
}

/// A stored notification.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    pub id: String,
    pub user_id: String,
    pub template: String,
    pub locale: Option<String>,
    pub data: String,
    pub critical: bool,
    pub origin: String,
    pub requested_by: String,
    pub created_at: i64,
}

/// The notification `id`.
pub async fn get(pool: &Pool, id: &str) -> Result<Option<NotificationRow>, sqlx::Error> {
    with_pool!(pool, |p| {
        sqlx::query_as(
            "SELECT id, user_id, template, locale, data, critical, origin, requested_by, created_at \
             FROM notifications WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(p)
        .await
    })
}

/// Forgets idempotency keys created before `before` (unix seconds).
pub async fn prune_keys(pool: &Pool, before: i64) -> Result<u64, sqlx::Error> {
    with_pool!(pool, |p| {
        sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
    })
}
