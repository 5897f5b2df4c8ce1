//! The control plane really runs: the API server answers, stores and merges objects,
//! RBAC refuses a ServiceAccount what it was not granted, and the controller-manager
//! garbage-collects and reports Deployment status.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, PatchParams, PostParams};
use kube::{Api, Client};
use kube_testenv::{TestEnv, make_deployment_available};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

async fn env() -> &'static TestEnv {
    TestEnv::shared()
        .await
        .unwrap_or_else(|error| panic!("the test control plane did not start: {error}"))
}

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// Polls `check` until it returns `Some`, panicking after `WAIT` with `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn api_server_reports_its_version_and_is_ready() {
    let client = env().await.client().unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    assert_eq!(
        version.minor, "35",
        "the pinned Kubernetes minor: {version:?}"
    );
    let readyz = client
        .request_text(
            http::Request::get("/readyz?verbose")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(readyz.contains("readyz check passed"), "{readyz}");
    assert!(
        readyz.contains("poststarthook/rbac/bootstrap-roles ok"),
        "{readyz}"
    );
}

#[tokio::test]
async fn namespace_and_config_map_are_stored() {
    let env = env().await;
    let namespace = env.fresh_namespace("smoke").await.unwrap();
    let namespaces: Api<Namespace> = Api::all(env.client().unwrap());
    let stored = namespaces.get(&namespace).await.unwrap();
    assert_eq!(
        stored.status.and_then(|status| status.phase).as_deref(),
        Some("Active")
    );

    let maps: Api<ConfigMap> = Api::namespaced(env.client().unwrap(), &namespace);
    let map: ConfigMap = from_json(json!({
        "metadata": { "name": "settings" },
        "data": { "greeting": "hello" },
    }));
    maps.create(&PostParams::default(), &map).await.unwrap();
    let read = maps.get("settings").await.unwrap();
    assert_eq!(
        read.data.unwrap().get("greeting").map(String::as_str),
        Some("hello")
    );
}

#[tokio::test]
async fn server_side_apply_merges_fields_of_two_managers_and_reports_conflicts() {
    let env = env().await;
    let namespace = env.fresh_namespace("ssa").await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(env.client().unwrap(), &namespace);
    let apply = |data: serde_json::Value| {
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": "merged" },
            "data": data,
        })
    };

    maps.patch(
        "merged",
        &PatchParams::apply("first"),
        &kube::api::Patch::Apply(apply(json!({ "a": "1" }))),
    )
    .await
    .unwrap();
    maps.patch(
        "merged",
        &PatchParams::apply("second"),
        &kube::api::Patch::Apply(apply(json!({ "b": "2" }))),
    )
    .await
    .unwrap();
    let merged = maps.get("merged").await.unwrap();
    let data = merged.data.clone().unwrap();
    assert_eq!(
        data,
        BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned())
        ])
    );
    let managers: Vec<_> = merged
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|entry| entry.manager)
        .collect();
    assert!(managers.contains(&"first".to_owned()), "{managers:?}");
    assert!(managers.contains(&"second".to_owned()), "{managers:?}");

    // Taking a field another manager owns is a conflict unless forced.
    let error = maps
        .patch(
            "merged",
            &PatchParams::apply("second"),
            &kube::api::Patch::Apply(apply(json!({ "a": "changed", "b": "2" }))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&error, kube::Error::Api(status) if status.code == 409),
        "{error}"
    );

    // A manager that stops applying a field it owns alone removes it.
    maps.patch(
        "merged",
        &PatchParams::apply("second"),
        &kube::api::Patch::Apply(apply(json!({}))),
    )
    .await
    .unwrap();
    let data = maps.get("merged").await.unwrap().data.unwrap();
    assert_eq!(data, BTreeMap::from([("a".to_owned(), "1".to_owned())]));
}

