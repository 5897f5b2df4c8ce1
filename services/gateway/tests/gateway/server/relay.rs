//! Answers relayed from an HTTP/1.1 upstream: their head's lines go to the client as
//! received, without a header map (session 8), less what never crosses the gateway.
//! Each case runs on the gateway's own loop and, as a twin, through hyper (an HTTP/1.0
//! request is handed to it), which gets the lines merged into one map.

use tokio::io::AsyncWriteExt;

use super::{answering, connect, gateway_with, one_answer, read_to_close, relayed_raw};
use crate::support::{Issuer, PUBLIC_ROUTES, Serving, TestGateway};

/// An upstream answer with every kind of line the gateway must not relay, in the case
/// a server might send it, beside lines it must relay.
const NOISY_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\n\
    Connection: Keep-Alive\r\n\
    Keep-Alive: timeout=5\r\n\
    Proxy-Authenticate: Basic\r\n\
    Trailer: X-Sum\r\n\
    Upgrade: h2c\r\n\
    Server: Werkzeug/2.0.1\r\n\
    X-Powered-By: PHP/8.1\r\n\
    X-Request-Id: chosen-upstream\r\n\
    X-Kept: 1\r\n\
    Set-Cookie: a=1\r\n\
    Set-Cookie: b=2\r\n\
    Content-Type: text/plain\r\n\
    Content-Length: 2\r\n\
    \r\n\
    ok";

/// What the client must (not) see of [`NOISY_ANSWER`] in `answer` (a whole answer's
/// text).
fn assert_relayed_cleanly(answer: &str) {
    let lower = answer.to_ascii_lowercase();
    let (head, body) = lower.split_once("\r\n\r\n").expect("a whole answer");
    // hyper answers an HTTP/1.0 request in HTTP/1.0.
    assert!(
        head.starts_with("http/1.") && head[8..].starts_with(" 200 ok\r\n"),
        "{answer}"
    );
    assert_eq!(body, "ok", "{answer}");
    let lines: Vec<&str> = head.lines().skip(1).collect();
    let named = |name: &str| {
        lines
            .iter()
            .filter(|line| line.split(':').next() == Some(name))
            .count()
    };
    for gone in [
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "upgrade",
        "server",
        "x-powered-by",
    ] {
        assert_eq!(named(gone), 0, "{gone} reached the client: {answer}");
    }
    assert_eq!(named("x-kept"), 1, "{answer}");
    assert_eq!(named("set-cookie"), 2, "every value is relayed: {answer}");
    assert_eq!(named("content-length"), 1, "{answer}");
    assert!(lines.contains(&"content-length: 2"), "{answer}");
    // The gateway's own request id replaces the upstream's.
    assert_eq!(named("x-request-id"), 1, "{answer}");
    assert!(!lower.contains("chosen-upstream"), "{answer}");
    assert_eq!(named("x-content-type-options"), 1, "{answer}");
}

async fn noisy_answer_relayed(request: &[u8]) {
    assert_relayed_cleanly(&relayed_raw(NOISY_ANSWER, request).await);
}

