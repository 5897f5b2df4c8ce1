//! The gateway's request path: route, check the path, answer CORS preflights, refuse
//! smuggled credentials, authenticate, throttle, limit the body, forward.

mod answer;
mod auth;
pub mod client_addr;
pub mod cors;
pub mod direct;
pub(crate) mod h1;
mod ids;
mod metrics;
mod prefetch;
mod security;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, StatusCode, Uri};
use hyper::body::Body as HttpBody;
use ipnet::IpNet;
use service_kit::metrics::RouteLabel;
use service_kit::request_context::AccessFields;
use service_kit::{Problem, RequestContext};
use tessera_auth::Verifier;

pub use metrics::GatewayMetrics;

pub(crate) use answer::Answer;
pub(crate) use security::{SecurityChosen, secure_response};

use crate::proxy::{ForwardContext, Forwarded, RequestIds, UpstreamOutcome};
use crate::ratelimit::{Decision, Limiter, RatePolicy, apply_headers};
use crate::routes::file::AuthSpec;
use crate::routes::{Route, Routes};

/// Request headers that look like identity assertions. Upstreams verify the token
/// themselves and must never trust such headers, so the gateway drops them rather than
/// carrying a client's invention further.
const IDENTITY_HEADER_PREFIXES: &[&str] = &[
    "x-user",
    "x-auth",
    "x-tessera-",
    "x-principal",
    "x-client-id",
    "x-forwarded-user",
    "x-remote-user",
    "remote-user",
];

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything the request path needs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub routes: Arc<Routes>,
    pub verifier: Arc<Verifier>,
    pub limiter: Arc<dyn Limiter>,
    pub trusted_proxies: Arc<Vec<IpNet>>,
    pub metrics: GatewayMetrics,
}

fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    Problem::new(status, code).detail(detail).into_response()
}

/// Whether the path is safe to route by prefix: no dot segments, literal or encoded, no
/// encoded slashes, no backslashes, so `/public/../admin` cannot reach `/admin` upstream
/// through a `/public` route.
fn path_is_clean(path: &str) -> bool {
    // Most paths have none of the bytes the checks below look for: one pass for them.
    if !path.bytes().any(|b| matches!(b, b'%' | b'\\' | b'.')) {
        return true;
    }
    let encoded_separator = path.as_bytes().windows(3).any(|w| {
        w[0] == b'%'
            && (w[1] == b'2' && matches!(w[2] | 0x20, b'e' | b'f')
                || w[1] == b'5' && w[2] | 0x20 == b'c')
    });
    !encoded_separator
        && !path.contains('\\')
        && path
            .split('/')
            .all(|segment| segment != "." && segment != "..")
}

/// The axum handler for every path, behind the kit's layers (the all-in-one `tessera
/// dev` serves the gateway this way; the gateway binary serves [`direct`]).
pub async fn handle(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let Some(ids) = request
        .extensions()
        .get::<RequestContext>()
        .map(RequestIds::from)
    else {
        tracing::error!("request context missing; the service kit layers are not applied");
        return Problem::internal().into_response();
    };
    let mut access = Access::default();
    let started = Instant::now();
    let answer = gateway
        .respond(request, peer, &ids, started, &mut access)
        .await;
    // hyper writes this answer: a body that breaks off at once becomes a 502 (prefetch).
    let mut response = prefetch::read_ahead(answer).into_response();
    response.extensions_mut().insert(AccessFields {
        upstream: access.upstream,
        subject: access.subject,
    });
    if let Some(route) = access.route {
        response.extensions_mut().insert(RouteLabel(route));
    }
    secure_response(response.headers_mut());
    response
}

impl Gateway {
    /// Answers one request from `peer`: route, check, authenticate, throttle, forward.
    /// Notes in `access` what the access line and the metrics tell of it (an out
    /// parameter: returned, it would be moved through every future that wraps this one).
    pub(crate) async fn respond<B>(
        &self,
        request: http::Request<B>,
        peer: SocketAddr,
        ids: &RequestIds,
        started: Instant,
        access: &mut Access,
    ) -> Answer
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let table = self.routes.snapshot();
        let path = request.uri().path();
        if !path_is_clean(path) {
            let response = problem(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                "The path has dot segments or encoded separators.",
            );
            return response.into();
        }
        let host = request_host(&request);
        // Borrowed from the snapshot, not cloned: an `Arc` clone per request is a
        // reference count every worker thread writes.
        let Some(route) = table.find(
            host.as_ref().and_then(|h| h.to_str().ok()),
            path,
            request.method(),
            request.headers(),
        ) else {
            let response = problem(
                StatusCode::NOT_FOUND,
                "no_route",
                "No route matches this request.",
            );
            return response.into();
        };
        access.route = Some(Arc::clone(&route.name));
        route_request(
            self,
            route,
            table.global_rate_limit.as_ref(),
            peer,
            host,
            request,
            ids,
            started,
            access,
        )
        .await
    }
}

