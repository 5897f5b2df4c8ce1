//! Key rotation over several cycles against a real API server.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use service_kit::{Clock as _, ManualClock};
use tessera_operator::Platform;
use tessera_operator::crd::PlatformStatus;
use time::OffsetDateTime;

use crate::{WAIT, context_with_clock, env, reconcile_stored};

/// Several rotation cycles on a manual clock (30 s steps, 10-minute interval, 60 s
/// tokens): at every step exactly one key is active (status and keyset agree), and the
/// JWKS ConfigMap holds every key that signed a token still alive.
#[tokio::test]
async fn key_rotation_keeps_every_live_tokens_key_published_over_several_cycles() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("rotation").await.unwrap();
    let platforms = create_rotating_platform(&client, &namespace).await;
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let cx = context_with_clock(client.clone(), Arc::new(clock.clone()));
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let ttl = Duration::from_secs(60);
    // (kid, expiry) of a token signed at each step by the then active key.
    let mut live: Vec<(String, OffsetDateTime)> = Vec::new();
    let mut active_keys = Vec::<String>::new();
    for step in 0..80 {
        reconcile_stored(&client, &namespace, &cx).await;
        let now = clock.now();
        let status = platforms.get("demo").await.unwrap().status.unwrap();
        let active: Vec<_> = status
            .keys
            .iter()
            .filter(|key| key.state == "active")
            .map(|key| key.kid.clone())
            .collect();
        assert_eq!(active.len(), 1, "step {step}: active keys {active:?}");
        let active = active[0].clone();
        assert_eq!(
            status.active_key.as_deref(),
            Some(active.as_str()),
            "step {step}"
        );

        let jwks = config_maps.get("demo-jwks").await.unwrap();
        let jwks: serde_json::Value = serde_json::from_str(
            jwks.data
                .as_ref()
                .and_then(|data| data.get("jwks.json"))
                .expect("jwks.json"),
        )
        .unwrap();
        let published: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|key| key["kid"].as_str())
            .collect();
        live.retain(|(_, expiry)| *expiry > now);
        for (kid, expiry) in &live {
            assert!(
                published.contains(&kid.as_str()),
                "step {step}: key {kid} signed a token alive until {expiry} but is not in the JWKS {published:?}"
            );
        }
        assert!(published.contains(&active.as_str()), "step {step}");
        live.push((active.clone(), now + ttl));
        if active_keys.last() != Some(&active) {
            active_keys.push(active);
        }
        clock.advance(Duration::from_secs(30));
    }
    // 80 × 30 s = 40 minutes of 10-minute intervals.
    assert!(
        active_keys.len() >= 4,
        "the active key changed only {} times: {active_keys:?}",
        active_keys.len() - 1
    );
    assert_every_activation_has_its_event(&client, &namespace, &active_keys[1..]).await;

    let status = platforms.get("demo").await.unwrap().status.unwrap();
    assert_removed_keys_are_in_the_history(&status, &active_keys);
}

/// The API server refuses a key history beyond its bound with a message naming it.
#[tokio::test]
async fn the_api_server_refuses_a_key_history_above_twenty() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("history").await.unwrap();
    let platforms: Api<Platform> = Api::namespaced(client.clone(), &namespace);
    let mut platform: Platform = serde_json::from_value(json!({
        "apiVersion": "tessera.dev/v1alpha1",
        "kind": "Platform",
        "metadata": { "name": "demo" },
        "spec": { "identity": {
            "issuer": "https://api.example.com",
            "keyPolicy": { "history": 21 },
        } },
    }))
    .unwrap();
    let error = platforms
        .create(&PostParams::default(), &platform)
        .await
        .expect_err("history 21 must be refused")
        .to_string();
    assert!(
        error.contains("keyPolicy.history") && error.contains("20"),
        "{error}"
    );
    platform.spec.identity.key_policy.history = Some(20);
    platforms
        .create(&PostParams::default(), &platform)
        .await
        .unwrap();
}

/// The API server refuses a retirement that would remove a key while a token it signed
/// (up to 120 s after its retirement, until the keyset reaches identity) is still
/// accepted (60 s past `exp`), and accepts the least one that is enough.
#[tokio::test]
async fn the_api_server_refuses_a_retirement_shorter_than_lifetime_propagation_and_leeway() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("retirement").await.unwrap();
    let platforms: Api<Platform> = Api::namespaced(client.clone(), &namespace);
    let mut platform: Platform = serde_json::from_value(json!({
        "apiVersion": "tessera.dev/v1alpha1",
        "kind": "Platform",
        "metadata": { "name": "demo" },
        "spec": { "identity": {
            "issuer": "https://api.example.com",
            "accessTokenTtlSeconds": 900,
            "keyPolicy": { "retirementSeconds": 900 },
        } },
    }))
    .unwrap();
    for refused in [900, 1079] {
        platform.spec.identity.key_policy.retirement_seconds = Some(refused);
        let error = platforms
            .create(&PostParams::default(), &platform)
            .await
            .expect_err("a retirement under lifetime + 180 s must be refused")
            .to_string();
        assert!(
            error.contains("retirementSeconds must be at least accessTokenTtlSeconds + 180"),
            "{refused}: {error}"
        );
    }
    platform.spec.identity.key_policy.retirement_seconds = Some(1080);
    platforms
        .create(&PostParams::default(), &platform)
        .await
        .unwrap();
}