#[tokio::test]
async fn service_account_is_refused_what_rbac_does_not_grant() {
    let env = env().await;
    let namespace = env.fresh_namespace("rbac").await.unwrap();
    let admin = env.client().unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &namespace);
    accounts
        .create(
            &PostParams::default(),
            &from_json(json!({ "metadata": { "name": "reader" } })),
        )
        .await
        .unwrap();
    let roles: Api<Role> = Api::namespaced(admin.clone(), &namespace);
    roles
        .create(
            &PostParams::default(),
            &from_json(json!({
                "metadata": { "name": "read-config-maps" },
                "rules": [{ "apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"] }],
            })),
        )
        .await
        .unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), &namespace);
    bindings
        .create(
            &PostParams::default(),
            &from_json(json!({
                "metadata": { "name": "reader" },
                "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-config-maps" },
                "subjects": [{ "kind": "ServiceAccount", "name": "reader", "namespace": namespace }],
            })),
        )
        .await
        .unwrap();

    let check = async |client: Client, how: &str| {
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        // Granted: listing ConfigMaps in its namespace.
        maps.list(&kube::api::ListParams::default())
            .await
            .unwrap_or_else(|error| panic!("{how}: list of ConfigMaps refused: {error}"));
        // Not granted: writing them, and anything in another namespace.
        let error = maps
            .create(
                &PostParams::default(),
                &from_json(json!({ "metadata": { "name": "forbidden" } })),
            )
            .await
            .unwrap_err();
        assert_forbidden(&error, how, "configmaps");
        let elsewhere: Api<ConfigMap> = Api::namespaced(client, "default");
        let error = elsewhere
            .list(&kube::api::ListParams::default())
            .await
            .unwrap_err();
        assert_forbidden(&error, how, "configmaps");
    };
    check(
        env.service_account_client(&namespace, "reader")
            .await
            .unwrap(),
        "token",
    )
    .await;
    check(
        env.impersonating_service_account(&namespace, "reader")
            .unwrap(),
        "impersonation",
    )
    .await;
}

fn assert_forbidden(error: &kube::Error, how: &str, resource: &str) {
    match error {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403, "{how}: {status:?}");
            assert!(
                status.message.contains(resource)
                    && status.message.contains("system:serviceaccount:"),
                "{how}: {}",
                status.message
            );
        }
        other => panic!("{how}: expected 403 Forbidden, got {other}"),
    }
}

#[tokio::test]
async fn controller_manager_garbage_collects_owned_objects() {
    let env = env().await;
    let namespace = env.fresh_namespace("gc").await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(env.client().unwrap(), &namespace);
    let owner = maps
        .create(
            &PostParams::default(),
            &from_json(json!({ "metadata": { "name": "owner" } })),
        )
        .await
        .unwrap();
    maps.create(
        &PostParams::default(),
        &from_json(json!({
            "metadata": {
                "name": "owned",
                "ownerReferences": [{
                    "apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                    "uid": owner.metadata.uid.unwrap(),
                }],
            },
        })),
    )
    .await
    .unwrap();

    maps.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        "the garbage collector to delete the owned ConfigMap",
        || async { maps.get_opt("owned").await.unwrap().is_none().then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn deployment_becomes_available_once_its_pods_are_marked_ready() {
    let env = env().await;
    let namespace = env.fresh_namespace("deploy").await.unwrap();
    let client = env.client().unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    deployments
        .create(
            &PostParams::default(),
            &from_json(json!({
                "metadata": { "name": "web" },
                "spec": {
                    "replicas": 2,
                    "selector": { "matchLabels": { "app": "web" } },
                    "template": {
                        "metadata": { "labels": { "app": "web" } },
                        "spec": { "containers": [{ "name": "web", "image": "example.invalid/web:1" }] },
                    },
                },
            })),
        )
        .await
        .unwrap();

    let deployment = make_deployment_available(&client, &namespace, "web", WAIT)
        .await
        .unwrap();
    let status = deployment.status.unwrap();
    assert_eq!(status.available_replicas, Some(2));
    assert_eq!(status.ready_replicas, Some(2));
    let available = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|condition| condition.type_ == "Available")
        .unwrap();
    assert_eq!(available.status, "True");
}

#[test]
fn missing_bin_dir_fails_with_how_to_build() {
    // Read-only check of the message: the variable itself is left alone (other tests
    // in this binary need it), so ask what the message would say for an empty folder.
    let error = kube_testenv::bin_dir_from(None).unwrap_err().to_string();
    assert!(error.contains("TESSERA_TESTENV_BIN is not set"), "{error}");
    assert!(error.contains("just testenv"), "{error}");
    let empty = tempfile::tempdir().unwrap();
    let error = kube_testenv::bin_dir_from(Some(empty.path().as_os_str().to_owned()))
        .unwrap_err()
        .to_string();
    assert!(error.contains("has no `etcd`"), "{error}");
}
