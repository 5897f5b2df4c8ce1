//! Failing upstreams: ejection, the circuit breaker, retries and their budget, timeouts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Path};
use axum::response::IntoResponse;
use http::{Method, StatusCode};
use http_body_util::Limited;
use tessera_gateway::proxy::{BreakerState, RetryPolicy};

use super::servers::{self, answering, echo};
use super::{config, ctx, get, problem_code, request, text, upstream};

/// A loopback port nobody listens on (bound, then released): connections are refused.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    listener.local_addr().expect("addr")
}

#[tokio::test]
async fn an_endpoint_refusing_connections_is_ejected_and_returns_after_the_ejection_time() {
    let refused = closed_port().await;
    let healthy = echo().await;
    let mut config = config(&[refused, healthy.addr]);
    config.eject_after_failures = 2;
    // Long enough that the twelve requests below (a few ms each, far more on a loaded
    // machine) all land inside the ejection.
    config.ejection = Duration::from_secs(4);
    let upstream = upstream(config);

    let mut refusals = 0;
    for _ in 0..12 {
        let response = get(&upstream, "/").await;
        if response.status() == StatusCode::BAD_GATEWAY {
            assert_eq!(problem_code(response).await, "upstream_unavailable");
            refusals += 1;
        } else {
            assert_eq!(response.status(), StatusCode::OK);
        }
    }
    // Round robin would have sent six requests to the dead endpoint; ejection stops it
    // after the second consecutive failure.
    assert_eq!(refusals, 2);
    assert_eq!(healthy.hits(), 10);
    assert!(upstream.status().endpoints[0].ejected);
    let ejected_at = Instant::now();

    // The endpoint comes back to life; once the ejection has expired it gets traffic.
    let listener = tokio::net::TcpListener::bind(refused)
        .await
        .expect("rebind the released port");
    let revived = servers::backend_on(listener, |_| async { "revived".into_response() });
    tokio::time::sleep(Duration::from_millis(4100).saturating_sub(ejected_at.elapsed())).await;
    for _ in 0..10 {
        assert_eq!(get(&upstream, "/").await.status(), StatusCode::OK);
    }
    assert_eq!(revived.hits(), 5);
    assert!(!upstream.status().endpoints[0].ejected);
}

#[tokio::test]
async fn the_breaker_opens_after_failures_answers_503_without_calling_the_upstream_and_a_probe_closes_it()
 {
    let healthy = Arc::new(AtomicBool::new(false));
    let backend = servers::switchable(healthy.clone()).await;
    let mut config = config(&[backend.addr]);
    config.breaker_failure_ratio = 0.5;
    config.breaker_min_requests = 4;
    // Long enough that all 20 refusals below land while it is open, on a loaded machine too.
    config.breaker_open_for = Duration::from_secs(3);
    let upstream = upstream(config);

    for _ in 0..4 {
        let response = get(&upstream, "/").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            text(response).await,
            "overloaded",
            "the upstream's own answer"
        );
    }
    assert_eq!(upstream.status().breaker, BreakerState::Open);

    let refusing = Instant::now();
    for _ in 0..20 {
        let response = get(&upstream, "/").await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        // The open time left, in whole seconds rounded up.
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3).contains(&retry_after), "Retry-After: {retry_after}");
        assert_eq!(problem_code(response).await, "circuit_open");
    }
    assert!(
        refusing.elapsed() < Duration::from_secs(2),
        "refused at once"
    );
    assert_eq!(
        backend.hits(),
        4,
        "no request reached the upstream while open"
    );

    healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(upstream.status().breaker, BreakerState::HalfOpen);
    let probe = get(&upstream, "/").await;
    assert_eq!(probe.status(), StatusCode::OK);
    assert_eq!(upstream.status().breaker, BreakerState::Closed);
    assert_eq!(get(&upstream, "/").await.status(), StatusCode::OK);
    assert_eq!(backend.hits(), 6);
}

#[tokio::test]
async fn an_idempotent_request_failing_with_503_is_retried_on_another_endpoint() {
    let failing = answering(StatusCode::SERVICE_UNAVAILABLE).await;
    let working = echo().await;
    let mut config = config(&[failing.addr, working.addr]);
    config.retry.attempts = 1;
    let upstream = upstream(config);

    for _ in 0..6 {
        assert_eq!(get(&upstream, "/").await.status(), StatusCode::OK);
    }
    assert_eq!(
        failing.hits(),
        3,
        "round robin sent half the first attempts there"
    );
    assert_eq!(working.hits(), 6);

    // A small PUT body is buffered and sent again whole.
    for _ in 0..2 {
        let response = upstream
            .forward(request(Method::PUT, "/item", vec![1u8; 1024]), &ctx())
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let report: serde_json::Value = serde_json::from_str(&text(response).await).expect("JSON");
        assert_eq!(report["body_len"], 1024);
    }
    assert_eq!(failing.hits(), 4);
}

