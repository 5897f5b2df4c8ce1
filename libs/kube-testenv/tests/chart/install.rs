//! `helm install`, upgrade and uninstall of the chart: the release's objects come and go,
//! the CRD (keep policy) and users' Platforms stay.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, Client};
use kube_testenv::{TestEnv, make_deployment_available};

use crate::rbac::operator_identity_does_its_job_and_no_more;
use crate::{CRD_NAME, WAIT, platforms, repo_root, run, wait_established};

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
