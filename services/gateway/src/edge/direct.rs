//! The gateway's data path served by hyper directly: one hand-written service per
//! connection does what the kit's public layer stack does (request id and trace
//! context, access line, HTTP metrics, problem+json errors, panic containment, request
//! timeout, body limit) in one future, instead of axum's router plus six layers that
//! each box a future and clone a boxed service per request (bench/README.md, gateway,
//! session 4). The admin listener keeps the kit's axum router.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, StatusCode};
use hyper::body::{Body as HttpBody, Incoming};
use service_kit::direct::{self, HttpRecorder, problem_for_bare_errors};
use service_kit::{HttpSettings, Metrics, Problem};
use tracing::Instrument;

use super::ids::{Hex, Ids};
use super::{Access, Answer, BoxError, Gateway};

/// Route label of requests no route matched (the kit's label for them).
static UNMATCHED: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("unmatched"));

/// What every connection's service shares.
#[derive(Debug)]
pub struct Edge {
    gateway: Arc<Gateway>,
    recorder: HttpRecorder,
    request_timeout: Duration,
    max_body_bytes: u64,
}

impl Edge {
    /// The data path of `gateway`, recording into `metrics`, with the service-wide
    /// request timeout and body limit of `settings`.
    pub fn new(gateway: Gateway, metrics: &Metrics, settings: &HttpSettings) -> Arc<Self> {
        Arc::new(Self {
            gateway: Arc::new(gateway),
            recorder: HttpRecorder::new(metrics),
            request_timeout: settings.request_timeout,
            max_body_bytes: u64::try_from(settings.max_body_bytes).unwrap_or(u64::MAX),
        })
    }

    /// A copy for one worker thread: the connections of a thread share its `Arc`, so the
    /// reference count taken per request is never written by two threads.
    pub fn for_thread(&self) -> Arc<Self> {
        Arc::new(Self {
            gateway: Arc::clone(&self.gateway),
            recorder: self.recorder.clone(),
            request_timeout: self.request_timeout,
            max_body_bytes: self.max_body_bytes,
        })
    }

    /// The service for one client connection from `peer`.
    pub fn connection(self: &Arc<Self>, peer: SocketAddr) -> EdgeService {
        EdgeService {
            edge: Arc::clone(self),
            peer,
        }
    }

    /// One request, start to end; the connection's service future itself (taking the
    /// `Arc` rather than wrapping a borrowing future in another one).
    pub(crate) async fn serve<B>(self: Arc<Self>, request: Request<B>, peer: SocketAddr) -> Answer
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let in_flight = self.recorder.in_flight();
        let ids = Ids::for_request(request.headers(), started);
        let method = request.method().clone();
        // Fields are only evaluated when the span is enabled (`RUST_LOG=info`).
        let span = tracing::info_span!(
            "request",
            request_id = %ids.request_id(),
            trace_id = %Hex(&ids.trace_id),
            span_id = %Hex(&ids.span_id),
            %method,
            path = %request.uri().path(),
        );
        let mut access = Access::default();
        let answered = self.answer(request, peer, &ids, started, &mut access);
        let mut answer = if span.is_disabled() {
            answered.await
        } else {
            answered.instrument(span.clone()).await
        };
        // Only errors are reshaped (in one map): a success skips the future (and the
        // moves of the response into and out of it).
        let status = answer.response.status();
        if status.is_client_error() || status.is_server_error() {
            answer.merge();
            let response = std::mem::take(&mut answer.response);
            answer.response = problem_for_bare_errors(response).await;
        }
        drop(in_flight);
        let status = answer.response.status().as_u16();
        let route = access.route.unwrap_or_else(|| Arc::clone(&UNMATCHED));
        let elapsed = started.elapsed();
        self.recorder.record(&method, &route, status, elapsed);
        span.in_scope(|| {
            tracing::info!(
                status,
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                route = &*route,
                upstream = access.upstream.as_deref(),
                subject = access.subject.as_deref(),
                "request finished"
            );
        });
        // Written with the head (`h1::response`), or set in the map on hyper's
        // connections by `EdgeService`, as the security headers are.
        answer.request_id = Some(ids.upstream.request_id);
        answer
    }

    /// The gateway's answer under the service-wide body limit, request timeout and
    /// panic containment, as the kit's layers apply them.
    async fn answer<B>(
        &self,
        request: Request<B>,
        peer: SocketAddr,
        ids: &Ids,
        started: Instant,
        access: &mut Access,
    ) -> Answer
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // The declared length, as the body knows it (hyper's and the gateway's own
        // server both take it from `Content-Length`), without a header lookup.
        if request.body().size_hint().lower() > self.max_body_bytes {
            return Problem::for_status(StatusCode::PAYLOAD_TOO_LARGE)
                .into_response()
                .into();
        }
        // Boxed where it is made: the request path's future is several KiB, and each
        // wrapper below would otherwise copy it again (memmove showed in the profile).
        let responding = AssertUnwindSafe(Box::pin(self.gateway.respond(
            request,
            peer,
            &ids.upstream,
            started,
            access,
        )));
        // The deadline from the request's own start: no clock read of its own.
        let deadline = started
            .checked_add(self.request_timeout)
            .unwrap_or_else(|| started + Duration::from_secs(30 * 365 * 24 * 3600));
        match crate::deadline::within(deadline, responding.catch_unwind()).await {
            Ok(Ok(answered)) => answered,
            Ok(Err(panic)) => direct::panic_response(panic).into(),
            Err(_) => Problem::for_status(StatusCode::SERVICE_UNAVAILABLE)
                .into_response()
                .into(),
        }
    }
}

/// The hyper service of one client connection.
#[derive(Debug, Clone)]
pub struct EdgeService {
    edge: Arc<Edge>,
    peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for EdgeService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let serving = Edge::serve(Arc::clone(&self.edge), request, self.peer);
        Box::pin(async move {
            let mut response = super::prefetch::read_ahead(serving.await).into_response();
            super::secure_response(response.headers_mut());
            Ok(response)
        })
    }
}
