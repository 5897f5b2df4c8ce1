//! The operator against a real API server (kube-apiserver 1.35 + controller-manager from
//! tools/testenv, run by kube-testenv): the generated CRD is accepted, reconcile creates
//! every child with owner references and labels, a second reconcile writes nothing, hand
//! edits are reverted and deleted children recreated (not while `paused`), `Ready`
//! follows Deployment availability and `kubectl wait` sees it, removing an onboarded
//! service deletes its children, deleting the Platform garbage-collects them all, key
//! rotation over several cycles keeps every live token's key in the JWKS, only the
//! Lease holder of two instances reconciles (the other takes over when it stops), and the
//! operator with the Helm chart's ServiceAccount identity reconciles the chart's example
//! Platform without a Forbidden.
//!
//! Pods never run (no kubelet): `make_deployment_available` marks them Ready, and the
//! real controller-manager turns that into Deployment status and garbage-collects owned
//! objects. Reconcile is called directly (one pass per call) so each step is observable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, CustomResourceExt as _, ResourceExt as _};
use kube_testenv::{TestEnv, make_deployment_available};
use serde_json::json;
use service_kit::{Clock as _, ManualClock, SystemClock};
use tessera_operator::Platform;
use tessera_operator::children::{INSTANCE, Kind, MANAGED_BY, MANAGER};
use tessera_operator::controller::{Context, reconcile};
use tessera_operator::metrics::OperatorMetrics;
use time::OffsetDateTime;
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
        Arc::new(SystemClock),
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
    let mut first = versions(&first);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = versions(&children_of(&client, &namespace).await);
        if now == first {
            break;
        }
        first = now;
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
}

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

/// Several rotation cycles on a manual clock (30 s steps, 10-minute interval, 60 s
/// tokens): at every step exactly one key is active (status and keyset agree), and the
/// JWKS ConfigMap holds every key that signed a token still alive.
#[tokio::test]
async fn key_rotation_keeps_every_live_tokens_key_published_over_several_cycles() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("rotation").await.unwrap();
    let platforms: Api<Platform> = Api::namespaced(client.clone(), &namespace);
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
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: None,
        },
    );
    let cx = Arc::new(Context::new(
        client.clone(),
        recorder,
        OperatorMetrics::default(),
        Arc::new(clock.clone()),
    ));
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

/// Two distinct loopback ports free at the time of asking (both held while choosing, so
/// they differ).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// Reconciles an operator instance has counted, from its admin `/metrics`.
async fn reconciles(admin: std::net::SocketAddr) -> f64 {
    let Ok(response) = reqwest::get(format!("http://{admin}/metrics")).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| line.starts_with("tessera_operator_reconciles_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Two operator instances with leader election: only the Lease holder reconciles; when
/// it stops, the other takes the Lease and repairs drift.
#[tokio::test]
async fn leader_election_lets_only_one_of_two_instances_act() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("leader").await.unwrap();
    let (port_a, port_b) = free_ports();
    let instance = |pod: &str, port: u16| {
        let config = tessera_operator::Config {
            admin_listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            watch_namespace: namespace.clone(),
            leader_election: true,
            lease_name: "tessera-operator".into(),
            lease_namespace: namespace.clone(),
            pod_name: pod.into(),
            lease_duration_secs: 5,
        };
        let shutdown = service_kit::CancellationToken::new();
        let admin = config.admin_listen;
        let task = tokio::spawn(tessera_operator::run_until(
            env.client().unwrap(),
            config,
            shutdown.clone(),
        ));
        (admin, shutdown, task)
    };
    let (admin_a, stop_a, task_a) = instance("operator-a", port_a);
    let (admin_b, stop_b, task_b) = instance("operator-b", port_b);
    create_platform(&client, &namespace).await;

    // One of them leads and reconciles; the other does nothing.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let deadline = tokio::time::Instant::now() + WAIT;
    while deployments.get_opt("demo-gateway").await.unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no instance reconciled the Platform"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let holder = leases
        .get("tessera-operator")
        .await
        .unwrap()
        .spec
        .and_then(|spec| spec.holder_identity)
        .expect("a Lease holder");
    let (leader, follower, stop_leader, leader_task, stop_follower, follower_task) =
        if holder == "operator-a" {
            (admin_a, admin_b, stop_a, task_a, stop_b, task_b)
        } else {
            assert_eq!(holder, "operator-b");
            (admin_b, admin_a, stop_b, task_b, stop_a, task_a)
        };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(reconciles(leader).await > 0.0, "the leader reconciled");
    assert!(
        reconciles(follower).await == 0.0,
        "the follower reconciled while not leading"
    );

    // The leader stops; the follower takes over and repairs a hand edit.
    stop_leader.cancel();
    let _ = leader_task.await;
    hand_edit_replicas(&client, &namespace, 7).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let replicas = replicas(&deployments.get("demo-gateway").await.unwrap());
        if replicas != Some(7) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second instance never took over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The repair lands before that reconcile finishes and is counted.
    let deadline = tokio::time::Instant::now() + WAIT;
    while reconciles(follower).await == 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new leader's reconciles are not counted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let holder = leases
        .get("tessera-operator")
        .await
        .unwrap()
        .spec
        .and_then(|spec| spec.holder_identity);
    assert_ne!(
        holder.as_deref(),
        Some(if leader == admin_a {
            "operator-a"
        } else {
            "operator-b"
        })
    );
    stop_follower.cancel();
    let _ = follower_task.await;
}
