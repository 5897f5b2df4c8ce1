//! Durable JetStream pull consumers: explicit ack, bounded redelivery with backoff, dead
//! letters after the last attempt or for malformed events, unknown types acked.

use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::{HeaderMap, header};
use futures_util::{StreamExt, future};
use service_kit::CancellationToken;

use crate::handler::{Dispatch, Router};
use crate::jetstream::{BusError, JetStreamBus};
use crate::metrics::EventMetrics;

/// Header naming why a message was dead-lettered.
pub const DEAD_LETTER_REASON: &str = "Tessera-Dead-Letter-Reason";
/// Header naming the consumer that gave up.
pub const DEAD_LETTER_CONSUMER: &str = "Tessera-Dead-Letter-Consumer";
/// Header holding how many deliveries were attempted.
pub const DEAD_LETTER_ATTEMPTS: &str = "Tessera-Dead-Letter-Attempts";
/// Header holding the subject the event was published on.
pub const ORIGINAL_SUBJECT: &str = "Tessera-Original-Subject";

/// A consumer's name, subscriptions and retry policy.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The durable name: the consuming service (`notification`). Also the inbox's
    /// `consumer` column and the dead-letter subject's last token.
    pub name: String,
    /// Canonical subjects (`tessera.events.profile.user.created`, wildcards allowed).
    pub subjects: Vec<String>,
    /// Deliveries before an event that keeps failing is dead-lettered.
    pub max_deliver: u32,
    /// Wait before redelivery n+1 after failed delivery n (the last value repeats).
    pub backoff: Vec<Duration>,
    /// How long the server waits for an ack before redelivering (handler crashed).
    pub ack_wait: Duration,
    /// Events handled at the same time (1 keeps the stream's order).
    pub concurrency: usize,
}

impl ConsumerConfig {
    /// Defaults for `name` on `subjects`: 5 deliveries, waits of 1 s, 5 s, 30 s, 2 min,
    /// 30 s ack wait, 8 at a time.
    pub fn new(name: impl Into<String>, subjects: &[&str]) -> Self {
        Self {
            name: name.into(),
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            max_deliver: 5,
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(120),
            ],
            ack_wait: Duration::from_secs(30),
            concurrency: 8,
        }
    }

    /// The wait before the delivery after failed delivery `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
        self.backoff
            .get(index)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::ZERO)
    }
}

