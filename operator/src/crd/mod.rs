//! The `Platform` custom resource (`tessera.dev/v1alpha1`): what a user declares.
//!
//! Durations are integer seconds everywhere (`…Seconds` fields). Every string and list
//! that a CEL rule reads has a `maxLength`/`maxItems`, so the API server's cost
//! estimator accepts the rules.

mod spec;
mod status;

use kube::CustomResource;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

pub use spec::{
    Algorithm, ComponentSpec, EventsSpec, GatewayRoute, GatewaySpec, IdentitySpec, Images,
    KeyPolicySpec, LoggingSpec, ManagedNats, NotificationSpec, OnboardedService, PostgresStorage,
    RateLimit, RouteAuth, SecretKeyRef, SqliteStorage, StorageSpec,
};
pub use status::{KeyStatus, PlatformStatus, RemovedKeyStatus};

/// The API group of every Tessera resource and annotation.
pub const GROUP: &str = "tessera.dev";

/// Annotation on a `Platform` that requests a manual key rotation. Any new value (e.g. a
/// timestamp) requests one rotation; the handled value is recorded in the status.
pub const ROTATE_KEYS_ANNOTATION: &str = "tessera.dev/rotate-keys";

/// The whole platform: images, components, gateway, identity and key policy, event bus,
/// and extra services to onboard.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tessera.dev",
    version = "v1alpha1",
    kind = "Platform",
    plural = "platforms",
    shortname = "tsp",
    namespaced,
    status = "PlatformStatus",
    cel,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Gateway","type":"string","jsonPath":".status.gatewayUrl"}"#,
    printcolumn = r#"{"name":"Active key","type":"string","jsonPath":".status.activeKey","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.services.all(s, self.services.exists_one(t, t.name == s.name))").message("two onboarded services have the same name; names must be unique"))]
#[x_kube(validation = Rule::new("self.services.all(s, self.services.exists_one(t, t.routePrefix == s.routePrefix))").message("two onboarded services have the same routePrefix; each needs its own"))]
#[x_kube(validation = Rule::new("!self.services.exists(s, s.name in ['gateway', 'identity', 'logging', 'notification', 'profile', 'nats'])").message("an onboarded service cannot be named like a built-in component (gateway, identity, logging, notification, profile, nats)"))]
pub struct PlatformSpec {
    /// While true the operator changes nothing (no children, no key rotation) and only
    /// reports status.
    #[serde(default)]
    pub paused: bool,
    /// Where the component images come from.
    #[serde(default)]
    pub images: Images,
    /// The API gateway: the only component reachable from outside.
    #[serde(default)]
    pub gateway: GatewaySpec,
    /// The identity service and its signing-key policy.
    pub identity: IdentitySpec,
    /// The logging service.
    #[serde(default)]
    pub logging: LoggingSpec,
    /// The notification service.
    #[serde(default)]
    pub notification: NotificationSpec,
    /// The profile service.
    #[serde(default)]
    pub profile: ComponentSpec,
    /// The event bus (NATS JetStream).
    #[serde(default)]
    pub events: EventsSpec,
    /// Extra services to deploy, route through the gateway and give a client identity.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub services: Vec<OnboardedService>,
}
