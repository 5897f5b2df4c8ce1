//! The optional single-node NATS (JetStream on a volume) run by the operator when
//! `spec.events.natsUrl` is unset.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSpec, PodTemplateSpec, Probe, Service, ServiceAccount, ServicePort, ServiceSpec,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::workload::{container_security, pod_security};
use super::{Child, Component, Context, Kind};
use crate::crd::{ManagedNats, Platform};

/// The managed NATS settings, when the platform uses one.
pub(crate) fn managed(platform: &Platform) -> Option<ManagedNats> {
    let events = &platform.spec.events;
    if events.nats_url.is_some() {
        None
    } else {
        Some(events.managed.clone().unwrap_or_default())
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one literal per object; splitting it scatters the pod spec"
)]
pub(crate) fn children(cx: &Context<'_>, nats: &ManagedNats) -> Vec<Child> {
    let component = Component::Nats;
    let name = cx.object_name(&component, "");
    let port = |name: &str, number: i32| ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    };
    let container = Container {
        name: "nats".into(),
        image: Some(nats.image.clone()),
        args: Some(vec![
            "--jetstream".into(),
            "--store_dir=/data".into(),
            "--http_port=8222".into(),
        ]),
        ports: Some(vec![port("client", 4222), port("monitor", 8222)]),
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz?js-enabled-only=true".into()),
                port: IntOrString::String("monitor".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            ..Probe::default()
        }),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz?js-server-only=true".into()),
                port: IntOrString::String("monitor".into()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            ..Probe::default()
        }),
        security_context: Some(container_security()),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".into(),
                    Quantity(nats.storage_size.clone()),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    };
    vec![
        Child::new(
            &component,
            Kind::ServiceAccount,
            &ServiceAccount {
                metadata: cx.meta(&component, name.clone()),
                automount_service_account_token: Some(false),
                ..ServiceAccount::default()
            },
        ),
        Child::new(
            &component,
            Kind::Service,
            &Service {
                metadata: cx.meta(&component, name.clone()),
                spec: Some(ServiceSpec {
                    selector: Some(cx.selector(&component)),
                    ports: Some(vec![ServicePort {
                        name: Some("client".into()),
                        port: 4222,
                        target_port: Some(IntOrString::String("client".into())),
                        protocol: Some("TCP".into()),
                        ..ServicePort::default()
                    }]),
                    ..ServiceSpec::default()
                }),
                status: None,
            },
        ),
        Child::new(
            &component,
            Kind::StatefulSet,
            &StatefulSet {
                metadata: cx.meta(&component, name.clone()),
                spec: Some(StatefulSetSpec {
                    replicas: Some(1),
                    service_name: Some(name.clone()),
                    selector: LabelSelector {
                        match_labels: Some(cx.selector(&component)),
                        match_expressions: None,
                    },
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(cx.labels(&component)),
                            ..ObjectMeta::default()
                        }),
                        spec: Some(PodSpec {
                            service_account_name: Some(name),
                            automount_service_account_token: Some(false),
                            security_context: Some(pod_security()),
                            containers: vec![container],
                            ..PodSpec::default()
                        }),
                    },
                    volume_claim_templates: Some(vec![claim]),
                    ..StatefulSetSpec::default()
                }),
                status: None,
            },
        ),
        super::network::policy(cx, &component, "client"),
    ]
}