/// Kubernetes Events tell the rotation's story: each of `activated` has an Event saying it
/// became active.
async fn assert_every_activation_has_its_event(
    client: &Client,
    namespace: &str,
    activated: &[String],
) {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), namespace);
    let notes: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|event| event.reason.as_deref() == Some("SigningKeyChanged"))
        .filter_map(|event| event.note)
        .collect();
    for kid in activated {
        assert!(
            notes
                .iter()
                .any(|note| note.contains(kid.as_str()) && note.ends_with("-> active")),
            "no SigningKeyChanged Event says {kid} became active; Events: {notes:?}"
        );
    }
}

/// Keys removed along the way are listed in `status.keyHistory` (the API server stored
/// it), newest first, never a key still in the keyset.
fn assert_removed_keys_are_in_the_history(status: &PlatformStatus, active_keys: &[String]) {
    let history: Vec<&str> = status.key_history.iter().map(|k| k.kid.as_str()).collect();
    assert!(!history.is_empty(), "no removed key listed: {status:?}");
    assert!(history.len() <= 5, "{history:?}");
    let order: Vec<usize> = history
        .iter()
        .map(|kid| {
            active_keys
                .iter()
                .position(|k| k == kid)
                .unwrap_or_else(|| panic!("{kid} never signed"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] > w[1]),
        "not newest first: {history:?}"
    );
    assert!(
        status
            .keys
            .iter()
            .all(|key| !history.contains(&key.kid.as_str())),
        "a listed key is still in the keyset"
    );
}

/// A clock whose first reading blocks until the test lets it go: the reconcile holding it
/// has read the keyset Secret (the rotation step is its first reading of the time) and
/// waits there, as a replica paused mid-reconcile (or a leader that lost its Lease
/// without noticing) would, while another instance rotates the keys.
#[derive(Debug)]
struct GatedClock {
    at: OffsetDateTime,
    reached: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
    release: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl service_kit::Clock for GatedClock {
    fn now(&self) -> OffsetDateTime {
        let reached = self.reached.lock().unwrap().take();
        if let Some(reached) = reached {
            reached.send(()).unwrap();
            let release = self.release.lock().unwrap().take().unwrap();
            release.recv().unwrap();
        }
        self.at
    }
}

/// A reconcile that read the keyset before another instance rotated it must not write
/// its stale result over the newer keyset: that would drop the key identity signs with
/// (every token it signed fails) and publish a key that never signs. The stale write is
/// refused (the keyset is written only over the version it was computed from) and the
/// reconcile is retried from the stored keyset.
#[tokio::test]
async fn a_stale_reconcile_cannot_overwrite_a_newer_keyset() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("stale-keyset").await.unwrap();
    let platforms = create_rotating_platform(&client, &namespace).await;
    let start = OffsetDateTime::now_utc();
    let clock = ManualClock::new(start);
    let cx = context_with_clock(client.clone(), Arc::new(clock.clone()));
    // The first key, then a manual rotation request.
    reconcile_stored(&client, &namespace, &cx).await;
    platforms
        .patch(
            "demo",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({
                "metadata": { "annotations": { "tessera.dev/rotate-keys": "1" } }
            })),
        )
        .await
        .unwrap();

    // The stale instance reads the keyset and stops there. It runs on a thread of its own:
    // its clock blocks the thread.
    let (reached_tx, reached_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel();
    let gated = GatedClock {
        at: start + Duration::from_secs(1),
        reached: std::sync::Mutex::new(Some(reached_tx)),
        release: std::sync::Mutex::new(Some(release_rx)),
    };
    let stale = spawn_reconcile_on_its_own_thread(env, namespace.clone(), gated);
    tokio::task::spawn_blocking(move || reached_rx.recv_timeout(WAIT))
        .await
        .unwrap()
        .expect("the stale reconcile never read the keyset");

    // Meanwhile the leader publishes the next key and, after the pre-publication, makes it
    // the signing key.
    reconcile_stored(&client, &namespace, &cx).await;
    clock.advance(Duration::from_secs(421));
    reconcile_stored(&client, &namespace, &cx).await;
    let signing = stored_keyset(&client, &namespace).await;
    let signing = signing.active().expect("an active key").kid.clone();
    assert_ne!(
        Some(signing.as_str()),
        platforms
            .get("demo")
            .await
            .unwrap()
            .status
            .unwrap()
            .keys
            .iter()
            .find(|key| key.state == "retiring")
            .map(|key| key.kid.as_str()),
    );

    release_tx.send(()).unwrap();
    let outcome = tokio::task::spawn_blocking(move || stale.join().unwrap())
        .await
        .unwrap();
    let after = stored_keyset(&client, &namespace).await;
    assert_eq!(
        after.active().map(|key| key.kid.as_str()),
        Some(signing.as_str()),
        "the stale reconcile ({outcome:?}) replaced the keyset: {:?}",
        after.infos()
    );
    assert!(outcome.is_err(), "the stale write was not refused");

    // The next reconcile starts from the stored keyset, changes nothing, and publishes
    // the signing key again (the stale instance published its own JWKS before it failed).
    reconcile_stored(&client, &namespace, &cx).await;
    assert_eq!(stored_keyset(&client, &namespace).await, after);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let jwks = config_maps.get("demo-jwks").await.unwrap().data.unwrap();
    assert!(jwks["jwks.json"].contains(&signing), "{jwks:?}");
}

/// Reconciles the stored platform with a clock of its own on a thread (and runtime) of
/// its own; the outcome, with the error as text.
fn spawn_reconcile_on_its_own_thread(
    env: &'static kube_testenv::TestEnv,
    namespace: String,
    clock: GatedClock,
) -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = env.client().unwrap();
            let cx = context_with_clock(client.clone(), Arc::new(clock));
            let platforms: Api<Platform> = Api::namespaced(client, &namespace);
            let stored = platforms.get("demo").await.unwrap();
            tessera_operator::controller::reconcile(Arc::new(stored), cx)
                .await
                .map(drop)
                .map_err(|error| error.to_string())
        })
    })
}

