//! The desired children of a `Platform`, as pure functions of the spec and the material
//! read from the cluster (client secrets, pepper, JWKS). Nothing here talks to the API.
//!
//! Every child is named `<platform>-<component>[-<purpose>]`, labelled with
//! `app.kubernetes.io/*` and owned by the `Platform`.

mod component;
mod config;
mod nats;
mod network;
mod settings;
mod workload;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource as _;
use kube::core::ApiResource;
use serde::Serialize;

use crate::crd::Platform;

pub use component::Component;
pub use config::{client_registry_json, gateway_url, routes_yaml};

/// The operator's name as field manager and in `app.kubernetes.io/managed-by`.
pub const MANAGER: &str = "tessera-operator";

/// Label selecting every child of one platform (with the instance label).
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The platform a child belongs to.
pub const INSTANCE: &str = "app.kubernetes.io/instance";
/// Set on Secrets generated once (keys, pepper, client secrets): never re-applied.
pub const GENERATED: &str = "tessera.dev/generated";
/// Pod template annotation that changes when the component's env ConfigMap changes, so
/// the Deployment rolls. Hot-reloaded files (routes, keyset, client registry) are left
/// out on purpose: a key rotation must not restart identity.
pub const CONFIG_CHECKSUM: &str = "tessera.dev/config-checksum";

/// The kinds of object the operator manages; the prune pass lists each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// core/v1 ServiceAccount.
    ServiceAccount,
    /// core/v1 ConfigMap.
    ConfigMap,
    /// core/v1 Secret.
    Secret,
    /// core/v1 PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// core/v1 Service.
    Service,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// policy/v1 PodDisruptionBudget.
    PodDisruptionBudget,
    /// networking.k8s.io/v1 NetworkPolicy.
    NetworkPolicy,
    /// networking.k8s.io/v1 Ingress.
    Ingress,
}

impl Kind {
    /// Every kind, in the order children are applied (configuration before workloads).
    pub const ALL: [Kind; 10] = [
        Kind::ServiceAccount,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::PersistentVolumeClaim,
        Kind::Service,
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::PodDisruptionBudget,
        Kind::NetworkPolicy,
        Kind::Ingress,
    ];

    /// Group, version, kind and plural for the dynamic API.
    pub fn api_resource(self) -> ApiResource {
        match self {
            Kind::ServiceAccount => ApiResource::erase::<ServiceAccount>(&()),
            Kind::ConfigMap => ApiResource::erase::<ConfigMap>(&()),
            Kind::Secret => ApiResource::erase::<Secret>(&()),
            Kind::PersistentVolumeClaim => ApiResource::erase::<PersistentVolumeClaim>(&()),
            Kind::Service => ApiResource::erase::<Service>(&()),
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Kind::PodDisruptionBudget => ApiResource::erase::<PodDisruptionBudget>(&()),
            Kind::NetworkPolicy => ApiResource::erase::<NetworkPolicy>(&()),
            Kind::Ingress => ApiResource::erase::<Ingress>(&()),
        }
    }
}

/// One desired object, ready for server-side apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    /// The component it belongs to.
    pub component: Component,
    /// Its kind.
    pub kind: Kind,
    /// `metadata.name`.
    pub name: String,
    /// The full object, `apiVersion` and `kind` included.
    pub object: serde_json::Value,
}

impl Child {
    fn new<K: Serialize>(component: &Component, kind: Kind, object: &K) -> Self {
        let object = serde_json::to_value(object).expect("Kubernetes objects serialize");
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        Self {
            component: component.clone(),
            kind,
            name,
            object,
        }
    }
}

/// What the operator read or generated in the cluster that the children depend on.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Materials {
    /// The public JWKS of the current keyset (JSON).
    pub jwks_json: String,
    /// Client id → client secret of every service client (from the generated Secrets).
    pub client_secrets: BTreeMap<String, String>,
    /// Key of the client-secret hashes (identity's `--client-secret-pepper`).
    pub pepper: Vec<u8>,
}

