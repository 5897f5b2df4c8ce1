//! The query API over stored records: every filter, newest-first keyset pages without
//! gaps or repeats, counts per bucket, and the live tail.

use std::time::Duration;

use futures_util::StreamExt;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use serde_json::Value;

use crate::support::{
    Backend, TestLogging, attribute, export_request, now_nanos, on_both_backends, record,
};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn traced(body: &str, severity: i32, request_id: &str) -> LogRecord {
    let mut r = record(body, severity, vec![attribute("request_id", request_id)]);
    r.trace_id = (0..16)
        .map(|i| u8::from_str_radix(&TRACE[i * 2..i * 2 + 2], 16).expect("hex"))
        .collect();
    r
}

async fn seed(app: &TestLogging) {
    let gateway = export_request(
        "gateway",
        vec![
            traced("GET /v1/profile from 10.0.0.7", 9, "req-42"),
            record(
                "health probe ok",
                5,
                vec![attribute("http.route", "/healthz")],
            ),
        ],
    );
    let profile = export_request(
        "profile",
        vec![
            traced("profile lookup failed: connection reset", 17, "req-42"),
            record("cache warmed", 9, vec![attribute("region", "eu-west")]),
        ],
    );
    for request in [gateway, profile] {
        assert_eq!(app.export(&request).await.status(), 200);
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

on_both_backends! {
    async fn each_filter_narrows_the_records(backend: Backend) {
        let app = TestLogging::on(backend).await;
        seed(&app).await;
        assert_eq!(app.bodies("").await.len(), 4);
        assert_eq!(
            sorted(app.bodies("service=gateway").await),
            ["GET /v1/profile from 10.0.0.7", "health probe ok"]
        );
        assert_eq!(app.bodies("min_severity=error").await, ["profile lookup failed: connection reset"]);
        assert_eq!(app.bodies("min_severity=info").await.len(), 3);
        assert_eq!(app.bodies("q=connection%20reset").await, ["profile lookup failed: connection reset"]);
        assert_eq!(app.bodies("q=warmed").await, ["cache warmed"]);
        assert!(app.bodies("q=reset%20connection").await.is_empty(), "a phrase, in order");
        // One request across two services, by trace id and by request id.
        let by_trace = sorted(app.bodies(&format!("trace_id={TRACE}")).await);
        assert_eq!(by_trace, ["GET /v1/profile from 10.0.0.7", "profile lookup failed: connection reset"]);
        assert_eq!(sorted(app.bodies("request_id=req-42").await), by_trace);
        assert!(app.bodies("request_id=req-43").await.is_empty());
        assert_eq!(app.bodies("attr=region%3Deu-west").await, ["cache warmed"]);
        assert_eq!(app.bodies("attr=http.route%3D/healthz").await, ["health probe ok"]);
        // Time range: everything is from the last minute.
        let now = now_nanos();
        let minute = 60_000_000_000;
        assert_eq!(app.bodies(&format!("since={}", now - minute)).await.len(), 4);
        assert!(app.bodies(&format!("until={}", now - minute)).await.is_empty());
        assert_eq!(app.bodies("since=2000-01-01T00:00:00Z&service=profile&min_severity=warn").await.len(), 1);
        // Filters combine.
        assert!(app.bodies("service=gateway&min_severity=error").await.is_empty());
    }
}

on_both_backends! {
    async fn pages_go_newest_first_without_gaps_or_repeats(backend: Backend) {
        let app = TestLogging::on(backend).await;
        let base = now_nanos() - 1_000_000_000;
        let records: Vec<LogRecord> = (0..25)
            .map(|i| {
                let mut r = record(&format!("n{i:02}"), 9, vec![]);
                // Pairs share a timestamp, so the id breaks ties.
                r.time_unix_nano = base + (i / 2) * 1000;
                r
            })
            .collect();
        assert_eq!(app.export(&export_request("pager", records)).await.status(), 200);
        let mut seen = Vec::new();
        let mut cursor = String::new();
        let mut pages = 0;
        loop {
            let page = app.records(&format!("service=pager&limit=10&cursor={cursor}")).await;
            pages += 1;
            for r in page["records"].as_array().expect("records") {
                seen.push(r["body"].as_str().expect("body").to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(next) => next.clone_into(&mut cursor),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let mut expected: Vec<String> = (0..25).map(|i| format!("n{i:02}")).collect();
        expected.reverse();
        assert_eq!(seen, expected);
    }
}

on_both_backends! {
    async fn the_histogram_counts_matching_records_per_bucket(backend: Backend) {
        let app = TestLogging::on(backend).await;
        let hour = 3_600_000_000_000u64;
        let start = (now_nanos() / hour - 2) * hour; // two hours ago, on the hour
        let records: Vec<LogRecord> = [0, 1, 2, hour, hour + 5]
            .iter()
            .map(|offset| {
                let mut r = record("tick", 9, vec![]);
                r.time_unix_nano = start + offset;
                r
            })
            .collect();
        assert_eq!(app.export(&export_request("clock", records)).await.status(), 200);
        let histogram: Value = app
            .http
            .get(app.url(&format!(
                "/v1/records/histogram?service=clock&since={start}&until={}&bucket_secs=3600",
                start + 2 * hour
            )))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        let buckets = histogram["buckets"].as_array().expect("buckets");
        let counts: Vec<(u64, i64)> = buckets
            .iter()
            .map(|b| (b["start_unix_nano"].as_u64().expect("start"), b["count"].as_i64().expect("n")))
            .collect();
        assert_eq!(counts, [(start, 3), (start + hour, 2)]);
    }
}

#[tokio::test]
async fn the_live_tail_streams_new_matching_records() {
    let app = TestLogging::on(Backend::Sqlite).await;
    let response = app
        .http
        .get(app.url("/v1/records/tail?service=live&min_severity=warn"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    let mut stream = response.bytes_stream();
    let request = export_request(
        "live",
        vec![
            record("quiet info", 9, vec![]),
            record("disk almost full", 13, vec![]),
        ],
    );
    assert_eq!(app.export(&request).await.status(), 200);
    let mut received = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !received.contains("disk almost full") {
        let chunk = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("a record within 10 s")
            .expect("stream open")
            .expect("chunk");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(received.contains("event: record"), "{received}");
    assert!(!received.contains("quiet info"), "filtered out: {received}");
}

on_both_backends! {
    /// A word in more records than SQLite collects before sorting (10,000) takes the
    /// other text plan: read newest first and check each row. Both plans must give the
    /// same newest-first page, and a rare word among them is still found.
    async fn a_word_in_many_records_pages_newest_first_like_a_rare_one(backend: Backend) {
        let app = TestLogging::on(backend).await;
        let start = now_nanos() - 60_000_000_000;
        for chunk in 0..6u64 {
            let records = (0..2_000u64)
                .map(|k| {
                    let n = chunk * 2_000 + k;
                    let word = if n % 1_000 == 7 { "rare" } else { "plain" };
                    let mut r = record(&format!("common event {n} {word}"), 9, vec![]);
                    // Sent in an order unlike their times: newest first comes from `ts`.
                    r.time_unix_nano = start + (12_000 - n) * 1_000;
                    r
                })
                .collect();
            let response = app.export(&export_request("bulk", records)).await;
            assert_eq!(response.status(), 200);
        }
        let common = app.bodies("q=common&limit=3").await;
        assert_eq!(
            common,
            ["common event 0 plain", "common event 1 plain", "common event 2 plain"]
        );
        let page = app.records("q=common&limit=2").await;
        let cursor = page["next_cursor"].as_str().expect("a next page");
        let next = app.bodies(&format!("q=common&limit=2&cursor={cursor}")).await;
        assert_eq!(next, ["common event 2 plain", "common event 3 plain"]);
        let rare = app.bodies("q=rare").await;
        let expected: Vec<String> = (0..12u64)
            .map(|k| format!("common event {} rare", k * 1_000 + 7))
            .collect();
        assert_eq!(rare, expected);
    }
}
