//! A leader whose Lease renewals fail steps down before the Lease expires and performs
//! none of its in-flight reconcile's remaining writes.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use super::{HeldReconcile, free_ports, grant_work_and_lease, leader_config};
use crate::{WAIT, create_platform, env};

/// A leader whose Lease renewals fail (here its permission on Leases is revoked; in a
/// cluster, API errors or timeouts) stops leading before its Lease expires, so that it
/// never acts beside the replica that takes the expired Lease over. kube-lease-manager
/// alone keeps reporting "leader" while its renewals fail.
#[tokio::test]
async fn a_leader_that_cannot_renew_its_lease_stops_before_the_lease_expires() {
    let env = env().await;
    let admin = env.client().unwrap();
    let namespace = env.fresh_namespace("renew").await.unwrap();
    let user = "operator-renew";
    grant_work_and_lease(&admin, &namespace, user).await;
    let (port, _) = free_ports();
    let lease_duration_secs = 12;
    let config = leader_config(&namespace, "operator-a", port, lease_duration_secs);
    let shutdown = service_kit::CancellationToken::new();
    let mut task = tokio::spawn(tessera_operator::run_until(
        env.impersonating(user, &["system:authenticated"]).unwrap(),
        config,
        shutdown.clone(),
    ));
    create_platform(&admin, &namespace).await;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), &namespace);
    let deadline = tokio::time::Instant::now() + WAIT;
    while deployments.get_opt("demo-gateway").await.unwrap().is_none() {
        assert!(
            !task.is_finished(),
            "the operator stopped: {:?}",
            (&mut task).await
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the leader did not reconcile"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Its renewals now fail.
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(admin.clone(), &namespace)
        .delete("lease", &kube::api::DeleteParams::default())
        .await
        .unwrap();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(admin.clone(), &namespace);
    // It stops within one Lease duration of its last renewal (plus time to notice).
    let outcome = tokio::time::timeout(Duration::from_secs(lease_duration_secs + 10), &mut task)
        .await
        .unwrap_or_else(|_| {
            panic!("a leader that cannot renew its Lease kept leading past its expiry")
        })
        .unwrap();
    let stopped_at = std::time::SystemTime::now();
    assert!(
        matches!(outcome, Err(tessera_operator::RunError::LostLease)),
        "{outcome:?}"
    );
    // It stepped down before the Lease it held expired (nobody else could have taken it).
    let spec = leases.get("tessera-operator").await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("operator-a"));
    let expiry = std::time::SystemTime::from(spec.renew_time.unwrap().0)
        + Duration::from_secs(lease_duration_secs);
    assert!(
        stopped_at < expiry,
        "stepped down only after the Lease expired"
    );
    shutdown.cancel();
}

/// A leader whose renewals lapse while a reconcile is in flight drops that reconcile: it
/// performs none of its remaining writes after the step-down, when another replica may
/// already lead (a graceful stop would let it finish and overwrite the new leader's work).
/// Here the reconcile of a spec change is held at its gateway Deployment apply until
/// well after the Lease has lapsed.
#[tokio::test]
async fn a_leader_whose_lease_lapses_drops_its_in_flight_reconcile() {
    let mut held = HeldReconcile::start("lapse").await;
    let outcome = held
        .lapse_and_check_nothing_landed()
        .await
        .expect("the leader kept running after its renewals lapsed (its reconcile in flight)");
    assert!(
        matches!(outcome, Err(tessera_operator::RunError::LostLease)),
        "{outcome:?}"
    );
    held.shutdown.cancel();
}
