//! The operator's CRD (`crds/platform.yaml`) and the Helm chart (`charts/tessera`)
//! against a real API server: what needs no running operator. The CRD is accepted and
//! refuses invalid `Platform`s with its messages; the chart installs, gives its
//! ServiceAccount what the operator needs and nothing more, upgrades and uninstalls
//! cleanly. (The operator's reconcile tests belong in `operator/tests/control_plane`.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_testenv::{Options, TestEnv, make_deployment_available};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const CRD_NAME: &str = "platforms.tessera.dev";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn platform_resource() -> ApiResource {
    ApiResource {
        group: "tessera.dev".into(),
        version: "v1alpha1".into(),
        api_version: "tessera.dev/v1alpha1".into(),
        kind: "Platform".into(),
        plural: "platforms".into(),
    }
}

fn platforms(client: Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &platform_resource())
}

fn yaml_file<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("the command starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed: {text}");
    text
}

async fn wait_established(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let established = crds.get_opt(CRD_NAME).await.unwrap().is_some_and(|crd| {
            crd.status
                .and_then(|status| status.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
        if established {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{CRD_NAME} not Established"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn platform(name: &str, spec: &Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "tessera.dev/v1alpha1",
        "kind": "Platform",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap()
}

/// Creates `spec` and returns the API server's refusal message.
async fn refusal(api: &Api<DynamicObject>, name: &str, spec: Value) -> String {
    match api
        .create(&PostParams::default(), &platform(name, &spec))
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{name}: {status:?}");
            status.message
        }
        Ok(_) => panic!("{name}: the API server accepted an invalid Platform"),
        Err(other) => panic!("{name}: {other}"),
    }
}

#[tokio::test]
async fn platform_crd_is_accepted_and_refuses_invalid_platforms_with_its_messages() {
    let env = TestEnv::start_with(Options {
        controller_manager: false,
        ..Options::default()
    })
    .await
    .unwrap_or_else(|error| panic!("the test control plane did not start: {error}"));
    let client = env.client().unwrap();
    let crd: CustomResourceDefinition = yaml_file(&repo_root().join("crds/platform.yaml"));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        CRD_NAME,
        &PatchParams::apply("kube-testenv"),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap_or_else(|error| panic!("the API server refused crds/platform.yaml: {error}"));
    wait_established(&client).await;

    let namespace = env.fresh_namespace("crd").await.unwrap();
    let api = platforms(client.clone(), &namespace);

    // The chart's example is valid, and defaults are filled in by the schema.
    let example: DynamicObject =
        yaml_file(&repo_root().join("charts/tessera/examples/platform.yaml"));
    api.create(&PostParams::default(), &example)
        .await
        .unwrap_or_else(|error| panic!("the example Platform was refused: {error}"));
    let minimal = api
        .create(
            &PostParams::default(),
            &platform(
                "minimal",
                &json!({ "identity": { "issuer": "https://api.example.com" } }),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        minimal.data["spec"]["paused"],
        json!(false),
        "{:#}",
        minimal.data
    );

    let issuer = json!({ "issuer": "https://api.example.com" });
    let service = |name: &str, prefix: &str| json!({ "name": name, "image": "example.com/orders:1", "routePrefix": prefix });
    let cases = [
        ("no-identity", json!({}), "spec.identity: Required value"),
        (
            "bad-issuer",
            json!({ "identity": { "issuer": "ftp://api.example.com" } }),
            "issuer must be an http(s) URL",
        ),
        (
            "bad-pull-policy",
            json!({ "identity": issuer, "images": { "pullPolicy": "Sometimes" } }),
            "pullPolicy must be Always, IfNotPresent or Never",
        ),
        (
            "same-service-name",
            json!({ "identity": issuer, "services": [service("orders", "/a/"), service("orders", "/b/")] }),
            "two onboarded services have the same name",
        ),
        (
            "built-in-name",
            json!({ "identity": issuer, "services": [service("gateway", "/gw/")] }),
            "cannot be named like a built-in component",
        ),
        (
            "retirement-shorter-than-tokens",
            json!({ "identity": { "issuer": "https://api.example.com", "accessTokenTtlSeconds": 3600,
                                   "keyPolicy": { "retirementSeconds": 600 } } }),
            "keyPolicy.retirementSeconds must be at least accessTokenTtlSeconds",
        ),
    ];
    for (name, spec, expected) in cases {
        let message = refusal(&api, name, spec).await;
        assert!(
            message.contains(expected),
            "{name}: expected {expected:?} in {message:?}"
        );
    }
    let stored = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(stored.items.len(), 2, "only the valid Platforms are stored");
}

#[tokio::test]
async fn chart_installs_grants_the_operator_its_rights_upgrades_and_uninstalls() {
    let env = &TestEnv::start()
        .await
        .unwrap_or_else(|error| panic!("the test control plane did not start: {error}"));
    let admin = env.client().unwrap();
    let chart = repo_root().join("charts/tessera");
    let release_ns = "tessera-system";

    run(env.helm().args(["lint", "--strict"]).arg(&chart));
    run(env
        .helm()
        .args([
            "install",
            "tessera",
            "--namespace",
            release_ns,
            "--create-namespace",
        ])
        .arg(&chart));
    wait_established(&admin).await;
    run(env.kubectl().args([
        "wait",
        "--for=condition=Established",
        &format!("crd/{CRD_NAME}"),
        "--timeout=30s",
    ]));

    // The operator Deployment's pods pass admission and the Deployment becomes
    // Available once they are (marked) Ready; `kubectl wait` sees it.
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), release_ns);
    let by_release = ListParams::default().labels("app.kubernetes.io/instance=tessera");
    let listed = deployments.list(&by_release).await.unwrap().items;
    assert_eq!(listed.len(), 1, "one operator Deployment");
    let deployment_name = listed[0].metadata.name.clone().unwrap();
    let account = listed[0]
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .and_then(|pod| pod.service_account_name.clone())
        .expect("the operator runs as the chart's ServiceAccount");
    make_deployment_available(&admin, release_ns, &deployment_name, WAIT)
        .await
        .unwrap();
    run(env.kubectl().args([
        "wait",
        "--namespace",
        release_ns,
        "--for=condition=Available",
        &format!("deployment/{deployment_name}"),
        "--timeout=30s",
    ]));

    let tenant =
        operator_identity_does_its_job_and_no_more(env, &admin, release_ns, &account).await;

    // Upgrade with changed values.
    run(env
        .helm()
        .args([
            "upgrade",
            "tessera",
            "--namespace",
            release_ns,
            "--reuse-values",
            "--set",
            "replicaCount=2",
        ])
        .arg(&chart));
    let upgraded = deployments.get(&deployment_name).await.unwrap();
    assert_eq!(upgraded.spec.and_then(|spec| spec.replicas), Some(2));
    let history = run(env
        .helm()
        .args(["history", "tessera", "--namespace", release_ns]));
    assert!(history.lines().count() >= 3, "two revisions: {history}");

    run(env
        .helm()
        .args(["uninstall", "tessera", "--namespace", release_ns]));
    nothing_of_the_release_is_left_but_the_crd_and_platforms(admin, release_ns, &tenant).await;
}

/// The operator's identity (a real token of the chart's ServiceAccount) can do its job
/// in a tenant namespace, and no more than the chart says. Returns the tenant namespace.
async fn operator_identity_does_its_job_and_no_more(
    env: &TestEnv,
    admin: &Client,
    release_ns: &str,
    account: &str,
) -> String {
    let tenant = env.fresh_namespace("tenant").await.unwrap();
    platforms(admin.clone(), &tenant)
        .create(
            &PostParams::default(),
            &platform(
                "demo",
                &json!({ "identity": { "issuer": "https://api.example.com" } }),
            ),
        )
        .await
        .unwrap();
    let operator = env
        .service_account_client(release_ns, account)
        .await
        .unwrap();
    let as_operator = |what: &str, result: Result<(), kube::Error>| {
        result
            .unwrap_or_else(|error| panic!("the operator's ServiceAccount cannot {what}: {error}"));
    };
    let all_platforms: Api<DynamicObject> = Api::all_with(operator.clone(), &platform_resource());
    as_operator(
        "list Platforms",
        all_platforms.list(&ListParams::default()).await.map(drop),
    );
    as_operator(
        "patch Platform status",
        platforms(operator.clone(), &tenant)
            .patch_status(
                "demo",
                &PatchParams::apply("tessera-operator").force(),
                &Patch::Apply(json!({
                    "apiVersion": "tessera.dev/v1alpha1", "kind": "Platform",
                    "status": { "observedGeneration": 1 },
                })),
            )
            .await
            .map(drop),
    );
    let apply = PatchParams::apply("tessera-operator");
    operator_applies_children(&operator, &tenant).await;
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "tessera-operator" },
        "spec": { "holderIdentity": "test" },
    });
    as_operator(
        "take its Lease",
        Api::<Lease>::namespaced(operator.clone(), release_ns)
            .patch("tessera-operator", &apply, &Patch::Apply(&lease))
            .await
            .map(drop),
    );
    operator_is_refused_what_the_chart_does_not_grant(operator, &tenant, &lease).await;
    tenant
}

