//! Tessera's event plumbing (DESIGN.md §5): nothing lost, nothing acted on twice.
//!
//! - [`Event`] and [`CloudEvent`]: typed events in a CloudEvents 1.0 envelope (JSON
//!   structured mode, UUIDv7 ids, `dev.tessera.<service>.<entity>.<verb>.v1`).
//! - [`outbox::write`]: the event row goes into the caller's transaction; [`Relay`]
//!   publishes unsent rows to a [`Sink`] (JetStream with `Nats-Msg-Id`, or the in-process
//!   bus), awaits the ack and marks them sent, backing off while the bus is down.
//! - [`JetStreamBus`]: the `TESSERA` stream on `tessera.>`, created or updated at start;
//!   durable pull consumers with explicit ack, bounded redelivery with backoff and a
//!   dead-letter subject `tessera.dlq.<consumer>`.
//! - [`inbox::claim`]: the consumer's handler records the event id in the transaction
//!   holding its effect, so a redelivered event has no second effect.
//! - [`InProcessBus`]: the all-in-one binary's bus with the same outbox/inbox semantics.
//!
//! Tables each service declares in its own migrations (SQLite shown; on PostgreSQL use
//! `BIGINT` for the integer columns):
//!
//! ```sql
//! CREATE TABLE outbox (
//!     id         TEXT PRIMARY KEY,      -- CloudEvents id (UUIDv7)
//!     subject    TEXT NOT NULL,         -- NATS subject, tessera.events.<service>.<entity>.<verb>
//!     event      TEXT NOT NULL,         -- CloudEvents JSON
//!     created_at INTEGER NOT NULL,      -- unix seconds
//!     sent_at    INTEGER                -- unix seconds; NULL until the bus acknowledged it
//! );
//! CREATE INDEX outbox_unsent ON outbox (created_at) WHERE sent_at IS NULL;
//!
//! CREATE TABLE inbox (
//!     consumer    TEXT NOT NULL,
//!     event_id    TEXT NOT NULL,
//!     received_at INTEGER NOT NULL,     -- unix seconds
//!     PRIMARY KEY (consumer, event_id)
//! );
//! ```

mod bus;
mod config;
mod consumer;
mod envelope;
mod handler;
mod jetstream;
mod memory;
mod metrics;
mod relay;
mod sink;
mod store;

pub use bus::Bus;
pub use config::{JetStreamArgs, NatsArgs};
pub use consumer::{
    ConsumerConfig, DEAD_LETTER_ATTEMPTS, DEAD_LETTER_CONSUMER, DEAD_LETTER_REASON,
    ORIGINAL_SUBJECT,
};
pub use envelope::{
    CloudEvent, EnvelopeError, Event, JSON_CONTENT_TYPE, OutboxMessage, SPEC_VERSION, SUBJECT_ROOT,
};
pub use handler::{HandlerError, HandlerResult, Received, Router};
pub use jetstream::{BusError, JetStreamBus, NatsConfig, spawn_jetstream_relay};
pub use memory::{DeadLetter, InProcessBus};
pub use metrics::EventMetrics;
pub use relay::{Relay, RelayConfig, RelayError, RelayHandle, Round};
pub use sink::{PublishError, Sink};
pub use store::{Backend, EventConnection, inbox, outbox};

/// Re-exported so services and tests name one version of the NATS client.
pub use async_nats;
