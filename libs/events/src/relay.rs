//! The outbox relay: publishes unsent rows oldest first, marks them sent once the bus
//! acknowledged them, and backs off while the bus is unreachable.
//!
//! Progress is the `sent_at` flag, never "id > last seen" (rows commit out of order).
//! Events of one aggregate (the `CloudEvents` `subject`) are published one after the
//! other, each waiting for its ack; different aggregates go concurrently, up to
//! `max_in_flight`. A failed publish stops its aggregate for this round, so nothing of
//! that aggregate overtakes it. On PostgreSQL several replicas may relay at once: a batch
//! is claimed with `FOR UPDATE SKIP LOCKED`, and aggregates with earlier rows held by
//! another relay wait for the next round. On SQLite run one relay per database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use serde::Deserialize;
use service_kit::{CancellationToken, Clock, Pool, SystemClock};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::envelope::OutboxMessage;
use crate::metrics::EventMetrics;
use crate::sink::Sink;
use crate::store;

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows read per round.
    pub batch_size: u32,
    /// Aggregates published concurrently (each has one publish in flight at most).
    pub max_in_flight: usize,
    /// Look at the outbox at least this often even without a poke.
    pub poll_interval: Duration,
    /// First wait after a round where nothing could be published; doubles up to
    /// `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest wait between attempts while the bus is down.
    pub max_backoff: Duration,
    /// Sent rows are deleted after this long (`None` keeps them).
    pub retention: Option<Duration>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            max_in_flight: 64,
            poll_interval: Duration::from_secs(1),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            // A week: long enough to investigate what was published, bounded disk use.
            retention: Some(Duration::from_secs(7 * 86_400)),
        }
    }
}

/// Pokes the relay after a commit so the event goes out now rather than at the next poll.
#[derive(Debug, Clone, Default)]
pub struct RelayHandle {
    wake: Arc<Notify>,
}

impl RelayHandle {
    /// Wakes the relay (cheap; call after every commit that wrote outbox rows).
    pub fn notify(&self) {
        self.wake.notify_one();
    }
}

/// Why a relay round failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The outbox could not be read or updated.
    #[error("outbox: {0}")]
    Database(#[from] sqlx::Error),
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Rows read.
    pub read: usize,
    /// Rows published and marked sent.
    pub sent: usize,
    /// Aggregates whose next row could not be published.
    pub failed: usize,
}

/// Relays one database's outbox to a [`Sink`].
#[derive(Debug)]
pub struct Relay {
    pool: Pool,
    sink: Arc<dyn Sink>,
    config: RelayConfig,
    handle: RelayHandle,
    metrics: EventMetrics,
    clock: Arc<dyn Clock>,
}

/// Only the `subject` of an event, to order by aggregate without decoding the rest.
#[derive(Deserialize)]
struct KeyOnly {
    subject: Option<String>,
}

/// The ordering key of a row: its aggregate, or the row alone when it names none.
fn ordering_key(message: &OutboxMessage) -> String {
    match serde_json::from_str::<KeyOnly>(&message.event) {
        Ok(KeyOnly {
            subject: Some(subject),
        }) => subject,
        _ => format!("\u{0}{}", message.id),
    }
}

