//! The OpenAPI document: the committed copy matches the code and the service serves it.
//!
//! `TESSERA_UPDATE_OPENAPI=1 cargo test -p tessera-logging --test logging openapi`
//! rewrites `services/logging/openapi.json` after an API change.

use std::collections::BTreeSet;

use serde_json::Value;
use tessera_logging::api::openapi;

use crate::support::{Backend, TestLogging};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/logs"),
    ("get", "/v1/records"),
    ("get", "/v1/records/histogram"),
    ("get", "/v1/records/tail"),
    ("post", "/v1/audit/events"),
    ("get", "/v1/audit/records"),
    ("get", "/v1/audit/verify"),
];

#[test]
fn the_committed_openapi_document_is_the_one_the_code_generates() {
    testkit::openapi::assert_committed(
        COMMITTED,
        &openapi::pretty_json(),
        "cargo test -p tessera-logging --test logging openapi",
    );
}

#[tokio::test]
async fn the_service_serves_an_openapi_3_1_document_of_every_route() {
    let app = TestLogging::on(Backend::Sqlite).await;
    let served: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert!(
        served["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1.")
    );
    assert_eq!(served["info"]["title"], "Tessera logging");
    let paths = served["paths"].as_object().expect("paths");
    for (method, path) in ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path}"
        );
        let url = app.url(path);
        let request = if *method == "get" {
            app.http.get(url)
        } else {
            app.http.post(url)
        };
        let status = request.send().await.expect("send").status();
        assert!(
            status != 404 && status != 405,
            "{method} {path} is not routed: {status}"
        );
    }
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let routed: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    assert_eq!(documented, routed);
}

#[test]
fn every_operation_that_takes_a_body_documents_413_415_and_its_problems() {
    let document = serde_json::to_value(openapi::document()).expect("document as JSON");
    let mut with_body = 0;
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            if operation.get("requestBody").is_none() {
                continue;
            }
            with_body += 1;
            for status in ["400", "413", "415"] {
                assert!(
                    operation["responses"].get(status).is_some(),
                    "{method} {path} takes a body but does not document {status}"
                );
            }
        }
    }
    assert!(
        with_body >= 2,
        "the ingest and audit operations take bodies"
    );
    let append = &document["paths"]["/v1/audit/events"]["post"]["responses"];
    assert!(
        append.get("422").is_some(),
        "a JSON body that is not an event: 422"
    );
}

#[test]
fn the_tail_stream_documents_one_event_with_the_names_the_handler_sends() {
    let document = serde_json::to_value(openapi::document()).expect("document as JSON");
    let stream = &document["paths"]["/v1/records/tail"]["get"]["responses"]["200"]["content"]["text/event-stream"]
        ["schema"];
    let name = stream["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .expect("the stream's schema is a component");
    let event = &document["components"]["schemas"][name];
    assert!(
        event["required"]
            .as_array()
            .is_some_and(|r| r.contains(&Value::from("data"))),
        "{event}"
    );
    let names = &event["properties"]["event"];
    let names = names["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .map_or(names, |n| &document["components"]["schemas"][n]);
    assert_eq!(
        names["enum"],
        serde_json::json!(["record", "lagged"]),
        "{names}"
    );
}
