//! Every error a client sees is `application/problem+json`; server errors reveal nothing.

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;
use service_kit::{DatabaseUrl, HttpSettings};

use crate::app::TestApp;

async fn problem(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response.headers()[http::header::CONTENT_TYPE].clone();
    assert_eq!(content_type, "application/problem+json", "status {status}");
    (status, response.json().await.expect("problem body"))
}

fn json_post(app: &TestApp, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    app.http
        .post(app.url("/notes"))
        .header("content-type", "application/json")
        .body(body)
}

#[tokio::test]
async fn malformed_json_is_a_400_problem_naming_the_syntax_error() {
    let (app, _dir) = TestApp::sqlite().await;
    let (status, body) = problem(json_post(&app, "{\"text\": ").send().await.expect("send")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_json");
    assert_eq!(body["status"], 400);
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_a_422_problem() {
    let (app, _dir) = TestApp::sqlite().await;
    let (status, body) = problem(json_post(&app, "{\"txt\": 1}").send().await.expect("send")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], "invalid_body");
}

#[tokio::test]
async fn a_body_without_json_content_type_is_a_415_problem() {
    let (app, _dir) = TestApp::sqlite().await;
    let response = app
        .http
        .post(app.url("/notes"))
        .header("content-type", "text/plain")
        .body("{\"text\":\"hi\"}")
        .send()
        .await
        .expect("send");
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["code"], "unsupported_media_type");
}

#[tokio::test]
async fn an_oversized_body_is_a_413_problem_with_or_without_content_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = HttpSettings {
        max_body_bytes: 1024,
        ..HttpSettings::default()
    };
    let app = TestApp::spawn(DatabaseUrl::sqlite(dir.path().join("a.db")), settings).await;
    app.ready().await;
    let big = format!("{{\"text\": \"{}\"}}", "x".repeat(4096));

    let (status, body) = problem(json_post(&app, big.clone()).send().await.expect("send")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );

    // Chunked: no Content-Length to check up front; the limit applies while reading.
    let stream = futures_util::stream::iter(
        big.into_bytes()
            .chunks(512)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = json_post(&app, reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("send");
    let (status, _) = problem(response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // A body within the limit still works.
    let ok = json_post(&app, "{\"text\":\"small\"}")
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_problems() {
    let (app, _dir) = TestApp::sqlite().await;
    let (status, body) = problem(app.http.get(app.url("/nope")).send().await.expect("send")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, body) = problem(
        app.http
            .delete(app.url("/notes"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
}

#[tokio::test]
async fn an_unparseable_query_string_is_a_400_problem_naming_it() {
    let (app, _dir) = TestApp::sqlite().await;
    let response = app
        .http
        .get(app.url("/sleep?ms=soon"))
        .send()
        .await
        .expect("send");
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains("ms")),
        "{body}"
    );
}

#[tokio::test]
async fn a_rule_broken_in_a_handler_is_a_problem_with_its_own_code() {
    let (app, _dir) = TestApp::sqlite().await;
    let (status, body) = problem(
        json_post(&app, "{\"text\":\"  \"}")
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("empty_text"))
    );
}

#[tokio::test]
async fn a_panicking_handler_is_an_opaque_500_and_the_service_keeps_serving() {
    let (app, _dir) = TestApp::sqlite().await;
    app.ready().await;
    let response = app.http.get(app.url("/panic")).send().await.expect("send");
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["code"], "internal_error");
    assert!(!body.to_string().contains("secret"), "{body}");
    let after = app.http.get(app.url("/notes")).send().await.expect("send");
    assert_eq!(after.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_request_over_the_timeout_is_a_503_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = HttpSettings {
        request_timeout: Duration::from_millis(200),
        ..HttpSettings::default()
    };
    let app = TestApp::spawn(DatabaseUrl::sqlite(dir.path().join("a.db")), settings).await;
    let response = app
        .http
        .get(app.url("/sleep?ms=5000"))
        .send()
        .await
        .expect("send");
    let (status, body) = problem(response).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
    );
}
