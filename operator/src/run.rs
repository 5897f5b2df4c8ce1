//! Running the operator: configuration, leader election on a Lease, the admin listener
//! (`/healthz`, `/readyz`, `/metrics`) and the controller, with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt as _;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use service_kit::{CancellationToken, HttpSettings, SystemClock};

use crate::children::{MANAGED_BY, MANAGER};
use crate::controller::{self, Context};
use crate::crd::Platform;
use crate::metrics::OperatorMetrics;

/// The operator's settings (flags with `TESSERA_*`/downward-API env fallbacks).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Admin listener: /healthz, /readyz, /metrics.
    #[arg(long, env = "TESSERA_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Watch `Platform`s in this namespace only; empty = every namespace.
    #[arg(long, env = "TESSERA_WATCH_NAMESPACE", default_value = "")]
    pub watch_namespace: String,
    /// Run only while holding the Lease (set false for a single replica outside a cluster).
    #[arg(long, env = "TESSERA_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "TESSERA_LEASE_NAME", default_value = "tessera-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Holder identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "tessera-operator")]
    pub pod_name: String,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "TESSERA_LEASE_DURATION_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(5..=300))]
    pub lease_duration_secs: u64,
}

/// Why the operator stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The admin listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Leader election failed.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// Another replica took the Lease: exit so that this pod restarts as a follower.
    #[error("lost the leader Lease")]
    LostLease,
}

/// Runs the operator with `client` until SIGTERM or Ctrl-C.
pub async fn run(client: Client, config: Config) -> Result<(), RunError> {
    run_until(client, config, service_kit::shutdown::on_signals()).await
}

/// Runs the operator with `client` until `shutdown` is cancelled (tests and embedders).
pub async fn run_until(
    client: Client,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let metrics = OperatorMetrics::default();
    let service = service_kit::Service::new("operator", HttpSettings::default());
    metrics.register(service.metrics());
    let listener = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.admin_listen,
            source,
        })?;
    tracing::info!(admin = %config.admin_listen, "listening");
    let admin = {
        let router = service.admin_router();
        let shutdown = shutdown.clone();
        let readiness = service.readiness().clone();
        tokio::spawn(async move {
            let stop = async move {
                shutdown.cancelled().await;
                readiness.set_draining();
            };
            if let Err(error) = axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(%error, "admin listener failed");
            }
        })
    };

    let result = if config.leader_election {
        lead_then_run(client, &config, metrics, shutdown.clone()).await
    } else {
        run_controller(client, &config, metrics, shutdown.clone()).await;
        Ok(())
    };
    shutdown.cancel();
    let _ = admin.await;
    result
}

async fn lead_then_run(
    client: Client,
    config: &Config,
    metrics: OperatorMetrics,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
        .with_namespace(&config.lease_namespace)
        .with_identity(&config.pod_name)
        .with_duration(config.lease_duration_secs)
        // The holder renews `grace` before expiry. The crate's fixed 5 s default made the
        // allowed 5 s duration renew in a busy loop (sleep 0 between Lease writes); a third
        // keeps 15 s → 5 s as before.
        .with_grace(config.lease_duration_secs / 3)
        // One field manager per instance: the crate takes an orphaned Lease with a
        // server-side apply that is not forced, so a second instance's apply conflicts
        // (409) instead of silently overwriting the holder. A shared manager let both
        // instances believe they led until the next renewal.
        .with_field_manager(format!("{MANAGER}-lease-{}", config.pod_name))
        .build()
        .await?;
    let (mut leader, task) = manager.watch().await;
    tracing::info!(lease = %config.lease_name, "waiting to become the leader");
    loop {
        if *leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            () = shutdown.cancelled() => {
                drop(leader);
                let _ = task.await;
                return Ok(());
            }
            changed = leader.changed() => {
                if changed.is_err() {
                    return Err(RunError::LostLease);
                }
            }
        }
    }
    tracing::info!("leading");
    let lost = CancellationToken::new();
    let controller_stop = CancellationToken::new();
    let watch_lease = {
        let lost = lost.clone();
        let stop = controller_stop.clone();
        let shutdown = shutdown.clone();
        async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    changed = leader.changed() => {
                        if changed.is_err() || !*leader.borrow_and_update() {
                            lost.cancel();
                            break;
                        }
                    }
                }
            }
            stop.cancel();
            // Dropping the receiver makes the manager release the Lease.
            drop(leader);
        }
    };
    let controller = run_controller(client, config, metrics, controller_stop.clone());
    tokio::join!(watch_lease, controller);
    let _ = task.await;
    if lost.is_cancelled() {
        Err(RunError::LostLease)
    } else {
        Ok(())
    }
}

fn api<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    if namespace.is_empty() {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), namespace)
    }
}

/// Runs the controller until `stop` is cancelled.
pub async fn run_controller(
    client: Client,
    config: &Config,
    metrics: OperatorMetrics,
    stop: CancellationToken,
) {
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: Some(config.pod_name.clone()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let cx = Arc::new(Context::new(
        client.clone(),
        recorder,
        metrics,
        Arc::new(SystemClock),
    ));
    let ns = config.watch_namespace.as_str();
    let children = || watcher::Config::default().labels(&format!("{MANAGED_BY}={MANAGER}"));
    Controller::new(
        api::<Platform>(&client, ns),
        watcher::Config::default().any_semantic(),
    )
    .owns(api::<Deployment>(&client, ns), children())
    .owns(api::<StatefulSet>(&client, ns), children())
    .owns(api::<Service>(&client, ns), children())
    .owns(api::<ConfigMap>(&client, ns), children())
    .owns(api::<Secret>(&client, ns), children())
    .owns(api::<ServiceAccount>(&client, ns), children())
    .owns(api::<PersistentVolumeClaim>(&client, ns), children())
    .owns(api::<PodDisruptionBudget>(&client, ns), children())
    .owns(api::<NetworkPolicy>(&client, ns), children())
    .owns(api::<Ingress>(&client, ns), children())
    .graceful_shutdown_on(async move { stop.cancelled().await })
    .run(controller::reconcile, controller::error_policy, cx)
    .for_each(|result| async move {
        match result {
            Ok((object, _)) => tracing::debug!(platform = %object.name, "reconciled"),
            Err(error) => tracing::debug!(%error, "reconcile did not complete"),
        }
    })
    .await;
    tracing::info!("controller stopped");
}
