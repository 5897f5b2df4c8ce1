//! The thread-per-core server: worker threads sharing the public port, each with its own
//! upstream connection pool, sharing resilience state, draining on shutdown.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use http::StatusCode;

use crate::support::{Issuer, TestGateway, WORKERS, code};

const ROUTES: &str = r"
version: 1
routes:
  - name: public
    match: { prefix: / }
    upstreams: [http://{upstream}]
    auth: public
";

/// An upstream that records the client address of every connection it served requests
/// on, and answers `status` after `delay`.
async fn recording_upstream(
    status: StatusCode,
    delay: Duration,
) -> (SocketAddr, Arc<Mutex<Vec<SocketAddr>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let router = axum::Router::new().fallback({
        let seen = seen.clone();
        move |ConnectInfo(peer): ConnectInfo<SocketAddr>| {
            let seen = seen.clone();
            async move {
                seen.lock().expect("lock").push(peer);
                tokio::time::sleep(delay).await;
                (status, "upstream answer")
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    (addr, seen)
}

/// A client that opens a new connection for every request, so the kernel spreads them
/// over the workers' listening sockets.
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

#[tokio::test]
async fn requests_over_many_client_connections_reuse_a_pooled_upstream_connection_per_worker() {
    let issuer = Issuer::start(true).await;
    let (upstream, seen) = recording_upstream(StatusCode::OK, Duration::ZERO).await;
    let gw = TestGateway::start(&issuer, ROUTES, upstream, &[]).await;
    let http = fresh_connections();
    for i in 0..60 {
        let response = http
            .get(gw.url(&format!("/items/{i}")))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.text().await.expect("body"), "upstream answer");
    }
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 60, "every request reached the upstream");
    let connections: HashSet<_> = seen.into_iter().collect();
    // One request at a time: each worker needs one upstream connection and reuses it.
    assert!(
        connections.len() <= WORKERS,
        "60 sequential requests opened {} upstream connections",
        connections.len()
    );
}

#[tokio::test]
async fn the_circuit_breaker_counts_the_failures_seen_by_every_worker() {
    let issuer = Issuer::start(true).await;
    let (upstream, seen) =
        recording_upstream(StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO).await;
    // A POST is never retried, so each request is exactly one upstream failure.
    let gw = TestGateway::start(&issuer, ROUTES, upstream, &[]).await;
    let http = fresh_connections();
    // The breaker opens at 50% failures over at least 20 requests. Spread over two
    // workers, a per-worker breaker would have seen about 10 each and stayed closed.
    for _ in 0..20 {
        let response = http.post(gw.url("/work")).send().await.expect("send");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let (status, problem) = code(http.post(gw.url("/work")).send().await.expect("send")).await;
    assert_eq!(
        (status, problem.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "circuit_open")
    );
    assert_eq!(
        seen.lock().expect("lock").len(),
        20,
        "the open breaker spared the upstream"
    );
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_and_stops_accepting() {
    let issuer = Issuer::start(true).await;
    let (upstream, seen) = recording_upstream(StatusCode::OK, Duration::from_millis(1500)).await;
    let gw = TestGateway::start(&issuer, ROUTES, upstream, &["--drain-timeout-secs", "5"]).await;
    let in_flight = tokio::spawn({
        let request = gw.http.get(gw.url("/slow"));
        async move { request.send().await }
    });
    // In flight once the upstream has it (a fixed 200 ms could pass on a loaded machine
    // before the request even reached the gateway).
    testkit::eventually(
        Duration::from_secs(30),
        "the request at the upstream",
        || {
            let arrived = !seen.lock().expect("lock").is_empty();
            async move { arrived.then_some(()) }
        },
    )
    .await;
    let started = Instant::now();
    gw.begin_shutdown();
    let response = in_flight
        .await
        .expect("join")
        .expect("answered during the drain");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("body"), "upstream answer");
    tokio::time::timeout(Duration::from_secs(5), gw.stopped())
        .await
        .expect("every worker stops once drained");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no drain timeout"
    );
    assert!(
        fresh_connections().get(gw.url("/")).send().await.is_err(),
        "a stopped gateway accepts no connection"
    );
}
