//! Children against a real API server: created owned and labelled, a second reconcile
//! writes nothing, hand edits reverted and deleted children recreated (not while paused),
//! `Ready` from Deployment availability, pruning, garbage collection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube_testenv::make_deployment_available;
use serde_json::json;
use tessera_operator::Platform;
use tessera_operator::children::{INSTANCE, MANAGED_BY, MANAGER};
use tessera_operator::controller::reconcile;

use crate::{
    WAIT, children_of, context, create_platform, env, hand_edit_replicas, reconcile_stored,
    replicas,
};

#[tokio::test]
async fn reconcile_creates_owned_labelled_children_and_a_second_reconcile_writes_nothing() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("reconcile").await.unwrap();
    let platform = create_platform(&client, &namespace).await;
    let uid = platform.uid().unwrap();
    let cx = context(client.clone());

    reconcile(Arc::new(platform), cx.clone()).await.unwrap();
    let first = children_of(&client, &namespace).await;
    assert!(
        first.keys().any(|k| k.starts_with("Deployment/")),
        "no Deployment created: {:?}",
        first.keys()
    );
    for (name, object) in &first {
        let owners = object.metadata.owner_references.clone().unwrap_or_default();
        assert!(
            owners
                .iter()
                .any(|o| o.uid == uid && o.kind == "Platform" && o.controller == Some(true)),
            "{name} is not owned by the Platform: {owners:?}"
        );
        assert_eq!(
            object.labels().get(INSTANCE).map(String::as_str),
            Some("demo"),
            "{name} lacks {INSTANCE}"
        );
    }

    // Second pass on the stored Platform: nothing changes. The controller-manager
    // writes too (Deployment status, ReplicaSets): wait until it has settled first.
    let versions = |all: &BTreeMap<String, DynamicObject>| {
        all.iter()
            .map(|(k, o)| (k.clone(), o.resource_version().unwrap_or_default()))
            .collect::<BTreeMap<_, _>>()
    };
    // Settled means unchanged for 3 s: a loaded controller-manager can pause longer than
    // a second between its writes, and a write it makes later would count against the
    // reconcile below.
    let mut first = versions(&first);
    let mut quiet = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while quiet < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the controller-manager kept writing the children"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = versions(&children_of(&client, &namespace).await);
        if now == first {
            quiet += 1;
        } else {
            quiet = 0;
            first = now;
        }
    }
    let platforms: Api<Platform> = Api::namespaced(client.clone(), &namespace);
    let stored = platforms.get("demo").await.unwrap();
    reconcile(Arc::new(stored.clone()), cx.clone())
        .await
        .unwrap();
    let second = children_of(&client, &namespace).await;
    let second = versions(&second);
    // Kubernetes itself bumps a PersistentVolumeClaim's resourceVersion on the first
    // re-apply after its creation, even with an identical body (measured on 1.35.4: a
    // bare PVC applied twice goes 217 → 219, a third time stays 219; a ConfigMap never
    // moves). So PVCs are checked on the third pass; everything else on the second.
    let changed: Vec<_> = second
        .iter()
        .filter(|(k, v)| first.get(*k) != Some(*v) && !k.starts_with("PersistentVolumeClaim/"))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(changed.is_empty(), "the second reconcile wrote {changed:?}");
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );

    reconcile(Arc::new(stored), cx).await.unwrap();
    let third = versions(&children_of(&client, &namespace).await);
    let changed: Vec<_> = third
        .iter()
        .filter(|(k, v)| second.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    assert!(changed.is_empty(), "the third reconcile wrote {changed:?}");
}

#[tokio::test]
async fn deleting_the_platform_garbage_collects_its_children() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("gc").await.unwrap();
    let platform = create_platform(&client, &namespace).await;
    reconcile(Arc::new(platform), context(client.clone()))
        .await
        .unwrap();
    assert!(!children_of(&client, &namespace).await.is_empty());

    let platforms: Api<Platform> = Api::namespaced(client.clone(), &namespace);
    platforms
        .delete("demo", &DeleteParams::background())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = children_of(&client, &namespace).await;
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "children left after the Platform was deleted: {:?}",
            left.keys()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn hand_edits_are_reverted_and_deleted_children_recreated_unless_paused() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("drift").await.unwrap();
    create_platform(&client, &namespace).await;
    let cx = context(client.clone());
    reconcile_stored(&client, &namespace, &cx).await;

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let desired = replicas(&deployments.get("demo-gateway").await.unwrap());
    assert!(desired.is_some(), "the gateway Deployment sets replicas");
    let config_map = children_of(&client, &namespace)
        .await
        .into_keys()
        .find_map(|key| key.strip_prefix("ConfigMap/").map(str::to_owned))
        .expect("the platform has ConfigMaps");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);

    // Drift is repaired.
    hand_edit_replicas(&client, &namespace, 7).await;
    config_maps
        .delete(&config_map, &DeleteParams::default())
        .await
        .unwrap();
    reconcile_stored(&client, &namespace, &cx).await;
    assert_eq!(
        replicas(&deployments.get("demo-gateway").await.unwrap()),
        desired
    );
    assert!(
        config_maps.get_opt(&config_map).await.unwrap().is_some(),
        "the deleted ConfigMap {config_map} was not recreated"
    );

    // Paused: the same edits stay.
    let platforms: Api<Platform> = Api::namespaced(client.clone(), &namespace);
    platforms
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "paused": true } })),
        )
        .await
        .unwrap();
    hand_edit_replicas(&client, &namespace, 7).await;
    config_maps
        .delete(&config_map, &DeleteParams::default())
        .await
        .unwrap();
    reconcile_stored(&client, &namespace, &cx).await;
    assert_eq!(
        replicas(&deployments.get("demo-gateway").await.unwrap()),
        Some(7)
    );
    assert!(config_maps.get_opt(&config_map).await.unwrap().is_none());

    // Unpaused: repaired again.
    platforms
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "paused": false } })),
        )
        .await
        .unwrap();
    reconcile_stored(&client, &namespace, &cx).await;
    assert_eq!(
        replicas(&deployments.get("demo-gateway").await.unwrap()),
        desired
    );
    assert!(config_maps.get_opt(&config_map).await.unwrap().is_some());
}

