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
    let (trigger, outcome) = (
        format!("trigger=\"{trigger}\""),
        format!("outcome=\"{outcome}\""),
    );
    metric(
        stack,
        "tessera_notification_claims_total",
        &[&trigger, &outcome],
    )
    .await
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

/// Sum of the `/metrics` samples of `metric` whose labels contain every one of `labels`
/// (`name="value"` each).
async fn metric(stack: &Stack, metric: &str, labels: &[&str]) -> u64 {
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
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Requests `count` email notifications for `user_id` through the API, as fast as they
/// are answered.
async fn request_mails(stack: &Stack, user_id: &str, count: usize) {
    let token = stack.service_token().await;
    for _ in 0..count {
        let answer = stack
            .http
            .post(format!("{}/v1/notifications", stack.notification))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "user_id": user_id, "template": "welcome", "channels": ["email"] }))
            .send()
            .await
            .expect("request");
        assert_eq!(answer.status(), 202);
    }
}

/// How many messages `stack`'s SMTP server holds, and how many distinct `Message-ID`s
/// (one per job) among them.
fn sent_and_distinct(stack: &Stack) -> (usize, usize) {
    let messages = stack.smtp.messages();
    let ids: std::collections::HashSet<String> =
        messages.iter().map(|m| m.header("message-id")).collect();
    (messages.len(), ids.len())
}

/// Claims of several jobs and the lease check before each send.
mod batch {
    use super::*;

    /// A stack with `workers` delivery workers, a lease of 1 s and every SMTP answer held
    /// `delay_ms`, where Ada signed up (her welcome mail) and then `more` mails were
    /// requested for her.
    async fn backlog(backend: testkit::Backend, workers: u32, delay_ms: u64, more: usize) -> Stack {
        let stack = Stack::start(Options {
            backend,
            args: vec![
                "--delivery-workers".into(),
                workers.to_string(),
                "--delivery-lease-secs".into(),
                "1".into(),
            ],
            ..Options::default()
        })
        .await;
        stack.smtp.delay(delay_ms).await;
        let (user_id, _) = stack
            .user_with_profile(
                "ada@example.com",
                &profile("Ada", "ada@example.com", "en", None, true),
            )
            .await;
        request_mails(&stack, &user_id, more).await;
        stack
    }

    on_both_backends! {
        async fn a_backlog_is_claimed_several_jobs_at_a_time_and_fresh_claims_need_no_renewal(backend: Backend) {
            // One worker, each send held 400 ms by the server, a lease of 1 s: the jobs
            // requested while the welcome mail is being sent queue up, and one claim takes
            // several of them. A fresh claim is sent without a lease renewal first (one write
            // less per mail); one that waited behind a 400 ms send has under two thirds of its
            // lease left and is renewed in the database before it goes.
            let stack = backlog(backend, 1, 400, 8).await;
            stack.mails(9, WITHIN).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(sent_and_distinct(&stack), (9, 9), "every mail sent once");
            let claims = metric(&stack, "tessera_notification_claims_total", &["outcome=\"job\""]).await;
            assert!(claims <= 5, "9 jobs, a backlog of 8 behind the first: {claims} claims found jobs");
            let clock = metric(&stack, "tessera_notification_lease_checks_total", &["by=\"clock\""]).await;
            let database = metric(&stack, "tessera_notification_lease_checks_total", &["by=\"database\""]).await;
            assert!(clock >= 2, "fresh claims are sent on the lease they hold ({clock} were)");
            assert!(database >= 2, "jobs that waited in a claim are renewed first ({database} were)");
            assert_eq!(clock + database, 9, "one check per send");
        }

        async fn a_job_taken_over_while_it_waited_in_a_claim_is_not_sent_twice(backend: Backend) {
            // Two workers, sends held 1.5 s, a lease of 1 s: the jobs one worker claimed
            // together wait behind its first send until their leases run out, and the other
            // worker takes them over. The first worker must then find them lost, not send them.
            let stack = backlog(backend, 2, 1500, 5).await;
            stack.mails(6, Duration::from_secs(60)).await;
            // Past any further lease and send.
            tokio::time::sleep(Duration::from_secs(4)).await;
            assert_eq!(sent_and_distinct(&stack), (6, 6), "every mail sent once");
            let lost = metric(&stack, "tessera_notification_lease_checks_total", &["by=\"lost\""]).await;
            assert!(lost >= 1, "a job taken over while it waited was found lost ({lost} times)");
        }
    }
}
