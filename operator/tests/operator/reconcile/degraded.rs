//! A spec the operator cannot act on: `Degraded` with the reason, nothing else written;
//! a corrupt keyset is an error retried with backoff, never silently replaced.

use std::sync::Arc;

use serde_json::{Value, json};
use tessera_operator::controller;

use super::{REFERENCED, Scenario, writes};
use crate::fixture;
#[tokio::test]
async fn a_missing_secret_reference_degrades_the_platform_and_writes_nothing_else() {
    let scenario = Scenario::new(&fixture::platform(), &["smtp", "api-tls"]);
    let (result, calls) = scenario.reconcile().await;
    result.expect("a missing Secret is not an error to retry with backoff");
    let writes: Vec<String> = writes(&calls)
        .into_iter()
        .filter(|w| !w.starts_with("POST events"))
        .collect();
    assert_eq!(writes, ["PATCH platforms/demo/status"]);
    let degraded = scenario.condition("Degraded");
    assert_eq!(degraded["status"], json!("True"));
    assert_eq!(degraded["reason"], json!("SecretNotFound"));
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.contains("identity-db")
            && message.contains("spec.identity.storage.postgres.urlSecretRef"),
        "{message}"
    );
    assert_eq!(scenario.condition("Ready")["status"], json!("False"));
    assert!(
        scenario.server.all("secrets").len() == 2,
        "no generated Secret was created"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.plural == "events" && c.body["type"] == "Warning")
    );
}

#[tokio::test]
async fn a_secret_without_the_referenced_key_degrades_the_platform() {
    let mut platform = fixture::platform();
    platform.spec.notification.smtp.as_mut().unwrap().key = "smtp-url".into();
    let scenario = Scenario::new(&platform, &REFERENCED);
    let (result, _) = scenario.reconcile().await;
    result.unwrap();
    let message = scenario.condition("Degraded")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("has no key \"smtp-url\""), "{message}");
}

#[tokio::test]
async fn a_key_policy_that_cannot_work_degrades_the_platform_instead_of_failing_forever() {
    let mut platform = fixture::platform();
    // Pre-publication derives from the JWKS max-age (1 day + 120 s): longer than the interval.
    platform.spec.identity.jwks_max_age_seconds = Some(86_400);
    let scenario = Scenario::new(&platform, &REFERENCED);
    let (result, calls) = scenario.reconcile().await;
    result.unwrap();
    let writes: Vec<String> = writes(&calls)
        .into_iter()
        .filter(|w| !w.starts_with("POST events"))
        .collect();
    assert_eq!(writes, ["PATCH platforms/demo/status"]);
    let degraded = scenario.condition("Degraded");
    assert_eq!(degraded["reason"], json!("InvalidKeyPolicy"));
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("pre_publication"),
        "{degraded}"
    );
}

#[tokio::test]
async fn a_corrupt_keyset_secret_is_an_error_not_a_new_keyset() {
    let scenario = Scenario::new(&fixture::platform(), &REFERENCED);
    scenario.reconcile().await.0.unwrap();
    let mut keyset = scenario
        .server
        .get("secrets", "demo-identity-keyset")
        .unwrap();
    keyset["data"]["keyset.json"] = json!("bm90IGpzb24=");
    scenario.server.put("secrets", keyset.clone());
    let (result, calls) = scenario.reconcile().await;
    let error = result.expect_err("a corrupt keyset must not be replaced silently");
    assert!(error.to_string().contains("keyset"), "{error}");
    assert!(
        !writes(&calls)
            .iter()
            .any(|w| w.contains("keyset") || w.contains("jwks"))
    );
    assert_eq!(
        scenario
            .server
            .get("secrets", "demo-identity-keyset")
            .unwrap(),
        keyset
    );
    // The error policy backs off, doubling.
    let platform = Arc::new(scenario.platform());
    let first = controller::error_policy(platform.clone(), &error, scenario.cx.clone());
    let second = controller::error_policy(platform, &error, scenario.cx.clone());
    assert!(format!("{first:?}").contains("5s"), "{first:?}");
    assert!(format!("{second:?}").contains("10s"), "{second:?}");
}

/// Adds a Secret reference to the fixture.
type Spoil = fn(&mut tessera_operator::Platform);

#[tokio::test]
async fn every_kind_of_secret_reference_is_checked_and_named() {
    use tessera_operator::crd::{PostgresStorage, SecretKeyRef, StorageSpec};
    let cases: [(&str, &str, Spoil); 5] = [
        ("api-tls", "spec.gateway.tlsSecretName", |_| {}),
        ("smtp", "spec.notification.smtp", |_| {}),
        ("sms-provider", "spec.notification.sms", |p| {
            p.spec.notification.sms = Some(SecretKeyRef {
                name: "sms-provider".into(),
                key: "url".into(),
            });
        }),
        ("push-provider", "spec.notification.push", |p| {
            p.spec.notification.push = Some(SecretKeyRef {
                name: "push-provider".into(),
                key: "url".into(),
            });
        }),
        (
            "profile-db",
            "spec.profile.storage.postgres.urlSecretRef",
            |p| {
                p.spec.profile.storage = Some(StorageSpec {
                    sqlite: None,
                    postgres: Some(PostgresStorage {
                        url_secret_ref: SecretKeyRef {
                            name: "profile-db".into(),
                            key: "url".into(),
                        },
                    }),
                });
            },
        ),
    ];
    for (missing, field, spoil) in cases {
        let mut platform = fixture::platform();
        spoil(&mut platform);
        let present: Vec<&str> = ["identity-db", "smtp", "api-tls"]
            .into_iter()
            .filter(|name| *name != missing)
            .collect();
        let scenario = Scenario::new(&platform, &present);
        let (result, calls) = scenario.reconcile().await;
        result.unwrap();
        let degraded = scenario.condition("Degraded");
        assert_eq!(degraded["reason"], json!("SecretNotFound"), "{missing}");
        let message = degraded["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("\"{missing}\"")) && message.contains(field),
            "{missing}: {message}"
        );
        let written: Vec<String> = writes(&calls)
            .into_iter()
            .filter(|w| !w.starts_with("POST events"))
            .collect();
        assert_eq!(written, ["PATCH platforms/demo/status"], "{missing}");
    }
}

