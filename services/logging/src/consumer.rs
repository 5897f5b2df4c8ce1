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

/// The audit event types the chain records. The event library routes by type and
/// acknowledges types without a handler, so a service adding an audit action must add
/// its type here (see README, "Audit").
pub const AUDIT_TYPES: &[&str] = &[
    "dev.tessera.identity.audit.signup.v1",
    "dev.tessera.identity.audit.login_succeeded.v1",
    "dev.tessera.identity.audit.login_failed.v1",
    "dev.tessera.identity.audit.token_issued.v1",
    "dev.tessera.identity.audit.refresh_reuse_detected.v1",
    "dev.tessera.identity.audit.key_state_changed.v1",
    "dev.tessera.identity.audit.client_created.v1",
    "dev.tessera.identity.audit.client_disabled.v1",
    "dev.tessera.identity.audit.user_disabled.v1",
];

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
    let router = AUDIT_TYPES.iter().fold(Router::new(), |router, type_| {
        let audit = audit.clone();
        router.on_type(type_, move |envelope, _attempt| {
            record(audit.clone(), envelope)
        })
    });
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
