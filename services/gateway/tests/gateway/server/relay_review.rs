//! An adversarial review of the answers relayed as received (session 8, `relay.rs`):
//! each test here failed against the code it was written for ("FIXED", the comment says
//! how, and what fixed it) or guards a property nothing else covers ("GUARD").

use axum::body::Bytes;
use http::StatusCode;
use http::response::Parts;
use http_body_util::{BodyExt, Empty};

use super::{answering, connect, gateway_with, one_answer, relayed_raw};
use crate::support::{Issuer, TestGateway};

/// `method /pub/h2` from an h2c (prior knowledge) client to a gateway before `answer`:
/// the answer's head and body, or the client's error.
async fn relayed_h2(
    answer: &'static [u8],
    method: http::Method,
) -> Result<(Parts, Bytes), hyper::Error> {
    let (_issuer, gw) = gateway_with(answering(answer).await, &[]).await;
    let io = hyper_util::rt::TokioIo::new(connect(&gw).await);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .expect("an HTTP/2 handshake");
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(method)
        .uri(format!("{}/pub/h2", gw.base))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let (parts, body) = sender.send_request(request).await?.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((parts, body))
}

/// The lines of `answer`'s head (after the status line) named `name`, lowercase.
fn named(answer: &str, name: &str) -> Vec<String> {
    let lower = answer.to_ascii_lowercase();
    let head = lower.split("\r\n\r\n").next().unwrap_or_default();
    head.lines()
        .skip(1)
        .filter(|line| line.split(':').next() == Some(name))
        .map(str::to_owned)
        .collect()
}

/// An upstream answer whose `Content-Length` is a list of one repeated value, which RFC
/// 9110 §8.6 lets a recipient read as that value (the gateway's upstream client does).
const LENGTH_LIST: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok";

/// FIXED: an h2c client got its stream reset (`PROTOCOL_ERROR`) for an answer the
/// gateway accepted from its upstream and serves whole to HTTP/1.1 clients: the
/// upstream's `Content-Length: 2, 2` line is merged as received into the map hyper's
/// HTTP/2 server writes (`edge::answer::Answer::merge` → `RawHeaders::append_to`), and
/// HTTP/2 allows one number only (RFC 9113 §8.1.1), so the h2 client refuses it. The
/// HTTP/1.1 loop writes its own `content-length: 2` instead. Already so before the
/// change (the map held the line then too), but `Answer::merge` is now the one place
/// where relayed lines become a map, and it could write the agreed length once.
/// Fixed: `Answer::into_response` leaves one `Content-Length`, the number the lines agree
/// on (`one_length`).
#[tokio::test]
async fn an_h2c_client_gets_an_answer_whose_length_the_upstream_listed_twice() {
    let on_loop = relayed_raw(
        LENGTH_LIST,
        b"GET /pub/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(named(&on_loop, "content-length"), ["content-length: 2"]);
    assert!(on_loop.ends_with("\r\n\r\nok"), "{on_loop}");

    let (parts, body) = relayed_h2(LENGTH_LIST, http::Method::GET)
        .await
        .expect("an h2c client gets the answer an HTTP/1.1 client gets");
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(&body[..], b"ok");
}

/// FIXED: an HTTP/1.0 client (served by hyper, with the relayed lines merged into a
/// map) gets the upstream's length lines as received where an HTTP/1.1 client gets one
/// `content-length: 2`: `Content-Length: 2, 2` verbatim (a list many clients refuse
/// as a length), and for a `HEAD` answered with two `Content-Length: 2` lines no answer
/// at all (hyper refuses the map and closes the connection). Root cause as in the h2c
/// test: `Answer::merge` (src/edge/answer.rs) copies every `Content-Length` line into
/// the map; it could put the agreed value once (or none, hyper frames by the body).
/// Fixed as the h2c case: `one_length` in `Answer::into_response`.
#[tokio::test]
async fn an_http_1_0_client_gets_one_length_as_an_http_1_1_client_does() {
    let listed = relayed_raw(LENGTH_LIST, b"GET /pub/x HTTP/1.0\r\nHost: a\r\n\r\n").await;
    assert!(listed.starts_with("HTTP/1.0 200 OK\r\n"), "{listed}");
    assert_eq!(
        named(&listed, "content-length"),
        ["content-length: 2"],
        "{listed}"
    );

    let repeated = relayed_raw(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
        b"HEAD /pub/x HTTP/1.0\r\nHost: a\r\n\r\n",
    )
    .await;
    assert!(
        repeated.starts_with("HTTP/1.0 200 OK\r\n"),
        "a HEAD over HTTP/1.0 gets an answer: {repeated:?}"
    );
    assert_eq!(
        named(&repeated, "content-length"),
        ["content-length: 2"],
        "{repeated}"
    );
}

/// FIXED: a `204` relayed to an h2c client, or to a `HEAD` over HTTP/1.0, carries the
/// upstream's `Content-Length: 5`, which RFC 9110 §8.6 forbids in a `204` ("A server
/// MUST NOT send a Content-Length header field in any response with a status code of
/// ... 204"); the HTTP/1.1 loop leaves it out (`Kind::ContentLength`, src/edge/h1/
/// response.rs). The merged map (`Answer::merge`, src/edge/answer.rs) keeps it: no
/// `Content-Length` line should be merged for a `1xx`/`204` answer.
/// Fixed: `one_length` removes the length of a `1xx` or `204` answer.
#[tokio::test]
async fn a_204_reaches_no_client_with_a_length() {
    const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-Kept: 1\r\n\r\n";
    let on_loop = relayed_raw(
        NO_CONTENT,
        b"GET /pub/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        on_loop.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{on_loop}"
    );
    assert!(named(&on_loop, "content-length").is_empty(), "{on_loop}");

    let head = relayed_raw(NO_CONTENT, b"HEAD /pub/x HTTP/1.0\r\nHost: a\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.0 204 No Content\r\n"), "{head}");
    assert_eq!(named(&head, "x-kept"), ["x-kept: 1"], "{head}");
    assert!(named(&head, "content-length").is_empty(), "{head}");

    let (parts, _) = relayed_h2(NO_CONTENT, http::Method::GET)
        .await
        .expect("an answer");
    assert_eq!(parts.status, StatusCode::NO_CONTENT);
    assert_eq!(parts.headers["x-kept"], "1");
    assert_eq!(
        parts.headers.get(http::header::CONTENT_LENGTH),
        None,
        "{parts:?}"
    );
}

