//! Bodies and connections that outlive the response headers: streamed responses, the
//! total timeout on a slow body, and WebSocket pass-through.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::servers::{self, WEBSOCKET_ACCEPT, WEBSOCKET_KEY};
use super::{config, get, proxy_server, upstream};

const CHUNK: usize = 64 * 1024;

#[tokio::test]
async fn a_large_response_reaches_the_client_before_the_upstream_has_finished_sending_it() {
    // The upstream sends one chunk, then waits for the test to have received it through
    // the proxy before sending the other 50 MB: a buffering proxy would deadlock here.
    let gate = Arc::new(Semaphore::new(0));
    let upstream_gate = gate.clone();
    let backend = servers::backend(move |_| {
        let gate = upstream_gate.clone();
        async move {
            let first = futures_util::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from(vec![1u8; CHUNK]))
            });
            let rest = futures_util::stream::unfold(0usize, move |sent| {
                let gate = gate.clone();
                async move {
                    if sent == 0 {
                        gate.acquire().await.expect("gate").forget();
                    }
                    (sent < 800).then(|| (Ok(Bytes::from(vec![2u8; CHUNK])), sent + 1))
                }
            });
            Response::new(Body::from_stream(futures_util::StreamExt::chain(
                first, rest,
            )))
        }
    })
    .await;
    let proxy = proxy_server(upstream(config(&[backend.addr]))).await;

    let mut response = reqwest::get(format!("http://{proxy}/download"))
        .await
        .expect("response headers");
    assert_eq!(response.status(), StatusCode::OK);
    let first = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .expect("the first chunk arrives while the upstream is still sending")
        .expect("read")
        .expect("a chunk");
    assert!(!first.is_empty());
    gate.add_permits(1);
    let mut total = first.len();
    while let Some(chunk) = response.chunk().await.expect("read") {
        total += chunk.len();
    }
    assert_eq!(total, CHUNK * 801);
}

#[tokio::test]
async fn a_slowly_streamed_body_is_cut_at_the_total_timeout() {
    let backend = servers::backend(|_| async {
        let ticks = futures_util::stream::unfold(0u32, |n| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            (n < 50).then(|| {
                (
                    Ok::<_, std::io::Error>(Bytes::from_static(b"tick\n")),
                    n + 1,
                )
            })
        });
        Response::new(Body::from_stream(ticks))
    })
    .await;
    let mut config = config(&[backend.addr]);
    config.timeouts.total = Duration::from_millis(800);
    let upstream = upstream(config);

    let started = Instant::now();
    let response = get(&upstream, "/events").await;
    assert_eq!(response.status(), StatusCode::OK, "headers came in time");
    let body = response.into_body().collect().await;
    let waited = started.elapsed();
    assert!(body.is_err(), "the body must not complete");
    assert!(waited >= Duration::from_millis(800), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

/// A masked client text frame (RFC 6455 §5.2) carrying `text`.
fn masked_frame(text: &str) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let payload = text.as_bytes();
    assert!(payload.len() < 126);
    let mut frame = vec![0x81, 0x80 | u8::try_from(payload.len()).expect("short")];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test]
async fn a_websocket_upgrade_is_passed_through_and_messages_echo_both_ways() {
    let backend = servers::websocket_echo().await;
    let mut config = config(&[backend.addr]);
    // Request timeouts end at the upgrade: the conversation below outlasts `total`.
    config.timeouts.total = Duration::from_millis(500);
    let proxy = proxy_server(upstream(config)).await;

    let mut socket = TcpStream::connect(proxy).await.expect("connect");
    let handshake = format!(
        "GET /chat HTTP/1.1\r\nHost: {proxy}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WEBSOCKET_KEY}\r\n\r\n"
    );
    socket.write_all(handshake.as_bytes()).await.expect("send");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        socket.read_exact(&mut byte).await.expect("response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("text").to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(
        head.contains(&format!(
            "sec-websocket-accept: {}",
            WEBSOCKET_ACCEPT.to_ascii_lowercase()
        )),
        "{head}"
    );

    for (i, message) in ["hello", "through the gateway"].into_iter().enumerate() {
        if i == 1 {
            tokio::time::sleep(Duration::from_millis(700)).await;
        }
        let frame = masked_frame(message);
        socket.write_all(&frame).await.expect("send frame");
        let mut echoed = vec![0u8; frame.len()];
        tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut echoed))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(echoed, frame);
    }
    assert_eq!(backend.hits(), 1);
}
