//! The request path of [`Upstream::forward`]: breaker admission, endpoint choice,
//! attempts under the timeouts, retries within the budget, and the mapping of failures
//! to problem responses that never carry upstream details (those are logged).

use std::error::Error as StdError;
use std::future::{Future, poll_fn};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Body as _;
use hyper::upgrade::OnUpgrade;

use super::balance::{Endpoint, InFlight};
use super::body::{self, BodyFault, FaultSlot, ResponseBody};
use super::client::{Answered, Outgoing, SendError};
use super::outcome::{circuit_open, client_fault, finish, relayed, timed_out, unavailable};
use super::relayed::RelayedHeaders;
use super::{ForwardContext, Upstream, headers, websocket};

/// Largest request body buffered so the request can be retried: 64 KiB holds any JSON
/// API call; larger (or unsized) bodies are streamed and, once consumed, not retried.
const MAX_RETRY_BODY: usize = 64 * 1024;

/// The request body, kept for replay when it may be retried.
enum RequestBody {
    Buffered(Bytes),
    Streamed(Option<Body>, FaultSlot),
}

impl RequestBody {
    /// Buffers the body when the request may be retried and the body is small enough
    /// (its declared length says so before anything is read); streams it otherwise.
    async fn prepare(body: Body, may_retry: bool) -> Result<Self, BodyFault> {
        let small = body
            .size_hint()
            .upper()
            .is_some_and(|len| len <= MAX_RETRY_BODY as u64);
        if may_retry && body.is_end_stream() {
            // Nothing to read (most requests): no collecting machinery.
            Ok(Self::Buffered(Bytes::new()))
        } else if may_retry && small {
            Ok(Self::Buffered(body::buffer(body, MAX_RETRY_BODY).await?))
        } else {
            let (body, slot) = body::watch(body);
            Ok(Self::Streamed(Some(body), slot))
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, Self::Buffered(_))
    }

    fn for_attempt(&mut self) -> Body {
        match self {
            // An empty body (most requests) needs no allocation.
            Self::Buffered(bytes) if bytes.is_empty() => Body::empty(),
            Self::Buffered(bytes) => Body::from(bytes.clone()),
            Self::Streamed(body, _) => body.take().unwrap_or_else(Body::empty),
        }
    }

    fn fault(&self) -> Option<BodyFault> {
        match self {
            Self::Buffered(_) => None,
            Self::Streamed(_, slot) => slot.get().copied(),
        }
    }
}

/// The endpoints one request's attempts used, in order: a few without allocating
/// (requests are tried once or twice).
#[derive(Default)]
struct Tried {
    inline: [usize; 4],
    len: usize,
    /// All of them once there are more than `inline` holds.
    spilled: Vec<usize>,
}

impl Tried {
    fn push(&mut self, index: usize) {
        if self.spilled.is_empty() && self.len < self.inline.len() {
            self.inline[self.len] = index;
            self.len += 1;
        } else {
            if self.spilled.is_empty() {
                self.spilled.extend_from_slice(&self.inline[..self.len]);
            }
            self.spilled.push(index);
        }
    }

    fn as_slice(&self) -> &[usize] {
        if self.spilled.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.spilled
        }
    }

    fn len(&self) -> usize {
        self.as_slice().len()
    }
}

/// What [`Upstream::exchange`] ended with.
struct Exchanged {
    response: Response<Body>,
    /// The upstream's head lines, relayed as received, when they are not in `response`.
    relayed: Option<RelayedHeaders>,
    /// Whether the upstream failed; `None` when the outcome does not judge the upstream
    /// (the client's own fault).
    failed: Option<bool>,
    /// When the last attempt ended (one clock read serves the outlier, budget and
    /// breaker bookkeeping).
    ended: Instant,
    /// The endpoint of the last attempt.
    endpoint: Option<Arc<str>>,
}

impl Exchanged {
    /// An answer for a fault of the client's, which does not judge the upstream.
    fn client_fault(response: Response<Body>, ended: Instant, endpoint: Option<Arc<str>>) -> Self {
        Self {
            response,
            relayed: None,
            failed: None,
            ended,
            endpoint,
        }
    }
}

/// The result of one attempt.
enum Attempt {
    Answered(Answered),
    /// The request never reached the endpoint.
    ConnectFailed(SendError),
    /// The exchange broke after the request was (maybe partly) sent.
    Broken(SendError),
    TimedOut,
}

