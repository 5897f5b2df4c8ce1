//! Per-request identity: the `X-Request-Id` (kept when the caller sent a sane one,
//! generated otherwise) and the W3C trace context, made available to handlers as an
//! extension, attached to every log line of the request, and echoed in the response.
//!
//! tower-http's request-id layers would propagate any header value as-is; Tessera also
//! logs and stores the id, so a caller-supplied value is only kept when it is short and
//! plain (see [`is_acceptable_request_id`]).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderName, HeaderValue};
use tracing::Instrument;

use crate::metrics::RouteLabel;
use crate::trace_context::TraceContext;

/// The request id header.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The W3C trace context header.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Longest caller-supplied request id kept; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// What a handler knows about the request it serves. Added to request extensions by the
/// kit's middleware; extract it with `Extension<RequestContext>`.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id, also returned in the response's `X-Request-Id`.
    pub request_id: String,
    /// The trace this request belongs to, with this service's span.
    pub trace: TraceContext,
}

impl RequestContext {
    /// Headers to put on a call made to another service while handling this request.
    pub fn propagation_headers(&self) -> [(HeaderName, String); 2] {
        [
            (X_REQUEST_ID.clone(), self.request_id.clone()),
            (TRACEPARENT.clone(), self.trace.traceparent()),
        ]
    }
}

/// Whether a caller-supplied request id is kept: 1 to 128 characters of letters, digits
/// and `-_.:`, so it is safe in logs, headers and queries.
pub fn is_acceptable_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A fresh UUIDv7 request id. Its random bits come from the thread-local generator:
/// `Uuid::now_v7` asks the kernel (`getrandom`) on every call, a system call per request
/// that showed in the gateway's profile.
fn new_request_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let mut random = [0_u8; 10];
    rand::fill(&mut random);
    uuid::Builder::from_unix_timestamp_millis(millis, &random)
        .into_uuid()
        .to_string()
}

/// What a handler adds to its request's access line (`request finished`), put into its
/// response's extensions (the middleware takes it out again): the upstream that answered
/// and the authenticated subject (the gateway's proxied endpoint and token subject).
#[derive(Debug, Clone, Default)]
pub struct AccessFields {
    pub upstream: Option<Arc<str>>,
    pub subject: Option<String>,
}

/// Middleware: establishes the [`RequestContext`], runs the request inside a tracing span
/// carrying its ids, logs one access line, and sets `X-Request-Id` on the response.
pub(crate) async fn request_context(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_acceptable_request_id(id))
        .map_or_else(new_request_id, str::to_owned);
    let trace = request
        .headers()
        .get(&TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::from_traceparent)
        .unwrap_or_else(TraceContext::new_root);
    let context = RequestContext { request_id, trace };

    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let path = route.unwrap_or_else(|| request.uri().path().to_owned());
    let span = tracing::info_span!(
        "request",
        request_id = %context.request_id,
        trace_id = %context.trace.trace_id(),
        span_id = %context.trace.span_id(),
        %method,
        path = %path,
    );
    let header_value = HeaderValue::from_str(&context.request_id).ok();
    request.extensions_mut().insert(context);

    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let access = response
        .extensions_mut()
        .remove::<AccessFields>()
        .unwrap_or_default();
    let route = response
        .extensions()
        .get::<RouteLabel>()
        .map(|label| Arc::clone(&label.0));
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms,
            route = route.as_deref(),
            upstream = access.upstream.as_deref(),
            subject = access.subject.as_deref(),
            "request finished"
        );
    });
    if let Some(value) = header_value {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_request_ids_are_distinct_uuid_v7s() {
        let a = uuid::Uuid::parse_str(&new_request_id()).unwrap();
        let b = uuid::Uuid::parse_str(&new_request_id()).unwrap();
        assert_eq!(a.get_version_num(), 7);
        assert_ne!(a, b);
    }

    #[test]
    fn plain_request_ids_are_kept_and_odd_ones_refused() {
        assert!(is_acceptable_request_id("3f1c9a7e-req_01.a:b"));
        assert!(!is_acceptable_request_id(""));
        assert!(!is_acceptable_request_id("has space"));
        assert!(!is_acceptable_request_id("line\nbreak"));
        assert!(!is_acceptable_request_id(
            &"a".repeat(MAX_REQUEST_ID_LEN + 1)
        ));
    }
}
