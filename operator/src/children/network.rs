//! NetworkPolicies: each component accepts traffic on its public port only from the
//! components the architecture says call it (DESIGN.md §1). Egress is not restricted.
//! Kubelet probes on the admin port come from the node and are not affected.

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Child, Component, Context, Kind};

/// Who may call `component`; `None` = anyone (the gateway, behind the Ingress controller).
pub(crate) fn callers(
    platform: &crate::crd::Platform,
    component: &Component,
) -> Option<Vec<Component>> {
    let onboarded = platform
        .spec
        .services
        .iter()
        .map(|s| Component::Onboarded(s.name.clone()));
    let services = || {
        [
            Component::Logging,
            Component::Notification,
            Component::Profile,
        ]
        .into_iter()
        .chain(onboarded.clone())
    };
    match component {
        Component::Gateway => None,
        // Login, tokens and JWKS for the gateway; client credentials for services.
        Component::Identity => Some(
            std::iter::once(Component::Gateway)
                .chain(services())
                .collect(),
        ),
        // Every component ships its logs; the gateway routes the admin log explorer.
        Component::Logging => Some(
            [Component::Gateway, Component::Identity]
                .into_iter()
                .chain(services().filter(|c| *c != Component::Logging))
                .collect(),
        ),
        // Notification reads users' channel preferences from profile.
        Component::Profile => Some(vec![Component::Gateway, Component::Notification]),
        Component::Notification | Component::Onboarded(_) => Some(vec![Component::Gateway]),
        // Services publish and consume events.
        Component::Nats => Some(
            std::iter::once(Component::Identity)
                .chain(services())
                .collect(),
        ),
    }
}

/// The NetworkPolicy of `component` (port 8080, or 4222 for NATS).
pub(crate) fn policy(cx: &Context<'_>, component: &Component, port: &str) -> Child {
    let from = callers(cx.platform, component).map(|callers| {
        callers
            .iter()
            .map(|caller| NetworkPolicyPeer {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(cx.selector(caller)),
                    match_expressions: None,
                }),
                ..NetworkPolicyPeer::default()
            })
            .collect()
    });
    Child::new(
        component,
        Kind::NetworkPolicy,
        &NetworkPolicy {
            metadata: cx.meta(component, cx.object_name(component, "")),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(cx.selector(component)),
                    match_expressions: None,
                }),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from,
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(IntOrString::String(port.to_owned())),
                        protocol: Some("TCP".into()),
                        end_port: None,
                    }]),
                }]),
                ..NetworkPolicySpec::default()
            }),
        },
    )
}

pub(crate) fn children(cx: &Context<'_>, component: &Component) -> Vec<Child> {
    vec![policy(cx, component, "http")]
}