/// What the access line (`request finished`) and the metrics tell of a request besides
/// its status and latency.
#[derive(Debug, Default)]
pub(crate) struct Access {
    /// The route's name; `None` when no route matched.
    pub(crate) route: Option<Arc<str>>,
    /// The endpoint of the last attempt, when the request was forwarded.
    pub(crate) upstream: Option<Arc<str>>,
    /// The verified token's subject, on protected routes.
    pub(crate) subject: Option<String>,
}

/// The host the client asked for, lowercase and without port, from `Host` or an
/// absolute request target. The header's own value is reused when it already has that
/// form (the common case), so nothing is copied.
fn request_host<B>(request: &http::Request<B>) -> Option<HeaderValue> {
    if let Some(value) = request.headers().get(HOST) {
        // Visible ASCII (what `to_str` accepts, less the space no host has), no
        // uppercase, no port: in one pass.
        if value
            .as_bytes()
            .iter()
            .all(|&b| matches!(b, b'!'..=b'~') && !b.is_ascii_uppercase() && b != b':')
        {
            return Some(value.clone());
        }
        // `host:port` (most clients of a gateway on another port than 80): the last
        // `Host` normalised on this thread is reused, the requests of a connection
        // (and mostly of a deployment) all name the same.
        if let Ok(Some(cached)) = LAST_HOST.try_with(|last| {
            last.borrow()
                .as_ref()
                .filter(|(raw, _)| **raw == *value.as_bytes())
                .map(|(_, host)| host.clone())
        }) {
            return Some(cached);
        }
        let host = normalised_host(request)?;
        let _ = LAST_HOST.try_with(|last| {
            *last.borrow_mut() = Some((value.as_bytes().into(), host.clone()));
        });
        return Some(host);
    }
    normalised_host(request)
}

thread_local! {
    /// The last `Host` header value normalised on this thread (copied, so hyper's read
    /// buffer is not held) and its normalised value.
    static LAST_HOST: std::cell::RefCell<Option<(Box<[u8]>, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
}

/// The host from `Host` or the request target, lowercase, without port, as a header
/// value whose clones share one allocation.
fn normalised_host<B>(request: &http::Request<B>) -> Option<HeaderValue> {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())?;
    let name = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name
        } else {
            host
        }
    });
    HeaderValue::from_maybe_shared(Bytes::from_owner(name.to_ascii_lowercase().into_bytes())).ok()
}

