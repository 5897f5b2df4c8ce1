//! Per-component workload children: ServiceAccount, env ConfigMap, data volume,
//! Deployment, Service and PodDisruptionBudget.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource, HTTPGetAction, LocalObjectReference,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CONFIG_CHECKSUM, Child, Component, Context, Kind, Materials};
use crate::crd::{ComponentSpec, SecretKeyRef};

/// UID and GID of every container: the images' numeric non-root user.
const RUN_AS: i64 = 65_532;
/// Where SQLite files live (a PersistentVolumeClaim).
const DATA_DIR: &str = "/var/lib/tessera";
/// Where identity's keyset Secret is mounted (as a directory: Secret updates reach it).
const KEYSET_DIR: &str = "/var/run/tessera/keyset";
/// Where identity's client registry Secret is mounted.
const CLIENTS_DIR: &str = "/var/run/tessera/clients";
/// Where the gateway's routes ConfigMap is mounted.
const ROUTES_DIR: &str = "/etc/tessera/routes";

/// A container env var taken from a Secret key (never written into a ConfigMap).
fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// What a component's container gets: plain settings (its env ConfigMap), secret env
/// vars, and volumes.
struct Settings {
    env: BTreeMap<String, String>,
    secret_env: Vec<EnvVar>,
    volumes: Vec<(Volume, String)>,
}

fn nats_url(cx: &Context<'_>) -> String {
    cx.platform
        .spec
        .events
        .nats_url
        .clone()
        .unwrap_or_else(|| format!("nats://{}:4222", cx.object_name(&Component::Nats, "")))
}

/// The database URL: a Secret reference for PostgreSQL, otherwise a SQLite file on the
/// component's volume.
fn database(
    cx: &Context<'_>,
    component: &Component,
    spec: &ComponentSpec,
    settings: &mut Settings,
) {
    if let Some(postgres) = spec.storage.as_ref().and_then(|s| s.postgres.as_ref()) {
        settings.secret_env.push(secret_ref_env(
            "TESSERA_DATABASE_URL",
            &postgres.url_secret_ref,
        ));
    } else {
        {
            settings.env.insert(
                "TESSERA_DATABASE_URL".into(),
                format!("sqlite:{DATA_DIR}/{}.db", component.name()),
            );
            settings.volumes.push((
                Volume {
                    name: "data".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: cx.object_name(component, "data"),
                        read_only: None,
                    }),
                    ..Volume::default()
                },
                DATA_DIR.into(),
            ));
        }
    }
}

fn secret_ref_env(name: &str, reference: &SecretKeyRef) -> EnvVar {
    secret_env(name, &reference.name, &reference.key)
}