impl std::fmt::Debug for Materials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("Materials")
            .field("clients", &self.client_secrets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Names and metadata every builder needs.
#[derive(Debug, Clone)]
pub(crate) struct Context<'a> {
    pub(crate) platform: &'a Platform,
    pub(crate) name: String,
    pub(crate) namespace: String,
    owner: Option<OwnerReference>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(platform: &'a Platform) -> Self {
        Self {
            platform,
            name: platform.metadata.name.clone().unwrap_or_default(),
            namespace: platform.metadata.namespace.clone().unwrap_or_default(),
            owner: platform.controller_owner_ref(&()),
        }
    }

    /// `<platform>-<component>` plus an optional suffix.
    pub(crate) fn object_name(&self, component: &Component, suffix: &str) -> String {
        if suffix.is_empty() {
            format!("{}-{}", self.name, component.name())
        } else {
            format!("{}-{}-{suffix}", self.name, component.name())
        }
    }

    /// In-cluster base URL of a component's public listener.
    pub(crate) fn url(&self, component: &Component) -> String {
        format!("http://{}:8080", self.object_name(component, ""))
    }

    /// Labels that select a component's pods (never change: Deployment selectors are
    /// immutable).
    pub(crate) fn selector(&self, component: &Component) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), component.name()),
            (INSTANCE.to_owned(), self.name.clone()),
        ])
    }

    /// Every label of a child.
    pub(crate) fn labels(&self, component: &Component) -> BTreeMap<String, String> {
        let mut labels = self.selector(component);
        labels.insert(
            "app.kubernetes.io/component".into(),
            component.role().into(),
        );
        labels.insert("app.kubernetes.io/part-of".into(), "tessera".into());
        labels.insert(MANAGED_BY.into(), MANAGER.into());
        labels.insert(
            "app.kubernetes.io/version".into(),
            self.platform.spec.images.tag.clone(),
        );
        labels
    }

    /// Metadata of a child: name, namespace, labels, owner.
    pub(crate) fn meta(&self, component: &Component, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(component)),
            owner_references: self.owner.clone().map(|owner| vec![owner]),
            ..ObjectMeta::default()
        }
    }
}

/// Every child the platform should have, grouped by component in a stable order.
pub fn desired(platform: &Platform, materials: &Materials) -> Vec<Child> {
    let cx = Context::new(platform);
    let mut children = Vec::new();
    for component in Component::all(platform) {
        children.extend(workload::children(&cx, &component, materials));
        children.extend(network::children(&cx, &component));
    }
    children.extend(config::shared_children(&cx, materials));
    if let Some(nats) = &nats::managed(platform) {
        children.extend(nats::children(&cx, nats));
    }
    children
}

/// Names of the Secrets generated once for this platform (keyset, pepper, one client
/// secret per service client). They are never re-applied, but still wanted: the prune
/// pass keeps them.
pub fn generated_secret_names(platform: &Platform) -> BTreeSet<String> {
    let cx = Context::new(platform);
    let mut names = BTreeSet::from([keyset_secret_name(platform), pepper_secret_name(platform)]);
    for component in Component::all(platform) {
        if component.has_client() {
            names.insert(cx.object_name(&component, "client"));
        }
    }
    names
}

/// The Secret holding identity's `keyset.json` (mounted as a directory).
pub fn keyset_secret_name(platform: &Platform) -> String {
    Context::new(platform).object_name(&Component::Identity, "keyset")
}

/// The Secret holding the client-secret pepper.
pub fn pepper_secret_name(platform: &Platform) -> String {
    Context::new(platform).object_name(&Component::Identity, "pepper")
}

/// The ConfigMap publishing the JWKS.
pub fn jwks_config_map_name(platform: &Platform) -> String {
    format!("{}-jwks", Context::new(platform).name)
}

/// The Secret holding a component's client id and secret.
pub fn client_secret_name(platform: &Platform, component: &Component) -> String {
    Context::new(platform).object_name(component, "client")
}

/// The label selector of every child of `platform` (the prune pass lists by it).
pub fn children_selector(platform: &Platform) -> String {
    format!(
        "{MANAGED_BY}={MANAGER},{INSTANCE}={}",
        platform.metadata.name.as_deref().unwrap_or_default()
    )
}
