//! The OpenAPI document (the committed copy matches the code, it covers every route),
//! and the start-up check of templates.
//!
//! `TESSERA_UPDATE_OPENAPI=1 cargo test -p tessera-notification --test notification openapi`
//! rewrites `services/notification/openapi.json` after an API change.

use serde_json::Value;
use tessera_notification::api::openapi;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

#[test]
fn the_committed_openapi_document_is_the_one_the_code_generates() {
    testkit::openapi::assert_committed(
        COMMITTED,
        &openapi::pretty_json(),
        "cargo test -p tessera-notification --test notification openapi",
    );
}

#[test]
fn the_document_is_openapi_3_1_and_covers_every_route() {
    let document: Value = serde_json::to_value(openapi::document()).expect("json");
    testkit::openapi::assert_documents_exactly(
        &document,
        &[
            ("post", "/v1/notifications"),
            ("get", "/v1/notifications/{id}"),
        ],
    );
}

#[test]
fn a_broken_template_stops_the_binary_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("welcome.it.sms.j2"),
        "Ciao {{ display_name ",
    )
    .expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_tessera-notification"))
        .args([
            "--database-url",
            "sqlite::memory:",
            "--issuer",
            "http://i",
            "--jwks-url",
            "http://i/jwks",
        ])
        .args([
            "--nats-url",
            "nats://127.0.0.1:1",
            "--profile-url",
            "http://p",
            "--token-url",
            "http://i/t",
        ])
        .args([
            "--client-secret",
            "s",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--templates-dir")
        .arg(dir.path())
        .output()
        .expect("run tessera-notification");
    assert_eq!(
        output.status.code(),
        Some(2),
        "a configuration error exits with 2"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("configuration error: templates: welcome.it.sms.j2"),
        "{stderr}"
    );
}

/// Every operation that takes a body documents the 413 the service kit answers.
#[test]
fn every_operation_that_takes_a_body_documents_413() {
    let document = serde_json::to_value(openapi::document()).expect("document as JSON");
    testkit::openapi::assert_bodies_document_413(&document);
}
