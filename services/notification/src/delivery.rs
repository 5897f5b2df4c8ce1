//! The delivery worker: claims due jobs with a lease, resolves the recipient (address,
//! locale, preferences), renders the template, waits for the channel's rate limit, sends,
//! and records the attempt. Transient failures are retried on the configured schedule
//! with jitter; permanent ones (and exhausted retries) fail the job and publish
//! `dev.tessera.notification.delivery.failed.v1` through the outbox in the same
//! transaction.
//!
//! A job whose process died while sending keeps status `sending` until its lease runs
//! out, then any worker claims it again. If the SMTP server had already accepted the
//! message but the acknowledgement never arrived, the message is sent twice; both copies
//! carry the same `Message-ID` (the job id). SMTP offers no way to close that gap.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use service_kit::{CancellationToken, Clock, Pool};
use tessera_events::{Event, OutboxMessage, RelayHandle};
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::channel::{Channel, ChannelKind, Outgoing, SendError};
use crate::db::jobs::{self, Attempt, ClaimedJob, Next};
use crate::ratelimit::Pacer;
use crate::recipients::{LookupError, Recipients};
use crate::templates::Templates;

/// How often workers look for due jobs when nobody wakes them (retries come due).
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Wait after a database error before claiming again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Jobs one claim takes at most. On SQLite every claim is a write transaction on the one
/// writer; taking a few at once cuts those per mail when a backlog is queued (a lone job
/// is still claimed alone). The worker sends them one after the other; each is checked
/// for its lease right before its send, so one left waiting too long is not sent if
/// another worker took it over.
const CLAIM_BATCH: i64 = 4;

/// `dev.tessera.notification.delivery.failed.v1`: a job failed for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFailed {
    pub notification_id: String,
    pub job_id: String,
    pub user_id: String,
    pub channel: ChannelKind,
    pub template: String,
    pub attempts: i64,
    pub reason: String,
}

impl Event for DeliveryFailed {
    const SERVICE: &'static str = "notification";
    const ENTITY: &'static str = "delivery";
    const VERB: &'static str = "failed";

    fn subject(&self) -> String {
        self.notification_id.clone()
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    channel: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    by: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClaimLabels {
    trigger: &'static str,
    outcome: &'static str,
}

/// Delivery counters on `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct DeliveryMetrics {
    attempts: Family<OutcomeLabels, Counter>,
    claims: Family<ClaimLabels, Counter>,
    lease_checks: Family<CheckLabels, Counter>,
}

impl DeliveryMetrics {
    /// Registers `tessera_notification_attempts_total{channel, outcome}`.
    pub fn register(&self, metrics: &service_kit::Metrics) {
        metrics.register(
            "notification_attempts",
            "Delivery attempts by channel and outcome (delivered, skipped, transient, permanent)",
            self.attempts.clone(),
        );
        metrics.register(
            "notification_claims",
            "Delivery workers' looks for due jobs by what made them look (start, wake, poll, \
             loop after a send, retry after an error) and what they found (job, none)",
            self.claims.clone(),
        );
        metrics.register(
            "notification_lease_checks",
            "Lease checks right before a send, by how the lease was known to be held: \
             clock (claimed or renewed by this worker with over two thirds of the lease \
             left) or database (renewed there first); lost: taken over, not sent",
            self.lease_checks.clone(),
        );
    }

    fn lease_check(&self, by: &'static str) {
        self.lease_checks.get_or_create(&CheckLabels { by }).inc();
    }

    fn claim(&self, trigger: &'static str, outcome: &'static str) {
        self.claims
            .get_or_create(&ClaimLabels { trigger, outcome })
            .inc();
    }
}

/// A configured channel and its rate limit.
#[derive(Debug, Clone)]
pub struct Route {
    pub channel: Arc<dyn Channel>,
    pub pacer: Arc<Pacer>,
}

/// Everything the workers need.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub pool: Pool,
    pub templates: Arc<Templates>,
    pub routes: Arc<HashMap<ChannelKind, Route>>,
    pub recipients: Arc<Recipients>,
    /// Waits before retries 1, 2, ...; the job fails after the last.
    pub schedule: Arc<Vec<Duration>>,
    pub lease: Duration,
    pub clock: Arc<dyn Clock>,
    pub relay: RelayHandle,
    /// Poked when jobs are queued, so they go out without waiting for the poll.
    pub wake: Arc<Notify>,
    pub metrics: DeliveryMetrics,
}

