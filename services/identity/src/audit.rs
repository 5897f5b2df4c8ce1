//! Audit and outbox writes that must not serialise requests: callers hand events to one
//! writer task, which commits whatever has queued in a single transaction (group commit)
//! and then tells every caller its event is durable. Under load a batch holds many events
//! for the cost of one commit; when idle an event is written at once.

use service_kit::Pool;
use tokio::sync::{mpsc, oneshot};

use crate::db;
use crate::events::OutboxEvent;

/// Events taken into one transaction at most.
const MAX_BATCH: usize = 512;
/// Pending events before callers wait for room (backpressure, bounded memory).
const QUEUE: usize = 8192;

type Pending = (OutboxEvent, oneshot::Sender<bool>);

/// The audit/outbox writer handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<Pending>,
}

/// The event could not be made durable.
#[derive(Debug, thiserror::Error)]
#[error("the audit record could not be written")]
pub struct AuditError;

impl AuditLog {
    /// Starts the writer task; it stops once every handle is dropped and the queue is
    /// drained. Not at shutdown: the requests the server drains then still record (a
    /// closed writer failed every login in flight when a pod was stopped).
    pub fn spawn(pool: Pool) -> Self {
        let (queue, mut receiver) = mpsc::channel::<Pending>(QUEUE);
        tokio::spawn(async move {
            let mut batch: Vec<Pending> = Vec::with_capacity(MAX_BATCH);
            loop {
                let Some(first) = receiver.recv().await else {
                    break;
                };
                batch.push(first);
                while batch.len() < MAX_BATCH {
                    match receiver.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let events: Vec<OutboxEvent> = batch.iter().map(|(e, _)| e.clone()).collect();
                let ok = match db::outbox::insert_batch(&pool, &events).await {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::error!(%error, events = events.len(), "audit batch failed");
                        false
                    }
                };
                for (_, done) in batch.drain(..) {
                    let _ = done.send(ok);
                }
            }
        });
        Self { queue }
    }

    /// Writes `event` durably (returns once committed).
    pub async fn record(&self, event: OutboxEvent) -> Result<(), AuditError> {
        let (done, committed) = oneshot::channel();
        self.queue
            .send((event, done))
            .await
            .map_err(|_| AuditError)?;
        match committed.await {
            Ok(true) => Ok(()),
            _ => Err(AuditError),
        }
    }

    /// Writes `event` without waiting; a failure is logged by the writer. For records
    /// whose loss must not fail the request that caused them (e.g. a failed login).
    pub fn record_in_background(&self, event: OutboxEvent) {
        let log = self.clone();
        tokio::spawn(async move {
            let _ = log.record(event).await;
        });
    }
}