#[tokio::test]
async fn a_relayed_head_loses_hop_by_hop_banner_and_upstream_id_lines_in_any_case() {
    noisy_answer_relayed(b"GET /pub/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
}

#[tokio::test]
async fn the_same_answer_served_by_hyper_loses_the_same_lines() {
    noisy_answer_relayed(b"GET /pub/x HTTP/1.0\r\nHost: a\r\n\r\n").await;
}

/// An upstream framing its answer both by a length and `chunked` (a smuggling
/// attempt): the length is not relayed, on either path (hyper would frame the answer
/// by it).
async fn smuggled_length_dropped(request: &[u8]) {
    let answer = relayed_raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n\
          2\r\nok\r\n0\r\n\r\n",
        request,
    )
    .await;
    assert!(answer.contains(" 200 OK\r\n"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("content-length: 5"),
        "{answer}"
    );
    assert!(answer.contains("ok"), "{answer}");
}

#[tokio::test]
async fn a_length_beside_chunked_is_not_relayed() {
    smuggled_length_dropped(b"GET /pub/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
}

#[tokio::test]
async fn a_length_beside_chunked_is_not_relayed_by_hyper_either() {
    smuggled_length_dropped(b"GET /pub/x HTTP/1.0\r\nHost: a\r\n\r\n").await;
}

#[tokio::test]
async fn a_head_answer_keeps_the_upstream_length_and_a_304_its_own() {
    let upstream = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n").await;
    let (_issuer, gw) = gateway_with(upstream, &[]).await;
    let head = one_answer(&gw, b"HEAD /pub/x HTTP/1.1\r\nHost: a\r\n\r\n", true).await;
    assert_eq!(head.header("content-length"), Some("42"), "{head:?}");

    let upstream =
        answering(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 42\r\n\r\n").await;
    let (_issuer, gw) = gateway_with(upstream, &[]).await;
    let unchanged = one_answer(&gw, b"GET /pub/x HTTP/1.1\r\nHost: a\r\n\r\n", false).await;
    assert_eq!(unchanged.status, 304);
    assert_eq!(
        unchanged.header("content-length"),
        Some("42"),
        "{unchanged:?}"
    );
    assert_eq!(unchanged.header("etag"), Some("\"v1\""), "{unchanged:?}");
}

/// A raw upstream that answers each connection's first request with `answer` and
/// closes it.
async fn answering_and_closing(answer: &'static [u8]) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if super::read_head(&mut stream).await.is_some() {
                    let _ = stream.write_all(answer).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// An upstream that breaks off its answer: the client is told, never left with nothing
/// (as before: the head waited for the body and went down with it) nor with an answer
/// that looks whole. When the gateway learns of the break before it sent any of the
/// answer (the usual case, the upstream's bytes and close arrive together) the client
/// gets a 502 problem; when the head already went out, the answer's own framing shows
/// it cut (fewer bytes than its length, no last chunk) and the connection closes.
///
/// Which of the two happens depends on when the upstream's close is seen, so each case
/// runs several times (before the fix, the answer was empty whenever the close was seen
/// first). `request` is what the client sends: a plain request the gateway's own loop
/// serves, or one it hands to hyper (HTTP/1.0, a streamed upload), whose answers hyper
/// writes.
async fn a_broken_off_answer_is_not_taken_for_a_whole_one(
    answer: &'static [u8],
    request: &'static [u8],
) {
    a_broken_off_answer_is_told(Serving::PerCore, answer, request).await;
}

/// [`a_broken_off_answer_is_not_taken_for_a_whole_one`] on a gateway served as `serving`.
async fn a_broken_off_answer_is_told(
    serving: Serving,
    answer: &'static [u8],
    request: &'static [u8],
) {
    let upstream = answering_and_closing(answer).await;
    for _ in 0..8 {
        // A gateway each: no breaker or ejection in the way of the repeated failures.
        let issuer = Issuer::start(true).await;
        let gw = TestGateway::start_serving(serving, &issuer, PUBLIC_ROUTES, upstream, &[]).await;
        let mut stream = connect(&gw).await;
        stream.write_all(request).await.expect("write");
        let answer = read_to_close(&mut stream).await;
        // hyper answers an HTTP/1.0 request in HTTP/1.0.
        if answer.starts_with("HTTP/1.") && answer[8..].starts_with(" 502 ") {
            assert!(answer.contains("upstream_unavailable"), "{answer}");
            // The gateway's own answer, with the request's id as every answer.
            let ids = answer
                .to_ascii_lowercase()
                .matches("\r\nx-request-id: ")
                .count();
            assert_eq!(ids, 1, "{answer}");
            continue;
        }
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("neither a 502 nor a head: {answer:?}"));
        assert!(
            head.starts_with("HTTP/1.") && head[8..].starts_with(" 200 OK"),
            "{answer:?}"
        );
        if head.to_ascii_lowercase().contains("content-length: 99") {
            assert!(body.len() < 99, "{answer:?}");
        } else {
            assert!(head.contains("transfer-encoding: chunked"), "{answer:?}");
            let whole = body.ends_with("0\r\n\r\n");
            assert!(!whole, "a cut body ends like a whole one: {answer:?}");
        }
    }
}

/// The all-in-one `tessera dev` serves the gateway through axum (hyper writes every
/// answer): a plain HTTP/1.1 request whose answer breaks off gets the 502 there too.
#[tokio::test]
async fn tessera_dev_tells_a_client_when_the_answer_breaks_off() {
    a_broken_off_answer_is_told(Serving::AsDev, SHORT_ANSWER, PLAIN_REQUEST).await;
}

/// An upstream answer cut short within its length.
const SHORT_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nhello";

/// A plain request: the gateway's own loop serves it.
const PLAIN_REQUEST: &[u8] = b"GET /pub/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn an_answer_shorter_than_its_length_is_not_taken_for_a_whole_one() {
    a_broken_off_answer_is_not_taken_for_a_whole_one(SHORT_ANSWER, PLAIN_REQUEST).await;
}

#[tokio::test]
async fn a_chunked_answer_cut_before_its_end_is_not_taken_for_a_whole_one() {
    a_broken_off_answer_is_not_taken_for_a_whole_one(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        PLAIN_REQUEST,
    )
    .await;
}

/// hyper's connections too: a request it serves (HTTP/1.0 here) whose answer breaks off
/// gets the 502 when nothing was sent yet, not a connection closed without a byte (hyper
/// holds a head back until the body's first bytes, and went down with the body).
#[tokio::test]
async fn an_http10_client_is_told_when_the_answer_breaks_off() {
    a_broken_off_answer_is_not_taken_for_a_whole_one(
        SHORT_ANSWER,
        b"GET /pub/x HTTP/1.0\r\nHost: a\r\n\r\n",
    )
    .await;
}

/// The same for a streamed upload (`Transfer-Encoding`, handed to hyper).
#[tokio::test]
async fn a_streamed_upload_is_told_when_the_answer_breaks_off() {
    a_broken_off_answer_is_not_taken_for_a_whole_one(
        SHORT_ANSWER,
        b"POST /pub/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\
          Transfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
    )
    .await;
}