/// What this worker knows of its lease on a job: until when it holds (unix ms, as last
/// written by the claim or a renewal) and whether a renewal found the job taken over.
struct Lease {
    until: AtomicI64,
    lost: AtomicBool,
}

/// How one attempt ended.
enum Step {
    Delivered,
    Skipped(String),
    Failed(SendError),
    /// The job's lease ran out before the send and another worker claimed it.
    Lost,
}

impl Delivery {
    fn now_ms(&self) -> i64 {
        i64::try_from(self.clock.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
    }

    /// Starts `workers` delivery loops on `tracker`; they stop with `shutdown` after the
    /// send at hand (await the tracker before the process exits).
    pub fn spawn(&self, workers: u32, shutdown: &CancellationToken, tracker: &TaskTracker) {
        for _ in 0..workers {
            let (delivery, stop) = (self.clone(), shutdown.clone());
            tracker.spawn(async move { delivery.work(stop).await });
        }
    }

    async fn work(self, shutdown: CancellationToken) {
        let lease_ms = self.lease_ms();
        let mut trigger = "start";
        while !shutdown.is_cancelled() {
            // A worker woken for a job takes one: each queued job wakes one worker, and
            // a woken worker taking several would leave the others woken for nothing (an
            // empty claim, a write on SQLite, each). One looking again right after a send
            // is working through a backlog and takes a few.
            let limit = if trigger == "loop" { CLAIM_BATCH } else { 1 };
            let claimed = jobs::claim(&self.pool, self.now_ms(), lease_ms, limit).await;
            match claimed {
                Ok(claimed) if claimed.is_empty() => {
                    self.metrics.claim(trigger, "none");
                    trigger = tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = self.wake.notified() => "wake",
                        () = tokio::time::sleep(POLL_INTERVAL) => "poll",
                    };
                }
                Ok(claimed) => {
                    self.metrics.claim(trigger, "job");
                    for job in claimed {
                        self.deliver(job).await;
                    }
                    trigger = "loop";
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot claim delivery jobs; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(ERROR_PAUSE) => {}
                    }
                    trigger = "retry";
                }
            }
        }
    }

    /// One attempt at `job`, recorded.
    pub async fn deliver(&self, job: ClaimedJob) {
        let started_at = self.now_ms();
        // The lease is renewed while the attempt runs: a rate-limit wait or a slow server
        // (lettre's timeout bounds each SMTP command, not the whole send) may outlast it,
        // and another worker would then claim the job and send it a second time.
        let lease = Lease {
            until: AtomicI64::new(job.lease_until),
            lost: AtomicBool::new(false),
        };
        let step = tokio::select! {
            step = self.attempt(&job, &lease) => step,
            never = self.keep_lease(&job, &lease) => match never {},
        };
        let finished_at = self.now_ms();
        let (outcome, detail, next) = match step {
            Step::Lost => {
                tracing::warn!(job = %job.id, "job was taken over by another worker before it was sent (lease expired)");
                return;
            }
            Step::Delivered => ("delivered", None, Next::Final("delivered")),
            Step::Skipped(reason) => ("skipped", Some(reason), Next::Final("skipped")),
            Step::Failed(SendError::Transient(reason)) => {
                let retry = usize::try_from(job.attempts - 1)
                    .ok()
                    .and_then(|i| self.schedule.get(i));
                if let Some(wait) = retry {
                    let due_at = finished_at + jittered_ms(*wait);
                    ("transient", Some(reason), Next::Retry { due_at })
                } else {
                    let reason = format!("gave up after {} attempts: {reason}", job.attempts);
                    let event = self.failure_event(&job, &reason);
                    ("transient", Some(reason), Next::Failed(Box::new(event)))
                }
            }
            Step::Failed(SendError::Permanent(reason)) => {
                let event = self.failure_event(&job, &reason);
                ("permanent", Some(reason), Next::Failed(Box::new(event)))
            }
        };
        let channel = ChannelKind::parse(&job.channel).map_or("unknown", ChannelKind::as_str);
        self.metrics
            .attempts
            .get_or_create(&OutcomeLabels { channel, outcome })
            .inc();
        let attempt = Attempt {
            job_id: &job.id,
            number: job.attempts,
            started_at,
            finished_at,
            outcome,
            detail,
        };
        match self.record(&job, &attempt, &next).await {
            Ok(true) => {
                if matches!(next, Next::Failed(_)) {
                    tracing::warn!(job = %job.id, channel, reason = ?attempt.detail, "delivery failed for good");
                    self.relay.notify();
                }
            }
            Ok(false) => {
                tracing::warn!(job = %job.id, "job was taken over by another worker (lease expired)");
            }
            // The lease runs out and the job is attempted again: at least once.
            Err(error) => {
                tracing::error!(job = %job.id, %error, "cannot record a delivery attempt");
            }
        }
    }

    /// Records the attempt; while the database refuses, tries again as long as the job
    /// is still this worker's (a delivered message recorded late is better than one sent
    /// again when the lease runs out).
    async fn record(
        &self,
        job: &ClaimedJob,
        attempt: &Attempt<'_>,
        next: &Next,
    ) -> Result<bool, sqlx::Error> {
        let pause = ERROR_PAUSE.min(self.lease / 3);
        let mut renewed = tokio::time::Instant::now();
        loop {
            let error = match jobs::finish(&self.pool, attempt, next).await {
                Err(error) => error,
                done => return done,
            };
            tracing::warn!(job = %job.id, %error, "cannot record a delivery attempt; retrying");
            tokio::time::sleep(pause).await;
            match self.renew_lease(job).await {
                Ok(Some(_)) => renewed = tokio::time::Instant::now(),
                Ok(None) => return Ok(false),
                Err(_) if renewed.elapsed() >= self.lease => return Err(error),
                Err(_) => {}
            }
        }
    }

    /// Extends the job's lease every third of its length until dropped; stops renewing
    /// (and never completes) once the job turns out to be someone else's.
    async fn keep_lease(&self, job: &ClaimedJob, lease: &Lease) -> std::convert::Infallible {
        let every = self.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            match self.renew_lease(job).await {
                Ok(Some(until)) => lease.until.store(until, Ordering::Release),
                Ok(None) => {
                    lease.lost.store(true, Ordering::Release);
                    break;
                }
                // The next renewal may work; the lease still has two thirds to run.
                Err(error) => {
                    tracing::warn!(job = %job.id, %error, "cannot renew a delivery lease");
                }
            }
        }
        std::future::pending().await
    }

    /// Extends the lease on `job`; the new end (unix ms), or `None` when the job is no
    /// longer this worker's.
    async fn renew_lease(&self, job: &ClaimedJob) -> Result<Option<i64>, sqlx::Error> {
        let until = self.now_ms().saturating_add(self.lease_ms());
        let renewed = jobs::renew(&self.pool, &job.id, job.attempts, until).await?;
        Ok(renewed.then_some(until))
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// Whether `job` may be sent now: only while this worker's lease on it holds. No
    /// other worker can claim a job before its `lease_until`, so a lease this worker
    /// wrote that still has over two thirds of its length to run (a fresh claim, or a
    /// recent renewal) proves it without a database write — keeping the renewal still
    /// two chances (every third) before it runs out during the send, as a renewal here
    /// would. Otherwise the lease is renewed in the database first (a write; `false` if
    /// another worker took the job over).
    async fn still_ours(&self, job: &ClaimedJob, lease: &Lease) -> bool {
        if lease.lost.load(Ordering::Acquire) {
            self.metrics.lease_check("lost");
            return false;
        }
        let left = lease.until.load(Ordering::Acquire) - self.now_ms();
        if left > self.lease_ms() / 3 * 2 {
            self.metrics.lease_check("clock");
            return true;
        }
        self.metrics.lease_check("database");
        match self.renew_lease(job).await {
            Ok(Some(until)) => {
                lease.until.store(until, Ordering::Release);
                true
            }
            Ok(None) => {
                self.metrics.lease_check("lost");
                false
            }
            // As before this check could skip the write: a failed renewal is not proof
            // the job was taken over, and the send goes ahead.
            Err(error) => {
                tracing::warn!(job = %job.id, %error, "cannot renew a delivery lease before the send");
                true
            }
        }
    }

    fn failure_event(&self, job: &ClaimedJob, reason: &str) -> OutboxMessage {
        let event = DeliveryFailed {
            notification_id: job.notification_id.clone(),
            job_id: job.id.clone(),
            user_id: job.user_id.clone(),
            channel: ChannelKind::parse(&job.channel).unwrap_or(ChannelKind::Email),
            template: job.template.clone(),
            attempts: job.attempts,
            reason: reason.to_owned(),
        };
        OutboxMessage::new(&event, self.clock.now())
    }

    async fn attempt(&self, job: &ClaimedJob, lease: &Lease) -> Step {
        let Some(kind) = ChannelKind::parse(&job.channel) else {
            return Step::Failed(SendError::Permanent(format!(
                "unknown channel {}",
                job.channel
            )));
        };
        let Some(route) = self.routes.get(&kind) else {
            return Step::Failed(SendError::Permanent(format!(
                "the {kind} channel is not configured"
            )));
        };
        let recipient = match self.recipients.get(&job.user_id).await {
            Ok(recipient) => recipient,
            Err(LookupError::NotFound) => {
                return Step::Failed(SendError::Permanent("the user has no profile".into()));
            }
            Err(error @ LookupError::Unavailable(_)) => {
                return Step::Failed(SendError::Transient(error.to_string()));
            }
        };
        if !job.critical && !recipient.preferences.allows(kind) {
            return Step::Skipped(format!("the user turned {kind} messages off"));
        }
        let address = job.address.clone().or_else(|| match kind {
            ChannelKind::Email => Some(recipient.email.clone()),
            ChannelKind::Sms => recipient.phone.clone(),
            ChannelKind::Push => Some(recipient.user_id.clone()),
        });
        let Some(to) = address else {
            return Step::Skipped(format!("the user has no {kind} address"));
        };
        let data: Value = serde_json::from_str(&job.data).unwrap_or_else(|_| json!({}));
        let locale = job
            .locale
            .clone()
            .unwrap_or_else(|| recipient.locale.clone());
        let context = json!({
            "user_id": recipient.user_id,
            "display_name": recipient.display_name,
            "email": recipient.email,
            "phone": recipient.phone,
            "locale": locale,
            "data": data,
        });
        let rendered = match self
            .templates
            .render(&job.template, kind, &locale, &context)
        {
            Ok(rendered) => rendered,
            Err(error) => return Step::Failed(SendError::Permanent(error.to_string())),
        };
        route.pacer.wait().await;
        // Last check before the message leaves: a job another worker took over (this
        // one's renewals failed, or it waited behind the others of its claim) must not
        // be sent by both.
        if !self.still_ours(job, lease).await {
            return Step::Lost;
        }
        let message = Outgoing {
            job_id: job.id.clone(),
            to,
            subject: rendered.subject,
            body: rendered.body,
        };
        match route.channel.send(&message).await {
            Ok(()) => Step::Delivered,
            Err(error) => Step::Failed(error),
        }
    }
}

/// Wakes one delivery worker per queued job. Not every idle worker (`notify_waiters`):
/// each woken worker claims, and on SQLite every claim takes the one write lock, so 32
/// workers woken for one job made 31 empty claims queue behind (and in front of) the
/// one that mattered. A wake-up with no worker waiting is kept for the next one to wait
/// (`notify_one` stores it), so a job queued while every worker is busy is not left for
/// the poll either.
pub fn wake_for(wake: &Notify, jobs: usize) {
    for _ in 0..jobs {
        wake.notify_one();
    }
}

/// `wait` ±20 %, in milliseconds, so retries of many jobs do not come due together.
fn jittered_ms(wait: Duration) -> i64 {
    let factor = rand::random_range(0.8..=1.2);
    i64::try_from(wait.mul_f64(factor).as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_jittered_within_twenty_percent() {
        for _ in 0..1000 {
            let ms = jittered_ms(Duration::from_secs(10));
            assert!((8000..=12_000).contains(&ms), "{ms}");
        }
    }
}
