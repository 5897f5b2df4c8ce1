//! Delivery jobs: claiming due ones with a lease, recording each attempt and its outcome
//! (with the failure event in the same transaction), and reading them for the API.

use service_kit::{Pool, with_pool};
use tessera_events::{OutboxMessage, outbox};

/// A job claimed for delivery, with what its notification says.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedJob {
    pub id: String,
    pub notification_id: String,
    pub channel: String,
    pub address: Option<String>,
    /// Including the attempt now starting.
    pub attempts: i64,
    pub user_id: String,
    pub template: String,
    pub locale: Option<String>,
    pub data: String,
    pub critical: bool,
    /// Unix ms until which the claim holds (as written by the claim).
    pub lease_until: i64,
}

const CLAIMABLE: &str =
    "(status = 'pending' AND due_at <= $1) OR (status = 'sending' AND lease_until <= $1)";

/// What a claim returns of each job: its own columns and, through one lookup by primary
/// key each, its notification's (SQLite's `RETURNING` names only the updated table).
const CLAIMED: &str = "id, notification_id, channel, address, attempts, due_at, \
     lease_until, \
     (SELECT n.user_id FROM notifications n WHERE n.id = jobs.notification_id) AS user_id, \
     (SELECT n.template FROM notifications n WHERE n.id = jobs.notification_id) AS template, \
     (SELECT n.locale FROM notifications n WHERE n.id = jobs.notification_id) AS locale, \
     (SELECT n.data FROM notifications n WHERE n.id = jobs.notification_id) AS data, \
     (SELECT n.critical FROM notifications n WHERE n.id = jobs.notification_id) AS critical";

/// A claimed job as the claim returns it, before ordering.
#[derive(Debug, sqlx::FromRow)]
struct ClaimedRow {
    #[sqlx(flatten)]
    job: ClaimedJob,
    due_at: i64,
}

/// Claims up to `limit` due jobs (and jobs whose lease ran out: their process died while
/// sending) for `lease_ms`; each claim counts as an attempt. One statement: on SQLite
/// every statement is a hand-off to the connection's thread and back, and the claim
/// returns what the send needs instead of reading it in a second one.
pub async fn claim(
    pool: &Pool,
    now_ms: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<ClaimedJob>, sqlx::Error> {
    let mut rows: Vec<ClaimedRow> =
        match pool {
            // Concurrent workers and replicas skip each other's rows instead of waiting.
            Pool::Postgres(p) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE jobs SET status = 'sending', attempts = attempts + 1, lease_until = $2, \
             updated_at = $1 WHERE id IN (SELECT id FROM jobs WHERE {CLAIMABLE} \
             ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING {CLAIMED}"
            )))
            .bind(now_ms)
            .bind(now_ms + lease_ms)
            .bind(limit)
            .fetch_all(p)
            .await?,
            // SQLite has one writer at a time: the UPDATE is the lock.
            Pool::Sqlite(p) => sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "UPDATE jobs SET status = 'sending', attempts = attempts + 1, lease_until = $2, \
             updated_at = $1 WHERE id IN (SELECT id FROM jobs WHERE {CLAIMABLE} \
             ORDER BY due_at LIMIT $3) RETURNING {CLAIMED}"
            )))
            .bind(now_ms)
            .bind(now_ms + lease_ms)
            .bind(limit)
            .fetch_all(p)
            .await?,
        };
    // `RETURNING` has no order: oldest first, the order they were due in.
    rows.sort_by(|a, b| (a.due_at, &a.job.id).cmp(&(b.due_at, &b.job.id)));
    Ok(rows.into_iter().map(|row| row.job).collect())
}

/// Extends this worker's claim on a job to `lease_until` (unix ms) while an attempt runs.
/// `false`: the job is no longer this worker's (its lease ran out and another took it).
pub async fn renew(
    pool: &Pool,
    job_id: &str,
    attempt: i64,
    lease_until: i64,
) -> Result<bool, sqlx::Error> {
    let updated = with_pool!(pool, |p| {
        sqlx::query(
            "UPDATE jobs SET lease_until = $1 WHERE id = $2 AND status = 'sending' AND attempts = $3",
        )
        .bind(lease_until)
        .bind(job_id)
        .bind(attempt)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
    })?;
    Ok(updated == 1)
}

/// Where a job goes after an attempt.
#[derive(Debug, Clone)]
pub enum Next {
    /// Done: `delivered` or `skipped`.
    Final(&'static str),
    /// Try again at this time (unix ms).
    Retry { due_at: i64 },
    /// Failed for good; the event announcing it goes into the outbox.
    Failed(Box<OutboxMessage>),
}

/// One attempt's record.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub job_id: &'a str,
    pub number: i64,
    pub started_at: i64,
    pub finished_at: i64,
    /// `delivered`, `transient`, `permanent` or `skipped`.
    pub outcome: &'static str,
    pub detail: Option<String>,
}