impl Attempt {
    /// Whether the attempt counts as a failure of the endpoint (and the upstream): no
    /// answer, or an answer saying the service is down rather than the request is wrong.
    /// A 500 is the application's answer to this request and does not count.
    fn failed(&self) -> bool {
        match self {
            Self::Answered(answered) => matches!(
                answered.response.status(),
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
            Self::ConnectFailed(_) | Self::Broken(_) | Self::TimedOut => true,
        }
    }

    /// Whether another endpoint may be tried: the request never reached the endpoint, or
    /// the endpoint said it could not handle it (502/503). A timeout or a broken exchange
    /// may have had effects upstream and is not retried.
    fn retryable(&self) -> bool {
        match self {
            Self::ConnectFailed(_) => true,
            Self::Answered(answered) => matches!(
                answered.response.status(),
                StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE
            ),
            Self::Broken(_) | Self::TimedOut => false,
        }
    }
}

impl Upstream {
    /// Forwards `request` (its path already rewritten for the upstream) and returns the
    /// upstream's response, streamed, or a problem response when the gateway has to
    /// answer for the upstream. Every response carries an
    /// [`UpstreamOutcome`](super::UpstreamOutcome) extension.
    pub async fn forward(&self, request: Request<Body>, ctx: &ForwardContext) -> Response<Body> {
        // Marked, the head lines are in the map.
        self.forward_with(request, ctx, true).await.response
    }

    /// [`Upstream::forward`] for the gateway's data path, which reads no outcome: a
    /// response relayed from the upstream carries no [`UpstreamOutcome`](super::UpstreamOutcome)
    /// (its extension map is three allocations and ~1k instructions per request,
    /// bench/README.md, gateway, session 5); the gateway's own answers still do. An
    /// HTTP/1.1 upstream's head lines come back beside the response instead of in its
    /// map (see [`Forwarded`]).
    pub(crate) async fn forward_unmarked(
        &self,
        request: Request<Body>,
        ctx: &ForwardContext,
    ) -> Forwarded {
        self.forward_with(request, ctx, false).await
    }

    async fn forward_with(
        &self,
        request: Request<Body>,
        ctx: &ForwardContext,
        mark: bool,
    ) -> Forwarded {
        let started = ctx.started;
        let permit = match self.breaker.admit(started) {
            Ok(permit) => permit,
            Err(wait) => {
                return Forwarded {
                    response: circuit_open(wait),
                    relayed: None,
                    endpoint: None,
                };
            }
        };
        let exchanged = self.exchange(request, ctx, started, mark).await;
        // A failure of the client's own (an unreadable body) says nothing about the
        // upstream: the permit is dropped unrecorded.
        if let Some(failed) = exchanged.failed {
            permit.record(failed, exchanged.ended);
        }
        Forwarded {
            response: exchanged.response,
            relayed: exchanged.relayed,
            endpoint: exchanged.endpoint,
        }
    }

    /// Runs the attempts.
    async fn exchange(
        &self,
        mut request: Request<Body>,
        ctx: &ForwardContext,
        started: Instant,
        mark: bool,
    ) -> Exchanged {
        // Only a client connection that can be upgraded (HTTP/1.1 served with upgrades)
        // carries `OnUpgrade`; otherwise the upgrade headers are stripped like any
        // hop-by-hop header and the request goes through as a plain one.
        let client_upgrade = (headers::is_websocket_upgrade(request.headers())
            && request.extensions().get::<OnUpgrade>().is_some())
        .then(|| hyper::upgrade::on(&mut request));
        let upgrade = client_upgrade.is_some();
        let (mut parts, body) = request.into_parts();
        headers::strip_request(&mut parts.headers, upgrade);
        let forwarding = headers::Forwarding::new(ctx);

        let retry = &self.config.retry;
        let may_retry = retry.attempts > 0 && is_idempotent(&parts.method);
        let mut body = match RequestBody::prepare(body, may_retry).await {
            Ok(body) => body,
            Err(fault) => {
                return Exchanged::client_fault(client_fault(fault, None, 0), started, None);
            }
        };
        self.budget.record_request(started);
        let deadline = super::after(started, self.config.timeouts.total);
        // The first attempt starts at `started` (the request has only been prepared
        // since); a retry reads the clock when the previous attempt ended.
        let mut now = started;

        let mut tried = Tried::default();
        loop {
            let Some(index) = self.balancer.pick(&self.endpoints, tried.as_slice(), now) else {
                tracing::error!("upstream has no endpoints");
                return Exchanged {
                    response: unavailable(None, 0),
                    relayed: None,
                    failed: Some(true),
                    ended: now,
                    endpoint: None,
                };
            };
            tried.push(index);
            // One reference count taken per attempt (it travels with the response
            // body); the endpoint is used through it.
            let in_flight = InFlight::new(Arc::clone(&self.endpoints[index]));
            let endpoint = in_flight.endpoint();
            let attempts = u32::try_from(tried.len()).unwrap_or(u32::MAX);
            // Another attempt may need the request again: not for a body that cannot be
            // replayed, nor after the last attempt allowed.
            let outgoing = Outgoing {
                parts: &mut parts,
                forwarding: &forwarding,
                keep_parts: body.replayable() && attempts <= retry.attempts,
                upgrade,
            };
            let attempt = self
                .attempt(endpoint, outgoing, body.for_attempt(), now, deadline)
                .await;
            let target = endpoint.target().label().clone();
            now = Instant::now();

            if let (Some(fault), false) = (body.fault(), matches!(attempt, Attempt::Answered(..))) {
                let response = client_fault(fault, Some(target.clone()), attempts);
                return Exchanged::client_fault(response, now, Some(target));
            }
            let failed = attempt.failed();
            endpoint.record(
                failed,
                now,
                self.config.eject_after_failures,
                self.config.ejection,
            );
            if attempt.retryable()
                && body.replayable()
                && attempts <= retry.attempts
                && now < deadline
                && self.budget.try_retry(now)
            {
                tracing::debug!(endpoint = %target, attempts, "retrying on another endpoint");
                continue;
            }

            let (response, relayed) = match attempt {
                Attempt::Answered(answered) => self.relay(
                    answered,
                    client_upgrade,
                    deadline,
                    in_flight,
                    &target,
                    attempts,
                    mark,
                ),
                Attempt::TimedOut => {
                    tracing::warn!(endpoint = %target, "upstream timed out");
                    (timed_out(Some(target.clone()), attempts), None)
                }
                Attempt::ConnectFailed(error) | Attempt::Broken(error) => {
                    tracing::warn!(endpoint = %target, error = %chain(&error), "upstream request failed");
                    (unavailable(Some(target.clone()), attempts), None)
                }
            };
            return Exchanged {
                response,
                relayed,
                failed: Some(failed),
                ended: now,
                endpoint: Some(target),
            };
        }
    }

