//! The CRD against a real API server: accepted, and invalid `Platform`s refused with
//! the CRD's messages.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube_testenv::{Options, TestEnv};
use serde_json::{Value, json};

use crate::{CRD_NAME, platform, platforms, refusal, repo_root, wait_established, yaml_file};

#[tokio::test]
async fn platform_crd_is_accepted_and_refuses_invalid_platforms_with_its_messages() {
    let env = TestEnv::start_with(Options {
        controller_manager: false,
        ..Options::default()
    })
    .await
    .unwrap_or_else(|error| panic!("the test control plane did not start: {error}"));
    let client = env.client().unwrap();
    let crd: CustomResourceDefinition = yaml_file(&repo_root().join("crds/platform.yaml"));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        CRD_NAME,
        &PatchParams::apply("kube-testenv"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|error| panic!("the API server refused crds/platform.yaml: {error}"));
    wait_established(&client).await;

    let namespace = env.fresh_namespace("crd").await.unwrap();
    let api = platforms(client.clone(), &namespace);

    // The chart's example is valid, and defaults are filled in by the schema.
    let example: DynamicObject =
        yaml_file(&repo_root().join("charts/tessera/examples/platform.yaml"));
    api.create(&PostParams::default(), &example)
        .await
        .unwrap_or_else(|error| panic!("the example Platform was refused: {error}"));
    let minimal = api
        .create(
            &PostParams::default(),
            &platform(
                "minimal",
                &json!({ "identity": { "issuer": "https://api.example.com" } }),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        minimal.data["spec"]["paused"],
        json!(false),
        "{:#}",
        minimal.data
    );

    for (name, spec, expected) in bad_platforms() {
        let message = refusal(&api, name, spec).await;
        assert!(
            message.contains(expected),
            "{name}: expected {expected:?} in {message:?}"
        );
    }
    let stored = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(stored.items.len(), 2, "only the valid Platforms are stored");
}

/// Specs the CRD refuses, each with the message the API server answers.
fn bad_platforms() -> Vec<(&'static str, Value, &'static str)> {
    let issuer = json!({ "issuer": "https://api.example.com" });
    let service = |name: &str, prefix: &str| json!({ "name": name, "image": "example.com/orders:1", "routePrefix": prefix });
    vec![
        ("no-identity", json!({}), "spec.identity: Required value"),
        (
            "bad-issuer",
            json!({ "identity": { "issuer": "ftp://api.example.com" } }),
            "issuer must be an http(s) URL",
        ),
        (
            "bad-pull-policy",
            json!({ "identity": issuer, "images": { "pullPolicy": "Sometimes" } }),
            "pullPolicy must be Always, IfNotPresent or Never",
        ),
        (
            "same-service-name",
            json!({ "identity": issuer, "services": [service("orders", "/a/"), service("orders", "/b/")] }),
            "two onboarded services have the same name",
        ),
        (
            "built-in-name",
            json!({ "identity": issuer, "services": [service("gateway", "/gw/")] }),
            "cannot be named like a built-in component",
        ),
        (
            "same-service-prefix",
            json!({ "identity": issuer, "services": [service("orders", "/a/"), service("billing", "/a/")] }),
            "two onboarded services have the same routePrefix",
        ),
        (
            "service-prefix-without-slash",
            json!({ "identity": issuer, "services": [service("orders", "orders/")] }),
            "a route prefix must start with '/'",
        ),
        (
            "route-prefix-without-slash",
            json!({ "identity": issuer, "gateway": { "routes": [
                { "name": "legacy", "prefix": "legacy", "upstream": "http://legacy:8080" }] } }),
            "a route prefix must start with '/'",
        ),
        (
            "unknown-algorithm",
            json!({ "identity": { "issuer": "https://api.example.com",
                                   "keyPolicy": { "algorithm": "HS256" } } }),
            "supported values: \"EdDSA\", \"ES256\", \"RS256\"",
        ),
        (
            "history-too-long",
            json!({ "identity": { "issuer": "https://api.example.com",
                                   "keyPolicy": { "history": 21 } } }),
            "spec.identity.keyPolicy.history: Invalid value: 21: spec.identity.keyPolicy.history in body should be less than or equal to 20",
        ),
        (
            "retirement-shorter-than-tokens",
            json!({ "identity": { "issuer": "https://api.example.com", "accessTokenTtlSeconds": 3600,
                                   "keyPolicy": { "retirementSeconds": 600 } } }),
            "keyPolicy.retirementSeconds must be at least accessTokenTtlSeconds",
        ),
    ]
}