#[allow(
    clippy::too_many_arguments,
    reason = "one private step of respond, which owns every argument"
)]
async fn route_request<B>(
    gateway: &Gateway,
    route: &Route,
    global_limit: Option<&RatePolicy>,
    peer: SocketAddr,
    host: Option<HeaderValue>,
    mut request: http::Request<B>,
    ids: &RequestIds,
    started: Instant,
    access: &mut Access,
) -> Answer
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let origin = route
        .cors
        .as_ref()
        .and_then(|cors| cors::allowed_origin(cors, request.headers()).cloned());
    if cors::is_preflight(request.method(), request.headers())
        && let Some(cors) = &route.cors
    {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Some(origin) = &origin {
            cors::preflight_headers(cors, origin, response.headers_mut());
        }
        return response.into();
    }

    // A public route needs only the credential check, not the authentication future.
    let principal = if matches!(route.auth, AuthSpec::Public) {
        if let Err(response) =
            auth::one_credential(gateway, route, request.headers(), request.uri())
        {
            return response.into();
        }
        None
    } else {
        match auth::authenticate(gateway, route, request.headers(), request.uri()).await {
            Ok(principal) => principal,
            Err(response) => return response.into(),
        }
    };
    strip_identity_headers(request.headers_mut());

    let client = client_addr::client_addr(peer.ip(), request.headers(), &gateway.trusted_proxies);
    let shown = if global_limit.is_none() && route.rate_limit.is_none() {
        Vec::new()
    } else {
        let key = principal.as_ref().map_or_else(
            || format!("ip:{}", client.ip),
            |p| format!("sub:{}", p.subject),
        );
        match throttle(gateway, route, global_limit, &key).await {
            Ok(shown) => shown,
            Err(refused) => return refused.into(),
        }
    };

    // The declared length, as the body knows it (no header lookup).
    if request.body().size_hint().lower() > route.max_body_bytes {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "The request body is larger than this route accepts.",
        )
        .into();
    }
    let limit = usize::try_from(route.max_body_bytes).unwrap_or(usize::MAX);
    // Without a rewrite the path goes upstream as received (the upstream client turns
    // it into origin form), so the common case copies nothing.
    if route.rewrite_prefix.is_some() {
        let Some(uri) = rewritten(route, request.uri()) else {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                "The request target cannot be forwarded.",
            )
            .into();
        };
        *request.uri_mut() = uri;
    }
    let (parts, body) = request.into_parts();
    let request = Request::from_parts(parts, Body::new(http_body_util::Limited::new(body, limit)));
    let forward = ForwardContext {
        client_addr: client.ip,
        forwarded_for: client.forwarded_for,
        proto: "http",
        host,
        ids: ids.clone(),
        started,
    };
    let Forwarded {
        mut response,
        relayed,
        endpoint,
    } = route.upstream.forward_unmarked(request, &forward).await;
    access.upstream = endpoint;
    access.subject = principal.map(|p| p.subject);
    // Only the gateway's own answers carry an outcome (relayed ones skip it).
    if let Some(UpstreamOutcome {
        error: Some(error @ ("upstream_unavailable" | "upstream_timeout" | "circuit_open")),
        ..
    }) = response.extensions().get::<UpstreamOutcome>()
    {
        gateway.metrics.upstream_error(&route.name, error);
    }
    // Appended after the upstream's lines, as `apply_headers` appends to a map.
    for (policy, decision) in shown {
        apply_headers(response.headers_mut(), policy, &decision);
    }
    let mut answer = Answer {
        response,
        relayed,
        request_id: None,
    };
    if let (Some(cors), Some(origin)) = (&route.cors, &origin) {
        // CORS replaces the upstream's values of its names: in one map.
        answer.merge();
        cors::response_headers(cors, origin, answer.response.headers_mut());
    }
    answer
}

/// The request target for the upstream of a route that rewrites its prefix; `None`
/// when the rewritten target is not a valid one.
fn rewritten(route: &Route, uri: &Uri) -> Option<Uri> {
    let upstream_path = route.upstream_path(uri.path());
    let path_and_query = match uri.query() {
        Some(query) => format!("{upstream_path}?{query}"),
        None => upstream_path,
    };
    path_and_query.parse().ok()
}

/// Drops headers that look like identity assertions (see [`IDENTITY_HEADER_PREFIXES`]).
fn strip_identity_headers(headers: &mut http::HeaderMap) {
    let is_identity = |name: &http::HeaderName| {
        IDENTITY_HEADER_PREFIXES
            .iter()
            .any(|p| name.as_str().starts_with(p))
    };
    // Nearly every request has none: look before collecting anything.
    if !headers.keys().any(is_identity) {
        return;
    }
    let names: Vec<_> = headers.keys().filter(|n| is_identity(n)).cloned().collect();
    for name in names {
        headers.remove(&name);
    }
}

/// Takes one request from `key`'s budgets (global, then the route's). Returns the
/// decisions to show in headers, or the 429 answer.
async fn throttle<'a>(
    gateway: &Gateway,
    route: &'a Route,
    global_limit: Option<&'a RatePolicy>,
    key: &str,
) -> Result<Vec<(&'a RatePolicy, Decision)>, Response> {
    let mut shown = Vec::with_capacity(2);
    for policy in [global_limit, route.rate_limit.as_ref()]
        .into_iter()
        .flatten()
    {
        match gateway.limiter.check(key, policy).await {
            Ok(decision) if !decision.allowed => {
                gateway.metrics.rate_limited(&route.name);
                let mut response = problem(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "Too many requests; slow down.",
                );
                apply_headers(response.headers_mut(), policy, &decision);
                return Err(response);
            }
            Ok(decision) => shown.push((policy, decision)),
            Err(error) => {
                // Fail open: a broken counter store must not take the platform down.
                gateway.metrics.limiter_error();
                tracing::warn!(%error, "rate limiter unavailable; letting the request through");
            }
        }
    }
    Ok(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_encoded_separators_are_refused() {
        for bad in [
            "/a/../admin",
            "/a/./b",
            "/a/%2e%2e/admin",
            "/a/%2E%2E/admin",
            "/a%2fb",
            "/a\\..\\b",
            "/a/%5c",
        ] {
            assert!(!path_is_clean(bad), "{bad}");
        }
        for good in ["/", "/api/users/7", "/api/v1.2/x", "/files/a..b"] {
            assert!(path_is_clean(good), "{good}");
        }
    }
}
