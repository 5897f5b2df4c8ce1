//! Consumers' side of an event: a [`Router`] maps event types to handlers, and tells the
//! transport (JetStream consumer or in-process bus) what to do with each delivery.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use crate::envelope::{CloudEvent, Event};

/// A typed event handed to a handler.
#[derive(Debug, Clone)]
pub struct Received<E> {
    /// The decoded `data`.
    pub event: E,
    /// The whole envelope (`id` is the inbox key).
    pub envelope: CloudEvent,
    /// 1 for the first delivery, 2 for the first redelivery, ...
    pub attempt: u32,
}

/// Why a handler did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// A passing problem (database busy, dependency down): deliver again after the
    /// consumer's backoff; after the last attempt the event is dead-lettered.
    #[error("retry: {0}")]
    Retry(String),
    /// The event can never be handled (fails validation): dead-letter it now.
    #[error("rejected: {0}")]
    Reject(String),
}

impl HandlerError {
    /// A passing problem, from anything displayable.
    pub fn retry(reason: impl fmt::Display) -> Self {
        Self::Retry(reason.to_string())
    }

    /// A permanent problem, from anything displayable.
    pub fn reject(reason: impl fmt::Display) -> Self {
        Self::Reject(reason.to_string())
    }
}

/// What a handler returns.
pub type HandlerResult = Result<(), HandlerError>;

type Erased = Arc<dyn Fn(CloudEvent, u32) -> BoxFuture<'static, Dispatch> + Send + Sync>;

/// Handlers by event type, then by type prefix. Types without a handler are acknowledged
/// and counted.
#[derive(Clone, Default)]
pub struct Router {
    handlers: HashMap<String, Erased>,
    /// Longest prefix first, so the most specific catch-all wins.
    prefixes: Vec<(String, Erased)>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut types: Vec<_> = self.handlers.keys().collect();
        types.sort();
        let prefixes: Vec<_> = self.prefixes.iter().map(|(p, _)| p).collect();
        f.debug_struct("Router")
            .field("types", &types)
            .field("prefixes", &prefixes)
            .finish()
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dispatch {
    /// Handled (or already handled): acknowledge.
    Done,
    /// No handler for this type: acknowledge and count.
    UnknownType(String),
    /// Not a valid event: dead-letter with the reason.
    Malformed(String),
    /// The handler asked for another attempt.
    Retry(String),
    /// The handler refused it for good: dead-letter with the reason.
    Rejected(String),
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles events of type `E` with `handler`.
    #[must_use]
    pub fn on<E, F, Fut>(mut self, handler: F) -> Self
    where
        E: Event,
        F: Fn(Received<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Erased = Arc::new(move |envelope: CloudEvent, attempt| {
            let handler = handler.clone();
            Box::pin(async move {
                match envelope.decode::<E>() {
                    Err(error) => Dispatch::Malformed(error.to_string()),
                    Ok(event) => outcome(
                        handler(Received {
                            event,
                            envelope,
                            attempt,
                        })
                        .await,
                    ),
                }
            })
        });
        self.handlers.insert(E::event_type(), erased);
        self
    }

    /// Handles events of `type_` as raw envelopes (for events without an [`Event`]
    /// struct, such as identity's audit records).
    #[must_use]
    pub fn on_type<F, Fut>(mut self, type_: &str, handler: F) -> Self
    where
        F: Fn(CloudEvent, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Erased = Arc::new(move |envelope: CloudEvent, attempt| {
            let handler = handler.clone();
            Box::pin(async move { outcome(handler(envelope, attempt).await) })
        });
        self.handlers.insert(type_.to_owned(), erased);
        self
    }

    /// Handles, as raw envelopes, every event whose type starts with `prefix` and has no
    /// handler of its own (e.g. `dev.tessera.identity.audit.` for audit actions added
    /// later). With several prefixes, the longest matching one wins; a second handler
    /// for the same prefix replaces the first.
    #[must_use]
    pub fn on_prefix<F, Fut>(mut self, prefix: &str, handler: F) -> Self
    where
        F: Fn(CloudEvent, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: Erased = Arc::new(move |envelope: CloudEvent, attempt| {
            let handler = handler.clone();
            Box::pin(async move { outcome(handler(envelope, attempt).await) })
        });
        self.prefixes.retain(|(p, _)| p != prefix);
        self.prefixes.push((prefix.to_owned(), erased));
        self.prefixes
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        self
    }

    /// Handles, as raw envelopes, every event without a handler of its own: the
    /// consumer's subjects decide what arrives (`on_prefix("")`).
    #[must_use]
    pub fn on_any<F, Fut>(self, handler: F) -> Self
    where
        F: Fn(CloudEvent, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.on_prefix("", handler)
    }

    /// The event types this router handles by exact type (prefix handlers not included).
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }

