//! Keep-alive and pipelining, HEAD, bodies in pieces, what is handed to hyper
//! (HTTP/1.0, chunked bodies, `Expect`, h2c), 400 and 408 problems, a client leaving
//! mid-request, the idle timeout.

use std::time::Duration;

use axum::body::Bytes;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{body_echo, closed, connect, gateway_with, read_answer};

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (_issuer, gw) = gateway_with(body_echo().await, &[]).await;
    let mut stream = connect(&gw).await;
    // Three requests in one write, one of them with a body.
    stream
        .write_all(
            b"GET /pub/one HTTP/1.1\r\nHost: a\r\n\r\n\
              POST /pub/two HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
              GET /pub/three HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .await
        .expect("write");
    let mut buf = Vec::new();
    for (path, body) in [("/one", ""), ("/two", "hello"), ("/three", "")] {
        let answer = read_answer(&mut stream, &mut buf, false).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["path"], path);
        assert_eq!(answer.json()["body"], body);
        assert!(answer.header("date").is_some(), "{answer:?}");
        assert!(answer.header("x-request-id").is_some(), "{answer:?}");
    }
}

#[tokio::test]
async fn a_head_answer_has_the_get_length_and_no_body() {
    let (_issuer, gw) = gateway_with(body_echo().await, &[]).await;
    let mut stream = connect(&gw).await;
    let mut buf = Vec::new();
    stream
        .write_all(b"GET /pub/x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let get = read_answer(&mut stream, &mut buf, false).await;
    stream
        .write_all(b"HEAD /pub/x HTTP/1.1\r\nHost: a\r\n\r\nGET /pub/y HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let head = read_answer(&mut stream, &mut buf, true).await;
    assert_eq!(head.status, 200);
    // axum answers HEAD with the length a GET would have had (minus the method name).
    assert!(head.header("content-length").is_some(), "{head:?}");
    // Had the HEAD answer carried a body, this would read it as a head and fail.
    let next = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(next.json()["path"], "/y");
    assert_eq!(get.json()["method"], "GET");
}

#[tokio::test]
async fn a_body_sent_in_pieces_arrives_whole_and_the_connection_serves_on() {
    let (_issuer, gw) = gateway_with(body_echo().await, &[]).await;
    let mut stream = connect(&gw).await;
    let mut buf = Vec::new();
    stream
        .write_all(b"POST /pub/p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhel")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(b"lo wo").await.expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream
        .write_all(b"rldGET /pub/after HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(
        read_answer(&mut stream, &mut buf, false).await.json()["body"],
        "hello world"
    );
    assert_eq!(
        read_answer(&mut stream, &mut buf, false).await.json()["path"],
        "/after"
    );
}

#[tokio::test]
async fn a_chunked_body_after_plain_requests_is_served_by_hyper_on_the_same_connection() {
    let (_issuer, gw) = gateway_with(body_echo().await, &[]).await;
    let mut stream = connect(&gw).await;
    let mut buf = Vec::new();
    stream
        .write_all(
            b"GET /pub/first HTTP/1.1\r\nHost: a\r\n\r\n\
              POST /pub/chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n\
              GET /pub/last HTTP/1.1\r\nHost: a\r\n\r\n",
        )
        .await
        .expect("write");
    let first = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(first.json()["path"], "/first");
    let chunked = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(
        (chunked.status, chunked.json()["body"].as_str()),
        (200, Some("hello world"))
    );
    let last = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(last.json()["path"], "/last");
}

#[tokio::test]
async fn expect_100_continue_gets_its_interim_answer_before_the_body_is_sent() {
    let (_issuer, gw) = gateway_with(body_echo().await, &[]).await;
    let mut stream = connect(&gw).await;
    let mut buf = Vec::new();
    stream
        .write_all(
            b"POST /pub/e HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .expect("write");
    let interim = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(interim.status, 100);
    stream.write_all(b"ping").await.expect("write");
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(answer.json()["body"], "ping");
}

#[tokio::test]
async fn an_http_1_0_request_is_answered_and_the_connection_closed() {
    let (_issuer, gw) = gateway_with(body_echo().await, &[]).await;
    let mut stream = connect(&gw).await;
    let mut buf = Vec::new();
    stream
        .write_all(b"GET /pub/old HTTP/1.0\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(answer.json()["path"], "/old");
    assert!(
        closed(&mut stream).await,
        "HTTP/1.0 without keep-alive stays open"
    );
}

#[tokio::test]
async fn an_http2_client_with_prior_knowledge_is_served() {
    let (_issuer, gw) = gateway_with(body_echo().await, &[]).await;
    let io = hyper_util::rt::TokioIo::new(connect(&gw).await);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("an HTTP/2 handshake");
    tokio::spawn(connection);
    let request = http::Request::get(format!("{}/pub/h2", gw.base))
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(
        (response.status(), response.version()),
        (StatusCode::OK, http::Version::HTTP_2)
    );
}

#[tokio::test]
async fn an_invalid_head_gets_400_as_a_problem_and_the_connection_closes() {
    let (_issuer, gw) = gateway_with(body_echo().await, &[]).await;
    let mut stream = connect(&gw).await;
    let mut buf = Vec::new();
    stream
        .write_all(b"GET /pub/x HTTP/1.1\r\nHost: a\r\nno colon here\r\n\r\n")
        .await
        .expect("write");
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(answer.json()["code"], "invalid_request");
    assert!(closed(&mut stream).await);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_within_the_request_timeout_gets_408() {
    let (_issuer, gw) = gateway_with(body_echo().await, &["--request-timeout-secs", "1"]).await;
    let mut stream = connect(&gw).await;
    let mut buf = Vec::new();
    stream
        .write_all(b"POST /pub/slow HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        .await
        .expect("write");
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(answer.status, 408);
    assert_eq!(answer.json()["code"], "request_timeout");
    assert!(closed(&mut stream).await);
}

#[tokio::test]
async fn a_client_leaving_mid_request_cancels_it_upstream() {
    // An upstream that takes the request and never answers; it reports when the
    // gateway closes its connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let upstream = listener.local_addr().expect("addr");
    let (got_request, request_seen) = tokio::sync::oneshot::channel();
    let (closed_tx, upstream_closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = vec![0_u8; 4096];
        let _ = stream.read(&mut head).await;
        let _ = got_request.send(());
        let mut rest = [0_u8; 64];
        while stream.read(&mut rest).await.is_ok_and(|n| n > 0) {}
        let _ = closed_tx.send(());
    });
    let (_issuer, gw) = gateway_with(upstream, &[]).await;
    let mut stream = connect(&gw).await;
    stream
        .write_all(b"GET /pub/wait HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    request_seen.await.expect("the upstream got the request");
    drop(stream);
    tokio::time::timeout(Duration::from_secs(3), upstream_closed)
        .await
        .expect("the gateway dropped the upstream request within 3 s of the client leaving")
        .expect("closed");
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout_and_a_busy_one_is_not() {
    let (_issuer, gw) = gateway_with(body_echo().await, &["--client-idle-timeout-secs", "1"]).await;
    // Busy: a request every 400 ms for 2.4 s, more than twice the idle timeout.
    let mut busy = connect(&gw).await;
    let mut buf = Vec::new();
    for round in 0..7 {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        busy.write_all(format!("GET /pub/{round} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await
            .expect("a busy connection stays open");
        let answer = read_answer(&mut busy, &mut buf, false).await;
        assert_eq!(answer.json()["path"], format!("/{round}"));
    }
    // Idle after its last answer: closed about a second later, not before.
    let answered = std::time::Instant::now();
    assert!(closed(&mut busy).await, "an idle connection stays open");
    let waited = answered.elapsed();
    assert!(
        waited >= Duration::from_millis(800),
        "closed after {waited:?}"
    );
}
