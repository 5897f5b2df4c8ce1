//! The profile life cycle: create, read, change; who may read whose profile; the
//! `user.created` event written with the profile.

use http::StatusCode;
use serde_json::{Value, json};

use crate::support::{PLAIN_CLIENT, SERVICE_CLIENT, TestStack, ada, on_both_backends};

on_both_backends! {
    async fn a_user_creates_reads_and_changes_their_profile(backend: Backend) {
        let stack = TestStack::on(backend).await;
        let (user_id, token) = stack.user("ada@example.com").await;

        let created = stack.create(&token, &ada()).await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let created: Value = created.json().await.expect("json");
        assert_eq!(created["user_id"], user_id.as_str());
        assert_eq!(created["email"], "Ada@example.com");
        assert_eq!(created["locale"], "en-GB");
        assert_eq!(created["phone"], "+442079460958");
        assert_eq!(created["preferences"], json!({ "email": true, "sms": true, "push": true }));

        let me: Value = stack.get(&token, "/v1/profiles/me").await.json().await.expect("json");
        assert_eq!(me, created);

        let changed = stack
            .patch(&token, &json!({ "locale": "de-CH", "phone": null, "preferences": { "sms": false } }))
            .await;
        assert_eq!(changed.status(), StatusCode::OK);
        let changed: Value = changed.json().await.expect("json");
        assert_eq!(changed["locale"], "de-CH");
        assert!(changed.get("phone").is_none(), "phone removed: {changed}");
        assert_eq!(changed["preferences"], json!({ "email": true, "sms": false, "push": true }));
        assert_eq!(changed["display_name"], "Ada Lovelace", "untouched members stay");

        let again: Value = stack
            .get(&token, &format!("/v1/profiles/{user_id}"))
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(again, changed, "the change is stored");
    }

    async fn creating_a_profile_writes_one_user_created_event_in_the_outbox(backend: Backend) {
        let stack = TestStack::on(backend).await;
        let (user_id, token) = stack.user("ada@example.com").await;
        let mut no_sms = ada();
        no_sms["preferences"] = json!({ "sms": false });
        assert_eq!(stack.create(&token, &no_sms).await.status(), StatusCode::CREATED);
        assert_eq!(stack.create(&token, &ada()).await.status(), StatusCode::CONFLICT);
        assert_eq!(
            stack.patch(&token, &json!({ "display_name": "Ada" })).await.status(),
            StatusCode::OK
        );

        let events = stack.outbox().await;
        assert_eq!(events.len(), 1, "one event for one profile: {events:?}");
        let (subject, event) = &events[0];
        assert_eq!(subject, "tessera.events.profile.user.created");
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["type"], "dev.tessera.profile.user.created.v1");
        assert_eq!(event["source"], "/tessera/profile");
        assert_eq!(event["subject"], user_id.as_str());
        assert_eq!(event["data"]["email"], "Ada@example.com");
        assert_eq!(event["data"]["locale"], "en-GB");
        assert_eq!(event["data"]["display_name"], "Ada Lovelace");
        assert_eq!(event["data"]["phone"], "+442079460958");
        // The preferences as created: notification reuses them instead of a lookup.
        assert_eq!(
            event["data"]["preferences"],
            json!({ "email": true, "sms": false, "push": true })
        );
        let id = event["id"].as_str().expect("id");
        assert_eq!(uuid::Uuid::parse_str(id).expect("uuid").get_version_num(), 7);
    }

    async fn a_service_reads_any_profile_but_a_user_or_plain_client_cannot(backend: Backend) {
        let stack = TestStack::on(backend).await;
        let (ada_id, ada_token) = stack.user("ada@example.com").await;
        let (_, bob_token) = stack.user("bob@example.com").await;
        assert_eq!(stack.create(&ada_token, &ada()).await.status(), StatusCode::CREATED);
        let path = format!("/v1/profiles/{ada_id}");

        let by_bob = stack.get(&bob_token, &path).await;
        assert_eq!(by_bob.status(), StatusCode::FORBIDDEN);
        let problem: Value = by_bob.json().await.expect("json");
        assert_eq!(problem["code"], "forbidden");
        // Unknown users answer the same, so Bob cannot probe who has a profile.
        assert_eq!(
            stack.get(&bob_token, "/v1/profiles/no-such-user").await.status(),
            StatusCode::FORBIDDEN
        );

        let plain = stack.service_token(PLAIN_CLIENT).await;
        assert_eq!(stack.get(&plain, &path).await.status(), StatusCode::FORBIDDEN);

        let service = stack.service_token(SERVICE_CLIENT).await;
        let read = stack.get(&service, &path).await;
        assert_eq!(read.status(), StatusCode::OK);
        let read: Value = read.json().await.expect("json");
        assert_eq!(read["display_name"], "Ada Lovelace");
        let missing = stack.get(&service, "/v1/profiles/no-such-user").await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        let problem: Value = missing.json().await.expect("json");
        assert_eq!(problem["code"], "profile_not_found");

        let own = stack.create(&service, &ada()).await;
        assert_eq!(own.status(), StatusCode::FORBIDDEN, "a service client has no profile");
    }
}
