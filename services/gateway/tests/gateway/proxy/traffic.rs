//! What reaches the upstream and comes back: headers, balancing, protocols.

use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Method, StatusCode};
use serde_json::Value;
use tessera_gateway::proxy::{Balance, UpstreamOutcome};
use tokio::task::JoinSet;

use super::servers::{self, echo};
use super::{config, ctx, get, request, text, upstream, uri};

/// Every value the echo upstream received for `name`, joined by `|`; `None` if absent.
fn received(report: &Value, name: &str) -> Option<String> {
    report["headers"][name].as_array().map(|values| {
        values
            .iter()
            .map(|v| v.as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("|")
    })
}

#[tokio::test]
async fn forwarded_requests_have_hop_by_hop_headers_stripped_and_forwarding_headers_set() {
    let backend = echo().await;
    let upstream = upstream(config(&[backend.addr]));
    let ctx = ctx();
    let mut client_request = request(Method::GET, "/users/me?full=1", Body::empty());
    for (name, value) in [
        ("connection", "keep-alive, x-client-hop"),
        ("x-client-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("te", "gzip"),
        ("upgrade", "websocket"),
        ("proxy-authorization", "Basic cHJveHk6c2VjcmV0"),
        ("authorization", "Bearer token-1"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "gopher"),
        ("x-request-id", "chosen-by-client"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("host", "client-facing.example"),
        ("x-end-to-end", "kept"),
    ] {
        client_request
            .headers_mut()
            .append(name, HeaderValue::from_static(value));
    }

    let response = upstream.forward(client_request, &ctx).await;

    assert_eq!(response.status(), StatusCode::OK);
    for hop in [
        "x-response-hop",
        "keep-alive",
        "proxy-authenticate",
        "connection",
    ] {
        assert!(
            !response.headers().contains_key(hop),
            "{hop} reached the client"
        );
    }
    assert_eq!(response.headers()["x-response-kept"], "1");
    let outcome = response
        .extensions()
        .get::<UpstreamOutcome>()
        .cloned()
        .expect("outcome");
    assert_eq!(outcome.attempts, 1);
    assert_eq!(
        outcome.endpoint.as_deref(),
        Some(format!("http://{}", backend.addr).as_str())
    );

    let report: Value = serde_json::from_str(&text(response).await).expect("JSON");
    assert_eq!(report["path"], "/users/me?full=1");
    for hop in [
        "connection",
        "x-client-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "proxy-authorization",
    ] {
        assert_eq!(received(&report, hop), None, "{hop} reached the upstream");
    }
    let expect = |name: &str, value: &str| {
        assert_eq!(received(&report, name).as_deref(), Some(value), "{name}");
    };
    expect("authorization", "Bearer token-1");
    expect("x-forwarded-for", "203.0.113.7, 198.51.100.2");
    expect("x-forwarded-proto", "https");
    expect("x-forwarded-host", "api.example.com");
    expect("x-request-id", "gateway-request-1");
    expect("traceparent", super::TRACEPARENT);
    expect("host", &backend.addr.to_string());
    expect("x-end-to-end", "kept");
}

#[tokio::test]
async fn the_endpoint_base_path_prefixes_the_request_path() {
    let backend = echo().await;
    let mut config = config(&[]);
    config.endpoints = vec![uri(&format!("http://{}/internal/", backend.addr))];
    let upstream = upstream(config);
    let report: Value =
        serde_json::from_str(&text(get(&upstream, "/v1/items?page=2").await).await).expect("JSON");
    assert_eq!(report["path"], "/internal/v1/items?page=2");
}

#[tokio::test]
async fn round_robin_spreads_requests_evenly_over_the_endpoints() {
    let backends = [echo().await, echo().await, echo().await];
    let upstream = upstream(config(&backends.each_ref().map(|b| b.addr)));
    for _ in 0..30 {
        assert_eq!(get(&upstream, "/").await.status(), StatusCode::OK);
    }
    let hits = backends.each_ref().map(servers::Backend::hits);
    assert_eq!(hits, [10, 10, 10]);
}

#[tokio::test]
async fn least_outstanding_sends_new_requests_away_from_a_slow_endpoint() {
    // Slow enough to stay in flight while all ten requests below are picked.
    let slow = servers::slow(Duration::from_secs(5)).await;
    let fast = echo().await;
    let mut config = config(&[slow.addr, fast.addr]);
    config.balance = Balance::LeastOutstanding;
    let upstream = upstream(config);

    let mut requests = JoinSet::new();
    for _ in 0..10 {
        let upstream = upstream.clone();
        requests.spawn(async move { get(&upstream, "/").await.status() });
        // Staggered, so each pick sees the requests still in flight, and long enough for
        // the previous fast request to have finished on a loaded machine too: one still
        // in flight would tie with the slow endpoint, and ties go round robin.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.expect("task"), StatusCode::OK);
    }
    // Round robin would have sent five requests to the slow endpoint; least outstanding
    // sends it one (the first tie) and keeps it out while that one is in flight.
    assert!(slow.hits() <= 1, "the slow endpoint got {}", slow.hits());
    assert_eq!(slow.hits() + fast.hits(), 10);
}

#[tokio::test]
async fn an_h2c_endpoint_is_spoken_to_over_http2_and_an_http_one_over_http1() {
    let backend = echo().await;
    let mut config = config(&[]);
    config.endpoints = vec![uri(&format!("h2c://{}", backend.addr))];
    let h2c = upstream(config);
    let plain = upstream(super::config(&[backend.addr]));

    let over_h2c: Value = serde_json::from_str(&text(get(&h2c, "/").await).await).expect("JSON");
    assert_eq!(over_h2c["version"], "HTTP/2.0");
    let over_http: Value = serde_json::from_str(&text(get(&plain, "/").await).await).expect("JSON");
    assert_eq!(over_http["version"], "HTTP/1.1");

    // A body goes through HTTP/2 too, and the request id still travels.
    let response = h2c
        .forward(request(Method::POST, "/upload", vec![7u8; 100_000]), &ctx())
        .await;
    let report: Value = serde_json::from_str(&text(response).await).expect("JSON");
    assert_eq!(report["body_len"], 100_000);
    assert_eq!(
        received(&report, "x-request-id").as_deref(),
        Some("gateway-request-1")
    );
}