/// FIXED (a regression of the change): a header the upstream names in `Connection`
/// is relayed when the option is `close`. RFC 9110 §7.6.1: a proxy removes every field
/// named by a connection option, and `strip_hop_by_hop` did so for every token before
/// (fbbf405 dropped `Close: secret` here). `RelayedHeaders::new` (src/proxy/headers.rs)
/// takes the as-received path whenever the tokens are only `close`/`keep-alive`,
/// assuming they name nothing left to remove; `Keep-Alive` is hop-by-hop anyway, but a
/// `Close` line is not. Fix: treat a line named `close` as hop-by-hop when a
/// `Connection` line lists `close` (in `RelayedHeaders::relayed`), or send such heads
/// down the map path.
/// Fixed: `RelayedHeaders` leaves out a field named `Close` when `Connection` lists `close`
/// (`drop_close`).
#[tokio::test]
async fn a_field_named_by_connection_close_is_not_relayed() {
    const NAMED: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: close\r\nClose: secret\r\nX-Kept: 1\r\n\
        Content-Length: 2\r\n\r\nok";
    for request in [
        &b"GET /pub/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..],
        b"GET /pub/x HTTP/1.0\r\nHost: a\r\n\r\n",
    ] {
        let answer = relayed_raw(NAMED, request).await;
        assert!(answer.contains(" 200 OK\r\n"), "{answer}");
        assert_eq!(named(&answer, "x-kept"), ["x-kept: 1"], "{answer}");
        assert!(
            !answer.to_ascii_lowercase().contains("secret"),
            "a field named by Connection reached the client: {answer}"
        );
    }
}

/// FIXED: the answer to a `HEAD` announced the length an upstream sent beside
/// `Transfer-Encoding: chunked` (the smuggling pattern `relay.rs` says is never
/// relayed, "on either path"), on the HTTP/1.1 loop and through hyper alike; a `GET`
/// of the same resource gets `chunked` and 2 bytes, so the `HEAD` describes a body no
/// `GET` gets. `response_framing` (src/proxy/client/h1/head.rs) returns for `HEAD`
/// (and `1xx`/`204`/`304`) before it decides `drop_length`, so the length stays; the
/// `Transfer-Encoding` check should come first (a `Content-Length` beside it is dropped
/// whatever the method or status). Already so before the change.
/// Fixed: `response_framing` decides `drop_length` before its early return (and keeps no
/// such connection).
#[tokio::test]
async fn a_head_answer_does_not_announce_a_length_sent_beside_chunked() {
    const SMUGGLED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\
        Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    for request in [
        &b"HEAD /pub/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..],
        b"HEAD /pub/x HTTP/1.0\r\nHost: a\r\n\r\n",
    ] {
        let answer = relayed_raw(SMUGGLED, request).await;
        assert!(answer.contains(" 200 OK\r\n"), "{answer}");
        assert!(
            !named(&answer, "content-length").contains(&"content-length: 5".to_owned()),
            "the smuggled length was announced: {answer}"
        );
    }
}

