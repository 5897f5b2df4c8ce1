//! Children applied in order under the field manager, put back when edited, recreated
//! when deleted, pruned when no longer wanted; the status from Deployment availability.

use std::time::Duration;

use http::Method;
use serde_json::json;
use tessera_operator::children::{self, Kind};

use super::{REFERENCED, Scenario, position, writes};
use crate::apiserver::Call;
use crate::fixture;
#[tokio::test]
async fn the_first_reconcile_publishes_keys_then_applies_children_then_the_status() {
    let scenario = Scenario::new(&fixture::platform(), &REFERENCED);
    let (result, calls) = scenario.reconcile().await;
    let action = result.expect("reconcile succeeds");
    assert!(
        format!("{action:?}").contains("requeue_after: Some("),
        "{action:?}"
    );

    // Generated Secrets are created (POST), the JWKS before the keyset.
    let jwks = position(&calls, "PATCH configmaps/demo-jwks");
    let keyset = calls
        .iter()
        .position(|c| {
            c.method == Method::POST && c.body["metadata"]["name"] == "demo-identity-keyset"
        })
        .expect("the keyset Secret is created");
    assert!(
        jwks < keyset,
        "the JWKS must be published before the keyset: {:?}",
        writes(&calls)
    );
    assert!(
        scenario
            .server
            .get("secrets", "demo-identity-keyset")
            .is_some()
    );
    assert!(
        scenario
            .server
            .get("secrets", "demo-identity-pepper")
            .is_some()
    );
    assert!(
        scenario
            .server
            .get("secrets", "demo-orders-client")
            .is_some()
    );

    // Every desired child is applied under the operator's field manager, forced.
    let desired = children::desired(&fixture::platform(), &children::Materials::default());
    for child in &desired {
        let plural = child.kind.api_resource().plural;
        let call = calls
            .iter()
            .find(|c| {
                c.method == Method::PATCH
                    && c.plural == plural
                    && c.name.as_deref() == Some(&child.name)
            })
            .unwrap_or_else(|| panic!("{plural}/{} not applied", child.name));
        assert!(
            call.query.contains("fieldManager=tessera-operator")
                && call.query.contains("force=true")
        );
        assert!(call.body["apiVersion"].is_string() && call.body["kind"].is_string());
    }

    // The status comes last of the writes to the platform's children.
    let status = position(&calls, "PATCH platforms/demo/status");
    let last_child = calls
        .iter()
        .rposition(|c| c.method == Method::PATCH && c.plural != "platforms")
        .unwrap();
    assert!(status > last_child);
    assert_eq!(scenario.status()["observedGeneration"], json!(3));
    assert_eq!(
        scenario.status()["gatewayUrl"],
        json!("https://api.example.com")
    );
    let keys = scenario.status()["keys"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["state"], json!("active"));
    assert_eq!(scenario.status()["activeKey"], keys[0]["kid"]);
    // Deployments are not available yet.
    assert_eq!(scenario.condition("Ready")["status"], json!("False"));
    assert_eq!(
        scenario.condition("IdentityReady")["reason"],
        json!("Unavailable")
    );
    assert_eq!(scenario.condition("Degraded")["status"], json!("False"));
    // The JWKS ConfigMap holds the active key; the keyset Secret is what identity reads.
    let jwks = scenario.server.get("configmaps", "demo-jwks").unwrap();
    assert!(
        jwks["data"]["jwks.json"]
            .as_str()
            .unwrap()
            .contains(keys[0]["kid"].as_str().unwrap())
    );
    // An Event tells about the new key.
    assert!(
        calls
            .iter()
            .any(|c| c.plural == "events" && c.body["reason"] == "SigningKeyChanged")
    );
}

#[tokio::test]
async fn a_paused_platform_only_gets_its_status() {
    let mut platform = fixture::platform();
    platform.spec.paused = true;
    let scenario = Scenario::new(&platform, &REFERENCED);
    let (result, calls) = scenario.reconcile().await;
    result.unwrap();
    assert_eq!(writes(&calls), ["PATCH platforms/demo/status"]);
    assert_eq!(scenario.condition("Paused")["status"], json!("True"));
    assert!(
        scenario
            .server
            .get("secrets", "demo-identity-keyset")
            .is_none()
    );
}