fn secret_volume(name: &str, secret: String, path: &str) -> (Volume, String) {
    (
        Volume {
            name: name.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                default_mode: Some(0o440),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        path.to_owned(),
    )
}

/// The contract of each component (its README, or operator/README.md for services not
/// built yet).
fn settings(cx: &Context<'_>, component: &Component) -> Settings {
    let platform = cx.platform;
    let identity = &platform.spec.identity;
    let audiences = if identity.audiences.is_empty() {
        "tessera".to_owned()
    } else {
        identity.audiences.join(",")
    };
    let jwks_url = format!("{}/.well-known/jwks.json", cx.url(&Component::Identity));
    let mut settings = Settings {
        env: BTreeMap::from([
            ("TESSERA_LISTEN".into(), "0.0.0.0:8080".into()),
            ("TESSERA_ADMIN_LISTEN".into(), "0.0.0.0:9090".into()),
            ("TESSERA_LOG_FORMAT".into(), "json".into()),
        ]),
        secret_env: Vec::new(),
        volumes: Vec::new(),
    };
    let env = &mut settings.env;
    match component {
        Component::Gateway => {
            env.insert(
                "TESSERA_ROUTES_FILE".into(),
                format!("{ROUTES_DIR}/routes.yaml"),
            );
            env.insert("TESSERA_JWKS_URL".into(), jwks_url);
            env.insert("TESSERA_ISSUER".into(), identity.issuer.clone());
            env.insert("TESSERA_AUDIENCES".into(), audiences);
            let max_age = identity.jwks_max_age_seconds.unwrap_or(300);
            env.insert(
                "TESSERA_JWKS_REFRESH_SECS".into(),
                max_age.max(1).to_string(),
            );
            settings.volumes.push((
                Volume {
                    name: "routes".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: cx.object_name(component, "routes"),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                ROUTES_DIR.into(),
            ));
        }
        Component::Identity => identity_settings(cx, component, audiences, &mut settings),
        _ => {
            env.insert("TESSERA_ISSUER".into(), identity.issuer.clone());
            env.insert("TESSERA_AUDIENCES".into(), audiences);
            env.insert("TESSERA_JWKS_URL".into(), jwks_url);
            env.insert("TESSERA_NATS_URL".into(), nats_url(cx));
            env.insert(
                "TESSERA_TOKEN_URL".into(),
                format!("{}/oauth2/token", cx.url(&Component::Identity)),
            );
            env.insert("TESSERA_CLIENT_ID".into(), component.name());
            if *component != Component::Logging {
                env.insert("TESSERA_LOGS_URL".into(), cx.url(&Component::Logging));
            }
            let client_secret = cx.object_name(component, "client");
            settings.secret_env.push(secret_env(
                "TESSERA_CLIENT_SECRET",
                &client_secret,
                "client_secret",
            ));
        }
    }
    extras(platform, component, &mut settings);
    if let Some(spec) = component.spec(platform) {
        database(cx, component, spec, &mut settings);
    }
    settings
}

/// Identity's settings (services/identity/README.md, operator mode).
fn identity_settings(
    cx: &Context<'_>,
    component: &Component,
    audiences: String,
    settings: &mut Settings,
) {
    let platform = cx.platform;
    let identity = &platform.spec.identity;
    let env = &mut settings.env;
    env.insert("TESSERA_ISSUER".into(), identity.issuer.clone());
    env.insert("TESSERA_AUDIENCES".into(), audiences);
    env.insert("TESSERA_KEYSET_DIR".into(), KEYSET_DIR.into());
    env.insert(
        "TESSERA_CLIENT_REGISTRY".into(),
        format!("{CLIENTS_DIR}/clients.json"),
    );
    // Only the gateway and platform services reach identity (NetworkPolicy).
    env.insert("TESSERA_TRUST_FORWARDED_FOR".into(), "true".into());
    if let Some(ttl) = identity.access_token_ttl_seconds {
        env.insert("TESSERA_ACCESS_TOKEN_TTL_SECS".into(), ttl.to_string());
    }
    if let Some(ttl) = identity.refresh_token_ttl_seconds {
        env.insert("TESSERA_REFRESH_TOKEN_TTL_SECS".into(), ttl.to_string());
    }
    if let Some(max_age) = identity.jwks_max_age_seconds {
        env.insert("TESSERA_JWKS_MAX_AGE_SECS".into(), max_age.to_string());
    }
    if !identity.bootstrap_admins.is_empty() {
        env.insert(
            "TESSERA_BOOTSTRAP_ADMINS".into(),
            identity.bootstrap_admins.join(","),
        );
    }
    settings.secret_env.push(secret_env(
        "TESSERA_CLIENT_SECRET_PEPPER",
        &super::pepper_secret_name(platform),
        "pepper",
    ));
    settings.volumes.push(secret_volume(
        "keyset",
        super::keyset_secret_name(platform),
        KEYSET_DIR,
    ));
    settings.volumes.push(secret_volume(
        "clients",
        cx.object_name(component, "clients"),
        CLIENTS_DIR,
    ));
}

/// Settings only logging and notification have.
fn extras(platform: &crate::crd::Platform, component: &Component, settings: &mut Settings) {
    match component {
        Component::Logging => {
            let retention = platform.spec.logging.retention_seconds.unwrap_or(604_800);
            settings
                .env
                .insert("TESSERA_RETENTION_SECS".into(), retention.to_string());
        }
        Component::Notification => {
            let notification = &platform.spec.notification;
            if let Some(sender) = &notification.sender {
                settings
                    .env
                    .insert("TESSERA_EMAIL_SENDER".into(), sender.clone());
            }
            for (name, reference) in [
                ("TESSERA_SMTP_URL", &notification.smtp),
                ("TESSERA_SMS_URL", &notification.sms),
                ("TESSERA_PUSH_URL", &notification.push),
            ] {
                if let Some(reference) = reference {
                    settings.secret_env.push(secret_ref_env(name, reference));
                }
            }
        }
        _ => {}
    }
}

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
    _materials: &Materials,
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

    let mut annotations = BTreeMap::from([(CONFIG_CHECKSUM.to_owned(), checksum(&settings.env))]);
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
