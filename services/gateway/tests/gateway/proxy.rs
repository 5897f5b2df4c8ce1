//! Upstream forwarding against real HTTP servers on loopback: header rewriting, load
//! balancing, outlier ejection, the circuit breaker, retries and their budget, timeouts,
//! h2c, WebSocket pass-through, streaming and the HTTP/1.1 wire format. The modules under `proxy/` hold the
//! upstream servers and the scenarios.

mod resilience;
mod servers;
mod streaming;
mod traffic;
mod wire;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use http::{HeaderValue, Method, Response, Uri};
use http_body_util::BodyExt;
use tessera_gateway::proxy::{
    Balance, ForwardContext, RequestIds, RetryPolicy, Timeouts, TraceParent, Upstream,
    UpstreamClient, UpstreamConfig,
};

/// A configuration with every protection off, so each test turns on only the one it
/// exercises: no retries, no ejection, a breaker that never opens, generous timeouts.
fn config(endpoints: &[SocketAddr]) -> UpstreamConfig {
    UpstreamConfig {
        endpoints: endpoints
            .iter()
            .map(|a| uri(&format!("http://{a}")))
            .collect(),
        balance: Balance::RoundRobin,
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            first_byte: Duration::from_secs(10),
            total: Duration::from_secs(30),
        },
        retry: RetryPolicy {
            attempts: 0,
            budget_ratio: 0.2,
        },
        eject_after_failures: 0,
        ejection: Duration::from_secs(30),
        breaker_failure_ratio: 2.0,
        breaker_min_requests: 1,
        breaker_open_for: Duration::from_secs(30),
    }
}

fn uri(text: &str) -> Uri {
    text.parse().expect("a valid URI")
}

fn upstream(config: UpstreamConfig) -> Arc<Upstream> {
    config.validate().expect("test configuration is valid");
    Upstream::new(config, UpstreamClient::new())
}

/// The `traceparent` the gateway sends in these tests.
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01";

/// The context of a client at 198.51.100.2 behind a trusted proxy at 203.0.113.7.
fn ctx() -> ForwardContext {
    ForwardContext {
        client_addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
        forwarded_for: Some("203.0.113.7".to_owned()),
        proto: "https",
        host: Some(HeaderValue::from_static("api.example.com")),
        ids: RequestIds {
            request_id: HeaderValue::from_static("gateway-request-1").into(),
            trace: TraceParent::parse(TRACEPARENT).expect("valid traceparent"),
        },
        started: std::time::Instant::now(),
    }
}

fn request(method: Method, path: &str, body: impl Into<Body>) -> Request {
    let mut request = Request::new(body.into());
    *request.method_mut() = method;
    *request.uri_mut() = uri(path);
    request
}

async fn get(upstream: &Upstream, path: &str) -> Response<Body> {
    upstream
        .forward(request(Method::GET, path, Body::empty()), &ctx())
        .await
}

async fn text(response: Response<Body>) -> String {
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a complete body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("UTF-8 body")
}

/// The problem `code` of a problem+json response.
async fn problem_code(response: Response<Body>) -> String {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: serde_json::Value = serde_json::from_str(&text(response).await).expect("JSON");
    body["code"].as_str().expect("a code").to_owned()
}

/// A gateway-like server that forwards everything to `upstream`, for tests that need a
/// real client connection (WebSocket upgrades, streaming to a socket).
async fn proxy_server(upstream: Arc<Upstream>) -> SocketAddr {
    let router = axum::Router::new().fallback(move |request: Request| {
        let upstream = upstream.clone();
        async move { upstream.forward(request, &ctx()).await }
    });
    servers::serve(router).await
}
