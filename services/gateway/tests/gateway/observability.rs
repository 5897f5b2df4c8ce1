//! What the gateway's data path does besides forwarding, as the kit's layers do for
//! every other service: per-route HTTP metrics, trace context and request ids, and
//! problem+json instead of an upstream's raw server error.

use http::StatusCode;
use serde_json::Value;

use crate::support::{Issuer, PUBLIC_ROUTES, TestGateway, echo_upstream, serve};

async fn metrics(gw: &TestGateway) -> String {
    reqwest::get(format!("{}/metrics", gw.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test]
async fn every_request_is_counted_by_route_method_and_status_in_the_metrics() {
    let issuer = Issuer::start(true).await;
    let (upstream, _) = echo_upstream().await;
    let gw = TestGateway::start(&issuer, PUBLIC_ROUTES, upstream, &[]).await;
    for _ in 0..3 {
        assert_eq!(gw.get("/pub/a", None).await.status(), StatusCode::OK);
    }
    assert_eq!(
        gw.get("/nowhere", None).await.status(),
        StatusCode::NOT_FOUND
    );

    let text = metrics(&gw).await;
    for line in [
        r#"tessera_http_server_requests_total{service="gateway",method="GET",route="public",status="200"} 3"#,
        r#"tessera_http_server_requests_total{service="gateway",method="GET",route="unmatched",status="404"} 1"#,
        r#"tessera_http_server_request_duration_seconds_count{service="gateway",method="GET",route="public"} 3"#,
        r#"tessera_http_server_in_flight_requests{service="gateway"} 0"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn upstream_failures_and_auth_refusals_are_counted_by_route() {
    const FAILING: &str = r"
version: 1
routes:
  - name: down
    match: { prefix: /down/ }
    upstreams: [http://{upstream}]
    auth: public
    retry: { attempts: 0 }
  - name: private
    match: { prefix: /private/ }
    upstreams: [http://{upstream}]
    auth: authenticated
";
    let issuer = Issuer::start(true).await;
    // A port nothing listens on: every attempt is refused.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let gw = TestGateway::start(&issuer, FAILING, closed, &[]).await;
    // Until the JWKS is loaded a protected route answers 503, not 401.
    gw.ready().await;
    for _ in 0..2 {
        assert_eq!(
            gw.get("/down/x", None).await.status(),
            StatusCode::BAD_GATEWAY
        );
    }
    assert_eq!(
        gw.get("/private/x", None).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let text = metrics(&gw).await;
    for line in [
        r#"tessera_gateway_upstream_errors_total{service="gateway",route="down",error="upstream_unavailable"} 2"#,
        r#"tessera_gateway_auth_rejected_total{service="gateway",route="private",reason="missing"} 1"#,
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}

#[tokio::test]
async fn a_caller_trace_continues_upstream_under_the_gateway_s_span_and_ids_are_made_when_missing()
{
    let issuer = Issuer::start(true).await;
    let (upstream, _) = echo_upstream().await;
    let gw = TestGateway::start(&issuer, PUBLIC_ROUTES, upstream, &[]).await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = gw
        .http
        .get(gw.url("/pub/a"))
        .header("traceparent", incoming)
        .send()
        .await
        .expect("send");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("text")
        .to_owned();
    let uuid = uuid::Uuid::parse_str(&request_id).expect("a generated UUID");
    assert_eq!(uuid.get_version_num(), 7);
    let seen: Value = response.json().await.expect("json");
    assert_eq!(seen["headers"]["x-request-id"], request_id.as_str());
    let sent = seen["headers"]["traceparent"]
        .as_str()
        .expect("traceparent");
    let parts: Vec<&str> = sent.split('-').collect();
    assert_eq!(parts.len(), 4, "{sent}");
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(parts[2], "00f067aa0ba902b7", "the gateway's own span");
    assert_eq!(parts[2].len(), 16);
    assert_eq!(parts[3], "01");
}

#[tokio::test]
async fn an_upstream_server_error_body_never_reaches_the_client() {
    let failing = axum::Router::new().fallback(|| async {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/html")],
            "<pre>panic at db.rs:42 password=hunter2</pre>",
        )
    });
    let upstream = serve(failing).await;
    let issuer = Issuer::start(true).await;
    let gw = TestGateway::start(&issuer, PUBLIC_ROUTES, upstream, &[]).await;
    let response = gw.get("/pub/a", None).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body = response.text().await.expect("body");
    assert!(!body.contains("hunter2"), "{body}");
}