    fn handler_for(&self, type_: &str) -> Option<&Erased> {
        self.handlers.get(type_).or_else(|| {
            self.prefixes
                .iter()
                .find(|(prefix, _)| type_.starts_with(prefix.as_str()))
                .map(|(_, handler)| handler)
        })
    }

    /// Parses `payload` and runs the handler for its type.
    pub(crate) async fn dispatch(&self, payload: &[u8], attempt: u32) -> Dispatch {
        let envelope = match CloudEvent::parse(payload) {
            Ok(envelope) => envelope,
            Err(error) => return Dispatch::Malformed(error.to_string()),
        };
        match self.handler_for(&envelope.type_) {
            None => Dispatch::UnknownType(envelope.type_),
            // A panicking handler counts as a failed attempt instead of ending the consumer
            // task (or the relay, in process).
            Some(handler) => AssertUnwindSafe(handler(envelope, attempt))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Dispatch::Retry("the handler panicked".to_owned())),
        }
    }
}

fn outcome(result: HandlerResult) -> Dispatch {
    match result {
        Ok(()) => Dispatch::Done,
        Err(HandlerError::Retry(reason)) => Dispatch::Retry(reason),
        Err(HandlerError::Reject(reason)) => Dispatch::Rejected(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::OutboxMessage;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Ping {
        id: String,
    }

    impl Event for Ping {
        const SERVICE: &'static str = "test";
        const ENTITY: &'static str = "ping";
        const VERB: &'static str = "sent";
        fn subject(&self) -> String {
            self.id.clone()
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_failed_attempt_not_a_dead_consumer() {
        let router = Router::new().on(|_: Received<Ping>| async { panic!("bug in the handler") });
        let row = OutboxMessage::new(&Ping { id: "p".into() }, time::OffsetDateTime::now_utc());
        assert_eq!(
            router.dispatch(row.event.as_bytes(), 1).await,
            Dispatch::Retry("the handler panicked".to_owned())
        );
    }

    fn event_of_type(type_: &str) -> Vec<u8> {
        let row = OutboxMessage::new(&Ping { id: "p".into() }, time::OffsetDateTime::now_utc());
        let mut event: serde_json::Value = serde_json::from_str(&row.event).expect("json");
        event["type"] = type_.into();
        serde_json::to_vec(&event).expect("json")
    }

    fn answer(word: &'static str) -> impl Fn(CloudEvent, u32) -> BoxFuture<'static, HandlerResult> {
        move |_, _| Box::pin(async move { Err(HandlerError::reject(word)) })
    }

    #[tokio::test]
    async fn prefix_handlers_take_types_without_their_own_handler_longest_prefix_first() {
        let router = Router::new()
            .on_type("dev.tessera.identity.audit.signup.v1", answer("exact"))
            .on_any(answer("any"))
            .on_prefix("dev.tessera.identity.audit.", answer("audit"))
            .on_prefix("dev.tessera.", answer("tessera"));
        let cases = [
            ("dev.tessera.identity.audit.signup.v1", "exact"),
            ("dev.tessera.identity.audit.password_changed.v1", "audit"),
            ("dev.tessera.profile.profile.updated.v1", "tessera"),
            ("com.example.other.v1", "any"),
        ];
        for (type_, handler) in cases {
            assert_eq!(
                router.dispatch(&event_of_type(type_), 1).await,
                Dispatch::Rejected(handler.to_owned()),
                "{type_}"
            );
        }
    }

    #[tokio::test]
    async fn without_a_matching_prefix_a_type_stays_unknown() {
        let router = Router::new().on_prefix("dev.tessera.identity.audit.", answer("audit"));
        assert_eq!(
            router
                .dispatch(&event_of_type("dev.tessera.profile.profile.updated.v1"), 1)
                .await,
            Dispatch::UnknownType("dev.tessera.profile.profile.updated.v1".to_owned())
        );
    }
}