async fn stored_keyset(client: &Client, namespace: &str) -> tessera_keys::Keyset {
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), namespace);
    let secret = secrets.get("demo-identity-keyset").await.unwrap();
    tessera_keys::Keyset::from_json(&secret.data.unwrap()["keyset.json"].0).unwrap()
}

/// A keyset Secret deleted while its keys are in use is not silently replaced by a new
/// keyset (every token signed with the old keys would stop verifying, and the new key
/// would sign unpublished): the platform is `Degraded` until the Secret is restored or a
/// rotation is requested, which starts a fresh keyset.
#[tokio::test]
async fn a_deleted_keyset_is_not_regenerated_until_a_rotation_is_requested() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("lost-keyset").await.unwrap();
    crate::create_platform(&client, &namespace).await;
    let cx = crate::context(client.clone());
    reconcile_stored(&client, &namespace, &cx).await;
    let old = stored_keyset(&client, &namespace).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), &namespace);
    secrets
        .delete("demo-identity-keyset", &kube::api::DeleteParams::default())
        .await
        .unwrap();

    reconcile_stored(&client, &namespace, &cx).await;
    assert!(
        secrets
            .get_opt("demo-identity-keyset")
            .await
            .unwrap()
            .is_none(),
        "a new keyset replaced the deleted one"
    );
    let platforms: Api<Platform> = Api::namespaced(client.clone(), &namespace);
    let status = platforms.get("demo").await.unwrap().status.unwrap();
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "KeysetMissing")
    );
    assert!(
        degraded.message.contains("demo-identity-keyset"),
        "{degraded:?}"
    );

    platforms
        .patch(
            "demo",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({
                "metadata": { "annotations": { "tessera.dev/rotate-keys": "new keyset" } }
            })),
        )
        .await
        .unwrap();
    reconcile_stored(&client, &namespace, &cx).await;
    let new = stored_keyset(&client, &namespace).await;
    assert_ne!(
        new.active().map(|k| &k.kid),
        old.active().map(|k| &k.kid),
        "a fresh keyset"
    );
    let status = platforms.get("demo").await.unwrap().status.unwrap();
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Degraded" && c.status == "False"),
        "{:?}",
        status.conditions
    );
    assert_eq!(
        status.handled_rotation_request.as_deref(),
        Some("new keyset")
    );
}

/// Creates Platform `demo` in `namespace` with 60 s access tokens and a 10-minute
/// rotation interval (several cycles fit a test on a manual clock).
async fn create_rotating_platform(client: &Client, namespace: &str) -> Api<Platform> {
    let platforms: Api<Platform> = Api::namespaced(client.clone(), namespace);
    let platform: Platform = serde_json::from_value(json!({
        "apiVersion": "tessera.dev/v1alpha1",
        "kind": "Platform",
        "metadata": { "name": "demo" },
        "spec": { "identity": {
            "issuer": "https://api.example.com",
            "accessTokenTtlSeconds": 60,
            "keyPolicy": { "rotationIntervalSeconds": 600 },
        } },
    }))
    .unwrap();
    platforms
        .create(&PostParams::default(), &platform)
        .await
        .unwrap();
    platforms
}
