//! The HTTP/1.1 client on the wire: upstreams that write their answers byte for byte
//! (chunked bodies with extensions and trailers, interim answers, bodies delimited by
//! the close, broken framing, answers before the upload ends), and whether a
//! connection is reused after each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::servers::echo;
use super::{config, ctx, get, problem_code, request, text, upstream};

/// A raw upstream: each connection it accepts is counted and handed to `serve`.
struct Raw {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Raw {
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn raw<F, Fut>(serve: F) -> Raw
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream));
        }
    });
    Raw { addr, connections }
}

/// Reads one request head (the tests' requests have no body); `None` at the end of the
/// stream.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// An upstream answering every request on a connection with `answer`, closing the
/// connection after each answer when `close` says so.
async fn answering(answer: &'static [u8], close: bool) -> Raw {
    raw(move |mut stream| async move {
        while read_head(&mut stream).await.is_some() {
            if stream.write_all(answer).await.is_err() || close {
                break;
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_chunked_answer_with_extensions_and_trailers_arrives_whole_on_one_reused_connection() {
    let upstream_server = answering(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
          5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: 1\r\n\r\n",
        false,
    )
    .await;
    let upstream = upstream(config(&[upstream_server.addr]));
    for _ in 0..3 {
        let response = get(&upstream, "/").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("transfer-encoding").is_none());
        assert_eq!(text(response).await, "hello world");
    }
    assert_eq!(upstream_server.connections(), 1);
}

#[tokio::test]
async fn a_length_beside_chunked_is_dropped_and_the_connection_not_trusted_again() {
    // RFC 9112 §6.3: the coding wins, the length must not be forwarded, and a message
    // framed both ways (a smuggling attempt or a broken server) frames nothing after.
    let upstream_server = answering(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 999\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
        false,
    )
    .await;
    let upstream = upstream(config(&[upstream_server.addr]));
    for _ in 0..2 {
        let response = get(&upstream, "/").await;
        assert!(response.headers().get("content-length").is_none());
        assert_eq!(text(response).await, "hello");
    }
    assert_eq!(upstream_server.connections(), 2);
}

#[tokio::test]
async fn interim_answers_are_skipped_for_the_final_one() {
    let upstream_server = answering(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\n\
          HTTP/1.1 201 Created\r\ncontent-length: 7\r\n\r\ncreated",
        false,
    )
    .await;
    let upstream = upstream(config(&[upstream_server.addr]));
    let response = get(&upstream, "/").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().get("link").is_none());
    assert_eq!(text(response).await, "created");
}

#[tokio::test]
async fn an_answer_delimited_by_the_close_is_read_to_its_end_and_its_connection_not_reused() {
    let upstream_server = answering(b"HTTP/1.0 200 OK\r\n\r\nuntil the end", true).await;
    let upstream = upstream(config(&[upstream_server.addr]));
    for _ in 0..2 {
        assert_eq!(text(get(&upstream, "/").await).await, "until the end");
    }
    assert_eq!(upstream_server.connections(), 2);
}

#[tokio::test]
async fn a_head_answer_keeps_its_length_and_has_no_body() {
    let upstream_server =
        answering(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n", false).await;
    let upstream = upstream(config(&[upstream_server.addr]));
    for _ in 0..2 {
        let response = upstream
            .forward(request(Method::HEAD, "/", Body::empty()), &ctx())
            .await;
        assert_eq!(response.headers()["content-length"], "1234");
        assert_eq!(text(response).await, "");
    }
    assert_eq!(upstream_server.connections(), 1);
}

#[tokio::test]
async fn broken_framing_from_the_upstream_is_a_502() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: -2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\ncontent-length: 0\r\n\r\n",
        // RFC 9112 §6.1: a coding in an HTTP/1.0 message is faulty framing.
        b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    ] {
        let upstream_server = answering(answer, false).await;
        let upstream = upstream(config(&[upstream_server.addr]));
        let response = get(&upstream, "/").await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "{answer:?}");
        assert_eq!(problem_code(response).await, "upstream_unavailable");
    }
}

#[tokio::test]
async fn a_body_cut_short_by_the_upstream_fails_the_response_instead_of_ending_it() {
    let upstream_server = answering(
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this",
        true,
    )
    .await;
    let upstream = upstream(config(&[upstream_server.addr]));
    let response = get(&upstream, "/").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = http_body_util::BodyExt::collect(response.into_body()).await;
    assert!(body.is_err(), "a truncated body must not look complete");
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_while_idle_is_not_used() {
    // Keep-alive answers, but the upstream closes every connection right after.
    let upstream_server = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", true).await;
    let upstream = upstream(config(&[upstream_server.addr]));
    for _ in 0..3 {
        // A POST: were the closed connection used, it would fail rather than be sent
        // again on a new one (which only idempotent requests are).
        let response = upstream
            .forward(request(Method::POST, "/", Body::empty()), &ctx())
            .await;
        assert_eq!(text(response).await, "ok");
        // Time for the upstream's FIN to arrive before the next request.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(upstream_server.connections(), 3);
}

#[tokio::test]
async fn an_answer_before_the_upload_ends_is_relayed_and_the_connection_closed() {
    // The upstream refuses after the head and never reads the body, which never ends.
    let upstream_server = raw(|mut stream| async move {
        if read_head(&mut stream).await.is_some() {
            let _ = stream
                .write_all(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\n\r\ntoo much")
                .await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    })
    .await;
    let upstream = upstream(config(&[upstream_server.addr]));
    let endless = Body::from_stream(futures_util::stream::unfold(0u8, |n| async move {
        if n > 0 {
            std::future::pending::<()>().await;
        }
        Some((
            Ok::<_, std::io::Error>(Bytes::from_static(b"first part")),
            n + 1,
        ))
    }));
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        upstream.forward(request(Method::POST, "/upload", endless), &ctx()),
    )
    .await
    .expect("the early answer is relayed without waiting for the body");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(text(response).await, "too much");
    // The next request cannot share the connection whose upload was abandoned.
    let _ = get(&upstream, "/").await;
    assert_eq!(upstream_server.connections(), 2);
}

#[tokio::test]
async fn bodies_of_unknown_length_go_chunked_and_sized_ones_with_their_length() {
    let backend = echo().await;
    let upstream = upstream(config(&[backend.addr]));
    let parts = [Bytes::from(vec![1u8; 70_000]), Bytes::from_static(b"tail")];
    let streamed = Body::from_stream(futures_util::stream::iter(
        parts.map(Ok::<_, std::io::Error>),
    ));
    let report: Value = serde_json::from_str(
        &text(
            upstream
                .forward(request(Method::POST, "/stream", streamed), &ctx())
                .await,
        )
        .await,
    )
    .expect("JSON");
    assert_eq!(report["body_len"], 70_004, "{report}");
    assert_eq!(report["headers"]["transfer-encoding"][0], "chunked");
    assert!(report["headers"].get("content-length").is_none());

    let sized: Value = serde_json::from_str(
        &text(
            upstream
                .forward(request(Method::PUT, "/sized", vec![2u8; 300]), &ctx())
                .await,
        )
        .await,
    )
    .expect("JSON");
    assert_eq!(sized["body_len"], 300);
    assert_eq!(sized["headers"]["content-length"][0], "300");

    // An empty POST says so; an empty GET carries no length at all.
    let empty_post: Value = serde_json::from_str(
        &text(
            upstream
                .forward(request(Method::POST, "/empty", Body::empty()), &ctx())
                .await,
        )
        .await,
    )
    .expect("JSON");
    assert_eq!(empty_post["headers"]["content-length"][0], "0");
    let plain_get: Value =
        serde_json::from_str(&text(get(&upstream, "/").await).await).expect("JSON");
    assert!(plain_get["headers"].get("content-length").is_none());
    assert!(plain_get["headers"].get("transfer-encoding").is_none());
}

/// Reads a chunked request body to its last chunk; `false` if the stream ended first.
async fn read_chunked_to_end(stream: &mut TcpStream) -> bool {
    let mut body = Vec::new();
    let mut buf = [0u8; 4096];
    while !body.ends_with(b"0\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// A body of `first`, then `second` after a pause (a client still uploading).
fn slow_body(first: &'static [u8], second: &'static [u8]) -> Body {
    Body::from_stream(futures_util::stream::unfold(0u8, move |n| async move {
        match n {
            0 => Some((Ok::<_, std::io::Error>(Bytes::from_static(first)), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Some((Ok(Bytes::from_static(second)), 2))
            }
            _ => None,
        }
    }))
}

#[tokio::test]
async fn an_upstream_that_answers_while_it_reads_the_upload_still_receives_all_of_it() {
    // A streaming upstream (an echo, a transcoder): the status and headers go out at
    // once, the body once the whole upload has arrived. hyper's client kept uploading
    // after the head; the upload must not stop because a 200 arrived.
    let upstream_server = raw(|mut stream| async move {
        if read_head(&mut stream).await.is_some() {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            if read_chunked_to_end(&mut stream).await {
                let _ = stream.write_all(b"8\r\ncomplete\r\n0\r\n\r\n").await;
            }
        }
    })
    .await;
    let upstream = upstream(config(&[upstream_server.addr]));
    let response = upstream
        .forward(
            request(Method::POST, "/transcode", slow_body(b"first", b"second")),
            &ctx(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(5), text(response))
        .await
        .expect("the upstream got the whole upload and finished its answer");
    assert_eq!(body, "complete");
}

#[tokio::test]
async fn a_refusal_the_upstream_sent_before_resetting_the_upload_reaches_the_client() {
    // The upstream refuses after the head and closes without reading the body: the
    // unread bytes make its kernel reset the connection, so the gateway's next write
    // fails, but the 413 is already in the gateway's receive buffer (Linux returns
    // queued data before the reset). hyper's client read before writing.
    let upstream_server = raw(|mut stream| async move {
        if read_head(&mut stream).await.is_some() {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 413 Content Too Large\r\nconnection: close\r\n\
                      content-length: 8\r\n\r\ntoo much",
                )
                .await;
            // Dropped with unread data: RST.
        }
    })
    .await;
    let upstream = upstream(config(&[upstream_server.addr]));
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let large = Body::from_stream(futures_util::stream::iter(
        std::iter::repeat_n(chunk, 1024).map(Ok::<_, std::io::Error>),
    ));
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        upstream.forward(request(Method::POST, "/upload", large), &ctx()),
    )
    .await
    .expect("an answer");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_chunk_size_line_without_digits_fails_the_body_instead_of_ending_it() {
    // An empty chunk-size line is not the last chunk (`0`): hyper rejects it ("missing
    // size digit"); taking it for the end truncates the body and desynchronises the
    // framing of a connection that is then pooled.
    for answer in [
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n;ext\r\n\r\n",
    ] {
        let upstream_server = answering(answer, false).await;
        let upstream = upstream(config(&[upstream_server.addr]));
        let response = get(&upstream, "/").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = http_body_util::BodyExt::collect(response.into_body()).await;
        assert!(body.is_err(), "{answer:?} must not look complete");
    }
}

#[tokio::test]
async fn a_chunked_answer_with_many_trailer_fields_arrives_whole() {
    // Trailers are dropped, but the body before them is complete; hyper accepted up to
    // 100 trailer fields.
    let mut answer =
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n".to_vec();
    for n in 0..40 {
        answer.extend_from_slice(format!("x-trailer-{n}: {n}\r\n").as_bytes());
    }
    answer.extend_from_slice(b"\r\n");
    let upstream_server = answering(answer.leak(), false).await;
    let upstream = upstream(config(&[upstream_server.addr]));
    let response = get(&upstream, "/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "hello");
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_let_go_without_waiting_for_another_request() {
    // The upstream answers, then closes its side (an idle keep-alive timeout: Node's is
    // 5 s, the gateway keeps idle connections 60 s). hyper's connection task saw the
    // end of stream and closed the socket; a pool that only looks at checkout keeps it
    // in CLOSE_WAIT, a file descriptor per dead connection, while no request comes.
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    let closed_tx = Arc::new(std::sync::Mutex::new(Some(closed_tx)));
    let upstream_server = raw(move |mut stream| {
        let closed_tx = closed_tx.clone();
        async move {
            if read_head(&mut stream).await.is_some() {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                let _ = stream.shutdown().await;
                // The gateway's side closes too: the read ends.
                let mut rest = [0u8; 16];
                while matches!(stream.read(&mut rest).await, Ok(n) if n > 0) {}
                if let Some(tx) = closed_tx.lock().expect("lock").take() {
                    let _ = tx.send(());
                }
            }
        }
    })
    .await;
    let upstream = upstream(config(&[upstream_server.addr]));
    assert_eq!(text(get(&upstream, "/").await).await, "ok");
    tokio::time::timeout(Duration::from_secs(2), closed_rx)
        .await
        .expect("the gateway closes a pooled connection the upstream closed")
        .expect("signalled");
}

#[tokio::test]
async fn an_idempotent_request_on_a_pooled_connection_closed_under_it_is_sent_on_a_new_one() {
    // Each connection answers its first request, then closes on reading the next one
    // without answering: the race of an upstream's keep-alive timeout with a request
    // reusing the connection (the pool cannot see that close coming).
    let upstream_server = raw(|mut stream| async move {
        if read_head(&mut stream).await.is_some() {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            let _ = read_head(&mut stream).await;
        }
    })
    .await;
    let upstream = upstream(config(&[upstream_server.addr]));
    for _ in 0..3 {
        let response = get(&upstream, "/").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(response).await, "ok");
    }
    // The first connection, then a new one for each request its predecessor dropped.
    assert_eq!(upstream_server.connections(), 3);

    // A POST may have had effects: it fails rather than being sent twice.
    let response = upstream
        .forward(request(Method::POST, "/orders", Body::empty()), &ctx())
        .await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn bytes_after_an_answer_leave_its_connection_unused() {
    // Bytes beyond the framed answer (a 204 or HEAD answer with a body, an upstream
    // pipelining garbage) would be read as the head of the next request's answer on a
    // reused connection: response splitting. Such a connection is closed instead.
    for (method, answer) in [
        (Method::GET, &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"[..]),
        (Method::GET, b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged"),
        (Method::HEAD, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"),
    ] {
        let upstream_server = answering(answer, false).await;
        let upstream = upstream(config(&[upstream_server.addr]));
        for _ in 0..2 {
            let response = upstream
                .forward(request(method.clone(), "/", Body::empty()), &ctx())
                .await;
            assert!(response.status().is_success(), "{answer:?}");
            assert_ne!(text(response).await, "forged", "{answer:?}");
        }
        assert_eq!(upstream_server.connections(), 2, "{answer:?}");
    }
}