    /// Sends one attempt starting `now`, waiting for the response headers at most the
    /// first-byte timeout (less when the total deadline is nearer).
    async fn attempt(
        &self,
        endpoint: &Endpoint,
        outgoing: Outgoing<'_>,
        body: Body,
        now: Instant,
        deadline: Instant,
    ) -> Attempt {
        let give_up = super::after(now, self.config.timeouts.first_byte).min(deadline);
        // The client gives up at `give_up` itself (a pooled HTTP/1.1 connection with the
        // timer it keeps). Boxed where it is made: the future that may connect is
        // several KiB, and this one is moved into the request's box.
        let mut sent = Box::pin(
            self.client
                .send(endpoint.target(), outgoing, body, now, give_up),
        );
        let waited = poll_fn(|cx| {
            let polled = sent.as_mut().poll(cx);
            if polled.is_pending() {
                // The edge's request timer is not needed while this one waits.
                crate::deadline::covered_until(give_up);
            }
            polled
        });
        match waited.await {
            Err(SendError::TimedOut) => Attempt::TimedOut,
            Err(error) if error.is_connect() => Attempt::ConnectFailed(error),
            Err(error) => Attempt::Broken(error),
            Ok(answered) => Attempt::Answered(answered),
        }
    }

    /// Turns the upstream's response into the client's: hop-by-hop headers stripped, the
    /// body streamed under the total deadline, or a `101` spliced. The head lines of an
    /// HTTP/1.1 answer stay beside the response (in its map when `mark`, for callers
    /// that read it).
    #[allow(
        clippy::too_many_arguments,
        reason = "one private step of exchange, which owns every argument"
    )]
    fn relay(
        &self,
        answered: Answered,
        client_upgrade: Option<OnUpgrade>,
        deadline: Instant,
        in_flight: InFlight,
        target: &Arc<str>,
        attempts: u32,
        mark: bool,
    ) -> (Response<Body>, Option<RelayedHeaders>) {
        let Answered {
            mut response,
            relayed: head,
        } = answered;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                tracing::warn!(endpoint = %target, "upstream switched protocols unasked");
                return (unavailable(Some(target.clone()), attempts), None);
            };
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            websocket::splice(
                client_upgrade,
                upstream_upgrade,
                self.client.upgrade_idle_timeout,
                in_flight,
            );
            let (mut parts, _) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers, true);
            let response = finish(parts, Body::empty(), Some(target.clone()), attempts, None);
            return (response, None);
        }
        let (mut parts, upstream_body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, false);
        let body = Body::new(ResponseBody::new(upstream_body, deadline, in_flight));
        if mark {
            if let Some(head) = &head {
                head.append_to(&mut parts.headers);
            }
            (
                finish(parts, body, Some(target.clone()), attempts, None),
                None,
            )
        } else {
            (relayed(parts, body), head)
        }
    }
}

/// What [`Upstream::forward_unmarked`] answers.
pub(crate) struct Forwarded {
    /// The upstream's response or the gateway's problem.
    pub(crate) response: Response<Body>,
    /// An HTTP/1.1 upstream's head lines, relayed as received: not in `response`'s map
    /// (building one per answer cost more than the rest of reading it, bench/README.md,
    /// gateway, session 8).
    pub(crate) relayed: Option<RelayedHeaders>,
    /// The endpoint of the last attempt, for the access log.
    pub(crate) endpoint: Option<Arc<str>>,
}

/// Methods RFC 9110 defines as idempotent that APIs use; only these are retried.
pub(super) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// An error and its causes on one line, for the log.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::Tried;

    #[test]
    fn tried_endpoints_keep_their_order_beyond_the_inline_ones() {
        let mut tried = Tried::default();
        assert!(tried.as_slice().is_empty());
        for index in [3, 1, 4, 1, 5, 9] {
            tried.push(index);
        }
        assert_eq!(tried.as_slice(), &[3, 1, 4, 1, 5, 9]);
        assert_eq!(tried.len(), 6);
    }
}
