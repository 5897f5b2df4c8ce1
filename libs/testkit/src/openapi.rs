//! The checks every service's tests make on its OpenAPI document: the committed copy is
//! the one the code generates, it documents exactly the routes, and every operation that
//! takes a body documents the 413 the service kit answers.

use std::collections::BTreeSet;

use serde_json::Value;

/// Environment variable that makes [`assert_committed`] rewrite the committed document
/// instead of comparing it.
pub const UPDATE_OPENAPI_ENV: &str = "TESSERA_UPDATE_OPENAPI";

/// Asserts the document committed at `committed` is `generated`, naming the first line
/// that differs and `update` (the test command that rewrites it). With
/// `TESSERA_UPDATE_OPENAPI` set, writes `generated` there instead.
///
/// # Panics
/// When the committed document is stale or cannot be written.
pub fn assert_committed(committed: &str, generated: &str, update: &str) {
    if std::env::var_os(UPDATE_OPENAPI_ENV).is_some() {
        std::fs::write(committed, generated).unwrap_or_else(|e| panic!("write {committed}: {e}"));
        return;
    }
    let on_disk = std::fs::read_to_string(committed).unwrap_or_default();
    let first_difference = on_disk
        .lines()
        .zip(generated.lines())
        .position(|(c, g)| c != g)
        .unwrap_or_else(|| on_disk.lines().count().min(generated.lines().count()));
    assert!(
        on_disk == generated,
        "{committed} is stale: run `{UPDATE_OPENAPI_ENV}=1 {update}` (first difference at \
         line {})",
        first_difference + 1
    );
}

/// Asserts `document` is OpenAPI 3.1 and documents each of `routes` (method, path) and
/// no other path.
///
/// # Panics
/// When it does not.
pub fn assert_documents_exactly(document: &Value, routes: &[(&str, &str)]) {
    let version = document["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3.1."), "OpenAPI version {version}");
    let paths = document["paths"].as_object().expect("paths");
    for (method, path) in routes {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} is not documented"
        );
    }
    let expected: BTreeSet<&str> = routes.iter().map(|(_, path)| *path).collect();
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    assert_eq!(documented, expected, "documented paths that are not routes");
}

/// Asserts every operation of `document` that takes a body documents a 413 answer, and
/// that there is such an operation: a request with a body larger than
/// `--max-body-bytes` is answered 413 `body_too_large` before any handler runs, and an
/// undocumented status is a broken contract (see tools/schemathesis).
///
/// # Panics
/// When an operation that takes a body does not document 413, or none takes a body.
pub fn assert_bodies_document_413(document: &Value) {
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
