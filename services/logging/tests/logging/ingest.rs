//! OTLP ingestion: protobuf and JSON (gzip) bodies are stored and found; service tokens
//! are required; refused records are reported as OTLP partial success; a full queue
//! answers 429 and an unusable database 503, both with `Retry-After`.

use std::io::Write;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message;
use serde_json::{Value, json};

use crate::support::{
    Backend, TestLogging, attribute, export_request, now_nanos, on_both_backends, record,
};

on_both_backends! {
    async fn protobuf_records_are_stored_and_found_by_service(backend: Backend) {
        let app = TestLogging::on(backend).await;
        let request = export_request(
            "billing",
            vec![
                record("invoice 7 created", 9, vec![attribute("request_id", "req-1")]),
                record("card declined", 17, vec![]),
            ],
        );
        let response = app.export(&request).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/x-protobuf");
        let body = ExportLogsServiceResponse::decode(response.bytes().await.expect("body"))
            .expect("an OTLP response");
        assert_eq!(body.partial_success, None);

        let page = app.records("service=billing").await;
        let records = page["records"].as_array().expect("records");
        assert_eq!(records.len(), 2);
        let declined = records.iter().find(|r| r["body"] == "card declined").expect("stored");
        assert_eq!(declined["severity_number"], 17);
        assert_eq!(declined["service"], "billing");
        assert_eq!(declined["resource"]["service.name"], "billing");
        let created = records.iter().find(|r| r["body"] == "invoice 7 created").expect("stored");
        assert_eq!(created["request_id"], "req-1");

        let metrics = app
            .http
            .get(format!("{}/metrics", app.admin))
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("text");
        assert!(
            metrics.contains("tessera_log_records_stored_total{service=\"logging\"} 2"),
            "{metrics}"
        );
    }
}

on_both_backends! {
    async fn gzip_json_bodies_in_the_otlp_json_encoding_are_accepted(backend: Backend) {
        let app = TestLogging::on(backend).await;
        let now = now_nanos().to_string();
        let body = json!({
            "resourceLogs": [{
                "resource": { "attributes": [
                    { "key": "service.name", "value": { "stringValue": "checkout" } }
                ]},
                "scopeLogs": [{ "logRecords": [{
                    "timeUnixNano": now,
                    "severityNumber": 13,
                    "severityText": "WARN",
                    "body": { "stringValue": "stock low for sku 42" },
                    "traceId": "5b8efff798038103d269b633813fc60c",
                    "spanId": "eee19b7ec3c1b174",
                    "attributes": [ { "key": "sku", "value": { "intValue": "42" } } ]
                }]}]
            }]
        });
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body.to_string().as_bytes()).expect("gzip");
        let response = app
            .http
            .post(app.url("/v1/logs"))
            .bearer_auth(&app.service_token)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(gz.finish().expect("gzip"))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let answer: Value = response.json().await.expect("json");
        assert!(answer.get("partialSuccess").is_none_or(Value::is_null), "{answer}");

        let records = app.records("trace_id=5b8efff798038103d269b633813fc60c").await;
        let record = &records["records"][0];
        assert_eq!(record["body"], "stock low for sku 42");
        assert_eq!(record["service"], "checkout");
        assert_eq!(record["severity_text"], "WARN");
        assert_eq!(record["span_id"], "eee19b7ec3c1b174");
        assert_eq!(record["attributes"]["sku"], 42);
    }
}

#[tokio::test]
async fn senders_need_a_service_token() {
    let app = TestLogging::on(Backend::Sqlite).await;
    let body = export_request("x", vec![record("hello", 9, vec![])]).encode_to_vec();
    let send = |token: Option<String>| {
        let mut request = app
            .http
            .post(app.url("/v1/logs"))
            .header("content-type", "application/x-protobuf")
            .body(body.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let anonymous = send(None).await.expect("send");
    assert_eq!(anonymous.status(), 401);
    let forged = send(Some("not.a.token".into())).await.expect("send");
    assert_eq!(forged.status(), 401);
    let user = send(Some(app.issuer.token(&["user"]))).await.expect("send");
    assert_eq!(user.status(), 403);
    // Readers need `admin`; a service token cannot read logs.
    let read = app
        .http
        .get(app.url("/v1/records"))
        .bearer_auth(&app.service_token)
        .send()
        .await
        .expect("send");
    assert_eq!(read.status(), 403);
    assert!(app.bodies("").await.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn with_auth_disabled_for_the_all_in_one_mode_anyone_may_send_and_read() {
    let app = TestLogging::start(Backend::Sqlite, &["--insecure-disable-auth"]).await;
    let response = app
        .http
        .post(app.url("/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(export_request("dev", vec![record("local", 9, vec![])]).encode_to_vec())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let read: Value = app
        .http
        .get(app.url("/v1/records"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(read["records"][0]["body"], "local");
}

on_both_backends! {
    async fn records_with_malformed_ids_are_refused_as_a_partial_success(backend: Backend) {
        let app = TestLogging::on(backend).await;
        let mut bad = record("bad trace id", 9, vec![]);
        bad.trace_id = vec![1, 2, 3];
        let request = export_request("api", vec![record("fine", 9, vec![]), bad]);
        let response = app.export(&request).await;
        assert_eq!(response.status(), 200);
        let answer = ExportLogsServiceResponse::decode(response.bytes().await.expect("body"))
            .expect("OTLP response");
        let partial = answer.partial_success.expect("partial success reported");
        assert_eq!(partial.rejected_log_records, 1);
        assert!(partial.error_message.contains("trace_id"), "{}", partial.error_message);
        assert_eq!(app.bodies("service=api").await, ["fine"]);
    }
}

#[tokio::test]
async fn a_full_queue_answers_429_and_a_locked_database_503_both_with_retry_after() {
    let app = TestLogging::start(Backend::Sqlite, &["--ingest-queue-records", "100"]).await;
    // Another process holds the SQLite write lock: the writer waits (busy timeout 5 s).
    let service_kit::Pool::Sqlite(pool) = app.state.database.pool().clone() else {
        unreachable!("SQLite backend");
    };
    let mut blocker = pool.acquire().await.expect("connection");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *blocker)
        .await
        .expect("lock");

    let hundred: Vec<_> = (0..100)
        .map(|i| record(&format!("r{i}"), 9, vec![]))
        .collect();
    let first = {
        let request = export_request("busy", hundred);
        let http = app.http.clone();
        let url = app.url("/v1/logs");
        let token = app.service_token.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .header("content-type", "application/x-protobuf")
                .body(request.encode_to_vec())
                .send()
                .await
                .expect("send")
        })
    };
    // The first request holds the whole queue; the next one is refused at once.
    let refused = testkit::eventually(Duration::from_secs(5), "a 429", || async {
        let response = app
            .export(&export_request("busy", vec![record("more", 9, vec![])]))
            .await;
        (response.status() == 429).then_some(response)
    })
    .await;
    assert_eq!(refused.headers()["retry-after"], "1");
    let problem: Value = refused.json().await.expect("json");
    assert_eq!(problem["code"], "queue_full");

    // The lock outlives the busy timeout: the first sender is told to retry, not a 500.
    let first = first.await.expect("task");
    assert_eq!(first.status(), 503);
    assert_eq!(first.headers()["retry-after"], "5");
    sqlx::query("ROLLBACK")
        .execute(&mut *blocker)
        .await
        .expect("unlock");
    drop(blocker);

    // Once the database is free again everything is accepted.
    let response = app
        .export(&export_request("busy", vec![record("after", 9, vec![])]))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.bodies("service=busy").await, ["after"]);
}