impl Relay {
    /// A relay of `pool`'s outbox to `sink` with default pacing.
    pub fn new(pool: Pool, sink: Arc<dyn Sink>) -> Self {
        Self {
            pool,
            sink,
            config: RelayConfig::default(),
            handle: RelayHandle::default(),
            metrics: EventMetrics::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Replaces the pacing.
    #[must_use]
    pub fn with_config(mut self, config: RelayConfig) -> Self {
        self.config = config;
        self
    }

    /// Wakes on `handle` (made before the relay, e.g. while the bus is still connecting).
    #[must_use]
    pub fn with_handle(mut self, handle: RelayHandle) -> Self {
        self.handle = handle;
        self
    }

    /// Counts into `metrics` (shared with the service's consumers, registered once).
    #[must_use]
    pub fn with_metrics(mut self, metrics: EventMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Uses `clock` for `sent_at` and retention.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The handle services poke after a commit.
    pub fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }

    /// The relay's metrics.
    pub fn metrics(&self) -> &EventMetrics {
        &self.metrics
    }

    /// Runs the relay until `shutdown`.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(self, shutdown: CancellationToken) {
        let mut backoff = self.config.initial_backoff;
        let mut cooling: HashMap<String, (Instant, Duration)> = HashMap::new();
        let mut last_prune: Option<Instant> = None;
        loop {
            let wait = match self.round(&mut cooling).await {
                Ok(round) => {
                    if round.failed > 0 && round.sent == 0 {
                        let wait = backoff;
                        backoff = (backoff * 2).min(self.config.max_backoff);
                        Some(wait)
                    } else {
                        backoff = self.config.initial_backoff;
                        if round.read >= self.config.batch_size as usize && round.sent > 0 {
                            None
                        } else {
                            Some(self.config.poll_interval)
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = backoff.as_millis(), "outbox relay round failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    Some(wait)
                }
            };
            if last_prune.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
                last_prune = Some(Instant::now());
                self.prune().await;
            }
            self.update_backlog().await;
            match wait {
                None => {
                    if shutdown.is_cancelled() {
                        return;
                    }
                }
                Some(wait) => {
                    // A failing round waits its backoff in full; an idle one wakes on a poke.
                    let idle = backoff == self.config.initial_backoff;
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                        () = self.handle.wake.notified(), if idle => {}
                    }
                }
            }
        }
    }

    async fn update_backlog(&self) {
        let count: Result<i64, sqlx::Error> = service_kit::with_pool!(&self.pool, |p| {
            sqlx::query_scalar(store::COUNT_UNSENT).fetch_one(p).await
        });
        if let Ok(count) = count {
            self.metrics.set_backlog(count);
        }
    }

    async fn prune(&self) {
        let Some(retention) = self.config.retention else {
            return;
        };
        let before = self.clock.now().unix_timestamp()
            - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        let result: Result<_, sqlx::Error> = service_kit::with_pool!(&self.pool, |p| {
            sqlx::query(store::DELETE_SENT_BEFORE)
                .bind(before)
                .execute(p)
                .await
                .map(drop)
        });
        if let Err(error) = result {
            tracing::warn!(%error, "could not delete old sent outbox rows");
        }
    }

    /// One round: read a batch, publish it, mark what was acknowledged. Public so tests
    /// and tools can drive the relay step by step.
    pub async fn relay_once(&self) -> Result<Round, RelayError> {
        self.round(&mut HashMap::new()).await
    }

    async fn round(
        &self,
        cooling: &mut HashMap<String, (Instant, Duration)>,
    ) -> Result<Round, RelayError> {
        let limit = i64::from(self.config.batch_size);
        let now = Instant::now();
        // Expired entries stay a while so a key that fails again doubles its wait.
        let keep = self.config.max_backoff * 2;
        cooling.retain(|_, (until, _)| *until + keep > now);
        match &self.pool {
            Pool::Sqlite(pool) => {
                let rows: Vec<store::Row> = sqlx::query_as(store::SELECT_UNSENT)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                let read = rows.len();
                let rows = rows.into_iter().map(store::row_into_message).collect();
                let (sent, failed) = self.publish(rows, &[], cooling).await;
                if !sent.is_empty() {
                    let at = self.clock.now().unix_timestamp();
                    let mut tx = pool.begin().await?;
                    for id in &sent {
                        sqlx::query(store::MARK_SENT_ONE)
                            .bind(at)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                }
                Ok(self.finish(read, sent.len(), failed))
            }
            Pool::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let rows: Vec<store::Row> = sqlx::query_as(store::SELECT_UNSENT_LOCKED)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                let read = rows.len();
                let rows: Vec<OutboxMessage> =
                    rows.into_iter().map(store::row_into_message).collect();
                let blocked = match rows.last() {
                    None => Vec::new(),
                    Some(last) => {
                        let ids: Vec<&str> = rows.iter().map(|m| m.id.as_str()).collect();
                        let earlier: Vec<String> =
                            sqlx::query_scalar(store::SELECT_EARLIER_NOT_MINE)
                                .bind(last.created_at)
                                .bind(&last.id)
                                .bind(&ids)
                                .fetch_all(&mut *tx)
                                .await?;
                        earlier
                            .into_iter()
                            .map(|event| {
                                ordering_key(&OutboxMessage {
                                    id: String::new(),
                                    subject: String::new(),
                                    event,
                                    created_at: 0,
                                })
                            })
                            .collect()
                    }
                };
                let (sent, failed) = self.publish(rows, &blocked, cooling).await;
                if !sent.is_empty() {
                    sqlx::query(store::MARK_SENT_ANY)
                        .bind(self.clock.now().unix_timestamp())
                        .bind(&sent)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(self.finish(read, sent.len(), failed))
            }
        }
    }

    fn finish(&self, read: usize, sent: usize, failed: usize) -> Round {
        self.metrics.add_relayed(sent as u64);
        Round { read, sent, failed }
    }

    /// Publishes `rows` by aggregate; returns the ids acknowledged and how many
    /// aggregates stopped on a failure. Aggregates in `blocked` or cooling down after a
    /// recent failure are left for a later round.
    async fn publish(
        &self,
        rows: Vec<OutboxMessage>,
        blocked: &[String],
        cooling: &mut HashMap<String, (Instant, Duration)>,
    ) -> (Vec<String>, usize) {
        let now = Instant::now();
        let mut order: Vec<String> = Vec::new();
        let mut groups: HashMap<String, Vec<OutboxMessage>> = HashMap::new();
        for row in rows {
            let key = ordering_key(&row);
            let cooling_down = cooling.get(&key).is_some_and(|(until, _)| *until > now);
            if cooling_down || blocked.contains(&key) {
                continue;
            }
            groups
                .entry(key.clone())
                .or_insert_with(|| {
                    order.push(key);
                    Vec::new()
                })
                .push(row);
        }
        let sink = &self.sink;
        let metrics = &self.metrics;
        let results: Vec<(String, Vec<String>, bool)> =
            stream::iter(order.into_iter().filter_map(|key| {
                let group = groups.remove(&key)?;
                Some((key, group))
            }))
            .map(|(key, group)| async move {
                let mut sent = Vec::with_capacity(group.len());
                for message in &group {
                    match sink.publish(message).await {
                        Ok(()) => sent.push(message.id.clone()),
                        Err(error) => {
                            metrics.add_relay_failure();
                            tracing::warn!(id = %message.id, subject = %message.subject, %error,
                                "could not publish event; it stays in the outbox");
                            return (key, sent, true);
                        }
                    }
                }
                (key, sent, false)
            })
            .buffer_unordered(self.config.max_in_flight.max(1))
            .collect()
            .await;
        let mut sent = Vec::new();
        let mut failed = 0;
        for (key, ids, stopped) in results {
            sent.extend(ids);
            if stopped {
                failed += 1;
                // Only this aggregate waits; the others keep flowing.
                let delay = cooling
                    .get(&key)
                    .map_or(self.config.initial_backoff, |(_, d)| {
                        (*d * 2).min(self.config.max_backoff)
                    });
                cooling.insert(key, (Instant::now() + delay, delay));
            } else {
                cooling.remove(&key);
            }
        }
        (sent, failed)
    }
}