#[tokio::test]
async fn children_no_longer_wanted_are_deleted_and_others_left_alone() {
    let scenario = Scenario::new(&fixture::platform(), &REFERENCED);
    scenario.reconcile().await.0.unwrap();
    // An onboarded service is removed from the spec.
    let mut platform = scenario.platform();
    platform.spec.services.retain(|s| s.name != "orders");
    scenario
        .server
        .put("platforms", serde_json::to_value(&platform).unwrap());
    // A look-alike Deployment of someone else: same labels, another owner.
    let mut foreign = scenario.server.get("deployments", "demo-orders").unwrap();
    foreign["metadata"]["name"] = json!("demo-foreign");
    foreign["metadata"]["ownerReferences"][0]["uid"] = json!("someone-else");
    scenario.server.put("deployments", foreign);

    let (result, calls) = scenario.reconcile().await;
    result.unwrap();
    let deleted: Vec<String> = calls
        .iter()
        .filter(|c| c.method == Method::DELETE)
        .map(Call::describe)
        .collect();
    for expected in [
        "DELETE deployments/demo-orders",
        "DELETE services/demo-orders",
        "DELETE configmaps/demo-orders-env",
        "DELETE secrets/demo-orders-client",
        "DELETE networkpolicies/demo-orders",
    ] {
        assert!(
            deleted.contains(&expected.to_owned()),
            "{expected} missing from {deleted:?}"
        );
    }
    assert!(
        !deleted
            .iter()
            .any(|d| d.contains("foreign") || d.contains("keyset") || d.contains("pepper"))
    );
    let routes = scenario
        .server
        .get("configmaps", "demo-gateway-routes")
        .unwrap();
    assert!(
        !routes["data"]["routes.yaml"]
            .as_str()
            .unwrap()
            .contains("/orders/")
    );
}

#[tokio::test]
async fn available_deployments_make_the_platform_ready() {
    let scenario = Scenario::new(&fixture::platform(), &REFERENCED);
    scenario.reconcile().await.0.unwrap();
    for mut deployment in scenario.server.all("deployments") {
        deployment["status"] = json!({"conditions": [{"type": "Available", "status": "True"}]});
        scenario.server.put("deployments", deployment);
    }
    scenario.reconcile().await.0.unwrap();
    assert_eq!(scenario.condition("Ready")["status"], json!("True"));
    assert_eq!(scenario.condition("OrdersReady")["status"], json!("True"));
    assert_eq!(
        scenario.condition("ProfileReady")["reason"],
        json!("Available")
    );
}

#[test]
fn kinds_cover_every_child() {
    let desired = children::desired(&fixture::platform(), &fixture::materials());
    for child in desired {
        assert!(Kind::ALL.contains(&child.kind));
    }
}

#[tokio::test]
async fn a_child_edited_by_hand_is_put_back_and_a_deleted_one_recreated() {
    let scenario = Scenario::new(&fixture::platform(), &REFERENCED);
    scenario.reconcile().await.0.unwrap();
    let wanted = scenario.server.get("deployments", "demo-identity").unwrap();
    let mut edited = wanted.clone();
    edited["spec"]["replicas"] = json!(7);
    edited["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = json!(false);
    scenario.server.put("deployments", edited);
    let (_, calls) = scenario.reconcile().await;
    assert!(writes(&calls).contains(&"PATCH deployments/demo-identity".to_owned()));
    let repaired = scenario.server.get("deployments", "demo-identity").unwrap();
    assert_eq!(repaired["spec"], wanted["spec"]);

    // Deleted by hand: the watch triggers a reconcile, which creates it again.
    let key = ("services", "demo-gateway");
    let before = scenario.server.get(key.0, key.1).unwrap();
    scenario.server.remove(key.0, key.1);
    scenario.reconcile().await.0.unwrap();
    assert_eq!(
        scenario.server.get(key.0, key.1).unwrap()["spec"],
        before["spec"]
    );
}

#[tokio::test]
async fn conditions_keep_their_transition_time_until_their_status_changes() {
    let scenario = Scenario::new(&fixture::platform(), &REFERENCED);
    scenario.reconcile().await.0.unwrap();
    let first = scenario.condition("IdentityReady");
    scenario.clock.advance(Duration::from_secs(120));
    scenario.reconcile().await.0.unwrap();
    assert_eq!(
        scenario.condition("IdentityReady")["lastTransitionTime"],
        first["lastTransitionTime"]
    );

    let mut deployment = scenario.server.get("deployments", "demo-identity").unwrap();
    deployment["status"] = json!({"conditions": [{"type": "Available", "status": "True"}]});
    scenario.server.put("deployments", deployment);
    scenario.reconcile().await.0.unwrap();
    let now = scenario.condition("IdentityReady");
    assert_eq!(now["status"], json!("True"));
    assert_ne!(now["lastTransitionTime"], first["lastTransitionTime"]);
    assert_eq!(now["observedGeneration"], json!(3));
}

#[tokio::test]
async fn volume_claims_are_created_once_and_never_re_applied() {
    let scenario = Scenario::new(&fixture::platform(), &REFERENCED);
    let (_, first) = scenario.reconcile().await;
    assert!(writes(&first).contains(&"PATCH persistentvolumeclaims/demo-logging-data".to_owned()));
    let (_, second) = scenario.reconcile().await;
    assert!(
        !writes(&second)
            .iter()
            .any(|w| w.contains("persistentvolumeclaims")),
        "{:?}",
        writes(&second)
    );
}
