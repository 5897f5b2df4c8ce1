//! The OpenAPI document: the committed copy matches the code, and it covers every route.
//!
//! `TESSERA_UPDATE_OPENAPI=1 cargo test -p tessera-notification --test notification openapi`
//! rewrites `services/notification/openapi.json` after an API change.

use std::collections::BTreeSet;

use serde_json::Value;
use tessera_notification::api::openapi;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

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
        "openapi.json is stale: run `TESSERA_UPDATE_OPENAPI=1 cargo test -p tessera-notification \
         --test notification openapi`"
    );
}

#[test]
fn the_document_is_openapi_3_1_and_covers_every_route() {
    let document: Value = serde_json::to_value(openapi::document()).expect("json");
    assert!(
        document["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1.")
    );
    let paths: BTreeSet<&str> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        paths,
        BTreeSet::from(["/v1/notifications", "/v1/notifications/{id}"])
    );
    assert!(document["paths"]["/v1/notifications"]["post"].is_object());
    assert!(document["paths"]["/v1/notifications/{id}"]["get"].is_object());
}