#[tokio::test]
async fn a_retirement_shorter_than_the_token_lifetime_degrades_even_past_the_crd() {
    // The CRD refuses it; a Platform stored without that rule (an older CRD) must still not
    // have keys removed while tokens they signed are valid.
    let mut platform = fixture::platform();
    platform.spec.identity.key_policy.retirement_seconds = Some(300);
    let scenario = Scenario::new(&platform, &REFERENCED);
    let (result, calls) = scenario.reconcile().await;
    result.unwrap();
    let writes: Vec<String> = writes(&calls)
        .into_iter()
        .filter(|w| !w.starts_with("POST events"))
        .collect();
    assert_eq!(writes, ["PATCH platforms/demo/status"]);
    let degraded = scenario.condition("Degraded");
    assert_eq!(degraded["reason"], json!("InvalidKeyPolicy"));
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.contains("retirement (300s)") && message.contains("(600s)"),
        "{message}"
    );
}

/// Reconciles the fixture once, spoils generated Secret `name` with `spoil`, reconciles
/// again; returns the second pass's writes (Events aside) and the Degraded condition.
async fn with_spoiled_generated_secret(
    name: &str,
    spoil: fn(&mut Value),
) -> (Scenario, Vec<String>) {
    let scenario = Scenario::new(&fixture::platform(), &REFERENCED);
    scenario.reconcile().await.0.unwrap();
    let mut secret = scenario.server.get("secrets", name).unwrap();
    spoil(&mut secret);
    scenario.server.put("secrets", secret);
    let (result, calls) = scenario.reconcile().await;
    result.expect("a spoiled generated Secret is reported, not retried with backoff");
    let writes = writes(&calls)
        .into_iter()
        .filter(|w| !w.starts_with("POST events"))
        .collect();
    (scenario, writes)
}

#[tokio::test]
async fn a_hand_edited_pepper_degrades_the_platform_naming_the_secret_and_writes_nothing_else() {
    // "not-a-pepper" in base64: decodes, but to 12 bytes, not 32.
    let (scenario, writes) = with_spoiled_generated_secret("demo-identity-pepper", |s| {
        s["data"]["pepper"] = json!("bm90LWEtcGVwcGVy");
    })
    .await;
    let registry = scenario
        .server
        .get("secrets", "demo-identity-clients")
        .unwrap();
    assert_eq!(
        writes,
        ["PATCH platforms/demo/status"],
        "nothing may be derived from the bad pepper"
    );
    let degraded = scenario.condition("Degraded");
    assert_eq!(degraded["status"], json!("True"));
    assert_eq!(degraded["reason"], json!("InvalidGeneratedSecret"));
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.contains("Secret tessera/demo-identity-pepper")
            && message.contains("pepper is not 32 bytes of base64"),
        "{message}"
    );
    assert!(
        !message.contains("bm90LWEtcGVwcGVy") && !message.contains("not-a-pepper"),
        "the message shows the value: {message}"
    );
    assert_eq!(scenario.condition("Ready")["status"], json!("False"));
    assert_eq!(
        scenario
            .server
            .get("secrets", "demo-identity-clients")
            .unwrap(),
        registry
    );
}

#[tokio::test]
async fn a_client_secret_without_its_key_degrades_the_platform_instead_of_dropping_the_client() {
    let (scenario, writes) = with_spoiled_generated_secret("demo-orders-client", |s| {
        s["data"].as_object_mut().unwrap().remove("client_secret");
    })
    .await;
    assert_eq!(
        writes,
        ["PATCH platforms/demo/status"],
        "the client registry was rewritten without the client"
    );
    let degraded = scenario.condition("Degraded");
    assert_eq!(degraded["reason"], json!("InvalidGeneratedSecret"));
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.contains("Secret tessera/demo-orders-client")
            && message.contains("missing key client_secret"),
        "{message}"
    );
}

#[tokio::test]
async fn a_retirement_without_room_for_propagation_and_leeway_degrades_even_past_the_crd() {
    // The fixture's tokens live 600 s: 600 + 120 s (the keyset reaching identity) + 60 s
    // leeway is the least that keeps the last token the retiring key signed verifiable.
    let mut platform = fixture::platform();
    platform.spec.identity.key_policy.retirement_seconds = Some(779);
    let scenario = Scenario::new(&platform, &REFERENCED);
    let (result, calls) = scenario.reconcile().await;
    result.unwrap();
    let writes: Vec<String> = writes(&calls)
        .into_iter()
        .filter(|w| !w.starts_with("POST events"))
        .collect();
    assert_eq!(writes, ["PATCH platforms/demo/status"]);
    let degraded = scenario.condition("Degraded");
    assert_eq!(degraded["reason"], json!("InvalidKeyPolicy"));
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.contains("retirement (779s)") && message.contains("(780s)"),
        "{message}"
    );

    let mut platform = scenario.platform();
    platform.spec.identity.key_policy.retirement_seconds = Some(780);
    scenario
        .server
        .put("platforms", serde_json::to_value(&platform).unwrap());
    scenario.reconcile().await.0.unwrap();
    assert_eq!(scenario.condition("Degraded")["status"], json!("False"));
}
