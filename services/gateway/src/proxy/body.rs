//! Body wrappers: the upstream's response body streamed under the total deadline (and
//! counted as in flight until it ends), and the client's request body watched for read
//! errors so that a client fault is not blamed on the upstream.

use std::error::Error as StdError;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::balance::InFlight;
use super::client::UpstreamBody;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The error a response body ends with when the total timeout expires mid-stream; the
/// client sees the connection (or stream) reset, since the status was already sent.
#[derive(Debug, thiserror::Error)]
#[error("the upstream response exceeded the total timeout")]
pub(crate) struct BodyTimeout;

/// An upstream response body, cut at the total deadline. (Its HTTP/1.1 connection goes
/// back to the pool once the inner body was read to its end.)
#[derive(Debug)]
pub(crate) struct ResponseBody {
    inner: UpstreamBody,
    deadline: Instant,
    /// The timer, armed only once the body has to wait: most bodies arrive with their
    /// headers and never need one (a timer per request showed in the profile).
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the body was polled before.
    polled: bool,
    _in_flight: InFlight,
}

impl ResponseBody {
    pub(crate) fn new(
        inner: UpstreamBody,
        deadline: std::time::Instant,
        in_flight: InFlight,
    ) -> Self {
        Self {
            inner,
            deadline: Instant::from_std(deadline),
            timer: None,
            polled: false,
            _in_flight: in_flight,
        }
    }

    /// The rest of the body is abandoned (its connection is closed when the body is
    /// dropped).
    fn timed_out() -> BoxError {
        tracing::warn!("upstream response body cut at the total timeout");
        Box::new(BodyTimeout)
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        // The first poll follows the response head, which arrived before the deadline
        // (the first-byte timeout never reaches past it): no clock read for it.
        if std::mem::replace(&mut this.polled, true) && Instant::now() >= this.deadline {
            return Poll::Ready(Some(Err(Self::timed_out())));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            let deadline = this.deadline;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Some(Err(Self::timed_out())));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What went wrong reading the client's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFault {
    /// A body limit set by the caller (e.g. the route's maximum body size) was exceeded.
    TooLarge,
    /// The client stopped sending or sent a malformed body.
    Unreadable,
}

impl BodyFault {
    fn of(error: &(dyn StdError + 'static)) -> Self {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if error.is::<LengthLimitError>() {
                return Self::TooLarge;
            }
            cause = error.source();
        }
        Self::Unreadable
    }
}

/// Where a streamed request body reports its first error.
pub(crate) type FaultSlot = Arc<OnceLock<BodyFault>>;

/// A streamed client body that records its first read error in a [`FaultSlot`].
struct WatchedBody {
    inner: Body,
    fault: FaultSlot,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(error))) = &polled {
            let _ = self.fault.set(BodyFault::of(error));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps a body that will be streamed to the upstream so its read errors are recorded.
pub(crate) fn watch(body: Body) -> (Body, FaultSlot) {
    let fault = FaultSlot::default();
    let watched = WatchedBody {
        inner: body,
        fault: fault.clone(),
    };
    (Body::new(watched), fault)
}

/// Reads a whole body of at most `limit` bytes, so it can be sent again on a retry.
pub(crate) async fn buffer(body: Body, limit: usize) -> Result<Bytes, BodyFault> {
    Limited::new(body, limit)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|error| BodyFault::of(&*error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_limit_exceeded_while_reading_is_reported_as_too_large() {
        let limited = Body::new(Limited::new(Body::from(vec![0u8; 100]), 10));
        assert_eq!(buffer(limited, 1024).await, Err(BodyFault::TooLarge));
    }

    #[tokio::test]
    async fn a_streamed_body_records_its_first_error() {
        let failing = Body::from_stream(futures_util::stream::iter([
            Ok(Bytes::from_static(b"ab")),
            Err(std::io::Error::other("client went away")),
        ]));
        let (body, fault) = watch(failing);
        assert!(body.collect().await.is_err());
        assert_eq!(fault.get(), Some(&BodyFault::Unreadable));
    }

    #[tokio::test]
    async fn a_small_body_is_buffered_whole() {
        let bytes = buffer(Body::from("hello"), 1024).await.expect("buffered");
        assert_eq!(bytes, "hello");
    }
}
