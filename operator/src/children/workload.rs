//! Per-component workload children: ServiceAccount, env ConfigMap, data volume,
//! Deployment, Service and PodDisruptionBudget.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, HTTPGetAction, LocalObjectReference, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::settings::settings;
use super::{CONFIG_CHECKSUM, Child, Component, Context, Kind, Materials};

/// UID and GID of every container: the images' numeric non-root user.
const RUN_AS: i64 = 65_532;
fn checksum(data: &BTreeMap<String, String>) -> String {
    let json = serde_json::to_vec(data).expect("a map serializes");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &json);
    digest.as_ref().iter().fold(String::new(), |mut hex, b| {
        // Writing into a String cannot fail.
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

fn probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        timeout_seconds: Some(1),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// The hardened pod: non-root, RuntimeDefault seccomp; the group owns mounted volumes.
pub(crate) fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// The hardened container: read-only root, no privilege escalation, no capabilities.
pub(crate) fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

/// The workload children of one component.
#[allow(
    clippy::too_many_lines,
    reason = "one literal per object; splitting it scatters the pod spec"
)]
pub(crate) fn children(
    cx: &Context<'_>,
    component: &Component,
    materials: &Materials,
) -> Vec<Child> {
    let platform = cx.platform;
    let name = cx.object_name(component, "");
    let onboarded = component.onboarded(platform);
    let settings = settings(cx, component);
    let mut children = Vec::new();

    children.push(Child::new(
        component,
        Kind::ServiceAccount,
        &ServiceAccount {
            metadata: cx.meta(component, name.clone()),
            // No component talks to the Kubernetes API.
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        },
    ));
    let env_name = cx.object_name(component, "env");
    children.push(Child::new(
        component,
        Kind::ConfigMap,
        &ConfigMap {
            metadata: cx.meta(component, env_name.clone()),
            data: Some(settings.env.clone()),
            ..ConfigMap::default()
        },
    ));

    let spec = component.spec(platform);
    let sqlite = spec.is_some_and(|s| s.storage.as_ref().is_none_or(|st| st.postgres.is_none()));
    if sqlite {
        let storage = spec
            .and_then(|s| s.storage.as_ref())
            .and_then(|s| s.sqlite.clone())
            .unwrap_or_default();
        children.push(Child::new(
            component,
            Kind::PersistentVolumeClaim,
            &PersistentVolumeClaim {
                metadata: cx.meta(component, cx.object_name(component, "data")),
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: storage.storage_class_name,
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".into(),
                            Quantity(storage.size),
                        )])),
                        limits: None,
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                status: None,
            },
        ));
    }

    let replicas = match component {
        Component::Gateway => platform.spec.gateway.replicas.unwrap_or(2),
        _ => onboarded
            .and_then(|s| s.replicas)
            .or_else(|| spec.and_then(|s| s.replicas))
            .unwrap_or(1),
    };
    let resources = match component {
        Component::Gateway => platform.spec.gateway.resources.clone(),
        _ => onboarded
            .and_then(|s| s.resources.clone())
            .or_else(|| spec.and_then(|s| s.resources.clone())),
    };
    let images = &platform.spec.images;
    let image = onboarded.map_or_else(
        || {
            format!(
                "{}/tessera-{}:{}",
                images.repository,
                component.name(),
                images.tag
            )
        },
        |s| s.image.clone(),
    );
    let container_port = onboarded.map_or(8080, |s| s.port);

    let mut volumes = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..VolumeMount::default()
    }];
    for (volume, path) in settings.volumes {
        mounts.push(VolumeMount {
            name: volume.name.clone(),
            mount_path: path,
            read_only: Some(volume.persistent_volume_claim.is_none()),
            ..VolumeMount::default()
        });
        volumes.push(volume);
    }

    // Env vars taken from a generated Secret never change in a running pod: the values
    // count in the checksum, so a Secret created again (deleted by hand) rolls the pods
    // that read it (identity's hot-reloaded client registry already has the new value).
    // Hashed with the rest, never written out.
    let mut checksummed = settings.env.clone();
    if let Some(secret) = materials.client_secrets.get(&component.name()) {
        checksummed.insert("\0generated:client_secret".into(), secret.clone());
    }
    if *component == Component::Identity {
        checksummed.insert(
            "\0generated:pepper".into(),
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                &materials.pepper,
            ),
        );
    }
    let mut annotations = BTreeMap::from([(CONFIG_CHECKSUM.to_owned(), checksum(&checksummed))]);
    annotations.insert("prometheus.io/scrape".into(), "true".into());
    annotations.insert("prometheus.io/port".into(), "9090".into());
    let container = Container {
        name: component.name(),
        image: Some(image),
        image_pull_policy: images.pull_policy.clone(),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: 9090,
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: env_name,
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        env: (!settings.secret_env.is_empty()).then_some(settings.secret_env),
        resources,
        liveness_probe: Some(probe("/healthz")),
        readiness_probe: Some(probe("/readyz")),
        security_context: Some(container_security()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let pull_secrets = (!images.pull_secrets.is_empty()).then(|| {
        images
            .pull_secrets
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    });
    children.push(Child::new(
        component,
        Kind::Deployment,
        &Deployment {
            metadata: cx.meta(component, name.clone()),
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(cx.selector(component)),
                    match_expressions: None,
                },
                // One SQLite file on a ReadWriteOnce volume: never two pods at once.
                strategy: sqlite.then(|| DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    rolling_update: None,
                }),
                template: PodTemplateSpec {
                    metadata: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                        labels: Some(cx.labels(component)),
                        annotations: Some(annotations),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        service_account_name: Some(name.clone()),
                        automount_service_account_token: Some(false),
                        security_context: Some(pod_security()),
                        image_pull_secrets: pull_secrets,
                        containers: vec![container],
                        volumes: Some(volumes),
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            }),
            status: None,
        },
    ));
    children.push(Child::new(
        component,
        Kind::Service,
        &Service {
            metadata: cx.meta(component, name.clone()),
            spec: Some(ServiceSpec {
                selector: Some(cx.selector(component)),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 8080,
                    target_port: Some(IntOrString::String("http".into())),
                    protocol: Some("TCP".into()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: None,
        },
    ));
    children.push(Child::new(
        component,
        Kind::PodDisruptionBudget,
        &PodDisruptionBudget {
            metadata: cx.meta(component, name),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(LabelSelector {
                    match_labels: Some(cx.selector(component)),
                    match_expressions: None,
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            status: None,
        },
    ));
    children
}
