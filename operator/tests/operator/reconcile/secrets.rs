//! Generated Secrets: created once, never regenerated, and added (alone) when a newer
//! operator wants one an existing platform does not have yet.

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use serde_json::{Value, json};

use super::{REFERENCED, Scenario, writes};
use crate::fixture;
#[tokio::test]
async fn a_second_reconcile_never_regenerates_secrets_or_keys() {
    let scenario = Scenario::new(&fixture::platform(), &REFERENCED);
    scenario.reconcile().await.0.unwrap();
    let keyset = scenario
        .server
        .get("secrets", "demo-identity-keyset")
        .unwrap();
    let pepper = scenario
        .server
        .get("secrets", "demo-identity-pepper")
        .unwrap();
    let client = scenario
        .server
        .get("secrets", "demo-orders-client")
        .unwrap();
    let registry = scenario
        .server
        .get("secrets", "demo-identity-clients")
        .unwrap();

    scenario.clock.advance(Duration::from_secs(60));
    let (result, calls) = scenario.reconcile().await;
    result.unwrap();
    assert!(
        !calls
            .iter()
            .any(|c| c.method == Method::POST && c.plural == "secrets")
    );
    assert!(!writes(&calls).contains(&"PATCH secrets/demo-identity-keyset".to_owned()));
    assert_eq!(
        scenario
            .server
            .get("secrets", "demo-identity-keyset")
            .unwrap(),
        keyset
    );
    assert_eq!(
        scenario
            .server
            .get("secrets", "demo-identity-pepper")
            .unwrap(),
        pepper
    );
    assert_eq!(
        scenario
            .server
            .get("secrets", "demo-orders-client")
            .unwrap(),
        client
    );
    assert_eq!(
        scenario
            .server
            .get("secrets", "demo-identity-clients")
            .unwrap()["data"],
        registry["data"]
    );
}

#[tokio::test]
async fn an_existing_platform_gets_the_new_gateway_client_and_keeps_every_other_secret() {
    // A platform reconciled by an operator version without a gateway client: everything
    // exists but `demo-gateway-client`.
    let scenario = Scenario::new(&fixture::platform(), &REFERENCED);
    scenario.reconcile().await.0.unwrap();
    scenario.server.remove("secrets", "demo-gateway-client");
    let mut old_registry = registry(&scenario);
    old_registry.remove("gateway");
    store_registry(&scenario, &old_registry);
    let generated = |scenario: &Scenario| -> Vec<Value> {
        scenario
            .server
            .all("secrets")
            .into_iter()
            .filter(|s| s["metadata"]["labels"]["tessera.dev/generated"] == "true")
            .collect()
    };
    let before = generated(&scenario);
    let registry_before = registry(&scenario);
    assert!(!registry_before.contains_key("gateway"));

    // The upgraded operator's reconcile creates that one Secret and nothing else.
    scenario.clock.advance(Duration::from_secs(60));
    let (result, calls) = scenario.reconcile().await;
    result.unwrap();
    let created: Vec<String> = calls
        .iter()
        .filter(|c| c.method == Method::POST && c.plural == "secrets")
        .map(|c| c.body["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(created, ["demo-gateway-client"]);
    let gateway = scenario
        .server
        .get("secrets", "demo-gateway-client")
        .unwrap();
    assert_eq!(gateway["data"]["client_id"], json!("Z2F0ZXdheQ==")); // "gateway"
    for secret in before {
        let name = secret["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            scenario.server.get("secrets", name).unwrap(),
            secret,
            "{name} was regenerated"
        );
    }
    // The registry gains the gateway (role `service`); every other hash is unchanged.
    let registry_after = registry(&scenario);
    assert_eq!(registry_after["gateway"]["roles"], json!(["service"]));
    for (id, client) in registry_before {
        assert_eq!(registry_after[&id], client, "{id}'s registry entry changed");
    }
    // And the gateway's Deployment reads its secret from it.
    let deployment = scenario.server.get("deployments", "demo-gateway").unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("demo-gateway-client"), "{env}");
}

/// Identity's client registry as stored: client id → entry.
fn registry(scenario: &Scenario) -> BTreeMap<String, Value> {
    use base64::Engine as _;
    let secret = scenario
        .server
        .get("secrets", "demo-identity-clients")
        .unwrap();
    let encoded = secret["data"]["clients.json"].as_str().unwrap();
    let json = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let parsed: Value = serde_json::from_slice(&json).unwrap();
    parsed["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["client_id"].as_str().unwrap().to_owned(), c.clone()))
        .collect()
}

/// Stores `clients` as identity's client registry (as an older operator wrote it).
fn store_registry(scenario: &Scenario, clients: &BTreeMap<String, Value>) {
    use base64::Engine as _;
    let mut secret = scenario
        .server
        .get("secrets", "demo-identity-clients")
        .unwrap();
    let json = json!({ "clients": clients.values().collect::<Vec<_>>() });
    secret["data"]["clients.json"] =
        json!(base64::engine::general_purpose::STANDARD.encode(json.to_string()));
    scenario.server.put("secrets", secret);
}