/// Records `attempt` and moves the job on. Does nothing and answers `false` when the job
/// is no longer this worker's (its lease ran out and another took it).
///
/// A job that failed for good takes one transaction with the event announcing it. Any
/// other outcome takes two statements of their own, no transaction (on SQLite a begin and
/// a commit are two more hand-offs to the connection's thread): the attempt, while the
/// job is still this worker's, then the job. Stopped between the two (a crash, an error),
/// the job is still `sending` with its attempt recorded, which is what a crash right after
/// the send leaves too: the job is sent again once its lease runs out, or recorded by the
/// worker's next try (the attempt is not inserted twice).
pub async fn finish(pool: &Pool, attempt: &Attempt<'_>, next: &Next) -> Result<bool, sqlx::Error> {
    let (status, due_at) = match next {
        Next::Final(status) => (*status, None),
        Next::Retry { due_at } => ("pending", Some(*due_at)),
        Next::Failed(event) => return finish_failed(pool, attempt, event).await,
    };
    with_pool!(pool, |p| async {
        sqlx::query(
            "INSERT INTO attempts (job_id, number, started_at, finished_at, outcome, detail) \
             SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM jobs \
             WHERE id = $1 AND status = 'sending' AND attempts = $2) \
             ON CONFLICT (job_id, number) DO NOTHING",
        )
        .bind(attempt.job_id)
        .bind(attempt.number)
        .bind(attempt.started_at)
        .bind(attempt.finished_at)
        .bind(attempt.outcome)
        .bind(&attempt.detail)
        .execute(p)
        .await?;
        let updated = sqlx::query(MOVE_ON)
            .bind(status)
            .bind(due_at)
            .bind(&attempt.detail)
            .bind(attempt.finished_at)
            .bind(attempt.job_id)
            .bind(attempt.number)
            .execute(p)
            .await?
            .rows_affected();
        Ok::<_, sqlx::Error>(updated == 1)
    }
    .await)
}

/// Moves a job on after an attempt, if it is still the attempt's.
const MOVE_ON: &str = "UPDATE jobs SET status = $1, due_at = COALESCE($2, due_at), \
     lease_until = NULL, last_error = $3, updated_at = $4 \
     WHERE id = $5 AND status = 'sending' AND attempts = $6";

/// `finish` for a job that failed for good: the job, its attempt and the failure event
/// in one transaction.
async fn finish_failed(
    pool: &Pool,
    attempt: &Attempt<'_>,
    event: &OutboxMessage,
) -> Result<bool, sqlx::Error> {
    with_pool!(pool, |p| async {
        let mut tx = p.begin().await?;
        let updated = sqlx::query(MOVE_ON)
            .bind("failed")
            .bind(None::<i64>)
            .bind(&attempt.detail)
            .bind(attempt.finished_at)
            .bind(attempt.job_id)
            .bind(attempt.number)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO attempts (job_id, number, started_at, finished_at, outcome, detail) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (job_id, number) DO NOTHING",
        )
        .bind(attempt.job_id)
        .bind(attempt.number)
        .bind(attempt.started_at)
        .bind(attempt.finished_at)
        .bind(attempt.outcome)
        .bind(&attempt.detail)
        .execute(&mut *tx)
        .await?;
        outbox::write(&mut *tx, event).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(true)
    }
    .await)
}

/// A job as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRow {
    pub id: String,
    pub channel: String,
    pub status: String,
    pub attempts: i64,
    pub due_at: i64,
    pub last_error: Option<String>,
}

/// An attempt as the API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub job_id: String,
    pub number: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub outcome: String,
    pub detail: Option<String>,
}

/// The jobs of a notification and their attempts.
pub async fn of_notification(
    pool: &Pool,
    notification_id: &str,
) -> Result<(Vec<JobRow>, Vec<AttemptRow>), sqlx::Error> {
    with_pool!(pool, |p| async {
        let jobs: Vec<JobRow> = sqlx::query_as(
            "SELECT id, channel, status, attempts, due_at, last_error FROM jobs \
             WHERE notification_id = $1 ORDER BY channel",
        )
        .bind(notification_id)
        .fetch_all(p)
        .await?;
        let attempts: Vec<AttemptRow> = sqlx::query_as(
            "SELECT a.job_id, a.number, a.started_at, a.finished_at, a.outcome, a.detail \
             FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.notification_id = $1 \
             ORDER BY a.job_id, a.number",
        )
        .bind(notification_id)
        .fetch_all(p)
        .await?;
        Ok::<_, sqlx::Error>((jobs, attempts))
    }
    .await)
}
