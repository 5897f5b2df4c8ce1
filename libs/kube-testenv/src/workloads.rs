//! Standing in for the kubelet: pods marked Ready so Deployments become Available.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::Error;

/// Makes the Deployment `namespace/name` Available the way a kubelet would: marks its
/// pods (created by the real `ReplicaSet` controller) Running and Ready until the real
/// Deployment controller reports `Available=True`. Needs kube-controller-manager.
pub async fn make_deployment_available(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<Deployment, Error> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + timeout;
    loop {
        let deployment = deployments.get(name).await?;
        if is_available(&deployment) {
            return Ok(deployment);
        }
        let selector = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.selector.match_labels.as_ref())
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        for pod in pods.list(&ListParams::default().labels(&selector)).await? {
            if pod.metadata.deletion_timestamp.is_none() && !is_ready(&pod) {
                mark_pod_ready(&pods, &pod).await?;
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("Deployment {namespace}/{name} to become Available"),
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn is_available(deployment: &Deployment) -> bool {
    let Some(status) = &deployment.status else {
        return false;
    };
    let generation = deployment.metadata.generation.unwrap_or_default();
    status.observed_generation.unwrap_or_default() >= generation
        && status.updated_replicas == status.replicas
        && status
            .conditions
            .iter()
            .flatten()
            .any(|condition| condition.type_ == "Available" && condition.status == "True")
        && status.available_replicas.unwrap_or_default()
            >= deployment
                .spec
                .as_ref()
                .and_then(|spec| spec.replicas)
                .unwrap_or(1)
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|condition| condition.type_ == "Ready" && condition.status == "True")
        })
}

/// Patches a pod's status (`pods/status`) to Running with every container ready, as
/// a kubelet would after a successful start.
pub async fn mark_pod_ready(pods: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 formatting of a UTC time");
    let name = pod.metadata.name.clone().unwrap_or_default();
    let containers = pod
        .spec
        .as_ref()
        .map(|spec| spec.containers.as_slice())
        .unwrap_or_default();
    let statuses: Vec<_> = containers
        .iter()
        .map(|container| {
            json!({
                "name": container.name,
                "image": container.image.clone().unwrap_or_default(),
                "imageID": "",
                "ready": true,
                "started": true,
                "restartCount": 0,
                "state": { "running": { "startedAt": now } },
            })
        })
        .collect();
    let condition =
        |type_: &str| json!({ "type": type_, "status": "True", "lastTransitionTime": now });
    let patch = json!({
        "status": {
            "phase": "Running",
            "startTime": now,
            "conditions": [
                condition("PodScheduled"),
                condition("Initialized"),
                condition("ContainersReady"),
                condition("Ready"),
            ],
            "containerStatuses": statuses,
        }
    });
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
