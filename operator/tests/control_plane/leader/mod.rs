//! Leader election: only the Lease holder of two operator instances reconciles
//! (`election`), a leader whose renewals fail steps down and drops its in-flight reconcile
//! (`renewal`), and a stopping leader releases the Lease after its last reconcile
//! (`shutdown`). Here: the helpers they share.

mod election;
mod renewal;
mod shutdown;

use kube::api::Api;

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

/// Grants `user` `rules` in `namespace` (a `Role` and its `RoleBinding`, both named `name`).
async fn grant(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    user: &str,
    rules: serde_json::Value,
) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::PostParams;
    let role: Role = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name }, "rules": rules,
    }))
    .unwrap();
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name },
        "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
}

/// Grants `user` what the operator needs in `namespace`: its work (Role and `RoleBinding`
/// `work`) and the Lease (`lease`; delete that `RoleBinding` to make renewals fail).
async fn grant_work_and_lease(client: &kube::Client, namespace: &str, user: &str) {
    grant(
        client,
        namespace,
        "work",
        user,
        serde_json::json!([{
            "apiGroups": ["", "apps", "policy", "networking.k8s.io", "events.k8s.io", "tessera.dev"],
            "resources": ["*"], "verbs": ["*"],
        }]),
    )
    .await;
    grant(
        client,
        namespace,
        "lease",
        user,
        serde_json::json!([{
            "apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["*"],
        }]),
    )
    .await;
}
