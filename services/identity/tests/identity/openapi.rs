//! The OpenAPI document: the committed copy matches the code, the service serves it, it
//! covers every route, and its hand-written schemas match what the service answers.
//!
//! `TESSERA_UPDATE_OPENAPI=1 cargo test -p tessera-identity --test identity openapi`
//! rewrites `services/identity/openapi.json` after an API change.

use std::collections::BTreeSet;

use http::{StatusCode, header};
use serde_json::{Value, json};
use tessera_identity::api::openapi;

use crate::support::{Backend, TestIdentity};

/// The committed document, beside the crate's manifest.
const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

/// Every route of the public router (without `/openapi.json` itself): method and path.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/signup"),
    ("post", "/v1/login"),
    ("post", "/v1/logout"),
    ("get", "/v1/me"),
    ("get", "/v1/admin/users"),
    ("post", "/v1/admin/users/{id}/disable"),
    ("get", "/v1/admin/clients"),
    ("post", "/v1/admin/clients"),
    ("post", "/v1/admin/clients/{id}/disable"),
    ("post", "/oauth2/token"),
    ("post", "/oauth2/revoke"),
    ("post", "/oauth2/introspect"),
    ("get", "/.well-known/openid-configuration"),
    ("get", "/.well-known/jwks.json"),
];

#[test]
fn the_committed_openapi_document_is_the_one_the_code_generates() {
    testkit::openapi::assert_committed(
        COMMITTED,
        &openapi::pretty_json(),
        "cargo test -p tessera-identity --test identity openapi",
    );
}

fn schema<'a>(document: &'a Value, name: &str) -> &'a Value {
    &document["components"]["schemas"][name]
}

fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .expect("an object schema")
        .keys()
        .cloned()
        .collect()
}

fn member_names(body: &Value) -> BTreeSet<String> {
    body.as_object()
        .expect("a JSON object")
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_service_serves_an_openapi_3_1_document_of_every_route() {
    let app = TestIdentity::on(Backend::Sqlite).await;
    let response = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let served: Value = response.json().await.expect("json");
    assert_eq!(
        served,
        serde_json::to_value(openapi::document()).expect("document as JSON")
    );
    assert_eq!(served["info"]["title"], "Tessera identity");
    testkit::openapi::assert_documents_exactly(&served, ROUTES);

    // The list above is the router's: each route answers, if only with an error.
    for (method, path) in ROUTES {
        let url = app.url(&path.replace("{id}", "someone"));
        let request = match *method {
            "get" => app.http.get(url),
            _ => app.http.post(url),
        };
        let status = request.send().await.expect("send").status();
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is not routed: {status}"
        );
    }
}

#[tokio::test]
async fn the_documented_bodies_have_the_members_the_service_sends() {
    let app = TestIdentity::on(Backend::Sqlite).await;
    let document = serde_json::to_value(openapi::document()).expect("document as JSON");
    let metadata = app
        .get_json("/.well-known/openid-configuration", None)
        .await;
    assert_eq!(
        member_names(&metadata),
        property_names(schema(&document, "ServerMetadata"))
    );

    let jwks = app.get_json("/.well-known/jwks.json", None).await;
    let jwk_schema = schema(&document, "Jwk");
    let jwk_members = property_names(jwk_schema);
    let required: BTreeSet<String> =
        serde_json::from_value(jwk_schema["required"].clone()).expect("required members");
    for key in jwks["keys"].as_array().expect("keys") {
        let members = member_names(key);
        assert!(
            members.is_subset(&jwk_members),
            "undocumented JWK members: {key}"
        );
        assert!(
            required.is_subset(&members),
            "JWK without required members: {key}"
        );
    }

    let weak = app
        .post_json(
            "/v1/signup",
            &json!({ "email": "ada@example.com", "password": "short" }),
        )
        .await;
    assert_eq!(weak.status(), StatusCode::BAD_REQUEST);
    let problem: Value = weak.json().await.expect("json");
    assert!(
        member_names(&problem).is_subset(&property_names(schema(&document, "Problem"))),
        "undocumented problem members: {problem}"
    );

    let unsupported = app
        .http
        .post(app.url("/oauth2/token"))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .expect("send");
    assert_eq!(unsupported.status(), StatusCode::BAD_REQUEST);
    let error: Value = unsupported.json().await.expect("json");
    assert_eq!(
        member_names(&error),
        property_names(schema(&document, "OAuthError"))
    );
}

/// Every operation that takes a body documents the 413 the service kit answers.
#[test]
fn every_operation_that_takes_a_body_documents_413() {
    let document = serde_json::to_value(openapi::document()).expect("document as JSON");
    testkit::openapi::assert_bodies_document_413(&document);
}

/// What the 413 of the document looks like on the wire: a problem with its code.
#[tokio::test]
async fn a_body_over_the_limit_is_answered_with_the_documented_413_problem() {
    let app = TestIdentity::on(Backend::Sqlite).await;
    let response = app
        .http
        .post(app.url("/v1/signup"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let problem: Value = response.json().await.expect("json");
    assert_eq!(problem["code"], "body_too_large", "{problem}");
}
