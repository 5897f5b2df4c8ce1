//! Generated Secrets edited by hand into something unusable (a pepper that is not 32
//! bytes, a client Secret without its key): the platform is `Degraded` naming the Secret,
//! and nothing deployed is rewritten from the bad value until it is restored.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tessera_operator::Platform;

use crate::{context, create_platform, env, reconcile_stored};

/// What a reconcile derives from the generated Secrets: the client registry identity
/// reads, and the pod templates (their checksum covers the pepper and client secrets).
async fn derived(
    client: &Client,
    namespace: &str,
) -> (Option<BTreeMap<String, ByteString>>, String, String) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let template = |d: Deployment| serde_json::to_string(&d.spec.unwrap().template).unwrap();
    (
        secrets.get("demo-identity-clients").await.unwrap().data,
        template(deployments.get("demo-identity").await.unwrap()),
        template(deployments.get("demo-gateway").await.unwrap()),
    )
}

/// The `Degraded` condition's (status, reason, message).
async fn degraded(client: &Client, namespace: &str) -> (String, String, String) {
    let platforms: Api<Platform> = Api::namespaced(client.clone(), namespace);
    let status = platforms.get("demo").await.unwrap().status.unwrap();
    let c = status
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Degraded")
        .expect("a Degraded condition");
    (c.status, c.reason, c.message)
}

/// Someone (`kubectl edit`) replaces the data of generated Secret `name`.
async fn hand_edit(client: &Client, namespace: &str, name: &str, data: serde_json::Value) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    secrets
        .patch(
            name,
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({ "data": data })),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_hand_edited_pepper_degrades_the_platform_and_leaves_what_is_deployed() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("bad-pepper").await.unwrap();
    create_platform(&client, &namespace).await;
    let cx = context(client.clone());
    reconcile_stored(&client, &namespace, &cx).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let original = secrets
        .get("demo-identity-pepper")
        .await
        .unwrap()
        .data
        .unwrap()["pepper"]
        .clone();
    let before = derived(&client, &namespace).await;

    // Valid base64 of 12 bytes ("not-a-pepper"): identity would refuse it at start, and an
    // HMAC under it matches nothing identity computes.
    hand_edit(
        &client,
        &namespace,
        "demo-identity-pepper",
        json!({ "pepper": "bm90LWEtcGVwcGVy" }),
    )
    .await;
    reconcile_stored(&client, &namespace, &cx).await;
    let (status, reason, message) = degraded(&client, &namespace).await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "InvalidGeneratedSecret")
    );
    assert!(
        message.contains(&format!("Secret {namespace}/demo-identity-pepper"))
            && message.contains("pepper is not 32 bytes of base64"),
        "{message}"
    );
    assert!(
        !message.contains("bm90LWEtcGVwcGVy"),
        "the message shows the value: {message}"
    );
    assert!(
        derived(&client, &namespace).await == before,
        "the client registry or a pod template was rewritten from the bad pepper"
    );

    // Restored: the platform recovers.
    hand_edit(
        &client,
        &namespace,
        "demo-identity-pepper",
        json!({ "pepper": original }),
    )
    .await;
    reconcile_stored(&client, &namespace, &cx).await;
    assert_eq!(degraded(&client, &namespace).await.0, "False");
    assert!(derived(&client, &namespace).await == before);
}

#[tokio::test]
async fn a_client_secret_without_its_key_degrades_the_platform_and_keeps_the_client_registered() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("bad-client").await.unwrap();
    create_platform(&client, &namespace).await;
    let cx = context(client.clone());
    reconcile_stored(&client, &namespace, &cx).await;
    let before = derived(&client, &namespace).await;

    hand_edit(
        &client,
        &namespace,
        "demo-gateway-client",
        json!({ "client_secret": null }),
    )
    .await;
    reconcile_stored(&client, &namespace, &cx).await;
    let (status, reason, message) = degraded(&client, &namespace).await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "InvalidGeneratedSecret")
    );
    assert!(
        message.contains(&format!("Secret {namespace}/demo-gateway-client"))
            && message.contains("missing key client_secret"),
        "{message}"
    );
    assert!(
        derived(&client, &namespace).await == before,
        "the gateway was dropped from the client registry (or a pod template changed)"
    );
}
