//! Notification's SQL on its own, on both backends: an event stores its notification and
//! jobs once however often it arrives, a claim hands over what the send needs in the
//! order the jobs came due, and an attempt is recorded once, only while the job is still
//! the worker's.

use std::str::FromStr as _;

use service_kit::{Database, DatabaseUrl, Pool, with_pool};
use tessera_notification::channel::ChannelKind;
use tessera_notification::db::jobs::{self, Attempt, Next};
use tessera_notification::db::notifications::{self, Created, Guard, NewJob, NewNotification};

use crate::support::on_both_backends;

/// A migrated database of `backend` (the SQLite file lives in `dir`).
async fn database(backend: testkit::Backend, dir: &tempfile::TempDir) -> Pool {
    let url = backend.database_url(dir.path(), "notification").await;
    let url = DatabaseUrl::from_str(&url).expect("database URL");
    Database::open_now(&url, 4, &tessera_notification::db::migrations())
        .await
        .expect("database migrated")
        .pool()
        .clone()
}

fn welcome(id: &str, user: &str) -> NewNotification {
    NewNotification {
        id: id.to_owned(),
        user_id: user.to_owned(),
        template: "welcome".to_owned(),
        locale: Some("de".to_owned()),
        data: r#"{"display_name":"Ada"}"#.to_owned(),
        critical: true,
        origin: "event",
        requested_by: "profile".to_owned(),
        created_at: 1_700_000_000,
    }
}

fn job(id: &str, channel: ChannelKind, address: &str) -> NewJob {
    NewJob {
        id: id.to_owned(),
        channel,
        address: Some(address.to_owned()),
    }
}

/// Rows in `table`.
async fn count(pool: &Pool, table: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    with_pool!(pool, |p| sqlx::query_scalar(sqlx::AssertSqlSafe(
        sql.clone()
    ))
    .fetch_one(p)
    .await)
    .expect("count")
}

async fn from_event(
    pool: &Pool,
    notification: &NewNotification,
    jobs: &[NewJob],
    event: &str,
    now_ms: i64,
) -> Created {
    let guard = Guard::Inbox {
        consumer: "notification",
        event_id: event,
    };
    notifications::create(pool, notification, jobs, guard, now_ms)
        .await
        .expect("create")
}

on_both_backends! {
    async fn an_event_that_arrives_twice_stores_its_notification_and_jobs_once(backend: Backend) {
        let dir = tempfile::tempdir().expect("dir");
        let pool = database(backend, &dir).await;
        let jobs = [
            job("job-1", ChannelKind::Email, "ada@example.com"),
            job("job-2", ChannelKind::Sms, "+4915112345678"),
        ];
        let first = from_event(&pool, &welcome("n-1", "u-1"), &jobs, "event-1", 1000).await;
        assert_eq!(first, Created::New);
        // Redelivered (the acknowledgement was lost): a new notification id, as the
        // handler makes one per delivery.
        let again = [job("job-3", ChannelKind::Email, "ada@example.com")];
        let second = from_event(&pool, &welcome("n-2", "u-1"), &again, "event-1", 2000).await;
        assert_eq!(second, Created::AlreadyHandled);
        assert_eq!(count(&pool, "inbox").await, 1);
        assert_eq!(count(&pool, "notifications").await, 1);
        assert_eq!(count(&pool, "jobs").await, 2);
        // Another event, and one with no usable channel, are stored.
        assert_eq!(from_event(&pool, &welcome("n-3", "u-2"), &again[..0], "event-2", 3000).await, Created::New);
        assert_eq!(count(&pool, "notifications").await, 2);
        assert_eq!(count(&pool, "jobs").await, 2);
    }

    async fn a_claim_hands_over_each_job_with_its_notification_oldest_first(backend: Backend) {
        let dir = tempfile::tempdir().expect("dir");
        let pool = database(backend, &dir).await;
        for (n, due) in [(1, 3000), (2, 1000), (3, 2000)] {
            let jobs = [job(&format!("job-{n}"), ChannelKind::Email, "ada@example.com")];
            from_event(&pool, &welcome(&format!("n-{n}"), &format!("u-{n}")), &jobs, &format!("event-{n}"), due).await;
        }
        let claimed = jobs::claim(&pool, 5000, 30_000, 2).await.expect("claim");
        let ids: Vec<&str> = claimed.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["job-2", "job-3"], "the two due first, in due order");
        let first = &claimed[0];
        assert_eq!(
            (first.notification_id.as_str(), first.user_id.as_str(), first.template.as_str()),
            ("n-2", "u-2", "welcome")
        );
        assert_eq!(first.locale.as_deref(), Some("de"));
        assert_eq!(first.data, r#"{"display_name":"Ada"}"#);
        assert!(first.critical);
        assert_eq!((first.channel.as_str(), first.address.as_deref()), ("email", Some("ada@example.com")));
        assert_eq!((first.attempts, first.lease_until), (1, 35_000));
        let rest = jobs::claim(&pool, 5000, 30_000, 2).await.expect("claim");
        assert_eq!(rest.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), ["job-1"]);
        assert!(jobs::claim(&pool, 5000, 30_000, 2).await.expect("claim").is_empty(), "all leased");
    }

    async fn an_attempt_is_recorded_once_and_only_while_the_job_is_the_workers(backend: Backend) {
        let dir = tempfile::tempdir().expect("dir");
        let pool = database(backend, &dir).await;
        let jobs = [job("job-1", ChannelKind::Email, "ada@example.com")];
        from_event(&pool, &welcome("n-1", "u-1"), &jobs, "event-1", 1000).await;
        let claimed = jobs::claim(&pool, 1000, 1000, 1).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        // The lease ran out and another worker took the job over (attempt 2).
        let taken = jobs::claim(&pool, 2500, 1000, 1).await.expect("claim");
        assert_eq!(taken[0].attempts, 2);
        let late = Attempt {
            job_id: "job-1",
            number: 1,
            started_at: 1000,
            finished_at: 2600,
            outcome: "delivered",
            detail: None,
        };
        let recorded = jobs::finish(&pool, &late, &Next::Final("delivered")).await.expect("finish");
        assert!(!recorded, "the first worker's record is refused");
        assert_eq!(count(&pool, "attempts").await, 0, "and leaves no attempt behind");
        // The second worker's record, tried again after an error that came after its
        // attempt was stored: one attempt, the job delivered.
        let current = Attempt { number: 2, started_at: 2500, finished_at: 2700, ..late };
        with_pool!(&pool, |p| sqlx::query(
            "INSERT INTO attempts (job_id, number, started_at, finished_at, outcome) \
             VALUES ('job-1', 2, 2500, 2700, 'delivered')"
        )
        .execute(p)
        .await
        .map(drop))
        .expect("the first try's attempt");
        let recorded = jobs::finish(&pool, &current, &Next::Final("delivered")).await.expect("finish");
        assert!(recorded);
        assert_eq!(count(&pool, "attempts").await, 1);
        let status: String = with_pool!(&pool, |p| sqlx::query_scalar("SELECT status FROM jobs")
            .fetch_one(p)
            .await)
        .expect("status");
        assert_eq!(status, "delivered");
    }
}
