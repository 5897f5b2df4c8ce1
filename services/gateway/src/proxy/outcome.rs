//! The responses the gateway gives in the upstream's stead, and the [`UpstreamOutcome`]
//! every forwarded response carries. Problem bodies name a stable `code` and never the
//! upstream's error, which is logged where it happened.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::IntoResponse;
use http::{Extensions, HeaderValue, Response, StatusCode, Version, header};
use service_kit::Problem;

use super::body::BodyFault;

/// What happened upstream; added to the extensions of every response
/// [`Upstream::forward`](super::Upstream::forward) returns, for callers that log or count
/// it (the gateway's own data path reads none and skips it on relayed responses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamOutcome {
    /// The endpoint of the last attempt, `None` when none was made.
    pub endpoint: Option<Arc<str>>,
    /// Attempts made: 0 when the breaker refused, above 1 after retries.
    pub attempts: u32,
    /// The problem code when the gateway answered instead of the upstream.
    pub error: Option<&'static str>,
}

/// Rebuilds a response from upstream parts with fresh extensions (the upstream
/// connection's are of no use to the caller) and the outcome.
pub(crate) fn finish(
    mut parts: http::response::Parts,
    body: Body,
    endpoint: Option<Arc<str>>,
    attempts: u32,
    error: Option<&'static str>,
) -> Response<Body> {
    // The client's connection has its own version; hyper writes the right one.
    parts.version = Version::default();
    parts.extensions = Extensions::new();
    parts.extensions.insert(UpstreamOutcome {
        endpoint,
        attempts,
        error,
    });
    Response::from_parts(parts, body)
}

/// Rebuilds a response from upstream parts with fresh extensions, without the outcome.
pub(crate) fn relayed(mut parts: http::response::Parts, body: Body) -> Response<Body> {
    parts.version = Version::default();
    parts.extensions = Extensions::new();
    Response::from_parts(parts, body)
}

fn problem(
    status: StatusCode,
    code: &'static str,
    detail: &str,
    endpoint: Option<Arc<str>>,
    attempts: u32,
) -> Response<Body> {
    let (parts, body) = Problem::new(status, code)
        .detail(detail)
        .into_response()
        .into_parts();
    finish(parts, body, endpoint, attempts, Some(code))
}

pub(crate) fn unavailable(endpoint: Option<Arc<str>>, attempts: u32) -> Response<Body> {
    problem(
        StatusCode::BAD_GATEWAY,
        "upstream_unavailable",
        "The service behind this route could not be reached.",
        endpoint,
        attempts,
    )
}

pub(crate) fn timed_out(endpoint: Option<Arc<str>>, attempts: u32) -> Response<Body> {
    problem(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_timeout",
        "The service behind this route did not answer in time.",
        endpoint,
        attempts,
    )
}

pub(crate) fn circuit_open(wait: Duration) -> Response<Body> {
    let mut response = problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "circuit_open",
        "The service behind this route is failing; retry later.",
        None,
        0,
    );
    let seconds = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

pub(crate) fn client_fault(
    fault: BodyFault,
    endpoint: Option<Arc<str>>,
    attempts: u32,
) -> Response<Body> {
    match fault {
        BodyFault::TooLarge => problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "The request body is larger than this route accepts.",
            endpoint,
            attempts,
        ),
        BodyFault::Unreadable => problem(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            "The request body could not be read.",
            endpoint,
            attempts,
        ),
    }
}
