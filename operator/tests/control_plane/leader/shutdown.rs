//! A stopping leader releases its Lease only after its in-flight reconcile has finished,
//! unless the Lease lapses during that graceful stop: then it drops the reconcile.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use super::{free_ports, grant_work_and_lease, holding_the_scale_up};
use crate::{WAIT, create_platform, env, replicas};

/// On shutdown the leader releases its Lease only after its in-flight reconcile has
/// finished: releasing first lets the next leader start while the old one still writes.
/// (etcd revisions order the two writes: the status patch that ends the reconcile comes
/// before the Lease release.)
#[tokio::test]
async fn a_stopping_leader_releases_the_lease_after_its_last_reconcile() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("handover").await.unwrap();
    let (port, _) = free_ports();
    let config = tessera_operator::Config {
        admin_listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        watch_namespace: namespace.clone(),
        leader_election: true,
        lease_name: "tessera-operator".into(),
        lease_namespace: namespace.clone(),
        pod_name: "operator-a".into(),
        lease_duration_secs: 15,
    };
    let shutdown = service_kit::CancellationToken::new();
    let task = tokio::spawn(tessera_operator::run_until(
        env.client().unwrap(),
        config,
        shutdown.clone(),
    ));
    create_platform(&client, &namespace).await;
    let platforms: Api<tessera_operator::Platform> = Api::namespaced(client.clone(), &namespace);
    let deadline = tokio::time::Instant::now() + WAIT;
    while platforms
        .get("demo")
        .await
        .unwrap()
        .status
        .is_none_or(|s| s.observed_generation != Some(1))
    {
        assert!(tokio::time::Instant::now() < deadline, "no first reconcile");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A spec change: the reconcile it starts changes the gateway Deployment, then applies
    // the remaining children, prunes and writes the status. Stop while it is in flight.
    platforms
        .patch(
            "demo",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                serde_json::json!({ "spec": { "gateway": { "replicas": 3 } } }),
            ),
        )
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let deadline = tokio::time::Instant::now() + WAIT;
    while replicas(&deployments.get("demo-gateway").await.unwrap()) != Some(3) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the spec change was not applied"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    shutdown.cancel();
    task.await.unwrap().unwrap();

    let revision = |rv: Option<String>| rv.unwrap().parse::<u64>().unwrap();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &namespace);
    let lease = leases.get("tessera-operator").await.unwrap();
    assert_eq!(
        lease.spec.as_ref().and_then(|s| s.holder_identity.clone()),
        None,
        "released"
    );
    let platform = platforms.get("demo").await.unwrap();
    assert_eq!(
        platform.status.as_ref().and_then(|s| s.observed_generation),
        Some(2),
        "the in-flight reconcile did not finish"
    );
    assert!(
        revision(platform.metadata.resource_version) < revision(lease.metadata.resource_version),
        "the Lease was released before the last reconcile wrote the status"
    );
}

/// A leader whose Lease lapses while it stops gracefully (its in-flight reconcile left to
/// finish) drops that reconcile at the step-down, as it would outside a shutdown: another
/// replica may lead by then, and the old leader's remaining writes would overwrite its
/// work. Here the reconcile of a spec change is held at its gateway Deployment apply, the
/// shutdown is requested, then the renewals fail; the apply is let go only after the
/// step-down.
#[tokio::test]
async fn a_stopping_leader_whose_lease_lapses_drops_its_in_flight_reconcile() {
    let env = env().await;
    let admin = env.client().unwrap();
    let namespace = env.fresh_namespace("stoplapse").await.unwrap();
    let user = "operator-stoplapse";
    grant_work_and_lease(&admin, &namespace, user).await;
    let (port, _) = free_ports();
    let lease_duration_secs = 12;
    let config = tessera_operator::Config {
        admin_listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        watch_namespace: namespace.clone(),
        leader_election: true,
        lease_name: "tessera-operator".into(),
        lease_namespace: namespace.clone(),
        pod_name: "operator-a".into(),
        lease_duration_secs,
    };
    let (reached_tx, mut reached) = tokio::sync::mpsc::unbounded_channel();
    let open = service_kit::CancellationToken::new();
    let client = holding_the_scale_up(
        env.impersonating(user, &["system:authenticated"]).unwrap(),
        reached_tx,
        open.clone(),
    );
    let shutdown = service_kit::CancellationToken::new();
    let mut task = tokio::spawn(tessera_operator::run_until(
        client,
        config,
        shutdown.clone(),
    ));
    create_platform(&admin, &namespace).await;
    let platforms: Api<tessera_operator::Platform> = Api::namespaced(admin.clone(), &namespace);
    let observed = || async {
        platforms
            .get("demo")
            .await
            .unwrap()
            .status
            .and_then(|s| s.observed_generation)
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while observed().await != Some(1) {
        assert!(
            !task.is_finished(),
            "the operator stopped: {:?}",
            (&mut task).await
        );
        assert!(tokio::time::Instant::now() < deadline, "no first reconcile");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A spec change: its reconcile is held at the gateway Deployment apply.
    platforms
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

    // Shutdown (SIGTERM): a graceful stop, which waits for the held reconcile.
    shutdown.cancel();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !task.is_finished(),
        "the stopping leader did not wait for its in-flight reconcile: {:?}",
        (&mut task).await
    );

    // Its renewals now fail, the reconcile still held: it steps down a sixth of the
    // duration before expiry.
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(admin.clone(), &namespace)
        .delete("lease", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    let stopped =
        tokio::time::timeout(Duration::from_secs(lease_duration_secs + 10), &mut task).await;
    // Well after the step-down, the held apply may go on; then give it time to land.
    open.cancel();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    assert_ne!(
        replicas(&deployments.get("demo-gateway").await.unwrap()),
        Some(3),
        "the deposed leader's in-flight reconcile applied the Deployment after the step-down"
    );
    assert_eq!(
        observed().await,
        Some(1),
        "the deposed leader's in-flight reconcile wrote the status after the step-down"
    );
    let outcome = stopped
        .expect("the stopping leader kept waiting for its reconcile after its Lease lapsed")
        .unwrap();
    assert!(
        matches!(outcome, Err(tessera_operator::RunError::LostLease)),
        "{outcome:?}"
    );
}