/// After `helm uninstall` no object of the release is left; the CRD (keep policy) and
/// the users' Platforms stay.
async fn nothing_of_the_release_is_left_but_the_crd_and_platforms(
    admin: Client,
    release_ns: &str,
    tenant: &str,
) {
    let by_release = ListParams::default().labels("app.kubernetes.io/instance=tessera");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), release_ns);
    assert!(
        deployments
            .list(&by_release)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    for (what, count) in [
        (
            "ServiceAccounts",
            Api::<ServiceAccount>::namespaced(admin.clone(), release_ns)
                .list(&by_release)
                .await
                .unwrap()
                .items
                .len(),
        ),
        (
            "Roles",
            Api::<Role>::namespaced(admin.clone(), release_ns)
                .list(&by_release)
                .await
                .unwrap()
                .items
                .len(),
        ),
        (
            "RoleBindings",
            Api::<RoleBinding>::namespaced(admin.clone(), release_ns)
                .list(&by_release)
                .await
                .unwrap()
                .items
                .len(),
        ),
        (
            "ClusterRoles",
            Api::<ClusterRole>::all(admin.clone())
                .list(&by_release)
                .await
                .unwrap()
                .items
                .len(),
        ),
        (
            "ClusterRoleBindings",
            Api::<ClusterRoleBinding>::all(admin.clone())
                .list(&by_release)
                .await
                .unwrap()
                .items
                .len(),
        ),
    ] {
        assert_eq!(count, 0, "{what} of the release left after uninstall");
    }
    assert!(
        Api::<CustomResourceDefinition>::all(admin.clone())
            .get_opt(CRD_NAME)
            .await
            .unwrap()
            .is_some(),
        "the CRD is kept"
    );
    assert!(
        platforms(admin, tenant)
            .get_opt("demo")
            .await
            .unwrap()
            .is_some(),
        "the users' Platforms are kept"
    );
}

