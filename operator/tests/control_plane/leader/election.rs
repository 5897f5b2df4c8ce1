//! Two operator instances with leader election: one leads, the other takes over.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use super::{free_ports, leader_config};
use crate::{WAIT, create_platform, env, hand_edit_replicas, replicas};

/// Reconciles an operator instance has counted, from its admin `/metrics`.
async fn reconciles(admin: std::net::SocketAddr) -> f64 {
    let Ok(response) = reqwest::get(format!("http://{admin}/metrics")).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| line.starts_with("tessera_operator_reconciles_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits until the instance at `admin` has counted a reconcile; fails with `what` after
/// [`WAIT`].
async fn wait_for_reconciles(admin: std::net::SocketAddr, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while reconciles(admin).await == 0.0 {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two operator instances with leader election: only the Lease holder reconciles; when
/// it stops, the other takes the Lease and repairs drift.
#[tokio::test]
async fn leader_election_lets_only_one_of_two_instances_act() {
    let env = env().await;
    let client = env.client().unwrap();
    let namespace = env.fresh_namespace("leader").await.unwrap();
    let (port_a, port_b) = free_ports();
    let instance = |pod: &str, port: u16| {
        // The default: renewals come `grace` (half of it) before expiry, which leaves a
        // loaded API server seconds to answer; takeover after a release is quick.
        let config = leader_config(&namespace, pod, port, 15);
        let shutdown = service_kit::CancellationToken::new();
        let admin = config.admin_listen;
        let task = tokio::spawn(tessera_operator::run_until(
            env.client().unwrap(),
            config,
            shutdown.clone(),
        ));
        (admin, shutdown, task)
    };
    let (admin_a, stop_a, task_a) = instance("operator-a", port_a);
    let (admin_b, stop_b, task_b) = instance("operator-b", port_b);
    create_platform(&client, &namespace).await;

    // One of them leads and reconciles; the other does nothing.
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let deadline = tokio::time::Instant::now() + WAIT;
    while deployments.get_opt("demo-gateway").await.unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no instance reconciled the Platform"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let holder = leases
        .get("tessera-operator")
        .await
        .unwrap()
        .spec
        .and_then(|spec| spec.holder_identity)
        .expect("a Lease holder");
    let (leader, follower, stop_leader, leader_task, stop_follower, mut follower_task) =
        if holder == "operator-a" {
            (admin_a, admin_b, stop_a, task_a, stop_b, task_b)
        } else {
            assert_eq!(holder, "operator-b");
            (admin_b, admin_a, stop_b, task_b, stop_a, task_a)
        };
    // The Deployment appears mid-reconcile; the count when that reconcile finishes, which
    // takes a while when the API server is slow.
    wait_for_reconciles(leader, "the leader's reconciles are not counted").await;
    // Give a follower that ignored the Lease time to act before checking it did not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        reconciles(follower).await == 0.0,
        "the follower reconciled while not leading"
    );

    // The leader stops; the follower takes over and repairs a hand edit.
    stop_leader.cancel();
    let _ = leader_task.await;
    hand_edit_replicas(&client, &namespace, 7).await;
    wait_until_repaired(&deployments, &mut follower_task).await;
    // The repair lands before that reconcile finishes and is counted.
    wait_for_reconciles(follower, "the new leader's reconciles are not counted").await;
    let holder = leases
        .get("tessera-operator")
        .await
        .unwrap()
        .spec
        .and_then(|spec| spec.holder_identity);
    assert_ne!(
        holder.as_deref(),
        Some(if leader == admin_a {
            "operator-a"
        } else {
            "operator-b"
        })
    );
    stop_follower.cancel();
    let _ = follower_task.await;
}

/// Waits until the gateway's hand-edited replicas are put back. Fails at once, with its
/// outcome, if the instance expected to take over has stopped (its Lease watch failed;
/// a pod would restart) instead of at the deadline.
async fn wait_until_repaired<T: std::fmt::Debug>(
    deployments: &Api<Deployment>,
    follower: &mut tokio::task::JoinHandle<T>,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if replicas(&deployments.get("demo-gateway").await.unwrap()) != Some(7) {
            return;
        }
        if follower.is_finished() {
            let outcome = follower.await;
            panic!("the second instance stopped before taking over: {outcome:?}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second instance never took over"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
