//! Leader election: only the Lease holder of two operator instances reconciles
//! (`election`), a leader whose renewals fail steps down and drops its in-flight reconcile
//! (`renewal`), and a stopping leader releases the Lease after its last reconcile, unless
//! the Lease lapses first (`shutdown`). Here: the helpers they share.

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

/// `inner`, except that its first server-side apply of the gateway Deployment with 3
/// replicas reports on `reached` and is held until `open` is cancelled (a reconcile stuck
/// mid-way on a slow API server). A request dropped while held is never sent.
fn holding_the_scale_up(
    inner: kube::Client,
    reached: tokio::sync::mpsc::UnboundedSender<()>,
    open: service_kit::CancellationToken,
) -> kube::Client {
    let namespace = inner.default_namespace().to_owned();
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let inner = inner.clone();
        let reached = reached.clone();
        let open = open.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect_bytes().await?;
            let scale_up = parts.method == http::Method::PATCH
                && parts.uri.path().ends_with("/deployments/demo-gateway")
                && serde_json::from_slice::<serde_json::Value>(&body)
                    .is_ok_and(|object| object["spec"]["replicas"] == 3);
            if scale_up && !open.is_cancelled() {
                let _ = reached.send(());
                open.cancelled().await;
            }
            inner
                .send(http::Request::from_parts(parts, body.into()))
                .await
        }
    });
    kube::Client::new(service, namespace)
}
