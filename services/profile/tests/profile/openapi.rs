//! The OpenAPI document: the committed copy matches the code, the service serves it, and
//! it covers every route.
//!
//! `TESSERA_UPDATE_OPENAPI=1 cargo test -p tessera-profile --test profile openapi`
//! rewrites `services/profile/openapi.json` after an API change.

use std::collections::BTreeSet;

use http::StatusCode;
use serde_json::Value;
use tessera_profile::api::openapi;

use crate::support::{Backend, TestStack};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

/// Every route of the public router (without `/openapi.json` itself).
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/profiles"),
    ("get", "/v1/profiles/me"),
    ("patch", "/v1/profiles/me"),
    ("get", "/v1/profiles/{user_id}"),
];

#[test]
fn the_committed_openapi_document_is_the_one_the_code_generates() {
    let generated = openapi::pretty_json();
    if std::env::var_os("TESSERA_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &generated).expect("write openapi.json");
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.json is stale: run `TESSERA_UPDATE_OPENAPI=1 cargo test -p tessera-profile \
         --test profile openapi`"
    );
}

#[tokio::test]
async fn the_service_serves_an_openapi_3_1_document_of_every_route() {
    let stack = TestStack::on(Backend::Sqlite).await;
    let served: Value = stack
        .http
        .get(stack.url("/openapi.json"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(
        served,
        serde_json::to_value(openapi::document()).expect("json")
    );
    assert!(
        served["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1.")
    );
    let paths = served["paths"].as_object().expect("paths");
    for (method, path) in ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} is not documented"
        );
    }
    let routed: BTreeSet<&str> = ROUTES.iter().map(|(_, path)| *path).collect();
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    assert_eq!(documented, routed);
    for (method, path) in ROUTES {
        let url = stack.url(&path.replace("{user_id}", "someone"));
        let request = match *method {
            "get" => stack.http.get(url),
            "patch" => stack.http.patch(url),
            _ => stack.http.post(url),
        };
        let status = request.send().await.expect("send").status();
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} is routed and protected"
        );
    }
}

/// Every request with a body larger than `--max-body-bytes` is answered 413
/// `body_too_large` before any handler runs, so every operation that takes a body
/// documents that answer (an undocumented status is a broken contract; see
/// tools/schemathesis).
#[test]
fn every_operation_that_takes_a_body_documents_413() {
    let document = serde_json::to_value(openapi::document()).expect("document as JSON");
    let mut with_body = 0;
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            if operation.get("requestBody").is_none() {
                continue;
            }
            with_body += 1;
            assert!(
                operation["responses"].get("413").is_some(),
                "{method} {path} takes a body but does not document 413"
            );
        }
    }
    assert!(with_body > 0, "no operation takes a body");
}
