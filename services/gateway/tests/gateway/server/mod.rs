//! The gateway's HTTP/1.1 server side as clients see it on the wire (`edge::h1`, and
//! hyper for what it hands off): `wire` — keep-alive and pipelining, HEAD, bodies,
//! hand-offs (HTTP/1.0, chunked bodies, `Expect`, h2c), refusals, a client leaving
//! mid-request, the idle timeout; `review` and `drain` — the adversarial review of the
//! loop (session 7): "FIXED" tests failed against its first version (the comment says
//! how), "GUARD" tests passed from the start and guard a property nothing else covers,
//! "twin" tests run the same case through hyper, the behaviour the loop replaced.
//! `drain` holds those about shutdown and timeouts; `relay` — answers relayed from an
//! HTTP/1.1 upstream as received (hop-by-hop, banner and framing lines left out), and
//! `relay_review` its adversarial review.

mod drain;
mod relay;
mod relay_review;
mod review;
mod wire;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Request;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{Issuer, PUBLIC_ROUTES, TestGateway, serve};

/// An upstream answering with the method, path and body it got.
async fn body_echo() -> SocketAddr {
    serve(axum::Router::new().fallback(|request: Request| async move {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        axum::Json(json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "body": String::from_utf8_lossy(&body),
        }))
    }))
    .await
}

async fn gateway_with(upstream: SocketAddr, args: &[&str]) -> (Issuer, TestGateway) {
    let issuer = Issuer::start(true).await;
    let gateway = TestGateway::start(&issuer, PUBLIC_ROUTES, upstream, args).await;
    (issuer, gateway)
}

async fn connect(gw: &TestGateway) -> TcpStream {
    TcpStream::connect(gw.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// One answer read off a keep-alive connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Reads the next answer from `stream` (`buf` keeps what was read beyond it), framed
/// by its length or `chunked`; `head_request` answers have no body.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>, head_request: bool) -> Answer {
    let (status, headers, used) = loop {
        let mut lines = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut lines);
        if let httparse::Status::Complete(used) = response.parse(buf).expect("a valid head") {
            let headers = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_owned(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect::<Vec<_>>();
            break (response.code.expect("status"), headers, used);
        }
        read_some(stream, buf).await;
    };
    buf.drain(..used);
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request || status == 204 || status == 304 || status < 200 {
        return answer;
    }
    if let Some(length) = answer.header("content-length") {
        let length: usize = length.parse().expect("a length");
        while buf.len() < length {
            read_some(stream, buf).await;
        }
        answer.body = buf.drain(..length).collect();
        return answer;
    }
    assert_eq!(answer.header("transfer-encoding"), Some("chunked"));
    loop {
        let line_end = loop {
            if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
                break at;
            }
            read_some(stream, buf).await;
        };
        let size = usize::from_str_radix(std::str::from_utf8(&buf[..line_end]).expect("hex"), 16)
            .expect("a chunk size");
        while buf.len() < line_end + 2 + size + 2 {
            read_some(stream, buf).await;
        }
        answer
            .body
            .extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..line_end + 2 + size + 2);
        if size == 0 {
            return answer;
        }
    }
}

async fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0_u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
        .await
        .expect("an answer within 5 s")
        .expect("read");
    assert!(n > 0, "the connection closed; read so far: {buf:?}");
    buf.extend_from_slice(&chunk[..n]);
}

/// Reads until the gateway closes the connection; `true` if it did within 3 s.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut sink = [0_u8; 1024];
    tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Reads one request head byte by byte (the upstreams here get no bodies); `None` at
/// the end of the stream.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// `request` on a fresh connection to a gateway before a raw upstream answering
/// `answer`; all the gateway sent back until it closed.
async fn relayed_raw(answer: &'static [u8], request: &[u8]) -> String {
    let (_issuer, gw) = gateway_with(answering(answer).await, &[]).await;
    let mut stream = connect(&gw).await;
    stream.write_all(request).await.expect("write");
    read_to_close(&mut stream).await
}

/// `request` on a fresh connection to `gw`; its answer (a `HEAD`'s when
/// `head_request`).
async fn one_answer(gw: &TestGateway, request: &[u8], head_request: bool) -> Answer {
    let mut stream = connect(gw).await;
    let mut buf = Vec::new();
    stream.write_all(request).await.expect("write");
    read_answer(&mut stream, &mut buf, head_request).await
}

/// A raw upstream answering every request on every connection with `answer`.
async fn answering(answer: &'static [u8]) -> SocketAddr {
    answering_slowly(answer, Duration::ZERO).await
}

/// A raw upstream answering `ok` to every request after `delay`.
async fn answering_after(delay: Duration) -> SocketAddr {
    answering_slowly(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", delay).await
}

/// A raw upstream answering every request on every connection with `answer`, each
/// after `delay`.
async fn answering_slowly(answer: &'static [u8], delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                while read_head(&mut stream).await.is_some() {
                    tokio::time::sleep(delay).await;
                    if stream.write_all(answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Reads from `stream` until `needle` has arrived; what was read.
async fn read_until(stream: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut chunk = [0_u8; 4096];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .expect("bytes within 5 s")
            .expect("read");
        assert!(
            n > 0,
            "closed before {:?}; read: {}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&chunk[..n]);
    }
    seen
}

/// Everything the gateway sends until it closes the connection (at most 5 s).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut seen)).await;
    String::from_utf8_lossy(&seen).into_owned()
}
