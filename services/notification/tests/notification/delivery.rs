//! SMTP faults: a server refusing for a while (4xx) is retried until it accepts; one
//! refusing for good (5xx) fails the job at once, publishes `delivery.failed`, and is
//! not tried again. A send slower than the lease is not taken over and sent again, and
//! one whose record fails at first is recorded late rather than sent again.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use crate::support::{Options, Stack, on_both_backends, profile};

const WITHIN: Duration = Duration::from_secs(30);

on_both_backends! {
    async fn a_temporarily_refusing_smtp_server_gets_the_mail_after_retries(backend: Backend) {
        let stack = Stack::on(backend).await;
        stack.smtp.refuse_next(451, 2).await;
        stack
            .user_with_profile("ada@example.com", &profile("Ada", "ada@example.com", "en", None, true))
            .await;
        let mails = stack.mails(1, WITHIN).await;
        assert_eq!(mails[0].header("subject"), "Welcome to Tessera, Ada");
        assert_eq!(stack.smtp.stats().await, (1, 2), "refused twice, then accepted");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(stack.smtp.messages().len(), 1, "delivered once");
    }

    async fn a_permanently_refusing_smtp_server_fails_the_job_and_publishes_the_failure(backend: Backend) {
        let stack = Stack::on(backend).await;
        let mut failures = stack.watch("tessera.events.notification.delivery.failed").await;
        stack.smtp.refuse_next(550, 100).await;
        let (user_id, _) = stack
            .user_with_profile("ada@example.com", &profile("Ada", "ada@example.com", "en", None, true))
            .await;
        let message = tokio::time::timeout(WITHIN, failures.next())
            .await
            .expect("delivery.failed published in time")
            .expect("a message");
        let event: Value = serde_json::from_slice(&message.payload).expect("event json");
        assert_eq!(event["type"], "dev.tessera.notification.delivery.failed.v1");
        assert_eq!(event["data"]["user_id"], user_id.as_str());
        assert_eq!(event["data"]["channel"], "email");
        assert_eq!(event["data"]["attempts"], 1, "a 5xx is not retried");
        assert!(event["data"]["reason"].as_str().unwrap_or_default().contains("550"), "{event}");

        // The retry schedule is 0.3 s: give it time to (wrongly) try again.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(stack.smtp.stats().await, (0, 1), "exactly one attempt");
    }

    async fn a_send_that_outlasts_the_lease_is_not_taken_over_and_sent_again(backend: Backend) {
        let stack = Stack::start(Options {
            backend,
            args: vec!["--delivery-lease-secs".into(), "1".into()],
            ..Options::default()
        })
        .await;
        // The server answers DATA after 3 s: three lease lengths, well within the SMTP
        // timeout (30 s per command). Idle workers poll every 250 ms for expired leases.
        stack.smtp.delay(3000).await;
        stack
            .user_with_profile("ada@example.com", &profile("Ada", "ada@example.com", "en", None, true))
            .await;
        stack.mails(1, WITHIN).await;
        // A second worker that took the job over would be holding its DATA answer now.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(stack.smtp.messages().len(), 1, "the welcome email is sent once");
    }
}

/// The notification database of `stack` (PostgreSQL), as the test's own pool.
async fn notification_database(stack: &Stack) -> sqlx::PgPool {
    let url = stack
        .notification_args
        .windows(2)
        .find(|pair| pair[0] == "--database-url")
        .map(|pair| pair[1].clone())
        .expect("--database-url");
    sqlx::PgPool::connect(&url)
        .await
        .expect("notification database")
}

#[tokio::test]
async fn a_delivered_message_whose_record_fails_at_first_is_recorded_not_sent_again() {
    let stack = Stack::start(Options {
        backend: testkit::Backend::Postgres,
        args: vec!["--delivery-lease-secs".into(), "2".into()],
        ..Options::default()
    })
    .await;
    let db = notification_database(&stack).await;
    stack.smtp.delay(1500).await;
    stack
        .user_with_profile(
            "ada@example.com",
            &profile("Ada", "ada@example.com", "en", None, true),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // While the server holds DATA, the attempts table goes away: the attempt cannot be
    // recorded when the server accepts the mail. It comes back 2 s later.
    sqlx::query("ALTER TABLE attempts RENAME TO attempts_away")
        .execute(&db)
        .await
        .expect("rename");
    stack.mails(1, WITHIN).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sqlx::query("ALTER TABLE attempts_away RENAME TO attempts")
        .execute(&db)
        .await
        .expect("rename back");
    // Past the 2 s lease and a second 1.5 s send.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        stack.smtp.messages().len(),
        1,
        "the welcome email is sent once"
    );
    let status: String = sqlx::query_scalar("SELECT status FROM jobs")
        .fetch_one(&db)
        .await
        .expect("job");
    assert_eq!(status, "delivered");
}

/// Sum of `tessera_notification_claims_total` samples with `trigger` and `outcome`.
async fn claims(stack: &Stack, trigger: &str, outcome: &str) -> u64 {
    let text = stack
        .http
        .get(format!("{}/metrics", stack.notification_admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with("tessera_notification_claims_total{"))
        .filter(|l| l.contains(&format!("trigger=\"{trigger}\"")))
        .filter(|l| l.contains(&format!("outcome=\"{outcome}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_queued_job_wakes_one_delivery_worker_not_all_of_them() {
    // SQLite and the default 32 workers: every claim takes the database's one write lock,
    // so workers woken for nothing delay the one claim that matters (this made the
    // welcome mail's p99 miss 100 ms at 200 signups/s).
    let stack = Stack::on(testkit::Backend::Sqlite).await;
    let (user_id, _) = stack
        .user_with_profile(
            "ada@example.com",
            &profile("Ada", "ada@example.com", "en", None, true),
        )
        .await;
    stack.mails(1, WITHIN).await;
    let token = stack.service_token().await;
    for n in 0..10 {
        // Each request finds every worker idle and waiting.
        let answer = stack
            .http
            .post(format!("{}/v1/notifications", stack.notification))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "user_id": user_id, "template": "welcome", "channels": ["email"] }))
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status(), 202);
        stack.mails(2 + n, WITHIN).await;
    }
    assert_eq!(stack.smtp.messages().len(), 11, "every mail sent once");
    let found = claims(&stack, "wake", "job").await;
    let wasted = claims(&stack, "wake", "none").await;
    assert!(
        found >= 1,
        "workers are woken for jobs ({found} woken claims found one)"
    );
    assert!(
        wasted <= 11,
        "11 jobs, at most one wake-up each; {wasted} woken workers found nothing"
    );
}
