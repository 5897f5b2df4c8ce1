//! The issue's bad-input list: each gets a clear 4xx or a documented clamp, and the
//! service keeps ingesting everything else.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use serde_json::Value;

use crate::support::{
    Backend, TestLogging, attribute, export_request, now_nanos, on_both_backends, record,
};

async fn still_ingests(app: &TestLogging, marker: &str) {
    let response = app
        .export(&export_request("after", vec![record(marker, 9, vec![])]))
        .await;
    assert_eq!(response.status(), 200, "a good request after bad input");
    assert!(
        app.bodies("service=after")
            .await
            .contains(&marker.to_owned())
    );
}

async fn post(app: &TestLogging, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.http
        .post(app.url("/v1/logs"))
        .bearer_auth(&app.service_token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("send")
}

#[tokio::test]
async fn a_truncated_protobuf_body_is_a_400_naming_the_problem() {
    let app = TestLogging::on(Backend::Sqlite).await;
    let full = export_request("x", vec![record("a message long enough to cut", 9, vec![])])
        .encode_to_vec();
    let response = post(
        &app,
        "application/x-protobuf",
        full[..full.len() - 7].to_vec(),
    )
    .await;
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["code"], "invalid_otlp");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("OTLP"),
        "{problem}"
    );
    still_ingests(&app, "after truncated").await;
}

#[tokio::test]
async fn a_wrong_content_type_is_a_415() {
    let app = TestLogging::on(Backend::Sqlite).await;
    let response = post(&app, "text/plain", b"hello".to_vec()).await;
    assert_eq!(response.status(), 415);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["code"], "unsupported_media_type");
    still_ingests(&app, "after text").await;
}

#[tokio::test]
async fn a_50_mb_body_is_a_413() {
    let app = TestLogging::on(Backend::Sqlite).await;
    let response = post(&app, "application/x-protobuf", vec![0u8; 50 * 1024 * 1024]).await;
    assert_eq!(response.status(), 413);
    still_ingests(&app, "after huge").await;
}

on_both_backends! {
    async fn a_1_mb_body_is_cut_to_the_limit_and_marked(backend: Backend) {
        let app = TestLogging::on(backend).await;
        let body = "é".repeat(500_000); // 1,000,000 bytes of two-byte characters
        let response = app.export(&export_request("big", vec![record(&body, 9, vec![])])).await;
        assert_eq!(response.status(), 200);
        let page = app.records("service=big").await;
        let stored = &page["records"][0];
        let text = stored["body"].as_str().expect("body");
        assert!(text.len() <= 64 * 1024 && text.len() > 60_000, "{}", text.len());
        assert!(text.chars().all(|c| c == 'é'), "cut at a character boundary");
        assert_eq!(stored["attributes"]["tessera.body_truncated"], true);
        assert_eq!(stored["attributes"]["tessera.body_original_bytes"], 1_000_000);
    }
}

on_both_backends! {
    async fn timestamps_far_in_the_future_or_past_are_clamped_to_the_observed_time(backend: Backend) {
        let app = TestLogging::on(backend).await;
        let year = 365 * 86_400 * 1_000_000_000u64;
        let mut future = record("from the future", 9, vec![]);
        future.time_unix_nano = now_nanos() + 10 * year;
        let mut past = record("from the past", 9, vec![]);
        past.time_unix_nano = 1_000; // 1970
        let observed = now_nanos();
        past.observed_time_unix_nano = observed;
        let response = app.export(&export_request("clock", vec![future, past])).await;
        assert_eq!(response.status(), 200);
        let page = app.records("service=clock").await;
        for stored in page["records"].as_array().expect("records") {
            let ts = stored["time_unix_nano"].as_i64().expect("ts");
            let delta = (ts - i64::try_from(observed).expect("fits")).abs();
            assert!(delta < 60 * 1_000_000_000, "clamped near now: {stored}");
            assert!(stored["attributes"]["tessera.original_time_unix_nano"].is_string(), "{stored}");
        }
        assert_eq!(page["records"].as_array().map(Vec::len), Some(2));
    }
}

#[tokio::test]
async fn non_utf8_strings_are_a_400_in_protobuf_and_in_json() {
    let app = TestLogging::on(Backend::Sqlite).await;
    let mut bytes = export_request("utf", vec![record("AAAA", 9, vec![])]).encode_to_vec();
    let at = bytes
        .windows(4)
        .position(|w| w == b"AAAA")
        .expect("body bytes");
    bytes[at] = 0xff;
    bytes[at + 1] = 0xfe;
    let response = post(&app, "application/x-protobuf", bytes).await;
    assert_eq!(response.status(), 400);

    let mut json =
        br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"AAAA"}}]}]}]}"#
            .to_vec();
    let at = json
        .windows(4)
        .position(|w| w == b"AAAA")
        .expect("body bytes");
    json[at] = 0xff;
    let response = post(&app, "application/json", json).await;
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["code"], "invalid_otlp");
    still_ingests(&app, "after bad utf8").await;
}

on_both_backends! {
    async fn ten_thousand_attributes_are_cut_to_the_limit_and_counted(backend: Backend) {
        let app = TestLogging::on(backend).await;
        let attrs: Vec<KeyValue> = (0..10_000)
            .map(|i| attribute(&format!("k{i}"), "v"))
            .collect();
        let response = app.export(&export_request("wide", vec![record("wide", 9, attrs)])).await;
        assert_eq!(response.status(), 200);
        let page = app.records("service=wide").await;
        let attributes = page["records"][0]["attributes"].as_object().expect("attributes");
        assert_eq!(attributes["tessera.dropped_attributes_count"], 10_000 - 128);
        assert_eq!(attributes.len(), 128 + 1);
        still_ingests(&app, "after wide").await;
    }
}
