//! The request API: idempotency keys, preferences and the `critical` flag, who may ask
//! and who may read.

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::{Stack, on_both_backends, profile};

const WITHIN: Duration = Duration::from_secs(30);

async fn request(stack: &Stack, token: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = stack
        .http
        .post(format!("{}/v1/notifications", stack.notification))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.expect("send")
}

async fn status_of(stack: &Stack, token: &str, id: &str) -> Value {
    stack
        .http
        .get(format!("{}/v1/notifications/{id}", stack.notification))
        .bearer_auth(token)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

on_both_backends! {
    async fn a_repeated_idempotency_key_answers_the_original_or_422_for_another_body(backend: Backend) {
        let stack = Stack::on(backend).await;
        let (user_id, _) = stack
            .user_with_profile("ada@example.com", &profile("Ada", "ada@example.com", "en", Some("+41791234567"), true))
            .await;
        stack.mails(1, WITHIN).await; // the welcome email
        let token = stack.service_token().await;
        let body = json!({ "user_id": user_id, "template": "welcome", "channels": ["email"], "data": { "a": 1, "b": 2 } });

        let first = request(&stack, &token, Some("key-1"), &body).await;
        assert_eq!(first.status(), StatusCode::ACCEPTED);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first: Value = first.json().await.expect("json");

        let reordered = json!({ "data": { "b": 2, "a": 1 }, "channels": ["email"], "template": "welcome", "user_id": user_id });
        let again = request(&stack, &token, Some("key-1"), &reordered).await;
        assert_eq!(again.status(), StatusCode::ACCEPTED);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let again: Value = again.json().await.expect("json");
        assert_eq!(again["id"], first["id"], "the original notification");

        let different = json!({ "user_id": user_id, "template": "welcome", "channels": ["sms"] });
        let refused = request(&stack, &token, Some("key-1"), &different).await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let problem: Value = refused.json().await.expect("json");
        assert_eq!(problem["code"], "idempotency_key_reused");

        let id = first["id"].as_str().expect("id").to_owned();
        let done = testkit::eventually(WITHIN, "the requested email delivered", || async {
            let status = status_of(&stack, &token, &id).await;
            (status["status"] == "delivered").then_some(status)
        })
        .await;
        assert_eq!(done["jobs"][0]["history"][0]["outcome"], "delivered");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(stack.smtp.messages().len(), 2, "welcome + one requested email, not two");
        assert!(stack.sms.requests().len() <= 1, "only the welcome SMS, never the refused request");
    }

    async fn preferences_are_respected_unless_the_notification_is_critical(backend: Backend) {
        let stack = Stack::on(backend).await;
        let (user_id, user_token) = stack
            .user_with_profile("ada@example.com", &profile("Ada", "ada@example.com", "en", Some("+41791234567"), false))
            .await;
        stack.mails(1, WITHIN).await;
        let token = stack.service_token().await;
        let plain = request(&stack, &token, None, &json!({ "user_id": user_id, "template": "welcome", "channels": ["sms"] })).await;
        assert_eq!(plain.status(), StatusCode::ACCEPTED);
        let plain: Value = plain.json().await.expect("json");
        let id = plain["id"].as_str().expect("id").to_owned();
        let skipped = testkit::eventually(WITHIN, "the SMS job to finish", || async {
            let status = status_of(&stack, &token, &id).await;
            (status["jobs"][0]["status"] != "pending" && status["jobs"][0]["status"] != "sending").then_some(status)
        })
        .await;
        assert_eq!(skipped["jobs"][0]["status"], "skipped", "{skipped}");
        assert!(stack.sms.requests().is_empty(), "SMS is off for Ada");

        let critical = request(
            &stack, &token, None,
            &json!({ "user_id": user_id, "template": "welcome", "channels": ["sms"], "critical": true }),
        ).await;
        assert_eq!(critical.status(), StatusCode::ACCEPTED);
        testkit::eventually(WITHIN, "the critical SMS", || async {
            (!stack.sms.requests().is_empty()).then_some(())
        })
        .await;
        assert_eq!(stack.sms.requests()[0].body["to"], "+41791234567");

        // Ada may read notifications addressed to her; requesting one needs the service role.
        let own = status_of(&stack, &user_token, &id).await;
        assert_eq!(own["id"], id.as_str());
        let forbidden = request(&stack, &user_token, None, &json!({ "user_id": user_id, "template": "welcome", "channels": ["email"] })).await;
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    }

    async fn bad_requests_are_refused_with_their_code(backend: Backend) {
        let stack = Stack::on(backend).await;
        let token = stack.service_token().await;
        for (body, key, status, code) in [
            (json!({ "user_id": "u", "template": "nosuch", "channels": ["email"] }), None, StatusCode::BAD_REQUEST, "unknown_template"),
            (json!({ "user_id": "u", "template": "welcome", "channels": [] }), None, StatusCode::BAD_REQUEST, "invalid_channels"),
            (json!({ "user_id": "u", "template": "welcome", "channels": ["push"] }), None, StatusCode::BAD_REQUEST, "channel_unavailable"),
            (json!({ "user_id": "u", "template": "welcome", "channels": ["email"] }), Some("bad key"), StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
            (json!({ "user_id": "u", "channels": ["email"] }), None, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ] {
            let response = request(&stack, &token, key, &body).await;
            assert_eq!(response.status(), status, "{body}");
            let problem: Value = response.json().await.expect("json");
            assert_eq!(problem["code"], code, "{body}");
        }
        let anonymous = stack
            .http
            .post(format!("{}/v1/notifications", stack.notification))
            .json(&json!({}))
            .send()
            .await
            .expect("send");
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        let missing = stack
            .http
            .get(format!("{}/v1/notifications/nope", stack.notification))
            .bearer_auth(&token)
            .send()
            .await
            .expect("send");
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }
}
