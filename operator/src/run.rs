//! Running the operator: configuration, leader election on a Lease, the admin listener
//! (`/healthz`, `/readyz`, `/metrics`) and the controller, with graceful shutdown (and an
//! immediate stop, in-flight reconciles dropped, when the Lease is lost).

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
        // allowed 5 s duration renew in a busy loop (sleep 0 between Lease writes). Half
        // the duration: the instance steps down a sixth before expiry when no renewal
        // landed (`renewals_lapse`), which leaves a renewal a third of the duration (5 s
        // at the default) to get through a slow API server.
        .with_grace(config.lease_duration_secs / 2)
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
    let controller_stop = CancellationToken::new();
    // Leads until the controller has stopped (after a shutdown) or the Lease is lost; a
    // loss also ends a graceful stop still in progress.
    let lost = {
        let controller = run_controller(client.clone(), config, metrics, controller_stop.clone());
        let renewals = renewals_lapse(client, config);
        tokio::pin!(controller, renewals);
        loop {
            tokio::select! {
                biased;
                () = &mut renewals => {
                    tracing::error!("the Lease was not renewed in time: stepping down");
                    break true;
                }
                changed = leader.changed() => {
                    if changed.is_err() || !*leader.borrow_and_update() {
                        tracing::error!("the Lease manager says another instance leads: stepping down");
                        break true;
                    }
                }
                () = &mut controller => break false,
                // Shutdown: a graceful stop, the in-flight reconciles finish while the
                // Lease is still held.
                () = shutdown.cancelled(), if !controller_stop.is_cancelled() => {
                    controller_stop.cancel();
                }
            }
        }
        // Leaving this block drops the controller: after a lapse, another replica may
        // lead already, so the reconciles in flight must write nothing more. Dropping the
        // stream of `Controller::run` is kube-runtime's forceful shutdown: each reconcile
        // runs in a task that is aborted when its handle is dropped, at its next `.await`
        // (a request not yet sent never is). Reconciles are idempotent: the next leader
        // redoes the work.
    };
    if lost {
        tracing::warn!("in-flight reconciles dropped");
        // Not released: the Lease is another's now (releasing it, without a precondition,
        // could clear the new holder), or unreachable; and the manager's retry backoff
        // (up to 30 s) would hold this exit back.
        task.abort();
    }
    // Only now, with the in-flight reconciles finished (or dropped): dropping the receiver
    // makes the manager release the Lease, and the next leader may start at once.
    drop(leader);
    let _ = task.await;
    if lost {
        Err(RunError::LostLease)
    } else {
        Ok(())
    }
}

/// Completes when this instance can no longer be sure it holds the Lease: another holder
/// is recorded, or its last renewal is about to expire. kube-lease-manager reports a lost
/// Lease only once it reads another holder: when its renewals fail (API errors,
/// timeouts, a revoked permission) it retries with a backoff of up to 30 s and keeps
/// saying "leader", while the other replicas take the expired Lease — two leaders.
/// Stepping down a sixth of the duration before expiry, by this instance's own clock (the
/// one that wrote `renewTime`), stops it before anyone else can take over.
async fn renewals_lapse(client: Client, config: &Config) {
    use k8s_openapi::api::coordination::v1::Lease;
    use std::time::{Duration, SystemTime};

    let leases: Api<Lease> = Api::namespaced(client, &config.lease_namespace);
    let name = config.lease_name.clone();
    let identity = config.pod_name.clone();
    let duration = Duration::from_secs(config.lease_duration_secs);
    // The holder renews half the duration before expiry (`with_grace`): step down a sixth
    // before expiry, leaving the renewal a third of the duration to land.
    let margin = duration / 6;
    let poll = margin.max(Duration::from_millis(500));
    // Just acquired: valid for a whole duration from about now.
    let mut valid_until = SystemTime::now() + duration - margin;
    loop {
        let left = valid_until
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        tokio::time::sleep(left.min(poll)).await;
        match leases.get_opt(&name).await {
            Ok(Some(lease)) => {
                let spec = lease.spec.unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(identity.as_str()) {
                    return;
                }
                if let Some(renewed) = spec.renew_time {
                    valid_until = SystemTime::from(renewed.0) + duration - margin;
                }
            }
            Ok(None) => return,
            // Cannot confirm: the last confirmed renewal still counts until it lapses.
            Err(error) => tracing::warn!(%error, "cannot read the Lease"),
        }
        if SystemTime::now() >= valid_until {
            return;
        }
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
