//! The CRD: the committed YAML matches the types, and the CEL rules refuse the bad
//! `Platform`s of issue #7 with a message a person understands (evaluated client-side with
//! kube's `cel` feature, the same rules the API server runs).
//!
//! `TESSERA_UPDATE_CRDS=1 cargo test -p tessera-operator --test operator crd` rewrites
//! `crds/platform.yaml` after a change to the types.

use serde_json::{Value, json};
use tessera_operator::Platform;

/// The committed CRD, at the repository root.
const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/platform.yaml");

#[test]
fn the_committed_crd_is_the_one_the_types_generate() {
    let generated = tessera_operator::crd_yaml();
    if std::env::var_os("TESSERA_UPDATE_CRDS").is_some() {
        std::fs::write(COMMITTED, &generated).expect("write crds/platform.yaml");
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    let first_difference = committed
        .lines()
        .zip(generated.lines())
        .position(|(c, g)| c != g)
        .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
    assert!(
        committed == generated,
        "crds/platform.yaml is stale: run `TESSERA_UPDATE_CRDS=1 cargo test -p tessera-operator \
         --test operator crd` (first difference at line {})",
        first_difference + 1
    );
}

#[test]
fn the_crd_is_one_document_starting_with_its_api_version() {
    // The Helm chart renders this file verbatim and adds its own annotations.
    let yaml = tessera_operator::crd_yaml();
    assert!(
        yaml.starts_with("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n")
    );
    assert!(!yaml.contains("\n---"));
    assert!(!yaml.contains("annotations:"));
}

/// A valid platform, as JSON, to be spoiled by each test.
fn valid() -> Value {
    json!({
        "apiVersion": "tessera.dev/v1alpha1",
        "kind": "Platform",
        "metadata": { "name": "demo", "namespace": "tessera" },
        "spec": {
            "identity": {
                "issuer": "https://api.example.com",
                "accessTokenTtlSeconds": 900,
                "keyPolicy": { "algorithm": "ES256", "retirementSeconds": 1500 }
            },
            "gateway": {
                "host": "api.example.com",
                "routes": [{ "name": "legacy", "prefix": "/legacy/", "upstream": "http://legacy.apps:8080" }]
            },
            "services": [
                { "name": "orders", "image": "example/orders:1", "routePrefix": "/orders/" },
                { "name": "billing", "image": "example/billing:1", "routePrefix": "/billing/" }
            ]
        }
    })
}

/// The CEL messages the API server would answer for `platform` (empty = accepted).
fn refusals(platform: &Value) -> Vec<String> {
    let platform: Platform = serde_json::from_value(platform.clone()).expect("a Platform");
    match platform.validate_cel() {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn assert_refused(platform: &Value, expected: &str) {
    let refusals = refusals(platform);
    assert!(
        refusals.iter().any(|message| message.contains(expected)),
        "expected a refusal containing {expected:?}, got {refusals:?}"
    );
}

#[test]
fn a_valid_platform_passes_every_rule() {
    assert_eq!(refusals(&valid()), Vec::<String>::new());
}

#[test]
fn an_unknown_algorithm_is_refused_naming_the_supported_ones() {
    let mut platform = valid();
    platform["spec"]["identity"]["keyPolicy"]["algorithm"] = json!("HS256");
    let error = serde_json::from_value::<Platform>(platform)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("HS256") && error.contains("EdDSA"),
        "{error}"
    );
    // The API server refuses it from the schema's enum, which names the allowed values.
    let crd = serde_json::to_value(<Platform as kube::CustomResourceExt>::crd()).unwrap();
    let algorithm = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]["identity"]["properties"]["keyPolicy"]["properties"]["algorithm"];
    assert_eq!(algorithm["enum"], json!(["EdDSA", "ES256", "RS256"]));
}

/// The refusal of a retirement too short for the tokens signed with the retiring key.
const RETIREMENT_REFUSED: &str = "retirementSeconds must be at least accessTokenTtlSeconds + 180";

/// `valid()` with `retirementSeconds` and, unless `None`, `accessTokenTtlSeconds`.
fn with_retirement(ttl: Option<u32>, retirement: u32) -> Value {
    let mut platform = valid();
    let identity = platform["spec"]["identity"].as_object_mut().unwrap();
    match ttl {
        Some(ttl) => identity.insert("accessTokenTtlSeconds".into(), json!(ttl)),
        None => identity.remove("accessTokenTtlSeconds"),
    };
    platform["spec"]["identity"]["keyPolicy"]["retirementSeconds"] = json!(retirement);
    platform
}

#[test]
fn a_retirement_shorter_than_the_token_lifetime_is_refused() {
    assert_refused(&with_retirement(Some(900), 600), RETIREMENT_REFUSED);
    // The default lifetime (900 s) counts when the lifetime is not set.
    assert_refused(&with_retirement(None, 899), RETIREMENT_REFUSED);
}

#[test]
fn a_retirement_that_leaves_no_room_for_propagation_and_leeway_is_refused() {
    // Identity signs with a retiring key until the keyset Secret reaches its pods (120 s),
    // and verifiers accept a token 60 s past `exp`: the last token the key signed is
    // valid until retirement + 120 + lifetime + 60. Equal to the lifetime was accepted.
    for ttl in [Some(900), None, Some(30)] {
        let lifetime = ttl.unwrap_or(900);
        for retirement in [lifetime, lifetime + 120, lifetime + 179] {
            assert_refused(&with_retirement(ttl, retirement), RETIREMENT_REFUSED);
        }
        // Removed the moment the last token stops being accepted: enough.
        assert_eq!(
            refusals(&with_retirement(ttl, lifetime + 180)),
            Vec::<String>::new(),
            "{ttl:?}"
        );
    }
}

#[test]
fn the_operator_refuses_exactly_the_retirements_the_crd_refuses() {
    // A Platform stored past the CRD (an older CRD) meets the same bound at reconcile.
    for ttl in [Some(30), None, Some(86_400)] {
        let lifetime = ttl.unwrap_or(900);
        for retirement in (lifetime - 30..lifetime + 200).chain([lifetime + 1000]) {
            let json = with_retirement(ttl, retirement);
            let platform: Platform = serde_json::from_value(json.clone()).unwrap();
            let crd_accepts = refusals(&json).is_empty();
            let operator_accepts = tessera_operator::keys::checked_policy(&platform).is_ok();
            assert_eq!(
                crd_accepts, operator_accepts,
                "ttl {ttl:?}, retirement {retirement}"
            );
        }
    }
}

#[test]
fn a_pre_publication_not_shorter_than_the_interval_is_refused() {
    let mut platform = valid();
    platform["spec"]["identity"]["keyPolicy"]["rotationIntervalSeconds"] = json!(3600);
    platform["spec"]["identity"]["keyPolicy"]["prePublicationSeconds"] = json!(3600);
    assert_refused(
        &platform,
        "prePublicationSeconds must be shorter than rotationIntervalSeconds",
    );
}

#[test]
fn a_route_prefix_without_a_leading_slash_is_refused() {
    let mut platform = valid();
    platform["spec"]["services"][0]["routePrefix"] = json!("orders/");
    assert_refused(&platform, "a route prefix must start with '/'");
    let mut platform = valid();
    platform["spec"]["gateway"]["routes"][0]["prefix"] = json!("legacy");
    assert_refused(&platform, "a route prefix must start with '/'");
}

#[test]
fn two_services_with_the_same_name_are_refused() {
    let mut platform = valid();
    platform["spec"]["services"][1]["name"] = json!("orders");
    assert_refused(&platform, "two onboarded services have the same name");
}

#[test]
fn two_services_with_the_same_prefix_are_refused() {
    let mut platform = valid();
    platform["spec"]["services"][1]["routePrefix"] = json!("/orders/");
    assert_refused(
        &platform,
        "two onboarded services have the same routePrefix",
    );
}

#[test]
fn a_service_named_like_a_component_is_refused() {
    let mut platform = valid();
    platform["spec"]["services"][0]["name"] = json!("identity");
    assert_refused(&platform, "cannot be named like a built-in component");
}

#[test]
fn several_replicas_on_sqlite_are_refused() {
    let mut platform = valid();
    platform["spec"]["identity"]["replicas"] = json!(3);
    assert_refused(&platform, "more than 1 replica needs storage.postgres");
    platform["spec"]["identity"]["storage"] =
        json!({ "postgres": { "urlSecretRef": { "name": "identity-db" } } });
    assert_eq!(refusals(&platform), Vec::<String>::new());
}

#[test]
fn storage_with_both_backends_is_refused() {
    let mut platform = valid();
    platform["spec"]["profile"] = json!({ "storage": {
        "sqlite": {}, "postgres": { "urlSecretRef": { "name": "db" } } } });
    assert_refused(&platform, "storage needs exactly one of sqlite or postgres");
}

#[test]
fn an_external_and_a_managed_event_bus_together_are_refused() {
    let mut platform = valid();
    platform["spec"]["events"] = json!({ "natsUrl": "nats://nats:4222", "managed": {} });
    assert_refused(&platform, "set natsUrl");
}

#[test]
fn every_string_and_list_read_by_a_rule_is_bounded() {
    // Unbounded values make the API server refuse the CRD (CEL cost budget).
    let crd = serde_json::to_value(<Platform as kube::CustomResourceExt>::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(spec["properties"]["services"]["maxItems"], json!(32));
    let service = &spec["properties"]["services"]["items"]["properties"];
    assert_eq!(service["name"]["maxLength"], json!(40));
    assert_eq!(service["routePrefix"]["maxLength"], json!(200));
    assert_eq!(
        spec["properties"]["identity"]["properties"]["issuer"]["maxLength"],
        json!(253)
    );
}

#[test]
fn the_key_history_count_is_bounded_by_the_schema() {
    // The API server refuses `history` outside 0..=20 (OpenAPI minimum/maximum), and the
    // status list it sizes has the same bound.
    let crd = serde_json::to_value(<Platform as kube::CustomResourceExt>::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
    let history = &schema["spec"]["properties"]["identity"]["properties"]["keyPolicy"]["properties"]
        ["history"];
    assert_eq!(history["type"], json!("integer"));
    assert_eq!(history["minimum"], json!(0.0));
    assert_eq!(history["maximum"], json!(20.0));
    assert_eq!(
        schema["status"]["properties"]["keyHistory"]["maxItems"],
        json!(20)
    );
    let mut platform = valid();
    platform["spec"]["identity"]["keyPolicy"]["history"] = json!(3);
    assert_eq!(refusals(&platform), Vec::<String>::new());
    platform["spec"]["identity"]["keyPolicy"]["history"] = json!(-1);
    assert!(serde_json::from_value::<Platform>(platform).is_err());
}
