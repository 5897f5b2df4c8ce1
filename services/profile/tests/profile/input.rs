//! Bad input: every invalid field and missing credentials are refused with a problem
//! naming what is wrong, and nothing is stored.

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestStack, ada, on_both_backends};

async fn code_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let content_type = response.headers()[http::header::CONTENT_TYPE].clone();
    assert_eq!(content_type, "application/problem+json", "{status}");
    let problem: Value = response.json().await.expect("json");
    (
        status,
        problem["code"].as_str().unwrap_or_default().to_owned(),
    )
}

fn with(member: &str, value: Value) -> Value {
    let mut body = ada();
    body[member] = value;
    body
}

on_both_backends! {
    async fn invalid_fields_are_refused_with_their_code_and_nothing_is_stored(backend: Backend) {
        let stack = TestStack::on(backend).await;
        let (_, token) = stack.user("ada@example.com").await;
        let cases = [
            (with("locale", json!("english")), "invalid_locale"),
            (with("locale", json!("en-USA")), "invalid_locale"),
            (with("phone", json!("0791234567")), "invalid_phone"),
            (with("phone", json!("+1234")), "invalid_phone"),
            (with("display_name", json!("x".repeat(101))), "invalid_display_name"),
            (with("display_name", json!("   ")), "invalid_display_name"),
            (with("email", json!("not-an-address")), "invalid_email"),
        ];
        for (body, code) in cases {
            let (status, got) = code_of(stack.create(&token, &body).await).await;
            assert_eq!((status, got.as_str()), (StatusCode::BAD_REQUEST, code), "{body}");
        }
        let (status, code) = code_of(stack.create(&token, &with("nickname", json!("x"))).await).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"));
        let (status, code) = code_of(stack.get(&token, "/v1/profiles/me").await).await;
        assert_eq!((status, code.as_str()), (StatusCode::NOT_FOUND, "profile_not_found"));
        assert!(stack.outbox().await.is_empty(), "no event for a refused profile");

        assert_eq!(stack.create(&token, &ada()).await.status(), StatusCode::CREATED);
        for (change, expected) in [
            (json!({ "locale": "x" }), "invalid_locale"),
            (json!({ "phone": "12" }), "invalid_phone"),
            (json!({ "display_name": "y".repeat(101) }), "invalid_display_name"),
        ] {
            let (status, code) = code_of(stack.patch(&token, &change).await).await;
            assert_eq!((status, code.as_str()), (StatusCode::BAD_REQUEST, expected), "{change}");
        }
        let me: Value = stack.get(&token, "/v1/profiles/me").await.json().await.expect("json");
        assert_eq!(me["locale"], "en-GB", "refused changes leave the profile as it was");
    }

    async fn requests_without_a_valid_token_are_refused(backend: Backend) {
        let stack = TestStack::on(backend).await;
        let missing = stack
            .http
            .post(stack.url("/v1/profiles"))
            .json(&ada())
            .send()
            .await
            .expect("send");
        assert_eq!(missing.headers()[http::header::WWW_AUTHENTICATE], "Bearer");
        let (status, code) = code_of(missing).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "missing_token"));

        let forged = stack.get("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "/v1/profiles/me").await;
        let (status, code) = code_of(forged).await;
        assert_eq!((status, code.as_str()), (StatusCode::UNAUTHORIZED, "invalid_token"));
        assert!(stack.outbox().await.is_empty());
    }
}
