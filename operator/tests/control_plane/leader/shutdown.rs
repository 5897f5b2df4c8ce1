//! A stopping leader releases its Lease only after its in-flight reconcile has finished,
//! unless the Lease lapses during that graceful stop: then it drops the reconcile.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use super::{HeldReconcile, free_ports, leader_config};
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
    let config = leader_config(&namespace, "operator-a", port, 15);
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
    let mut held = HeldReconcile::start("stoplapse").await;
    // Shutdown (SIGTERM): a graceful stop, which waits for the held reconcile.
    held.shutdown.cancel();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !held.task.is_finished(),
        "the stopping leader did not wait for its in-flight reconcile: {:?}",
        (&mut held.task).await
    );
    // Its renewals now fail, the reconcile still held.
    let outcome = held
        .lapse_and_check_nothing_landed()
        .await
        .expect("the stopping leader kept waiting for its reconcile after its Lease lapsed");
    assert!(
        matches!(outcome, Err(tessera_operator::RunError::LostLease)),
        "{outcome:?}"
    );
}
