//! The gateway's HTTP/1.1 upstream client (`proxy/client/h1/`) on arbitrary answers:
//! `Upstream::forward` to a raw TCP upstream that writes the input's bytes as its answer
//! and closes the connection, then the whole response body read. Whatever the upstream
//! writes, the client must answer (relayed or a 502) without panicking, without waiting
//! for a timeout (the upstream closed the connection, so every read ends), and without
//! keeping the upstream connection or an in-flight count after the exchange.
//!
//! The first byte picks the request (`% 3`: GET, HEAD, POST with a small sized body);
//! the rest is the answer, written in one piece.
#![no_main]

#[path = "support/upstream.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use tessera_gateway::proxy::{ForwardContext, Upstream, UpstreamOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The whole exchange may take this long; an upstream that closed after its answer
/// never needs it, so reaching it is a finding.
const TOTAL: Duration = Duration::from_secs(2);
/// How long the body is read at most (beyond `TOTAL`, which cuts it first).
const BODY_WAIT: Duration = Duration::from_secs(3);
/// How long the client may take to close the upstream connection once the response
/// was read and dropped (it is not pooled: `max_idle_per_endpoint` is 0).
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long the upstream waits for the client to close before giving up on it.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// The raw upstream's state, shared with its connection tasks.
#[derive(Default)]
struct Scripted {
    /// What the next connection answers: the current input.
    answer: Mutex<Vec<u8>>,
    accepted: AtomicUsize,
    /// Connections whose client closed (or reset) its side.
    closed: AtomicUsize,
    closed_changed: Notify,
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    scripted: Arc<Scripted>,
    upstream: Arc<Upstream>,
    ctx: ForwardContext,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let scripted = Arc::new(Scripted::default());
    let addr = runtime.block_on(listen(Arc::clone(&scripted)));
    let _guard = runtime.enter();
    // No pooling: every input gets a fresh connection, so an input's outcome does not
    // depend on whether the previous one left a connection (and on when the upstream's
    // close of it is noticed), and crashes replay alone.
    let upstream = support::upstream(addr, 0, TOTAL);
    let ctx = support::context();
    Fixture {
        runtime,
        scripted,
        upstream,
        ctx,
    }
});

/// Binds the raw upstream on loopback and accepts connections on the fixture's runtime.
async fn listen(scripted: Arc<Scripted>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            scripted.accepted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(answer(stream, Arc::clone(&scripted)));
        }
    });
    addr
}

/// Reads a request head, writes the current answer, closes its side, then reads what
/// the client still sends (a request body) until the client closes: closing with
/// unread bytes would reset the connection and lose the answer at random.
async fn answer(mut stream: TcpStream, scripted: Arc<Scripted>) {
    let mut buf = vec![0u8; 8 * 1024];
    let mut head = Vec::new();
    let mut complete = false;
    while !complete {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // Search from just before the new bytes: the CRLFCRLF may straddle reads.
                let from = head.len().saturating_sub(3);
                head.extend_from_slice(&buf[..n]);
                complete = head[from..].windows(4).any(|w| w == b"\r\n\r\n");
            }
        }
    }
    if complete {
        let answer = scripted
            .answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let _ = stream.write_all(&answer).await;
        let _ = stream.shutdown().await;
        let _ = tokio::time::timeout(DRAIN_WAIT, async {
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
    }
    scripted.closed.fetch_add(1, Ordering::SeqCst);
    scripted.closed_changed.notify_one();
}

async fn exchange(fixture: &Fixture, choice: u8) {
    let (method, body) = match choice % 3 {
        0 => (Method::GET, Body::empty()),
        1 => (Method::HEAD, Body::empty()),
        _ => (Method::POST, Body::from(&b"{\"small\":true}"[..])),
    };
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = "/fuzz?q=1".parse().expect("path");

    let started = Instant::now();
    let response = fixture.upstream.forward(request, &fixture.ctx).await;
    let outcome = response.extensions().get::<UpstreamOutcome>().cloned();
    assert_ne!(
        outcome.and_then(|o| o.error),
        Some("upstream_timeout"),
        "the client timed out waiting for a head from an upstream that answered and closed"
    );
    // Errors (a broken body) are expected; only how long reading takes matters here.
    let _ = tokio::time::timeout(
        BODY_WAIT,
        axum::body::to_bytes(response.into_body(), usize::MAX),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took < TOTAL,
        "the exchange took {took:?}: the client waited for a timeout on a closed connection"
    );

    let scripted = &fixture.scripted;
    let all_closed = tokio::time::timeout(CLOSE_WAIT, async {
        while scripted.closed.load(Ordering::SeqCst) < scripted.accepted.load(Ordering::SeqCst) {
            scripted.closed_changed.notified().await;
        }
    })
    .await;
    assert!(
        all_closed.is_ok(),
        "the client kept the upstream connection open after the response was dropped"
    );
    let outstanding = fixture.upstream.status().endpoints[0].outstanding;
    assert_eq!(
        outstanding, 0,
        "requests still counted in flight after the exchange"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, answer)) = data.split_first() else {
        return;
    };
    let fixture = &*FIXTURE;
    answer.clone_into(
        &mut fixture
            .scripted
            .answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    fixture.runtime.block_on(exchange(fixture, choice));
});
