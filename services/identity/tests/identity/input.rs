//! Bad input gets a 4xx problem naming what is wrong, never a 500.

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::{Backend, Options, PASSWORD, TestIdentity};

async fn problem(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{status}"
    );
    (status, response.json().await.expect("json"))
}

#[tokio::test]
async fn malformed_json_wrong_content_type_and_oversized_bodies_are_4xx_problems() {
    let app = TestIdentity::start(Options {
        args: &["--max-body-bytes", "2048"],
        ..Options::default()
    })
    .await;
    let post = |body: String, content_type: &'static str| {
        app.http
            .post(app.url("/v1/signup"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (status, body) = problem(
        post("{\"email\":".into(), "application/json")
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    let (status, _) = problem(
        post("email=a".into(), "application/x-www-form-urlencoded")
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = json!({ "email": "a@example.com", "password": "x".repeat(10_000) }).to_string();
    let (status, _) = problem(post(huge, "application/json").await.expect("send")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, body) = problem(
        post("{\"email\": 5}".into(), "application/json")
            .await
            .expect("send"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_body"))
    );
}

#[tokio::test]
async fn weak_passwords_are_refused_with_the_rule_they_break() {
    let app = TestIdentity::on(Backend::Sqlite).await;
    for (password, rule) in [
        ("short pw", "min_length"),
        ("Q1W2E3R4T5Y6", "common_password"),
    ] {
        let response = app
            .post_json(
                "/v1/signup",
                &json!({ "email": "kim@example.com", "password": password }),
            )
            .await;
        let (status, body) = problem(response).await;
        assert_eq!(
            (status, body["code"].as_str(), body["rule"].as_str()),
            (StatusCode::BAD_REQUEST, Some("weak_password"), Some(rule))
        );
    }
}

#[tokio::test]
async fn a_duplicate_signup_is_409_and_an_invalid_email_400() {
    let app = TestIdentity::on(Backend::Sqlite).await;
    assert_eq!(
        app.signup("lee@example.com").await.status(),
        StatusCode::CREATED
    );
    let (status, body) = problem(app.signup("LEE@example.com").await).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("email_taken"))
    );
    assert!(
        body.get("id").is_none() && body.get("user_id").is_none(),
        "the conflict must not reveal the account: {body}"
    );
    let bad = app
        .post_json(
            "/v1/signup",
            &json!({ "email": "not-an-email", "password": PASSWORD }),
        )
        .await;
    let (status, body) = problem(bad).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_email"))
    );
}

#[tokio::test]
async fn the_current_user_needs_a_valid_bearer_token() {
    let app = TestIdentity::on(Backend::Sqlite).await;
    let none = app.http.get(app.url("/v1/me")).send().await.expect("send");
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert!(none.headers().contains_key("www-authenticate"));
    assert_eq!(app.me("not.a.jwt").await.status(), StatusCode::UNAUTHORIZED);
}