#[tokio::test]
async fn an_idempotent_request_refused_a_connection_is_retried_on_another_endpoint() {
    let refused = closed_port().await;
    let working = echo().await;
    let mut config = config(&[refused, working.addr]);
    config.retry.attempts = 1;
    let upstream = upstream(config);

    for _ in 0..6 {
        let response = get(&upstream, "/").await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(working.hits(), 6);
}

#[tokio::test]
async fn a_post_is_not_retried() {
    let failing = answering(StatusCode::SERVICE_UNAVAILABLE).await;
    let working = echo().await;
    let mut config = config(&[failing.addr, working.addr]);
    config.retry.attempts = 2;
    let upstream = upstream(config);

    let mut unavailable = 0;
    for _ in 0..6 {
        let response = upstream
            .forward(request(Method::POST, "/orders", "{}"), &ctx())
            .await;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            unavailable += 1;
        }
    }
    assert_eq!(unavailable, 3);
    assert_eq!(
        failing.hits() + working.hits(),
        6,
        "one attempt per request"
    );
}

#[tokio::test]
async fn the_retry_budget_caps_retries_when_every_endpoint_fails() {
    let backends = [
        answering(StatusCode::SERVICE_UNAVAILABLE).await,
        answering(StatusCode::BAD_GATEWAY).await,
    ];
    let mut config = config(&backends.each_ref().map(|b| b.addr));
    config.retry = RetryPolicy {
        attempts: 3,
        budget_ratio: 0.1,
    };
    let upstream = upstream(config);

    let started = Instant::now();
    for _ in 0..200 {
        let status = get(&upstream, "/").await.status();
        assert!(status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::BAD_GATEWAY);
    }
    let attempts: usize = backends.iter().map(servers::Backend::hits).sum();
    // Unbudgeted, 200 requests would make 800 attempts. The budget allows 10% of the
    // requests plus a floor of 3 per second over its 10 s window: at most 200 + 20 + 30,
    // and 3 more per second should a loaded machine take longer than the window.
    let secs = started.elapsed().as_secs();
    let floor = usize::try_from(if secs < 10 { 30 } else { 3 * (secs + 1) }).unwrap();
    assert!(attempts > 200, "some retries happened");
    assert!(attempts <= 220 + floor, "{attempts} attempts");
}

#[tokio::test]
async fn an_upstream_slow_to_answer_gets_504_at_the_first_byte_timeout() {
    let slow = servers::slow(Duration::from_secs(5)).await;
    let mut config = config(&[slow.addr]);
    config.timeouts.first_byte = Duration::from_millis(300);
    let upstream = upstream(config);

    let started = Instant::now();
    let response = get(&upstream, "/").await;
    let waited = started.elapsed();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(problem_code(response).await, "upstream_timeout");
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

/// Answers `/wait/<ms>` after that many milliseconds with the port of the connection
/// the request came on, so a test can tell that two requests shared one.
async fn waiting_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = axum::Router::new().route(
        "/wait/{ms}",
        axum::routing::get(
            |Path(ms): Path<u64>, ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                peer.port().to_string()
            },
        ),
    );
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.expect("serve") });
    addr
}

#[tokio::test]
async fn a_reused_connection_gives_each_exchange_its_own_first_byte_deadline() {
    let backend = waiting_backend().await;
    let mut config = config(&[backend]);
    config.timeouts.first_byte = Duration::from_millis(600);
    let upstream = upstream(config);

    let first = get(&upstream, "/wait/0").await;
    assert_eq!(first.status(), StatusCode::OK);
    let port = text(first).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    // On the same connection, an answer 400 ms after its request (200 ms past the first
    // exchange's deadline) is in time.
    let second = get(&upstream, "/wait/400").await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(text(second).await, port, "the pooled connection was reused");
    // And a deadline moved on still fires: a slow answer is a 504 at its own deadline.
    let started = Instant::now();
    let third = get(&upstream, "/wait/5000").await;
    let waited = started.elapsed();
    assert_eq!(third.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(problem_code(third).await, "upstream_timeout");
    assert!(waited >= Duration::from_millis(590), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

#[tokio::test]
async fn a_nearer_deadline_on_a_reused_connection_is_not_put_off_by_an_earlier_exchange() {
    let backend = waiting_backend().await;
    let mut config = config(&[backend]);
    config.timeouts.first_byte = Duration::from_secs(5);
    let upstream = upstream(config);
    // Read to its end, the answer puts its connection back in the pool with the
    // connection's timer 5 s ahead.
    let first = get(&upstream, "/wait/0").await;
    assert_eq!(first.status(), StatusCode::OK);
    text(first).await;

    // A request that reached the gateway 4.7 s ago has 300 ms of its first-byte
    // timeout left.
    let mut late = ctx();
    late.started = late
        .started
        .checked_sub(Duration::from_millis(4700))
        .expect("the clock is older than 4.7 s");
    let started = Instant::now();
    let response = upstream
        .forward(request(Method::GET, "/wait/5000", Body::empty()), &late)
        .await;
    let waited = started.elapsed();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

#[tokio::test]
async fn a_body_over_the_callers_limit_answers_413_rather_than_blaming_the_upstream() {
    let backend = echo().await;
    let upstream = upstream(config(&[backend.addr]));
    let limited = Body::new(Limited::new(Body::from(vec![0u8; 200_000]), 1000));
    let response = upstream
        .forward(request(Method::POST, "/upload", limited), &ctx())
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem_code(response).await, "body_too_large");
}
