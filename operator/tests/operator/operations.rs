//! Operations: the admin listener serves health and metrics while the controller runs,
//! and the operator stops cleanly on shutdown.

use std::time::Duration;

use service_kit::CancellationToken;
use tessera_operator::Config;

use crate::apiserver::ApiServer;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("the admin listener answers");
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_admin_listener_serves_health_and_metrics_and_shutdown_is_graceful() {
    let (_server, client) = ApiServer::start();
    let port = free_port();
    let config = Config {
        admin_listen: format!("127.0.0.1:{port}").parse().unwrap(),
        watch_namespace: "tessera".into(),
        leader_election: false,
        lease_name: "tessera-operator".into(),
        lease_namespace: "tessera".into(),
        pod_name: "test".into(),
        lease_duration_secs: 15,
    };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(tessera_operator::run_until(
        client,
        config,
        shutdown.clone(),
    ));
    let base = format!("http://127.0.0.1:{port}");
    let mut healthy = None;
    // Up to 30 s: the listener binds first thing, but a loaded machine may be slow to
    // run the spawned task.
    for _ in 0..300 {
        if let Ok(response) = reqwest::get(format!("{base}/healthz")).await {
            healthy = Some(response.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(healthy, Some(200));
    assert_eq!(get(&format!("{base}/readyz")).await.0, 200);
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    for series in [
        "tessera_operator_reconciles",
        "tessera_operator_reconcile_errors",
        "tessera_operator_reconcile_duration_seconds",
        "tessera_operator_key_rotations",
    ] {
        assert!(
            metrics.contains(series),
            "{series} missing from:\n{metrics}"
        );
    }
    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the operator stops within 10 s of shutdown");
    stopped.unwrap().expect("a clean stop");
}