/// Least privilege: no CRD writes (the chart owns the CRD), no Leases elsewhere.
async fn operator_is_refused_what_the_chart_does_not_grant(
    operator: Client,
    tenant: &str,
    lease: &Value,
) {
    let apply = PatchParams::apply("tessera-operator");
    let forbidden = |what: &str, result: Result<(), kube::Error>| match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("the operator's ServiceAccount may {what}: {other:?}"),
    };
    forbidden(
        "delete the CRD",
        Api::<CustomResourceDefinition>::all(operator.clone())
            .delete(CRD_NAME, &kube::api::DeleteParams::default())
            .await
            .map(drop),
    );
    forbidden(
        "take a Lease outside its namespace",
        Api::<Lease>::namespaced(operator.clone(), tenant)
            .patch("tessera-operator", &apply, &Patch::Apply(lease))
            .await
            .map(drop),
    );
}

/// The operator's identity can server-side apply every kind of child it manages.
async fn operator_applies_children(operator: &Client, tenant: &str) {
    let apply = PatchParams::apply("tessera-operator");
    let deployment_spec = json!({
        "selector": { "matchLabels": { "app": "demo-child" } },
        "template": { "metadata": { "labels": { "app": "demo-child" } },
                      "spec": { "containers": [{ "name": "c", "image": "example.com/c:1" }] } },
    });
    let children = [
        (
            "",
            "ConfigMap",
            "configmaps",
            json!({ "data": { "a": "1" } }),
        ),
        (
            "",
            "Secret",
            "secrets",
            json!({ "stringData": { "a": "1" } }),
        ),
        ("", "ServiceAccount", "serviceaccounts", json!({})),
        (
            "",
            "Service",
            "services",
            json!({ "spec": { "ports": [{ "port": 80 }] } }),
        ),
        (
            "apps",
            "Deployment",
            "deployments",
            json!({ "spec": deployment_spec }),
        ),
    ];
    for (group, kind, plural, mut body) in children {
        let resource = ApiResource {
            group: group.into(),
            version: "v1".into(),
            api_version: if group.is_empty() {
                "v1".into()
            } else {
                format!("{group}/v1")
            },
            kind: kind.into(),
            plural: plural.into(),
        };
        body["apiVersion"] = json!(resource.api_version);
        body["kind"] = json!(kind);
        body["metadata"] = json!({ "name": "demo-child" });
        Api::<DynamicObject>::namespaced_with(operator.clone(), tenant, &resource)
            .patch("demo-child", &apply, &Patch::Apply(&body))
            .await
            .unwrap_or_else(|error| {
                panic!("the operator's ServiceAccount cannot apply a {kind}: {error}")
            });
    }
}
