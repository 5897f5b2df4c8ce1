//! The gateway's HTTP/1.1 server side (`edge/h1/`, and hyper behind it for what it hands
//! off) on arbitrary client bytes: a whole gateway (one worker) in front of a raw
//! upstream. Each input is written on a new client connection, whose sending side is
//! then closed; the gateway must end the connection within `CLOSE_WAIT` (every request it
//! holds either completes or is cancelled by the client's close), and what it sent must
//! begin with a valid HTTP/1.1 answer head. Whatever reaches the upstream must be one
//! valid request head with at most one framing (never `Content-Length` beside
//! `Transfer-Encoding`) and an origin-form target. A panic anywhere aborts (libFuzzer's
//! hook), so a panic in the gateway's tasks is a finding too.
#![no_main]

#[path = "support/gateway.rs"]
mod gateway;

use std::net::SocketAddr;
use std::sync::LazyLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the gateway may take to close a connection whose client closed its side.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

struct Fixture {
    runtime: tokio::runtime::Runtime,
    gateway: SocketAddr,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let gateway = runtime.block_on(start());
    Fixture { runtime, gateway }
});

/// The raw upstream and the gateway in front of it (a public route `/`, a 1 s request
/// timeout so a body that never comes ends quickly).
async fn start() -> SocketAddr {
    let upstream_addr = gateway::raw_upstream(answer_one).await;
    gateway::serve(
        "server",
        upstream_addr,
        &["max_body_bytes: 100000"],
        &["--request-timeout-secs", "1", "--max-header-bytes", "8192"],
    )
    .await
}

/// Reads one request head from the gateway, checks it, answers and closes (so framing
/// of request bodies never matters here).
async fn answer_one(mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        let mut lines = [httparse::EMPTY_HEADER; 128];
        let mut request = httparse::Request::new(&mut lines);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                check_forwarded(&request);
                break;
            }
            Ok(httparse::Status::Partial) => {}
            Err(error) => panic!(
                "the gateway sent an invalid request head ({error}): {:?}",
                String::from_utf8_lossy(&buf)
            ),
        }
        match stream.read(&mut chunk).await {
            // The gateway gave up on the request (its client left): nothing to check.
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = stream
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        .await;
}

fn check_forwarded(request: &httparse::Request<'_, '_>) {
    let has = |name: &str| {
        request
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case(name))
    };
    assert!(
        !(has("content-length") && has("transfer-encoding")),
        "both framings reached the upstream: {request:?}"
    );
    let path = request.path.unwrap_or_default();
    assert!(
        path.starts_with('/'),
        "a request target not in origin form reached the upstream: {path:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let fixture = &*FIXTURE;
    fixture.runtime.block_on(async {
        let mut client = TcpStream::connect(fixture.gateway).await.expect("connect");
        if client.write_all(data).await.is_err() {
            return;
        }
        let _ = client.shutdown().await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(CLOSE_WAIT, client.read_to_end(&mut answer)).await;
        assert!(
            read.is_ok(),
            "the gateway kept the connection open after its client closed; sent so far: {:?}",
            String::from_utf8_lossy(&answer)
        );
        // h2c (the HTTP/2 preface) is answered in HTTP/2 frames.
        if !answer.is_empty() && !data.starts_with(b"PRI ") {
            let mut lines = [httparse::EMPTY_HEADER; 128];
            let mut response = httparse::Response::new(&mut lines);
            assert!(
                !matches!(response.parse(&answer), Err(_)),
                "the gateway's answer does not start with a valid head: {:?}",
                String::from_utf8_lossy(&answer)
            );
        }
    });
});