fn ready_status(platform: &Platform) -> Option<String> {
    let status = serde_json::to_value(platform.status.as_ref()?).ok()?;
    status["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == "Ready")
        .and_then(|condition| condition["status"].as_str())
        .map(str::to_owned)
}

#[tokio::test]
async fn ready_once_every_deployment_is_available_and_kubectl_wait_returns() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("ready").await.unwrap();
    create_platform(&client, &namespace).await;
    let cx = context(client.clone());
    reconcile_stored(&client, &namespace, &cx).await;

    let platforms: Api<Platform> = Api::namespaced(client.clone(), &namespace);
    assert_eq!(
        ready_status(&platforms.get("demo").await.unwrap()).as_deref(),
        Some("False"),
        "no pod runs yet"
    );

    // No kubelet: mark the pods Ready; the real Deployment controller does the rest.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let selector = format!("{MANAGED_BY}={MANAGER}");
    for deployment in deployments
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
    {
        make_deployment_available(&client, &namespace, &deployment.name_any(), WAIT)
            .await
            .unwrap();
    }
    reconcile_stored(&client, &namespace, &cx).await;
    assert_eq!(
        ready_status(&platforms.get("demo").await.unwrap()).as_deref(),
        Some("True")
    );
    let output = env
        .kubectl()
        .args([
            "wait",
            "--namespace",
            &namespace,
            "--for=condition=Ready",
            "platform/demo",
            "--timeout=30s",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl wait: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn removing_an_onboarded_service_deletes_its_children() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("onboard").await.unwrap();
    let platforms: Api<Platform> = Api::namespaced(client.clone(), &namespace);
    let platform: Platform = serde_json::from_value(json!({
        "apiVersion": "tessera.dev/v1alpha1",
        "kind": "Platform",
        "metadata": { "name": "demo" },
        "spec": {
            "identity": { "issuer": "https://api.example.com" },
            "services": [{ "name": "orders", "image": "example.com/orders:1", "routePrefix": "/orders/" }],
        },
    }))
    .unwrap();
    platforms
        .create(&PostParams::default(), &platform)
        .await
        .unwrap();
    let cx = context(client.clone());
    reconcile_stored(&client, &namespace, &cx).await;
    let of_orders = |all: &BTreeMap<String, DynamicObject>| {
        all.keys()
            .filter(|key| key.contains("orders"))
            .cloned()
            .collect::<Vec<_>>()
    };
    let before = children_of(&client, &namespace).await;
    assert!(
        of_orders(&before)
            .iter()
            .any(|key| key.starts_with("Deployment/")),
        "no Deployment for the onboarded service: {:?}",
        before.keys()
    );

    platforms
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "services": [] } })),
        )
        .await
        .unwrap();
    reconcile_stored(&client, &namespace, &cx).await;
    let after = children_of(&client, &namespace).await;
    // Deletion is immediate for the objects themselves; `children_of` may still list
    // ones being finalized, so wait briefly.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut left = of_orders(&after);
    while !left.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "children of the removed service left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = of_orders(&children_of(&client, &namespace).await);
    }
    // The built-in components stay.
    assert!(after.contains_key("Deployment/demo-gateway"));
    // The status no longer reports on the removed service.
    let conditions = platforms
        .get("demo")
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions;
    let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
    assert!(!types.contains(&"OrdersReady"), "{types:?}");
    assert!(types.contains(&"GatewayReady"), "{types:?}");
}

/// The pod template's config checksum of Deployment `name`.
async fn pod_checksum(deployments: &Api<Deployment>, name: &str) -> String {
    deployments
        .get(name)
        .await
        .unwrap()
        .spec
        .and_then(|spec| spec.template.metadata)
        .and_then(|meta| meta.annotations)
        .and_then(|annotations| annotations.get("tessera.dev/config-checksum").cloned())
        .expect("a config checksum")
}

/// A generated Secret deleted by hand is created again with new values; the components
/// that read it from their environment (env vars from Secrets never change in a running
/// pod) roll, or they would keep presenting the old client secret to identity, whose
/// hot-reloaded client registry already holds the new one. Others do not roll.
#[tokio::test]
async fn a_regenerated_client_secret_rolls_the_component_that_uses_it() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("regen").await.unwrap();
    create_platform(&client, &namespace).await;
    let cx = context(client.clone());
    reconcile_stored(&client, &namespace, &cx).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), &namespace);
    let gateway_before = pod_checksum(&deployments, "demo-gateway").await;
    let profile_before = pod_checksum(&deployments, "demo-profile").await;
    let secret_before = secrets.get("demo-gateway-client").await.unwrap().data;

    secrets
        .delete("demo-gateway-client", &DeleteParams::default())
        .await
        .unwrap();
    reconcile_stored(&client, &namespace, &cx).await;
    let secret_after = secrets.get("demo-gateway-client").await.unwrap().data;
    assert_ne!(secret_after, secret_before, "a new client secret");
    assert_ne!(
        pod_checksum(&deployments, "demo-gateway").await,
        gateway_before,
        "the gateway's pods keep the old client secret"
    );
    assert_eq!(
        pod_checksum(&deployments, "demo-profile").await,
        profile_before,
        "a component with its own client secret rolled"
    );
}
