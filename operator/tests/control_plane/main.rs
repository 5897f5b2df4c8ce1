//! The operator against a real API server (kube-apiserver 1.35 + controller-manager from
//! tools/testenv, run by kube-testenv): the generated CRD is accepted, reconcile creates
//! every child with owner references and labels, a second reconcile writes nothing, hand
//! edits are reverted and deleted children recreated (not while `paused`), `Ready`
//! follows Deployment availability and `kubectl wait` sees it, removing an onboarded
//! service deletes its children, deleting the Platform garbage-collects them all, key
//! rotation over several cycles keeps every live token's key in the JWKS, only the
//! Lease holder of two instances reconciles (the other takes over when it stops; a leader
//! whose Lease lapses drops its in-flight reconcile), and the operator with the Helm
//! chart's ServiceAccount identity reconciles the chart's example Platform without a
//! Forbidden; a hand-corrupted generated Secret (pepper, client secret)
//! degrades the platform without rewriting anything from it.
//!
//! Pods never run (no kubelet): `make_deployment_available` marks them Ready, and the
//! real controller-manager turns that into Deployment status and garbage-collects owned
//! objects. Reconcile is called directly (one pass per call) so each step is observable.

mod chart;
mod children;
mod generated;
mod keys;
mod leader;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, CustomResourceExt as _, ResourceExt as _};
use kube_testenv::TestEnv;
use serde_json::json;
use service_kit::SystemClock;
use tessera_operator::Platform;
use tessera_operator::children::{Kind, MANAGED_BY, MANAGER};
use tessera_operator::controller::{Context, reconcile};
use tessera_operator::metrics::OperatorMetrics;
use tokio::sync::OnceCell;

const WAIT: Duration = Duration::from_secs(60);

/// The shared control plane with the operator's CRD applied once.
async fn env() -> &'static TestEnv {
    static CRD: OnceCell<()> = OnceCell::const_new();
    let env = TestEnv::shared()
        .await
        .unwrap_or_else(|error| panic!("the test control plane did not start: {error}"));
    CRD.get_or_init(|| async {
        let client = env.client().unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(client);
        let crd = Platform::crd();
        crds.patch(
            "platforms.tessera.dev",
            &PatchParams::apply("kube-testenv").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|error| panic!("the API server refused the generated CRD: {error}"));
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let crd = crds.get("platforms.tessera.dev").await.unwrap();
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "CRD not Established"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    env
}

fn context(client: Client) -> Arc<Context> {
    context_with_clock(client, Arc::new(SystemClock))
}

/// A controller context reading time from `clock` (a manual one steps rotations).
fn context_with_clock(client: Client, clock: Arc<dyn service_kit::Clock>) -> Arc<Context> {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: None,
        },
    );
    Arc::new(Context::new(
        client,
        recorder,
        OperatorMetrics::default(),
        clock,
    ))
}

async fn create_platform(client: &Client, namespace: &str) -> Platform {
    let platforms: Api<Platform> = Api::namespaced(client.clone(), namespace);
    let platform: Platform = serde_json::from_value(json!({
        "apiVersion": "tessera.dev/v1alpha1",
        "kind": "Platform",
        "metadata": { "name": "demo" },
        "spec": { "identity": { "issuer": "https://api.example.com" } },
    }))
    .unwrap();
    platforms
        .create(&PostParams::default(), &platform)
        .await
        .unwrap()
}

/// Every object of the operator's kinds in `namespace`: (kind/name) → object.
async fn children_of(client: &Client, namespace: &str) -> BTreeMap<String, DynamicObject> {
    let mut all = BTreeMap::new();
    for kind in Kind::ALL {
        let resource = kind.api_resource();
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let selector = format!("{MANAGED_BY}={MANAGER}");
        for object in api
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
        {
            all.insert(format!("{}/{}", resource.kind, object.name_any()), object);
        }
    }
    all
}

fn replicas(deployment: &Deployment) -> Option<i32> {
    deployment.spec.as_ref().and_then(|spec| spec.replicas)
}

/// Another field manager (a person with `kubectl scale`) changes the gateway's replicas.
async fn hand_edit_replicas(client: &Client, namespace: &str, replicas: i32) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    deployments
        .patch(
            "demo-gateway",
            &PatchParams {
                field_manager: Some("kubectl-scale".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({ "spec": { "replicas": replicas } })),
        )
        .await
        .unwrap();
}

async fn reconcile_stored(client: &Client, namespace: &str, cx: &Arc<Context>) {
    let platforms: Api<Platform> = Api::namespaced(client.clone(), namespace);
    let stored = platforms.get("demo").await.unwrap();
    reconcile(Arc::new(stored), cx.clone()).await.unwrap();
}
