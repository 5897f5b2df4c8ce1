//! Where the relay hands outbox rows: NATS JetStream or the in-process bus.

use std::fmt;

use futures_util::future::BoxFuture;

use crate::envelope::OutboxMessage;

/// Why a publish was not acknowledged; the row stays in the outbox and is retried.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct PublishError(pub String);

/// A destination that durably accepts events, acknowledging each one.
pub trait Sink: Send + Sync + fmt::Debug + 'static {
    /// Publishes `message`; `Ok` only once the destination holds it durably (JetStream
    /// ack, or every in-process subscriber accepted it). Publishing the same id twice
    /// must be harmless (the relay may retry after an unknown outcome).
    fn publish<'a>(&'a self, message: &'a OutboxMessage)
    -> BoxFuture<'a, Result<(), PublishError>>;
}

/// NATS subject matching with `*` (one token) and `>` (one or more trailing tokens).
pub(crate) fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut filter_tokens = filter.split('.');
    let mut subject_tokens = subject.split('.');
    loop {
        match (filter_tokens.next(), subject_tokens.next()) {
            (Some(">"), Some(_)) | (None, None) => return true,
            (Some(f), Some(s)) if f == "*" || f == s => {}
            _ => return false,
        }
    }
}

/// `subject` with its leading `tessera` token replaced by `root` (tests run on private
/// subject trees; production uses `tessera` itself).
pub(crate) fn with_root(subject: &str, root: &str) -> String {
    match subject.strip_prefix(crate::envelope::SUBJECT_ROOT) {
        Some(rest) if rest.starts_with('.') && root != crate::envelope::SUBJECT_ROOT => {
            format!("{root}{rest}")
        }
        _ => subject.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("tessera.events.>", "tessera.events.a.b.c"));
        assert!(!subject_matches("tessera.events.>", "tessera.events"));
        assert!(subject_matches("a.*.c", "a.b.c"));
        assert!(!subject_matches("a.*.c", "a.b.d"));
        assert!(!subject_matches("a.b", "a.b.c"));
        assert!(subject_matches("a.b.c", "a.b.c"));
    }

    #[test]
    fn the_subject_root_is_mapped() {
        assert_eq!(with_root("tessera.events.x", "t1"), "t1.events.x");
        assert_eq!(with_root("tessera.events.x", "tessera"), "tessera.events.x");
        assert_eq!(with_root("tesserax.events", "t1"), "tesserax.events");
    }
}
