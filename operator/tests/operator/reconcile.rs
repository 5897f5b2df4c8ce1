//! Reconcile call sequences against the mocked API server: what is written, in which
//! order, and what the status says.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use kube::runtime::events::{Recorder, Reporter};
use serde_json::{Value, json};
use service_kit::ManualClock;
use tessera_operator::Platform;
use tessera_operator::children::{self, Kind};
use tessera_operator::controller::{self, Context};
use tessera_operator::metrics::OperatorMetrics;
use time::macros::datetime;

use crate::apiserver::{ApiServer, Call};
use crate::fixture;

/// What each test drives: a mocked API server holding one platform, and a reconcile
/// context on a manual clock.
struct Scenario {
    server: ApiServer,
    cx: Arc<Context>,
    clock: ManualClock,
}

impl Scenario {
    /// `platform` stored in the API server; Secrets named in `existing` exist with a
    /// `url` key.
    fn new(platform: &Platform, existing: &[&str]) -> Self {
        let (server, client) = ApiServer::start();
        server.put("platforms", serde_json::to_value(platform).unwrap());
        for name in existing {
            server.put(
                "secrets",
                json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": name, "namespace": "tessera"},
                       "data": {"url": "cG9zdGdyZXM6Ly94", "tls.crt": "eA=="}}),
            );
        }
        let clock = ManualClock::new(datetime!(2026-11-25 12:00 UTC));
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "tessera-operator".into(),
                instance: None,
            },
        );
        let cx = Arc::new(Context::new(
            client,
            recorder,
            OperatorMetrics::default(),
            Arc::new(clock.clone()),
        ));
        Self { server, cx, clock }
    }

    /// The platform as currently stored (with the status the operator wrote).
    fn platform(&self) -> Platform {
        serde_json::from_value(self.server.get("platforms", "demo").unwrap()).unwrap()
    }

    async fn reconcile(
        &self,
    ) -> (
        Result<kube::runtime::controller::Action, controller::Error>,
        Vec<Call>,
    ) {
        let result = controller::reconcile(Arc::new(self.platform()), self.cx.clone()).await;
        (result, self.server.take_calls())
    }

    fn status(&self) -> Value {
        self.server.get("platforms", "demo").unwrap()["status"].clone()
    }

    fn condition(&self, type_: &str) -> Value {
        self.status()["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

fn writes(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.is_write())
        .map(Call::describe)
        .collect()
}

fn position(calls: &[Call], described: &str) -> usize {
    calls
        .iter()
        .position(|c| c.describe() == described)
        .unwrap_or_else(|| panic!("no call {described}: {:?}", writes(calls)))
}

/// The fixture's references: identity's Postgres URL, SMTP, TLS.
const REFERENCED: [&str; 3] = ["identity-db", "smtp", "api-tls"];

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