/// A route with CORS for one origin, to a raw upstream.
const CORS_ROUTES: &str = r#"
version: 1
routes:
  - name: public
    match: { prefix: /pub/ }
    rewrite_prefix: /
    upstreams: [http://{upstream}]
    auth: public
    cors: { allowed_origins: ["https://app.example.com"], max_age_secs: 60 }
"#;

/// GUARD: on a CORS route the gateway's `Access-Control-Allow-Origin` replaces the
/// upstream's (a wildcard here) on the HTTP/1.1 loop too, where the upstream's lines are
/// otherwise written as received beside the gateway's map: `route_request` merges them
/// before `cors::response_headers` replaces values (src/edge/mod.rs). Without that
/// merge, the client gets both values and a browser refuses the answer. The banner and
/// the upstream's request id still do not get out.
#[tokio::test]
async fn a_cors_route_answers_with_one_allowed_origin_over_the_upstream_s() {
    let upstream = answering(
        b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nServer: nginx\r\n\
          X-REQUEST-ID: upstream-id\r\nContent-Length: 2\r\n\r\nok",
    )
    .await;
    let issuer = Issuer::start(true).await;
    let gw = TestGateway::start(&issuer, CORS_ROUTES, upstream, &[]).await;
    let request = b"GET /pub/x HTTP/1.1\r\nHost: a\r\nOrigin: https://app.example.com\r\n\r\n";
    let answer = one_answer(&gw, request, false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, b"ok");
    let origins: Vec<_> = answer
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("access-control-allow-origin"))
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(origins, ["https://app.example.com"], "{answer:?}");
    assert_eq!(answer.header("server"), None, "{answer:?}");
    let ids = answer
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-request-id"))
        .count();
    assert_eq!(ids, 1, "{answer:?}");
    assert_ne!(answer.header("x-request-id"), Some("upstream-id"));
}

/// GUARD: an upstream's bare `500` becomes the gateway's problem answer (merged into a
/// map for `problem_for_bare_errors`, src/edge/direct.rs) with the upstream's security
/// choice kept, whatever the case of its names, and no second value added: on the
/// HTTP/1.1 loop (which notes security headers among the map's lines) and for an h2c
/// client (`secure_response` on the merged map) alike; the upstream's request id and
/// banner do not get out on either.
#[tokio::test]
async fn an_upstream_error_keeps_its_security_choice_on_every_path() {
    const FAILED: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\
        X-FRAME-OPTIONS: SAMEORIGIN\r\nx-content-type-options: nosniff\r\nServer: x\r\n\
        X-Request-Id: upstream-id\r\nContent-Length: 4\r\n\r\noops";
    let on_loop = relayed_raw(
        FAILED,
        b"GET /pub/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        on_loop.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{on_loop}"
    );
    assert!(on_loop.contains("application/problem+json"), "{on_loop}");
    assert_eq!(
        named(&on_loop, "x-frame-options"),
        ["x-frame-options: sameorigin"],
        "{on_loop}"
    );
    assert_eq!(
        named(&on_loop, "x-content-type-options").len(),
        1,
        "{on_loop}"
    );
    assert_eq!(named(&on_loop, "x-request-id").len(), 1, "{on_loop}");
    assert!(named(&on_loop, "server").is_empty(), "{on_loop}");
    assert!(!on_loop.contains("upstream-id"), "{on_loop}");

    let (parts, body) = relayed_h2(FAILED, http::Method::GET)
        .await
        .expect("an answer");
    assert_eq!(parts.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        String::from_utf8_lossy(&body).contains("\"status\":500"),
        "{body:?}"
    );
    let values = |name| {
        parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(values("x-frame-options"), ["SAMEORIGIN"], "{parts:?}");
    assert_eq!(values("x-content-type-options"), ["nosniff"], "{parts:?}");
    assert_eq!(values("x-request-id").len(), 1, "{parts:?}");
    assert_ne!(values("x-request-id"), ["upstream-id"], "{parts:?}");
    assert!(values("server").is_empty(), "{parts:?}");
}

/// GUARD: a head whose `Connection` names another field takes the map path
/// (`RelayedHeaders::new` gives the lines back, src/proxy/client/h1/mod.rs appends them
/// to the response's map, `strip_hop_by_hop` removes the named field); that path must
/// still leave out a length sent beside `chunked` and the upstream's request id, on
/// the HTTP/1.1 loop and through hyper alike.
#[tokio::test]
async fn a_head_naming_fields_in_connection_loses_them_and_a_smuggled_length() {
    const NAMING: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\n\
        X-Secret: s3cr3t\r\nX-Kept: 1\r\nX-Request-Id: upstream-id\r\nContent-Length: 5\r\n\
        Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    for request in [
        &b"GET /pub/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"[..],
        b"GET /pub/x HTTP/1.0\r\nHost: a\r\n\r\n",
    ] {
        let answer = relayed_raw(NAMING, request).await;
        assert!(answer.contains(" 200 OK\r\n"), "{answer}");
        assert_eq!(named(&answer, "x-kept"), ["x-kept: 1"], "{answer}");
        assert!(!answer.contains("s3cr3t"), "{answer}");
        assert!(!answer.contains("upstream-id"), "{answer}");
        assert_eq!(named(&answer, "x-request-id").len(), 1, "{answer}");
        assert!(
            !named(&answer, "content-length").contains(&"content-length: 5".to_owned()),
            "{answer}"
        );
        assert!(answer.contains("ok"), "{answer}");
    }
}
