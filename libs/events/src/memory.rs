//! The in-process bus of the all-in-one binary: each service's relay delivers its outbox
//! rows straight to the subscribed consumers' handlers, with the outbox and inbox
//! semantics of the JetStream path.
//!
//! A row is acknowledged to the relay (and so marked sent) only when every subscriber
//! whose subjects match has handled it, found no handler for its type, or dead-lettered
//! it. A subscriber asking for a retry fails the publish: the row stays in the outbox and
//! the relay delivers it again later to every subscriber that has not dead-lettered it
//! (their inboxes make the repeat harmless). After `max_deliver` attempts, or for a malformed event, the event is
//! dead-lettered: logged, counted, and kept in [`InProcessBus::dead_letters`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use futures_util::future::BoxFuture;

use crate::consumer::ConsumerConfig;
use crate::envelope::OutboxMessage;
use crate::handler::{Dispatch, Router};
use crate::metrics::EventMetrics;
use crate::sink::{PublishError, Sink, subject_matches};

/// An event a subscriber gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The subscriber.
    pub consumer: String,
    /// The subject it was published on.
    pub subject: String,
    /// Why.
    pub reason: String,
    /// Deliveries attempted.
    pub attempts: u32,
    /// The event as published.
    pub payload: String,
}

#[derive(Debug)]
struct Subscriber {
    config: ConsumerConfig,
    router: Router,
    metrics: EventMetrics,
}

/// Retry bookkeeping of one (subscriber, event).
#[derive(Debug, Clone, Copy)]
struct Attempts {
    count: u32,
    not_before: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    subscribers: RwLock<Vec<Arc<Subscriber>>>,
    started: AtomicBool,
    attempts: Mutex<HashMap<(String, String), Attempts>>,
    /// (subscriber, event) pairs dead-lettered while the row waits for another
    /// subscriber: not delivered to them again (handled ones are, their inbox absorbs it).
    finished: Mutex<HashSet<(String, String)>>,
    dead_letters: Mutex<Vec<DeadLetter>>,
}

/// The in-process bus. Clone it into every service of the process.
#[derive(Debug, Clone, Default)]
pub struct InProcessBus {
    inner: Arc<Inner>,
}

impl InProcessBus {
    /// An empty bus that accepts no events until [`InProcessBus::start`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a consumer. Subscribe every consumer before [`InProcessBus::start`]: an event
    /// is delivered only to the subscribers present when it is relayed.
    pub fn subscribe(&self, config: ConsumerConfig, router: Router, metrics: EventMetrics) {
        self.inner
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::new(Subscriber {
                config,
                router,
                metrics,
            }));
    }

    /// Opens the bus: relays' publishes fail (and their rows wait) until then, so no event
    /// is relayed before every service of the process has subscribed.
    pub fn start(&self) {
        self.inner.started.store(true, Ordering::Release);
    }

    /// Events the subscribers gave up on, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.inner
            .dead_letters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The attempt number of this delivery, or `None` while its backoff runs.
    fn next_attempt(&self, consumer: &str, id: &str) -> Option<u32> {
        let attempts = self
            .inner
            .attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match attempts.get(&(consumer.to_owned(), id.to_owned())) {
            Some(a) if a.not_before > Instant::now() => None,
            Some(a) => Some(a.count + 1),
            None => Some(1),
        }
    }

    fn record_failure(&self, subscriber: &Subscriber, id: &str, attempt: u32) {
        let delay = subscriber.config.delay_after(attempt);
        self.inner
            .attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (subscriber.config.name.clone(), id.to_owned()),
                Attempts {
                    count: attempt,
                    not_before: Instant::now() + delay,
                },
            );
    }

    fn finish(&self, consumer: &str, id: &str) {
        self.inner
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((consumer.to_owned(), id.to_owned()));
    }

    fn forget(&self, consumer: &str, id: &str) {
        self.inner
            .attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(consumer.to_owned(), id.to_owned()));
    }

    fn dead_letter(
        &self,
        subscriber: &Subscriber,
        message: &OutboxMessage,
        reason: String,
        attempts: u32,
    ) {
        let consumer = subscriber.config.name.clone();
        tracing::error!(consumer = %consumer, subject = %message.subject, %reason, "event dead-lettered");
        subscriber.metrics.count(&consumer, "dead_lettered");
        self.forget(&consumer, &message.id);
        self.inner
            .dead_letters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(DeadLetter {
                consumer,
                subject: message.subject.clone(),
                reason,
                attempts,
                payload: message.event.clone(),
            });
    }

    /// Delivers to one subscriber; `Err` when it wants the event again later.
    async fn deliver(
        &self,
        subscriber: &Subscriber,
        message: &OutboxMessage,
    ) -> Result<(), String> {
        let name = subscriber.config.name.as_str();
        if self
            .inner
            .finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&(name.to_owned(), message.id.clone()))
        {
            return Ok(());
        }
        let Some(attempt) = self.next_attempt(name, &message.id) else {
            return Err(format!("{name}: waiting before the next attempt"));
        };
        let reason = match subscriber
            .router
            .dispatch(message.event.as_bytes(), attempt)
            .await
        {
            Dispatch::Done => {
                subscriber.metrics.count(name, "handled");
                self.forget(name, &message.id);
                return Ok(());
            }
            Dispatch::UnknownType(type_) => {
                tracing::debug!(consumer = name, %type_, "no handler for this event type; acknowledged");
                subscriber.metrics.count(name, "unknown_type");
                return Ok(());
            }
            Dispatch::Retry(reason) if attempt < subscriber.config.max_deliver => {
                subscriber.metrics.count(name, "retried");
                self.record_failure(subscriber, &message.id, attempt);
                return Err(format!("{name}: {reason}"));
            }
            Dispatch::Retry(reason) => format!("gave up after {attempt} attempts: {reason}"),
            Dispatch::Malformed(reason) => format!("malformed event: {reason}"),
            Dispatch::Rejected(reason) => format!("rejected by the handler: {reason}"),
        };
        self.dead_letter(subscriber, message, reason, attempt);
        self.finish(name, &message.id);
        Ok(())
    }
}

impl Sink for InProcessBus {
    fn publish<'a>(
        &'a self,
        message: &'a OutboxMessage,
    ) -> BoxFuture<'a, Result<(), PublishError>> {
        Box::pin(async move {
            if !self.inner.started.load(Ordering::Acquire) {
                return Err(PublishError(
                    "the in-process bus has not started yet".to_owned(),
                ));
            }
            let subscribers: Vec<Arc<Subscriber>> = self
                .inner
                .subscribers
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter(|s| {
                    s.config
                        .subjects
                        .iter()
                        .any(|filter| subject_matches(filter, &message.subject))
                })
                .cloned()
                .collect();
            let mut failures = Vec::new();
            for subscriber in subscribers {
                if let Err(reason) = self.deliver(&subscriber, message).await {
                    failures.push(reason);
                }
            }
            if failures.is_empty() {
                // Acknowledged: the row is marked sent and never comes again.
                self.inner
                    .finished
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .retain(|(_, id)| id != &message.id);
                Ok(())
            } else {
                Err(PublishError(failures.join("; ")))
            }
        })
    }
}
