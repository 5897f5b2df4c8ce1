//! Answers on hyper's connections (HTTP/1.0, streamed uploads, `Expect`, h2c, and every
//! request of the all-in-one `tessera dev`, served through axum): what of an answer's
//! body is ready is read before hyper gets the answer, so that a body that
//! fails right away (an upstream that broke off its answer, usually seen together with
//! its head) turns into the same `502` the gateway's own loop sends in that case
//! (`h1::response`), instead of a connection closed without a byte: hyper holds an
//! HTTP/1 head back until the body's first bytes and went down with the body.
//!
//! Only what is ready now is read: a body still waiting for its upstream (a stream of
//! events) goes to hyper as it is, which sends the head at once, as before.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use futures_util::FutureExt;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::{Answer, problem};

/// Most body bytes read ahead (as the gateway's own loop gathers behind a head).
const MAX_READ_AHEAD: usize = 64 * 1024;

/// `answer` with the ready part of its body read, or the `502` (with the answer's
/// request id) when the body failed within it.
pub(crate) fn read_ahead(mut answer: Answer) -> Answer {
    let body = answer.response.body_mut();
    if body.is_end_stream() {
        return answer;
    }
    let (mut ready, mut bytes, mut ended) = (VecDeque::new(), 0, false);
    while bytes < MAX_READ_AHEAD {
        match body.frame().now_or_never() {
            None => break,
            Some(None) => {
                ended = true;
                break;
            }
            Some(Some(Ok(frame))) => {
                bytes += frame.data_ref().map_or(0, Bytes::len);
                ready.push_back(frame);
            }
            Some(Some(Err(error))) => {
                tracing::debug!(
                    %error,
                    "the upstream's answer body failed before any of it was sent; answering 502"
                );
                return Answer {
                    request_id: answer.request_id,
                    ..problem(
                        StatusCode::BAD_GATEWAY,
                        "upstream_unavailable",
                        "The service behind this route broke off its answer.",
                    )
                    .into()
                };
            }
        }
    }
    if ready.is_empty() && !ended {
        return answer;
    }
    let rest = (!ended).then(|| std::mem::take(body));
    *body = Body::new(ReadAhead { ready, rest });
    answer
}

/// A body's frames read ahead, then the rest of it.
struct ReadAhead {
    ready: VecDeque<Frame<Bytes>>,
    /// `None` when the body had ended.
    rest: Option<Body>,
}

impl HttpBody for ReadAhead {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(frame) = self.ready.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        match &mut self.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_empty() && self.rest.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let ready: usize = self
            .ready
            .iter()
            .map(|frame| frame.data_ref().map_or(0, Bytes::len))
            .sum();
        let ready = ready as u64;
        let Some(rest) = &self.rest else {
            return SizeHint::with_exact(ready);
        };
        let rest = rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + ready);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + ready);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    fn answer_with(frames: Vec<io::Result<Frame<Bytes>>>) -> Answer {
        let body = Body::new(StreamBody::new(futures_util::stream::iter(frames)));
        axum::response::Response::new(body).into()
    }

    #[tokio::test]
    async fn a_body_that_fails_at_once_becomes_a_502() {
        let answer = read_ahead(answer_with(vec![
            Ok(Frame::data(Bytes::from_static(b"he"))),
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut")),
        ]));
        assert_eq!(answer.response.status(), StatusCode::BAD_GATEWAY);
    }

    #[tokio::test]
    async fn a_ready_body_is_passed_on_whole_with_its_size() {
        let answer = read_ahead(answer_with(vec![
            Ok(Frame::data(Bytes::from_static(b"hel"))),
            Ok(Frame::data(Bytes::from_static(b"lo"))),
        ]));
        assert_eq!(answer.response.status(), StatusCode::OK);
        let body = answer.response.into_body();
        assert_eq!(body.size_hint().exact(), Some(5));
        let bytes = body.collect().await.expect("body").to_bytes();
        assert_eq!(&bytes[..], b"hello");
    }

    #[tokio::test]
    async fn a_body_not_ready_yet_is_left_to_hyper() {
        let (sender, receiver) = tokio::sync::oneshot::channel::<Bytes>();
        let later = futures_util::stream::once(async move {
            receiver.await.map(Frame::data).map_err(io::Error::other)
        });
        let answer: Answer =
            axum::response::Response::new(Body::new(StreamBody::new(later))).into();
        let answer = read_ahead(answer);
        assert_eq!(answer.response.status(), StatusCode::OK);
        sender.send(Bytes::from_static(b"later")).expect("send");
        let bytes = answer.response.into_body().collect().await.expect("body");
        assert_eq!(&bytes.to_bytes()[..], b"later");
    }
}
