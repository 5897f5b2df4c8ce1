//! The gateway as clients meet it: routing, authentication, throttling, hostile input,
//! hot reload.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use crate::support::{Issuer, TestGateway, code, echo_upstream};

const ROUTES: &str = r#"
version: 1
routes:
  - name: public
    match: { prefix: /pub/ }
    rewrite_prefix: /
    upstreams: [http://{upstream}]
    auth: public
    max_body_bytes: 1024
    cors: { allowed_origins: ["https://app.example.com"], max_age_secs: 60 }
  - name: me
    match: { prefix: /me }
    upstreams: [http://{upstream}]
    auth: authenticated
    rate_limit: { name: me, requests: 3, period_secs: 60, burst: 3 }
  - name: admin
    match: { prefix: /admin }
    upstreams: [http://{upstream}]
    auth: { roles: [admin] }
"#;

async fn gateway() -> (
    Issuer,
    TestGateway,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let issuer = Issuer::start(true).await;
    let (upstream, hits) = echo_upstream().await;
    let gateway = TestGateway::start(&issuer, ROUTES, upstream, &[]).await;
    gateway.ready().await;
    (issuer, gateway, hits)
}

#[tokio::test]
async fn a_public_route_forwards_with_the_prefix_rewritten_and_a_request_id() {
    let (_issuer, gw, _) = gateway().await;
    let response = gw
        .http
        .get(gw.url("/pub/items/7?x=1"))
        .header("x-request-id", "client-id-1")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-request-id"], "client-id-1");
    let seen: Value = response.json().await.expect("json");
    assert_eq!(
        (seen["path"].as_str(), seen["query"].as_str()),
        (Some("/items/7"), Some("x=1"))
    );
    assert_eq!(seen["headers"]["x-request-id"], "client-id-1");
    assert!(
        seen["headers"]["traceparent"]
            .as_str()
            .is_some_and(|t| t.starts_with("00-"))
    );
    assert!(
        seen["headers"]["x-forwarded-for"]
            .as_str()
            .is_some_and(|f| f.contains("127.0.0.1"))
    );
    assert_eq!(
        code(gw.get("/nowhere", None).await).await,
        (StatusCode::NOT_FOUND, "no_route".into())
    );
}

#[tokio::test]
async fn protected_routes_need_a_valid_token_and_the_right_role() {
    let (issuer, gw, hits) = gateway().await;
    let missing = gw.get("/me", None).await;
    assert!(missing.headers().contains_key("www-authenticate"));
    assert_eq!(code(missing).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        code(gw.get("/me", Some("not.a.token")).await).await.0,
        StatusCode::UNAUTHORIZED
    );
    let mut tampered = issuer.token("ada", &["user"]);
    tampered.pop();
    assert_eq!(
        code(gw.get("/me", Some(&tampered)).await).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "refused requests must not reach the upstream"
    );

    let token = issuer.token("ada", &["user"]);
    let ok = gw.get("/me", Some(&token)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let seen: Value = ok.json().await.expect("json");
    assert_eq!(
        seen["headers"]["authorization"],
        format!("Bearer {token}"),
        "upstreams verify the token too"
    );
    assert_eq!(
        code(gw.get("/admin", Some(&token)).await).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    assert_eq!(
        gw.get("/admin", Some(&issuer.token("root", &["admin"])))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn until_the_first_jwks_load_protected_routes_answer_503_not_401() {
    let issuer = Issuer::start(false).await;
    let (upstream, _) = echo_upstream().await;
    let gw = TestGateway::start(&issuer, ROUTES, upstream, &[]).await;
    let token = issuer.token("ada", &["user"]);
    let early = gw.get("/me", Some(&token)).await;
    assert!(early.headers().contains_key("retry-after"));
    assert_eq!(
        code(early).await,
        (StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable".into())
    );
    assert_eq!(
        gw.get("/pub/x", None).await.status(),
        StatusCode::OK,
        "public routes work meanwhile"
    );
    issuer.publishing.store(true, Ordering::SeqCst);
    gw.ready().await;
    assert_eq!(gw.get("/me", Some(&token)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn two_credentials_are_refused_as_token_smuggling() {
    let (issuer, gw, _) = gateway().await;
    let (a, b) = (issuer.token("ada", &[]), issuer.token("bob", &[]));
    let two_headers = gw
        .http
        .get(gw.url("/me"))
        .header("authorization", format!("Bearer {a}"))
        .header("authorization", format!("Bearer {b}"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        code(two_headers).await,
        (StatusCode::BAD_REQUEST, "multiple_credentials".into())
    );
    let header_and_query = gw
        .http
        .get(gw.url(&format!("/me?access_token={b}")))
        .bearer_auth(&a)
        .send()
        .await
        .expect("send");
    assert_eq!(code(header_and_query).await.1, "multiple_credentials");
}

#[tokio::test]
async fn identity_headers_invented_by_clients_never_reach_upstreams() {
    let (issuer, gw, _) = gateway().await;
    let response = gw
        .http
        .get(gw.url("/me"))
        .bearer_auth(issuer.token("ada", &["user"]))
        .header("x-user-id", "root")
        .header("x-user-roles", "admin")
        .header("x-tessera-subject", "root")
        .send()
        .await
        .expect("send");
    let seen: Value = response.json().await.expect("json");
    let headers = seen["headers"].as_object().expect("headers");
    assert!(
        !headers
            .keys()
            .any(|k| k.starts_with("x-user") || k.starts_with("x-tessera")),
        "{headers:?}"
    );
}

#[tokio::test]
async fn a_client_over_its_budget_gets_429_with_rate_limit_headers_and_others_are_unaffected() {
    let (issuer, gw, _) = gateway().await;
    let ada = issuer.token("ada", &["user"]);
    for _ in 0..3 {
        let ok = gw.get("/me", Some(&ada)).await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(
            ok.headers().contains_key("ratelimit-policy") && ok.headers().contains_key("ratelimit")
        );
    }
    let refused = gw.get("/me", Some(&ada)).await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        code(refused).await,
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".into())
    );
    // Spoofed X-Forwarded-For from an untrusted peer changes nothing.
    let spoofed = gw
        .http
        .get(gw.url("/me"))
        .bearer_auth(&ada)
        .header("x-forwarded-for", "9.9.9.9")
        .send()
        .await
        .expect("send");
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        gw.get("/me", Some(&issuer.token("bob", &["user"])))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn hostile_paths_and_oversized_bodies_are_refused_before_the_upstream() {
    let (_issuer, gw, hits) = gateway().await;
    // Sent raw: HTTP clients (reqwest included) normalise dot segments before sending,
    // attackers do not.
    for path in [
        "/pub/../admin",
        "/pub/./x",
        "/pub/%2e%2e/admin",
        "/pub/a%2fb",
    ] {
        let status_line = raw_get(&gw.base, path).await;
        assert!(
            status_line.starts_with("HTTP/1.1 400"),
            "{path}: {status_line}"
        );
    }
    let big = gw
        .http
        .post(gw.url("/pub/upload"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .expect("send");
    assert_eq!(code(big).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn cors_preflights_are_answered_for_allowed_origins_only() {
    let (_issuer, gw, hits) = gateway().await;
    let preflight = |origin: &'static str| {
        gw.http
            .request(http::Method::OPTIONS, gw.url("/pub/x"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.expect("send");
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(allowed.headers()["access-control-max-age"], "60");
    let other = preflight("https://evil.example").await.expect("send");
    assert!(!other.headers().contains_key("access-control-allow-origin"));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "preflights are answered by the gateway"
    );
}

#[tokio::test]
async fn a_changed_routes_file_is_swapped_in_without_failing_requests_and_a_bad_one_is_ignored() {
    let (_issuer, gw, _) = gateway().await;
    assert_eq!(gw.get("/new/x", None).await.status(), StatusCode::NOT_FOUND);
    let load = {
        let (http, url) = (gw.http.clone(), gw.url("/pub/steady"));
        tokio::spawn(async move {
            let mut failures = 0;
            for _ in 0..300 {
                if http
                    .get(&url)
                    .send()
                    .await
                    .map_or(true, |r| r.status() != StatusCode::OK)
                {
                    failures += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failures
        })
    };
    let current = std::fs::read_to_string(&gw.routes_file).expect("read");
    let upstream = current
        .lines()
        .find(|l| l.contains("upstreams"))
        .expect("upstream line")
        .to_owned();
    let extended = format!(
        "{current}  - name: new\n    match: {{ prefix: /new/ }}\n{upstream}\n    auth: public\n"
    );
    std::fs::write(&gw.routes_file, &extended).expect("write");
    // The file is polled every second; a loaded machine gets generous slack.
    testkit::eventually(Duration::from_secs(20), "the new route", || async {
        (gw.get("/new/x", None).await.status() == StatusCode::OK).then_some(())
    })
    .await;
    std::fs::write(&gw.routes_file, "version: 1\nroutes: [ {").expect("write");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        gw.get("/new/x", None).await.status(),
        StatusCode::OK,
        "a broken file must not drop routes"
    );
    assert_eq!(
        load.await.expect("join"),
        0,
        "requests failed during the reload"
    );
}

/// Sends `GET <path>` byte for byte and returns the status line.
async fn raw_get(base: &str, path: &str) -> String {
    let addr = base.trim_start_matches("http://");
    raw(
        base,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Sends `request` byte for byte and returns the status line.
async fn raw(base: &str, request: &str) -> String {
    raw_full(base, request)
        .await
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Sends `request` byte for byte and returns the whole answer.
async fn raw_full(base: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn conflicting_framing_never_reaches_the_upstream_and_oversized_headers_get_431() {
    let (_issuer, gw, hits) = gateway().await;
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let conflicting = format!(
        "POST /pub/x HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
    );
    // RFC 9112 §6.3 allows a server to take Transfer-Encoding and drop the length; the
    // gateway refuses such a request instead: it is how requests are smuggled past a
    // proxy that reads the other framing.
    let answer = raw_full(&gw.base, &conflicting).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let lowered = answer.to_ascii_lowercase();
    assert!(lowered.contains("connection: close"), "{answer}");
    assert!(
        lowered.contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert!(
        answer.contains("\"code\":\"conflicting_framing\""),
        "{answer}"
    );
    let disagreeing = format!(
        "POST /pub/x HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"
    );
    let status = raw(&gw.base, &disagreeing).await;
    assert!(
        status.starts_with("HTTP/1.1 400"),
        "disagreeing lengths: {status}"
    );
    let huge = format!(
        "GET /pub/x HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let status = raw(&gw.base, &huge).await;
    assert!(
        status.starts_with("HTTP/1.1 431"),
        "oversized headers: {status}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "a refused request reached the upstream"
    );
}

#[tokio::test]
async fn an_expired_token_gets_401_with_a_bearer_challenge() {
    let (issuer, gw, _) = gateway().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = tessera_auth::AccessClaims {
        iss: crate::support::ISSUER.to_owned(),
        sub: "ada".to_owned(),
        aud: tessera_auth::Audience(vec!["tessera".to_owned()]),
        exp: now - 3600,
        iat: now - 7200,
        nbf: now - 7200,
        jti: "expired".to_owned(),
        roles: vec![],
        client_id: None,
    };
    let expired = issuer.key.sign(&claims).expect("sign");
    let response = gw.get("/me", Some(&expired)).await;
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(
        code(response).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );
}

#[tokio::test]
async fn a_refused_upstream_is_502_and_a_slow_one_504_as_problems() {
    let issuer = Issuer::start(true).await;
    let slow = crate::support::serve(axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "late"
    }))
    .await;
    let routes = format!(
        "version: 1\nroutes:\n  - name: down\n    match: {{ prefix: /down/ }}\n    upstreams: [http://127.0.0.1:1]\n    auth: public\n    retry: {{ attempts: 0, budget_ratio: 0.2 }}\n  - name: slow\n    match: {{ prefix: /slow/ }}\n    upstreams: [http://{slow}]\n    auth: public\n    timeouts: {{ connect_ms: 500, first_byte_ms: 300, total_ms: 1000 }}\n"
    );
    let (unused, _) = echo_upstream().await;
    let gw = TestGateway::start(&issuer, &routes, unused, &[]).await;
    assert_eq!(
        code(gw.get("/down/x", None).await).await.0,
        StatusCode::BAD_GATEWAY
    );
    let started = std::time::Instant::now();
    let (status, _) = code(gw.get("/slow/x", None).await).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn answers_carry_security_headers_and_no_upstream_software_banner() {
    // An upstream naming its software and choosing its own framing policy.
    let upstream = crate::support::serve(axum::Router::new().fallback(|| async {
        (
            [
                ("server", "Werkzeug/2.0.1 Python/3.8"),
                ("x-powered-by", "Express"),
                ("x-frame-options", "SAMEORIGIN"),
            ],
            "hello",
        )
    }))
    .await;
    let issuer = Issuer::start(true).await;
    let gw = TestGateway::start(&issuer, ROUTES, upstream, &[]).await;

    let relayed = gw.get("/pub/x", None).await;
    assert_eq!(relayed.status(), StatusCode::OK);
    let headers = relayed.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    // The upstream's own choice wins over the default.
    assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
    assert!(headers.get("server").is_none(), "{headers:?}");
    assert!(headers.get("x-powered-by").is_none(), "{headers:?}");

    // The gateway's own answers too.
    let refused = gw.get("/nowhere", None).await;
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);
    assert_eq!(refused.headers()["x-content-type-options"], "nosniff");
    assert_eq!(refused.headers()["x-frame-options"], "DENY");
}
