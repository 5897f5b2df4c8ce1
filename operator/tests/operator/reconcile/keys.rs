//! Key rotation through reconciles: JWKS before keyset, the rotate-keys annotation,
//! requeue at the deadline, and the key history in the status.

use std::time::Duration;

use serde_json::{Value, json};

use super::{REFERENCED, Scenario, position, writes};
use crate::fixture;
#[tokio::test]
async fn the_rotate_keys_annotation_publishes_a_next_key_then_switches_to_it() {
    let scenario = Scenario::new(&fixture::platform(), &REFERENCED);
    scenario.reconcile().await.0.unwrap();
    let first = scenario.status()["activeKey"].clone();

    let mut platform = scenario.platform();
    platform
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("tessera.dev/rotate-keys".into(), "2026-11-25T12:05".into());
    scenario
        .server
        .put("platforms", serde_json::to_value(&platform).unwrap());
    scenario.clock.advance(Duration::from_secs(300));
    let (result, calls) = scenario.reconcile().await;
    // Requeued exactly when the next key may take over (pre-publication: 300 s + 120 s).
    let action = result.unwrap();
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(420))
    );
    // A next key is published (JWKS first), the old one still signs.
    assert!(
        position(&calls, "PATCH configmaps/demo-jwks")
            < position(&calls, "PATCH secrets/demo-identity-keyset")
    );
    assert_eq!(scenario.status()["activeKey"], first);
    assert_eq!(scenario.condition("KeysRotating")["status"], json!("True"));
    let next = scenario.status()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["state"] == "next")
        .cloned()
        .expect("a next key");
    let jwks = scenario.server.get("configmaps", "demo-jwks").unwrap();
    assert!(
        jwks["data"]["jwks.json"]
            .as_str()
            .unwrap()
            .contains(next["kid"].as_str().unwrap())
    );
    assert!(scenario.status()["handledRotationRequest"].is_null());

    // Once published for the pre-publication time (300 s max-age + 120 s), it signs.
    scenario.clock.advance(Duration::from_secs(420));
    scenario.reconcile().await.0.unwrap();
    assert_eq!(scenario.status()["activeKey"], next["kid"]);
    assert_eq!(
        scenario.status()["handledRotationRequest"],
        json!("2026-11-25T12:05")
    );
    let states: Vec<Value> = scenario.status()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].clone())
        .collect();
    assert_eq!(states, [json!("retiring"), json!("active")]);
    assert_eq!(scenario.condition("KeysRotating")["status"], json!("False"));

    // The request is handled: later reconciles do not rotate again.
    scenario.clock.advance(Duration::from_secs(60));
    let (_, calls) = scenario.reconcile().await;
    assert!(!writes(&calls).contains(&"PATCH secrets/demo-identity-keyset".to_owned()));
}

/// Requests a rotation with `value` and reconciles until the next key signs.
async fn rotate_once(scenario: &Scenario, value: &str) {
    let mut platform = scenario.platform();
    platform
        .metadata
        .annotations
        .get_or_insert_default()
        .insert("tessera.dev/rotate-keys".into(), value.into());
    scenario
        .server
        .put("platforms", serde_json::to_value(&platform).unwrap());
    scenario.reconcile().await.0.unwrap();
    // Pre-publication: 300 s JWKS max-age + 120 s.
    scenario.clock.advance(Duration::from_secs(420));
    scenario.reconcile().await.0.unwrap();
}

#[tokio::test]
async fn a_removed_key_stays_listed_in_the_key_history_up_to_the_policy_count() {
    let mut platform = fixture::platform();
    platform.spec.identity.key_policy.history = Some(1);
    let scenario = Scenario::new(&platform, &REFERENCED);
    scenario.reconcile().await.0.unwrap();
    let first = scenario.status()["activeKey"].as_str().unwrap().to_owned();
    rotate_once(&scenario, "one").await;
    assert!(
        scenario.status()["keyHistory"].is_null(),
        "nothing removed yet"
    );

    // Retirement: 600 s token lifetime + 300 s JWKS max-age + 120 s propagation + 60 s
    // leeway.
    scenario.clock.advance(Duration::from_secs(1080));
    scenario.reconcile().await.0.unwrap();
    let history = scenario.status()["keyHistory"].clone();
    assert_eq!(history[0]["kid"], json!(first), "{history}");
    assert_eq!(history[0]["algorithm"], json!("EdDSA"));
    assert_eq!(history[0]["removedAt"], json!("2026-11-25T12:25:00Z"));
    assert!(history[0]["retiringAt"].is_string() && history[0]["activatedAt"].is_string());
    let jwks = scenario.server.get("configmaps", "demo-jwks").unwrap();
    assert!(
        !jwks["data"]["jwks.json"].as_str().unwrap().contains(&first),
        "the removed key left the JWKS"
    );
    let states: Vec<Value> = scenario.status()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].clone())
        .collect();
    assert_eq!(states, [json!("active")]);

    // A second removal pushes the first out: history 1 keeps only the newest.
    let second = scenario.status()["activeKey"].as_str().unwrap().to_owned();
    rotate_once(&scenario, "two").await;
    scenario.clock.advance(Duration::from_secs(1080));
    scenario.reconcile().await.0.unwrap();
    let history = scenario.status()["keyHistory"].as_array().unwrap().clone();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["kid"], json!(second));

    // Pausing keeps the history as it is.
    let mut paused = scenario.platform();
    paused.spec.paused = true;
    scenario
        .server
        .put("platforms", serde_json::to_value(&paused).unwrap());
    scenario.reconcile().await.0.unwrap();
    assert_eq!(
        scenario.status()["keyHistory"].as_array().unwrap(),
        &history
    );
}

#[tokio::test]
async fn a_stale_cached_platform_neither_loses_the_key_history_nor_rotates_again() {
    let scenario = Scenario::new(&fixture::platform(), &REFERENCED);
    scenario.reconcile().await.0.unwrap();
    rotate_once(&scenario, "one").await;
    // The controller's cache still holds the platform as it was before the removal.
    let stale = scenario.platform();
    scenario.clock.advance(Duration::from_secs(1080));
    scenario.reconcile().await.0.unwrap();
    let history = scenario.status()["keyHistory"].clone();
    let handled = scenario.status()["handledRotationRequest"].clone();
    assert_eq!(history.as_array().map(Vec::len), Some(1), "{history}");

    scenario.clock.advance(Duration::from_secs(1));
    let (result, calls) = scenario.reconcile_with(stale).await;
    result.unwrap();
    assert_eq!(scenario.status()["keyHistory"], history);
    assert_eq!(scenario.status()["handledRotationRequest"], handled);
    assert!(
        !writes(&calls).contains(&"PATCH secrets/demo-identity-keyset".to_owned()),
        "no second rotation: {:?}",
        writes(&calls)
    );
}
