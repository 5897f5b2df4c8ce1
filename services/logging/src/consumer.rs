//! The audit consumer: audit events from the bus (`tessera.audit.>`) into the chain.
//!
//! Delivery is at least once; the chain deduplicates by event id, so a redelivered
//! event adds nothing. A database failure asks for redelivery; an event the chain
//! refuses (too large, missing fields) is dead-lettered where it stays visible.

use std::time::Duration;

use service_kit::CancellationToken;
use tessera_events::{Bus, CloudEvent, ConsumerConfig, EventMetrics, HandlerError, Router};

use crate::audit::{AuditError, AuditEvent, AuditLog};

/// The durable consumer's name.
pub const CONSUMER: &str = "logging";
/// Every audit subject.
pub const AUDIT_SUBJECTS: &str = "tessera.audit.>";

/// Deliveries before an audit event is dead-lettered: many, because losing one is worse
/// than retrying through a long database outage (the last backoff repeats).
const MAX_DELIVER: u32 = 1_000;

async fn record(audit: AuditLog, envelope: CloudEvent) -> Result<(), HandlerError> {
    let event = AuditEvent {
        id: envelope.id.clone(),
        source: envelope.source.clone(),
        event_type: envelope.type_.clone(),
        time: envelope.time_rfc3339(),
        subject: envelope.subject.clone(),
        data: envelope.data,
    };
    event.validate().map_err(HandlerError::reject)?;
    match audit.append(event).await {
        Ok(_) => Ok(()),
        Err(error @ (AuditError::Db(_) | AuditError::Stopped)) => Err(HandlerError::retry(error)),
    }
}

/// Subscribes the chain to the audit subjects of `bus`.
pub fn subscribe(bus: &Bus, audit: &AuditLog, metrics: EventMetrics, shutdown: &CancellationToken) {
    // Every event on the audit subjects is an audit record, whatever its type: a service
    // adding an audit action needs no change here.
    let audit = audit.clone();
    let router = Router::new().on_any(move |envelope, _attempt| record(audit.clone(), envelope));
    let mut config = ConsumerConfig::new(CONSUMER, &[AUDIT_SUBJECTS]);
    config.max_deliver = MAX_DELIVER;
    config.backoff = vec![
        Duration::from_secs(1),
        Duration::from_secs(5),
        Duration::from_secs(30),
    ];
    // One at a time: the chain's order follows the stream's.
    config.concurrency = 1;
    bus.subscribe(config, router, metrics, shutdown);
}
