//! The chart's RBAC as the operator meets it: a real token of the chart's ServiceAccount
//! can do the operator's job in a tenant namespace and nothing more.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use kube_testenv::TestEnv;
use serde_json::{Value, json};

use crate::{CRD_NAME, platform, platform_resource, platforms};

/// The operator's identity (a real token of the chart's ServiceAccount) can do its job
/// in a tenant namespace, and no more than the chart says. Returns the tenant namespace.
pub(crate) async fn operator_identity_does_its_job_and_no_more(
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
