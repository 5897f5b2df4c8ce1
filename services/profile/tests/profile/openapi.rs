//! The OpenAPI document: the committed copy matches the code, the service serves it, and
//! it covers every route.
//!
//! `TESSERA_UPDATE_OPENAPI=1 cargo test -p tessera-profile --test profile openapi`
//! rewrites `services/profile/openapi.json` after an API change.

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
    testkit::openapi::assert_committed(
        COMMITTED,
        &openapi::pretty_json(),
        "cargo test -p tessera-profile --test profile openapi",
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
    testkit::openapi::assert_documents_exactly(&served, ROUTES);
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

/// Every operation that takes a body documents the 413 the service kit answers.
#[test]
fn every_operation_that_takes_a_body_documents_413() {
    let document = serde_json::to_value(openapi::document()).expect("document as JSON");
    testkit::openapi::assert_bodies_document_413(&document);
}
