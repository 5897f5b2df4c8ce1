//! One timer per request where the data path would arm two: the edge's request timeout
//! (`--request-timeout-secs`) and, inside it, each attempt's first-byte timeout. While an
//! attempt waits under a timer that fires no later than the request's deadline, the
//! edge's own timer is not needed (the attempt's wakes the task first and ends in a 504);
//! the edge arms its timer only for waits no inner timer covers (authentication,
//! throttling, reading the body, a first-byte timeout beyond the request's deadline).
//! Registering and clearing a Tokio timer, and the driver wake-up an earlier deadline
//! causes, cost more per request than the checks here (bench/README.md, gateway,
//! session 5).

use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::time::Instant;

use tokio::time::Sleep;

thread_local! {
    /// The deadline of the innermost timer armed by the future being polled on this
    /// thread, noted during one poll of [`within`]'s inner future.
    static COVERED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Notes that the future being polled waits under a timer firing at `until` (called by
/// a waiting attempt on every poll).
pub(crate) fn covered_until(until: Instant) {
    let _ = COVERED.try_with(|covered| {
        if covered.get().is_none_or(|earlier| until < earlier) {
            covered.set(Some(until));
        }
    });
}

/// The request's deadline passed.
#[derive(Debug)]
pub(crate) struct Elapsed;

/// `inner`, or [`Elapsed`] once `deadline` passes. A task runs on one thread per poll,
/// so what `inner` notes with [`covered_until`] during a poll is its own.
pub(crate) async fn within<F: Future>(deadline: Instant, inner: F) -> Result<F::Output, Elapsed> {
    let mut inner = pin!(inner);
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    poll_fn(|cx| {
        let _ = COVERED.try_with(|covered| covered.set(None));
        if let std::task::Poll::Ready(output) = inner.as_mut().poll(cx) {
            return std::task::Poll::Ready(Ok(output));
        }
        let covered = COVERED.try_with(Cell::take).ok().flatten();
        if covered.is_some_and(|until| until <= deadline) {
            // An inner timer wakes this task no later than the deadline; a timer armed
            // by an earlier poll stays armed (it cannot fire before the inner one).
            return std::task::Poll::Pending;
        }
        timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())))
            .as_mut()
            .poll(cx)
            .map(|()| Err(Elapsed))
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn an_uncovered_wait_ends_at_the_deadline() {
        let deadline = Instant::now() + Duration::from_millis(50);
        let result = within(deadline, std::future::pending::<()>()).await;
        assert!(result.is_err());
        assert!(Instant::now() >= deadline);
    }

    #[tokio::test]
    async fn a_covered_wait_ends_with_the_inner_timer_and_a_later_inner_timer_does_not_cover() {
        let deadline = Instant::now() + Duration::from_millis(200);
        let inner_until = Instant::now() + Duration::from_millis(30);
        let inner = async move {
            let mut sleep = pin!(tokio::time::sleep_until(inner_until.into()));
            poll_fn(|cx| {
                covered_until(inner_until);
                sleep.as_mut().poll(cx)
            })
            .await;
            "inner timer"
        };
        assert_eq!(within(deadline, inner).await.ok(), Some("inner timer"));

        // An inner timer beyond the deadline does not stand in for the request's.
        let deadline = Instant::now() + Duration::from_millis(30);
        let late = Instant::now() + Duration::from_secs(5);
        let inner = poll_fn(|_| {
            covered_until(late);
            std::task::Poll::<()>::Pending
        });
        let started = Instant::now();
        assert!(within(deadline, inner).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
