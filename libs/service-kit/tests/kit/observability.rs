//! Request ids, W3C trace context and metrics, as a caller and a scraper see them.

use http::StatusCode;

use crate::app::{Seen, TestApp};

async fn seen(app: &TestApp, headers: &[(&str, &str)]) -> (Option<String>, Seen) {
    let mut request = app.http.get(app.url("/context"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("send");
    let echoed = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().expect("ascii").to_owned());
    (echoed, response.json().await.expect("json"))
}

#[tokio::test]
async fn a_request_without_an_id_gets_a_fresh_uuid_echoed_in_the_response() {
    let (app, _dir) = TestApp::sqlite().await;
    let (echoed, seen_a) = seen(&app, &[]).await;
    let (_, seen_b) = seen(&app, &[]).await;
    let id = echoed.expect("x-request-id on the response");
    assert_eq!(id, seen_a.request_id);
    assert_eq!(
        uuid::Uuid::parse_str(&id)
            .expect("a uuid")
            .get_version_num(),
        7
    );
    assert_ne!(seen_a.request_id, seen_b.request_id);
}

#[tokio::test]
async fn a_callers_request_id_is_kept_and_a_hostile_one_replaced() {
    let (app, _dir) = TestApp::sqlite().await;
    let (echoed, seen_ok) = seen(&app, &[("x-request-id", "edge-7f3a.01")]).await;
    assert_eq!(
        (echoed.as_deref(), seen_ok.request_id.as_str()),
        (Some("edge-7f3a.01"), "edge-7f3a.01")
    );

    let long = "a".repeat(500);
    for hostile in ["<script>alert(1)</script>", "id with spaces", long.as_str()] {
        let (echoed, seen) = seen(&app, &[("x-request-id", hostile)]).await;
        assert_ne!(seen.request_id, hostile);
        assert!(uuid::Uuid::parse_str(&seen.request_id).is_ok());
        assert_eq!(echoed, Some(seen.request_id));
    }
}

#[tokio::test]
async fn an_incoming_traceparent_is_continued_with_a_new_span() {
    let (app, _dir) = TestApp::sqlite().await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (_, seen) = seen(&app, &[("traceparent", incoming)]).await;
    assert_eq!(seen.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(seen.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
    let parts: Vec<&str> = seen.outgoing_traceparent.split('-').collect();
    assert_eq!(parts[..2], ["00", "4bf92f3577b34da6a3ce929d0e0e4736"]);
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "the callee must see our span as its parent"
    );
}

#[tokio::test]
async fn without_a_valid_traceparent_each_request_starts_its_own_trace() {
    let (app, _dir) = TestApp::sqlite().await;
    let (_, first) = seen(&app, &[("traceparent", "garbage")]).await;
    let (_, second) = seen(&app, &[]).await;
    assert_eq!(first.parent_span_id, None);
    assert_eq!(first.trace_id.len(), 32);
    assert_ne!(first.trace_id, second.trace_id);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_in_prometheus_text() {
    let (app, _dir) = TestApp::sqlite().await;
    app.ready().await;
    let created = app
        .http
        .post(app.url("/notes"))
        .json(&serde_json::json!({ "text": "m" }))
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), StatusCode::CREATED);
    let _ = app
        .http
        .get(app.url("/no/such/path/123"))
        .send()
        .await
        .expect("get");

    let response = app
        .http
        .get(app.admin_url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.expect("body");
    let created_line = text
        .lines()
        .find(|l| {
            l.starts_with("tessera_http_server_requests_total{")
                && l.contains("route=\"/notes\"")
                && l.contains("status=\"201\"")
        })
        .unwrap_or_else(|| panic!("no counter for POST /notes in:\n{text}"));
    assert!(created_line.ends_with(" 1"), "{created_line}");
    assert!(
        created_line.contains("service=\"kit-test\""),
        "{created_line}"
    );
    assert!(
        text.contains("route=\"unmatched\""),
        "unmatched paths must share one label"
    );
    assert!(
        !text.contains("/no/such/path/123"),
        "raw paths must not become labels"
    );
    assert!(text.contains("tessera_http_server_request_duration_seconds_bucket{"));
}
