//! Connection reuse in the gateway's HTTP/1.1 upstream client (`proxy/client/h1/`,
//! pooled by `pool.rs`) after arbitrary answers: the place where a client desynchronises
//! (response splitting, smuggling). Each input runs two `Upstream::forward`s through one
//! pooling client to a raw TCP upstream:
//!
//! 1. the first request (GET, HEAD or a small POST, picked by the first byte `% 3`) gets
//!    the rest of the input as its answer, written in one piece on a connection the
//!    upstream then keeps open, reading the next request on it;
//! 2. a GET. Any request after the first on that connection, and every request on any
//!    other connection, gets a valid sentinel answer carrying a per-input nonce
//!    (`x-sentinel: <nonce>`, body `sentinel:<nonce>`, `Connection: close`).
//!
//! The second `forward` must give exactly the sentinel, or a problem answer the gateway
//! made itself (502/504 with `UpstreamOutcome::error`), within the client's total
//! timeout. Anything else came from the fuzzed answer: a finding. Stricter: when the
//! client reused the fuzzed connection and the upstream answered the sentinel on it, a
//! 502 is a finding too (the client read leftovers of the first answer as the second).
//!
//! When the first answer is incomplete, or delimited by the end of the connection, a
//! correct client waits for more bytes. So once the upstream wrote the whole input, the
//! harness lets the runtime turn a few times (loopback bytes written are already
//! readable) and, if the first exchange is still going, the upstream closes its side of
//! that connection (and reads until the client closes): the exchange then ends at once
//! instead of after a timeout, and the closed connection can only fail a reuse cleanly
//! (the client's resend of an unanswered idempotent request, or a new connection).
//!
//! One client for all inputs; every input leaves its pool empty (the sentinel says
//! `Connection: close`, and the second request takes or drops the only pooled
//! connection), which the harness checks: every upstream connection is closed by the
//! client after the input. Also checked: no request left counted in flight.
#![no_main]

#[path = "support/upstream.rs"]
mod support;

use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Method, Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use tessera_gateway::proxy::{ForwardContext, Upstream, UpstreamOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// The client's total timeout per exchange.
const TOTAL: Duration = Duration::from_secs(2);
/// How long a body is read at most (beyond `TOTAL`, which cuts it first).
const BODY_WAIT: Duration = Duration::from_secs(3);
/// The second exchange must end within this (the client's own timeout and some slack).
const SECOND_WAIT: Duration = Duration::from_secs(3);
/// How long the client may take to close every upstream connection after the input.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long the upstream waits for the client to close a connection it closed.
const DRAIN_WAIT: Duration = Duration::from_secs(5);
/// Runtime turns given to the client to take in the whole written answer before the
/// upstream closes a connection the client still reads.
const SETTLE_TURNS: usize = 32;

/// The raw upstream's state for the current input, shared with its connection tasks.
#[derive(Default)]
struct Scripted {
    /// The first request's answer: the current input.
    answer: Mutex<Vec<u8>>,
    /// The current input's sentinel answer.
    sentinel: Mutex<Vec<u8>>,
    /// Connections accepted during this input; the first one gets `answer`.
    accepted: AtomicUsize,
    /// Connections whose client closed (or reset) its side.
    closed: AtomicUsize,
    closed_changed: Notify,
    /// The whole answer was written on the first connection.
    written: AtomicBool,
    written_changed: Notify,
    /// Tells the first connection to close its side (the client waits for more).
    hang_up: Notify,
    /// The first connection answered a later request with the sentinel.
    sentinel_on_first: AtomicBool,
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    scripted: Arc<Scripted>,
    upstream: Arc<Upstream>,
    ctx: ForwardContext,
    /// Makes each input's nonce unguessable (the fuzzer must not forge the sentinel).
    seed: RandomState,
    inputs: AtomicU64,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let scripted = Arc::new(Scripted::default());
    let addr = runtime.block_on(listen(Arc::clone(&scripted)));
    let _guard = runtime.enter();
    // Pooling on (the point of this target). The pool is empty after every input (see
    // the module comment), so one client serves them all; a client per input would
    // leave an entry per client in the thread's pools.
    let upstream = support::upstream(addr, 4, TOTAL);
    let ctx = support::context();
    Fixture {
        runtime,
        scripted,
        upstream,
        ctx,
        seed: RandomState::new(),
        inputs: AtomicU64::new(0),
    }
});

