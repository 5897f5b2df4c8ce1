//! The audit chain: appends link by hash, duplicates are ignored, verification returns
//! the head, and records forged or changed in the table are detected.

use serde_json::{Value, json};

use crate::support::{Backend, TestLogging, on_both_backends};

fn event(id: &str, subject: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "/tessera/identity",
        "type": "dev.tessera.identity.token.issued.v1",
        "time": "2026-11-25T20:00:00Z",
        "subject": subject,
        "data": { "client_id": subject, "grant": "client_credentials" }
    })
}

async fn append(app: &TestLogging, body: &Value) -> Value {
    let response = app
        .http
        .post(app.url("/v1/audit/events"))
        .bearer_auth(&app.service_token)
        .json(body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 201);
    response.json().await.expect("json")
}

async fn verify(app: &TestLogging) -> Value {
    let response = app
        .http
        .get(app.url("/v1/audit/verify"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

on_both_backends! {
    async fn appended_events_form_a_chain_that_verifies_and_ignores_duplicates(backend: Backend) {
        let app = TestLogging::on(backend).await;
        let empty = verify(&app).await;
        assert_eq!(empty["valid"], true);
        assert_eq!(empty["records"], 0);

        let first = append(&app, &event("e-1", "alice")).await;
        let second = append(&app, &event("e-2", "bob")).await;
        assert_eq!(first["seq"], 1);
        assert_eq!(second["seq"], 2);
        let again = append(&app, &event("e-1", "alice")).await;
        assert_eq!(again["duplicate"], true);
        assert_eq!(again["seq"], 1);
        assert_eq!(again["hash"], first["hash"]);

        let verdict = verify(&app).await;
        assert_eq!(verdict["valid"], true, "{verdict}");
        assert_eq!(verdict["records"], 2);
        assert_eq!(verdict["head_seq"], 2);
        assert_eq!(verdict["head_hash"], second["hash"]);

        let listed: Value = app
            .http
            .get(app.url("/v1/audit/records?subject=bob"))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let records = listed["records"].as_array().expect("records");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0]["event_id"], "e-2");
        assert_eq!(records[0]["prev_hash"], first["hash"]);
    }
}

on_both_backends! {
    async fn a_record_forged_directly_in_the_table_is_reported_by_verify(backend: Backend) {
        let app = TestLogging::on(backend).await;
        append(&app, &event("e-1", "alice")).await;
        let second = append(&app, &event("e-2", "bob")).await;
        // Someone with database access appends a record linking to the real head but
        // with a hash they could not compute correctly without the canonical form...
        // or with a correct-looking link and a made-up hash: either is caught.
        let forged = "INSERT INTO audit_records (seq, event_id, event_time, source, event_type, \
            subject, data, received_at, prev_hash, hash) \
            VALUES (3, 'forged', '2026-11-25T20:00:00Z', '/tessera/identity', \
            'dev.tessera.identity.user.granted.v1', 'mallory', '{\"role\":\"admin\"}', 0, $1, $2)";
        let fake_hash = "ab".repeat(32);
        service_kit::with_pool!(app.state.database.pool(), |p| {
            sqlx::query(forged)
                .bind(second["hash"].as_str().expect("hash"))
                .bind(&fake_hash)
                .execute(p)
                .await
                .expect("direct insert");
        });
        let verdict = verify(&app).await;
        assert_eq!(verdict["valid"], false, "{verdict}");
        assert_eq!(verdict["first_invalid"]["seq"], 3);
        assert_eq!(verdict["first_invalid"]["event_id"], "forged");
        assert_eq!(verdict["first_invalid"]["reason"], "hash_mismatch");
    }
}

on_both_backends! {
    async fn stored_audit_records_cannot_be_updated_or_deleted(backend: Backend) {
        let app = TestLogging::on(backend).await;
        append(&app, &event("e-1", "alice")).await;
        let update = service_kit::with_pool!(app.state.database.pool(), |p| {
            sqlx::query("UPDATE audit_records SET subject = 'mallory'").execute(p).await.map(|_| ())
        });
        assert!(update.unwrap_err().to_string().contains("append-only"));
        let delete = service_kit::with_pool!(app.state.database.pool(), |p| {
            sqlx::query("DELETE FROM audit_records").execute(p).await.map(|_| ())
        });
        assert!(delete.unwrap_err().to_string().contains("append-only"));
        assert_eq!(verify(&app).await["valid"], true);
    }
}

#[tokio::test]
async fn invalid_audit_events_are_a_400() {
    let app = TestLogging::on(Backend::Sqlite).await;
    let mut bad = event("", "x");
    bad["id"] = json!("");
    let response = app
        .http
        .post(app.url("/v1/audit/events"))
        .bearer_auth(&app.service_token)
        .json(&bad)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["code"], "invalid_event");
}
