//! Leader election: only the Lease holder of two operator instances reconciles
//! (`election`), a leader whose renewals fail steps down and drops its in-flight reconcile
//! (`renewal`), and a stopping leader releases the Lease after its last reconcile, unless
//! the Lease lapses first (`shutdown`). Here: the helpers they share.

mod election;
mod renewal;
mod shutdown;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use service_kit::CancellationToken;
use tessera_operator::{Platform, RunError};
use tokio::task::JoinHandle;

use crate::{WAIT, create_platform, env, replicas};

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
    open: CancellationToken,
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

/// An operator instance `pod` electing a leader in `namespace` with a Lease of
/// `lease_duration_secs`, its admin listener on `port`.
fn leader_config(
    namespace: &str,
    pod: &str,
    port: u16,
    lease_duration_secs: u64,
) -> tessera_operator::Config {
    tessera_operator::Config {
        admin_listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        watch_namespace: namespace.to_owned(),
        leader_election: true,
        lease_name: "tessera-operator".into(),
        lease_namespace: namespace.to_owned(),
        pod_name: pod.into(),
        lease_duration_secs,
    }
}

/// The Lease of a [`HeldReconcile`] leader.
const HELD_LEASE_SECS: u64 = 12;

/// A leader (a user that can lose its Lease permission) that reconciled a Platform once
/// and now holds the reconcile of a spec change (`gateway.replicas: 3`) at its gateway
/// Deployment apply, until `open` is cancelled.
struct HeldReconcile {
    admin: kube::Client,
    namespace: String,
    platforms: Api<Platform>,
    task: JoinHandle<Result<(), RunError>>,
    shutdown: CancellationToken,
    open: CancellationToken,
}

impl HeldReconcile {
    /// Starts the leader in a fresh namespace named after `name` and waits until the
    /// reconcile of the spec change is held.
    async fn start(name: &str) -> Self {
        let env = env().await;
        let admin = env.client().unwrap();
        let namespace = env.fresh_namespace(name).await.unwrap();
        let user = format!("operator-{name}");
        grant_work_and_lease(&admin, &namespace, &user).await;
        let (port, _) = free_ports();
        let config = leader_config(&namespace, "operator-a", port, HELD_LEASE_SECS);
        let (reached_tx, mut reached) = tokio::sync::mpsc::unbounded_channel();
        let open = CancellationToken::new();
        let client = holding_the_scale_up(
            env.impersonating(&user, &["system:authenticated"]).unwrap(),
            reached_tx,
            open.clone(),
        );
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(tessera_operator::run_until(
            client,
            config,
            shutdown.clone(),
        ));
        create_platform(&admin, &namespace).await;
        let platforms = Api::namespaced(admin.clone(), &namespace);
        let mut held = Self {
            admin,
            namespace,
            platforms,
            task,
            shutdown,
            open,
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        while held.observed().await != Some(1) {
            assert!(
                !held.task.is_finished(),
                "the operator stopped: {:?}",
                (&mut held.task).await
            );
            assert!(tokio::time::Instant::now() < deadline, "no first reconcile");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        held.platforms
            .patch(
                "demo",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(
                    serde_json::json!({ "spec": { "gateway": { "replicas": 3 } } }),
                ),
            )
            .await
            .unwrap();
        tokio::time::timeout(WAIT, reached.recv())
            .await
            .expect("the reconcile of the spec change never applied the gateway Deployment");
        held
    }

    /// The Platform's `status.observedGeneration`.
    async fn observed(&self) -> Option<i64> {
        self.platforms
            .get("demo")
            .await
            .unwrap()
            .status
            .and_then(|s| s.observed_generation)
    }

    /// Revokes the leader's Lease permission (its renewals fail: it steps down a sixth of
    /// the duration before expiry) and waits for the run to end; then lets the held apply
    /// go, gives it time to land, and asserts that neither it nor the reconcile's status
    /// write did. The run's outcome, `Err` if it kept running.
    async fn lapse_and_check_nothing_landed(
        &mut self,
    ) -> Result<Result<(), RunError>, tokio::time::error::Elapsed> {
        Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(
            self.admin.clone(),
            &self.namespace,
        )
        .delete("lease", &kube::api::DeleteParams::default())
        .await
        .unwrap();
        let stopped =
            tokio::time::timeout(Duration::from_secs(HELD_LEASE_SECS + 10), &mut self.task)
                .await
                .map(Result::unwrap);
        self.open.cancel();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let deployments: Api<Deployment> = Api::namespaced(self.admin.clone(), &self.namespace);
        assert_ne!(
            replicas(&deployments.get("demo-gateway").await.unwrap()),
            Some(3),
            "the deposed leader's in-flight reconcile applied the Deployment after the step-down"
        );
        assert_eq!(
            self.observed().await,
            Some(1),
            "the deposed leader's in-flight reconcile wrote the status after the step-down"
        );
        stopped
    }
}