/// Binds the raw upstream on loopback and accepts connections on the fixture's runtime.
async fn listen(scripted: Arc<Scripted>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let first = scripted.accepted.fetch_add(1, Ordering::SeqCst) == 0;
            tokio::spawn(serve(stream, first, Arc::clone(&scripted)));
        }
    });
    addr
}

/// Reads one whole request (head and `Content-Length` body; the client sends nothing
/// else here) off `buf` and the stream; `false` at the end of the stream or on an error.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let whole = end + 4 + length;
            if buf.len() >= whole {
                buf.drain(..whole);
                return true;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Closes the upstream's side, then reads until the client closes: closing with unread
/// bytes would reset the connection and lose what was written at random.
async fn close(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut chunk = [0u8; 8 * 1024];
    let _ = tokio::time::timeout(DRAIN_WAIT, async {
        while matches!(stream.read(&mut chunk).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// One upstream connection: the first of an input answers its first request with the
/// input and keeps the connection open (until told to hang up); every other request
/// gets the sentinel, which closes the connection.
async fn serve(mut stream: TcpStream, first: bool, scripted: Arc<Scripted>) {
    let mut buf = Vec::new();
    if read_request(&mut stream, &mut buf).await {
        let sentinel = lock(&scripted.sentinel).clone();
        if first {
            let answer = lock(&scripted.answer).clone();
            let written = stream.write_all(&answer).await.is_ok();
            scripted.written.store(true, Ordering::SeqCst);
            scripted.written_changed.notify_one();
            // A failed write (the client reset the connection) ends it at once.
            let next = written
                && tokio::select! {
                    biased;
                    () = scripted.hang_up.notified() => false,
                    next = read_request(&mut stream, &mut buf) => next,
                };
            if next && stream.write_all(&sentinel).await.is_ok() {
                scripted.sentinel_on_first.store(true, Ordering::SeqCst);
            }
        } else {
            let _ = stream.write_all(&sentinel).await;
        }
        close(stream).await;
    }
    scripted.closed.fetch_add(1, Ordering::SeqCst);
    scripted.closed_changed.notify_one();
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The first exchange: the request picked by `choice`, its body read to the end.
async fn first_exchange(fixture: &Fixture, choice: u8) {
    let (method, body) = match choice % 3 {
        0 => (Method::GET, Body::empty()),
        1 => (Method::HEAD, Body::empty()),
        _ => (Method::POST, Body::from(&b"{\"small\":true}"[..])),
    };
    let mut request = Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = "/fuzz?q=1".parse().expect("path");
    let response = fixture.upstream.forward(request, &fixture.ctx).await;
    // Errors (a broken body) are expected; only that the exchange ends matters.
    let _ = tokio::time::timeout(
        BODY_WAIT,
        axum::body::to_bytes(response.into_body(), usize::MAX),
    )
    .await;
}

/// Ready once the whole answer was written and the runtime turned `SETTLE_TURNS` times
/// since (each `yield_now` lets the runtime poll its I/O driver).
async fn settled(scripted: &Scripted) {
    while !scripted.written.load(Ordering::SeqCst) {
        scripted.written_changed.notified().await;
    }
    for _ in 0..SETTLE_TURNS {
        tokio::task::yield_now().await;
    }
}

async fn exchange(fixture: &Fixture, choice: u8, nonce: &str) {
    let scripted = &fixture.scripted;
    let first = first_exchange(fixture, choice);
    tokio::pin!(first);
    tokio::select! {
        biased;
        () = &mut first => {}
        () = settled(scripted) => {
            // The client still waits for bytes after the whole input: end the answer.
            scripted.hang_up.notify_one();
            first.await;
        }
    }

    let mut request = Request::new(Body::empty());
    *request.uri_mut() = "/second".parse().expect("path");
    let started = Instant::now();
    let second = tokio::time::timeout(SECOND_WAIT, async {
        let response = fixture.upstream.forward(request, &fixture.ctx).await;
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await;
        (parts, body)
    })
    .await;
    let Ok((parts, body)) = second else {
        panic!("the second exchange did not end within {SECOND_WAIT:?} (client timeout {TOTAL:?})");
    };
    let error = parts
        .extensions
        .get::<UpstreamOutcome>()
        .and_then(|o| o.error);
    let sentinel_header = parts.headers.get("x-sentinel");
    let is_sentinel = parts.status == StatusCode::OK
        && sentinel_header.is_some_and(|v| v.as_bytes() == nonce.as_bytes())
        && error.is_none()
        && body
            .as_ref()
            .is_ok_and(|b| *b == format!("sentinel:{nonce}").as_bytes());
    let clean_error = error.is_some()
        && matches!(
            parts.status,
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
        );
    assert!(
        is_sentinel || clean_error,
        "the second answer is neither the sentinel nor a gateway error: it came from the \
         first (fuzzed) answer: status {}, x-sentinel {sentinel_header:?} (nonce {nonce}), \
         outcome error {error:?}, body {body:?}, after {:?}",
        parts.status,
        started.elapsed(),
    );
    assert!(
        is_sentinel
            || parts.status != StatusCode::BAD_GATEWAY
            || !scripted.sentinel_on_first.load(Ordering::SeqCst),
        "the client reused the first connection, the upstream answered the sentinel on it, \
         and the gateway failed to read it ({error:?}): leftovers of the first answer were \
         read as the second"
    );

    let all_closed = tokio::time::timeout(CLOSE_WAIT, async {
        while scripted.closed.load(Ordering::SeqCst) < scripted.accepted.load(Ordering::SeqCst) {
            scripted.closed_changed.notified().await;
        }
    })
    .await;
    assert!(
        all_closed.is_ok(),
        "the client kept an upstream connection after the input (the sentinel says \
         Connection: close, and the second request takes or drops the pooled one)"
    );
    if std::env::var_os("TESSERA_FUZZ_TRACE").is_some() {
        eprintln!(
            "upstream_reuse: second answer {} ({error:?}), first connection reused: {}, connections: {}",
            parts.status,
            scripted.sentinel_on_first.load(Ordering::SeqCst),
            scripted.accepted.load(Ordering::SeqCst),
        );
    }
    let outstanding = fixture.upstream.status().endpoints[0].outstanding;
    assert_eq!(
        outstanding, 0,
        "requests still counted in flight after the exchanges"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, answer)) = data.split_first() else {
        return;
    };
    let fixture = &*FIXTURE;
    let scripted = &fixture.scripted;
    let count = fixture.inputs.fetch_add(1, Ordering::Relaxed);
    let nonce = format!("{:016x}", fixture.seed.hash_one(count));
    answer.clone_into(&mut lock(&scripted.answer));
    *lock(&scripted.sentinel) = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-sentinel: {nonce}\r\nconnection: close\r\n\r\nsentinel:{nonce}",
        "sentinel:".len() + nonce.len()
    )
    .into_bytes();
    // The previous input's connections are all closed (checked at its end).
    scripted.accepted.store(0, Ordering::SeqCst);
    scripted.closed.store(0, Ordering::SeqCst);
    scripted.written.store(false, Ordering::SeqCst);
    scripted.sentinel_on_first.store(false, Ordering::SeqCst);
    // A hang-up signalled after the first connection stopped listening must not end
    // the next input's first exchange.
    fixture.runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::ZERO, scripted.hang_up.notified()).await;
    });
    fixture.runtime.block_on(exchange(fixture, choice, &nonce));
});