/// Keeps a consumer running: (re)creates stream and consumer while the server is away.
pub(crate) async fn run(
    bus: JetStreamBus,
    config: ConsumerConfig,
    router: Router,
    metrics: EventMetrics,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match consume(&bus, &config, &router, &metrics, &shutdown).await {
            Ok(()) if shutdown.is_cancelled() => return,
            // The pull stream ended without an error (its subscription closed): without
            // a restart the service would consume nothing while its readiness stays green.
            // Not provoked in a test: async-nats 0.51 reports an error first in every
            // case tried (consumer deleted, broker gone).
            Ok(()) => {
                tracing::warn!(consumer = %config.name, retry_in_ms = backoff.as_millis(),
                    "event consumer's stream ended; starting again");
            }
            Err(error) => {
                tracing::warn!(consumer = %config.name, %error, retry_in_ms = backoff.as_millis(),
                    "event consumer interrupted; starting again");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn consume(
    bus: &JetStreamBus,
    config: &ConsumerConfig,
    router: &Router,
    metrics: &EventMetrics,
    shutdown: &CancellationToken,
) -> Result<(), BusError> {
    bus.ensure_stream().await?;
    let consumer_error = |e: &dyn std::fmt::Display| BusError::Consumer(e.to_string());
    let stream = bus
        .context()
        .get_stream(&bus.config().stream)
        .await
        .map_err(|e| consumer_error(&e))?;
    let mut subjects: Vec<String> = config.subjects.iter().map(|s| bus.subject(s)).collect();
    let (filter_subject, filter_subjects) = if subjects.len() == 1 {
        (subjects.pop().unwrap_or_default(), Vec::new())
    } else {
        (String::new(), subjects)
    };
    let consumer: PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(config.name.clone()),
            filter_subject,
            filter_subjects,
            ack_policy: AckPolicy::Explicit,
            deliver_policy: DeliverPolicy::All,
            ack_wait: config.ack_wait,
            // One spare delivery: if dead-lettering fails on the last attempt, it is redone.
            max_deliver: i64::from(config.max_deliver) + 1,
            ..Default::default()
        })
        .await
        .map_err(|e| consumer_error(&e))?;
    let concurrency = config.concurrency.max(1);
    let messages = consumer
        .stream()
        .max_messages_per_batch(concurrency * 2)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| consumer_error(&e))?;
    tracing::info!(consumer = %config.name, "event consumer running");
    // A stream error (missed heartbeats while NATS is away) ends the intake, but the
    // handlers already running finish: `try_for_each_concurrent` would drop them halfway.
    let mut failure = None;
    messages
        .take_until(shutdown.cancelled())
        .scan((), |(), item| {
            future::ready(match item {
                Ok(message) => Some(message),
                Err(error) => {
                    failure = Some(consumer_error(&error));
                    None
                }
            })
        })
        .for_each_concurrent(concurrency, |message| {
            deliver(bus, config, router, metrics, message)
        })
        .await;
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

async fn deliver(
    bus: &JetStreamBus,
    config: &ConsumerConfig,
    router: &Router,
    metrics: &EventMetrics,
    message: async_nats::jetstream::Message,
) {
    let (attempt, sequence) = message.info().map_or((1, 0), |info| {
        (
            u32::try_from(info.delivered).unwrap_or(u32::MAX),
            info.stream_sequence,
        )
    });
    let name = config.name.as_str();
    // Tells the server the handler still works on it, so a handler slower than
    // `ack_wait` is not redelivered (run twice at once, and counted towards
    // `max_deliver` until the server gives up without a dead letter).
    let every = (config.ack_wait / 3).max(Duration::from_millis(100));
    let dispatched = tokio::select! {
        dispatched = router.dispatch(&message.payload, attempt) => dispatched,
        never = in_progress(&message, every) => match never {},
    };
    let reason = match dispatched {
        Dispatch::Done => {
            metrics.count(name, "handled");
            ack(&message, AckKind::Ack).await;
            return;
        }
        Dispatch::UnknownType(type_) => {
            tracing::debug!(consumer = name, %type_, "no handler for this event type; acknowledged");
            metrics.count(name, "unknown_type");
            ack(&message, AckKind::Ack).await;
            return;
        }
        Dispatch::Retry(reason) if attempt < config.max_deliver => {
            let delay = config.delay_after(attempt);
            tracing::warn!(consumer = name, attempt, retry_in_ms = delay.as_millis(), %reason,
                "event handler failed; will retry");
            metrics.count(name, "retried");
            ack(&message, AckKind::Nak(Some(delay))).await;
            return;
        }
        Dispatch::Retry(reason) => format!("gave up after {attempt} attempts: {reason}"),
        Dispatch::Malformed(reason) => format!("malformed event: {reason}"),
        Dispatch::Rejected(reason) => format!("rejected by the handler: {reason}"),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::NATS_MESSAGE_ID,
        format!("dlq.{name}.{sequence}").as_str(),
    );
    headers.insert(DEAD_LETTER_REASON, header_safe(&reason).as_str());
    headers.insert(DEAD_LETTER_CONSUMER, name);
    headers.insert(DEAD_LETTER_ATTEMPTS, attempt.to_string().as_str());
    headers.insert(ORIGINAL_SUBJECT, message.subject.as_str());
    match bus
        .publish_acked(
            bus.dead_letter_subject(name),
            headers,
            message.payload.clone(),
        )
        .await
    {
        Ok(()) => {
            tracing::error!(consumer = name, %reason, subject = %message.subject,
                "event dead-lettered");
            metrics.count(name, "dead_lettered");
            ack(&message, AckKind::Ack).await;
        }
        Err(error) => {
            tracing::warn!(consumer = name, %error, "could not dead-letter an event; will retry");
            ack(&message, AckKind::Nak(Some(config.delay_after(1)))).await;
        }
    }
}

/// Sends a progress acknowledgement every `every` (never returns; dropped when the
/// handler is done).
async fn in_progress(
    message: &async_nats::jetstream::Message,
    every: Duration,
) -> std::convert::Infallible {
    loop {
        tokio::time::sleep(every).await;
        if let Err(error) = message.ack_with(AckKind::Progress).await {
            tracing::debug!(%error, "could not extend an event's ack wait");
        }
    }
}

async fn ack(message: &async_nats::jetstream::Message, kind: AckKind) {
    if let Err(error) = message.ack_with(kind).await {
        // The server redelivers after `ack_wait`; the inbox absorbs the repeat.
        tracing::warn!(%error, "could not acknowledge an event");
    }
}

/// A header value: one line, bounded length.
pub(crate) fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect()
}
