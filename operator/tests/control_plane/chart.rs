//! The operator with the Helm chart's ServiceAccount (least-privilege RBAC) reconciles
//! the chart's example Platform.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, PostParams};
use kube_testenv::TestEnv;
use tessera_operator::Platform;
use tessera_operator::controller::reconcile;

use crate::{WAIT, children_of, context};

/// The operator with the chart's ServiceAccount identity (not admin) reconciles the
/// chart's example Platform without a single Forbidden.
#[tokio::test]
async fn operator_with_the_charts_service_account_reconciles_the_example_platform() {
    // A control plane of its own: Helm must install the CRD itself.
    let env = TestEnv::start()
        .await
        .unwrap_or_else(|error| panic!("the test control plane did not start: {error}"));
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = env
        .helm()
        .args([
            "install",
            "tessera",
            "--namespace",
            "tessera-system",
            "--create-namespace",
        ])
        .arg(root.join("charts/tessera"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "helm install: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let admin = env.client().unwrap();
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "tessera-system");
    let operator_deployment = deployments
        .list(&ListParams::default().labels("app.kubernetes.io/instance=tessera"))
        .await
        .unwrap()
        .items
        .pop()
        .expect("the chart's operator Deployment");
    let account = operator_deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .and_then(|pod| pod.service_account_name)
        .expect("the operator's ServiceAccount");
    let operator = env
        .service_account_client("tessera-system", &account)
        .await
        .unwrap();

    let namespace = env.fresh_namespace("tessera").await.unwrap();
    let text = std::fs::read_to_string(root.join("charts/tessera/examples/platform.yaml")).unwrap();
    let example: Platform = serde_saphyr::from_str(&text).unwrap();
    // The CRD the chart installed may take a moment to be served.
    let platforms: Api<Platform> = Api::namespaced(admin.clone(), &namespace);
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Err(error) = platforms.create(&PostParams::default(), &example).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the example Platform was refused: {error}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let as_operator: Api<Platform> = Api::namespaced(operator.clone(), &namespace);
    let stored = as_operator.get("demo").await.unwrap();
    let cx = context(operator.clone());
    reconcile(Arc::new(stored), cx.clone())
        .await
        .unwrap_or_else(|error| panic!("reconcile as the chart's ServiceAccount: {error}"));
    let stored = as_operator.get("demo").await.unwrap();
    reconcile(Arc::new(stored), cx)
        .await
        .unwrap_or_else(|error| panic!("second reconcile as the chart's ServiceAccount: {error}"));
    let children = children_of(&admin, &namespace).await;
    assert!(
        children.contains_key("Deployment/demo-gateway"),
        "{:?}",
        children.keys()
    );
}
