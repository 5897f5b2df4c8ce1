//! The bounded ingestion queue and the single writer task.
//!
//! Handlers reserve queue space for their records (a semaphore of record permits); when
//! there is none they answer 429 at once instead of waiting. The writer takes queued
//! batches, merges them into one transaction of up to `batch_records`, and tells each
//! handler whether its records were stored, so a 200 means "committed". On PostgreSQL
//! two such transactions may be in flight at once (the next batch is encoded and sent
//! while the previous one commits). Stored records are also broadcast to live-tail
//! subscribers.

use std::sync::Arc;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::record::{LogRow, NewRecord};
use crate::store::Store;

/// Records buffered for live-tail subscribers; a slower subscriber is told it lagged.
const TAIL_BUFFER: usize = 4096;

/// Why records were not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The queue has no room; retry after a short wait.
    #[error("the ingestion queue is full")]
    QueueFull,
    /// The database refused or is unreachable; retry later.
    #[error("the database is unavailable")]
    Unavailable,
}

struct Job {
    records: Vec<NewRecord>,
    done: oneshot::Sender<Result<(), IngestError>>,
    _permit: OwnedSemaphorePermit,
}

/// Counters of the ingestion path.
#[derive(Debug, Clone, Default)]
pub struct IngestMetrics {
    /// Records committed.
    pub stored: Counter,
    /// Records refused because the queue was full.
    pub refused: Counter,
    /// Records lost to database errors (their senders got 503).
    pub failed: Counter,
}

/// The handle handlers submit records through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ingest {
    jobs: mpsc::UnboundedSender<Job>,
    permits: Arc<Semaphore>,
    capacity: u32,
    tail: broadcast::Sender<Arc<LogRow>>,
    metrics: IngestMetrics,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("records", &self.records.len())
            .finish_non_exhaustive()
    }
}

impl Ingest {
    /// Starts the writer over `store`; it stops when `shutdown` fires and the queue is
    /// drained.
    pub fn spawn(
        store: Store,
        capacity: u32,
        batch_records: usize,
        metrics: IngestMetrics,
        shutdown: CancellationToken,
    ) -> Self {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let (tail, _) = broadcast::channel(TAIL_BUFFER);
        let ingest = Self {
            jobs,
            permits: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
            tail: tail.clone(),
            metrics: metrics.clone(),
        };
        tokio::spawn(writer(
            store,
            receiver,
            batch_records,
            tail,
            metrics,
            shutdown,
        ));
        ingest
    }

    /// Queues `records` and waits until they are committed.
    pub async fn submit(&self, records: Vec<NewRecord>) -> Result<(), IngestError> {
        if records.is_empty() {
            return Ok(());
        }
        let count = u32::try_from(records.len())
            .unwrap_or(u32::MAX)
            .min(self.capacity);
        let Ok(permit) = self.permits.clone().try_acquire_many_owned(count) else {
            self.metrics.refused.inc_by(records.len() as u64);
            return Err(IngestError::QueueFull);
        };
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Job {
                records,
                done,
                _permit: permit,
            })
            .map_err(|_| IngestError::Unavailable)?;
        result.await.unwrap_or(Err(IngestError::Unavailable))
    }

    /// How many live-tail subscribers are connected.
    pub fn tail_subscribers(&self) -> usize {
        self.tail.receiver_count()
    }

    /// A receiver of every record stored from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogRow>> {
        self.tail.subscribe()
    }
}

async fn writer(
    store: Store,
    mut receiver: mpsc::UnboundedReceiver<Job>,
    batch_records: usize,
    tail: broadcast::Sender<Arc<LogRow>>,
    metrics: IngestMetrics,
    shutdown: CancellationToken,
) {
    // PostgreSQL takes a second batch on another connection while the first commits
    // (the server writes one while we encode the next); SQLite has one writer.
    let parallel = store.parallel_writes();
    let mut in_flight = FuturesUnordered::new();
    let mut closing = false;
    loop {
        let first = tokio::select! {
            Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
            job = receiver.recv(), if in_flight.len() < parallel => job,
            () = shutdown.cancelled(), if !closing => {
                // Handlers still waiting get an answer; new ones find the channel closed.
                closing = true;
                receiver.close();
                continue;
            }
        };
        let Some(first) = first else { break };
        let mut jobs = vec![first];
        let mut total = jobs[0].records.len();
        while total < batch_records {
            match receiver.try_recv() {
                Ok(job) => {
                    total += job.records.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        in_flight.push(store_batch(
            store.clone(),
            jobs,
            tail.clone(),
            metrics.clone(),
        ));
    }
    while in_flight.next().await.is_some() {}
}

/// Stores the records of `jobs` in one transaction and answers each job.
async fn store_batch(
    store: Store,
    mut jobs: Vec<Job>,
    tail: broadcast::Sender<Arc<LogRow>>,
    metrics: IngestMetrics,
) {
    let records: Vec<NewRecord> = jobs
        .iter_mut()
        .flat_map(|job| std::mem::take(&mut job.records))
        .collect();
    let outcome = match store.insert(&records).await {
        Ok(ids) => {
            metrics.stored.inc_by(records.len() as u64);
            if tail.receiver_count() > 0 {
                for (record, id) in records.into_iter().zip(ids) {
                    let _ = tail.send(Arc::new(record.into_row(id)));
                }
            }
            Ok(())
        }
        Err(error) => {
            tracing::warn!(%error, records = records.len(), "storing log records failed; senders get 503");
            metrics.failed.inc_by(records.len() as u64);
            Err(IngestError::Unavailable)
        }
    };
    for job in jobs {
        let _ = job.done.send(outcome);
    }
}
