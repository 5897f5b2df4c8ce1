//! The parts of `PlatformSpec`: images, components, gateway, identity, events, services.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where images come from: `<repository>/tessera-<component>:<tag>` for built-in components.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Images {
    /// Registry and path prefix, e.g. `ghcr.io/tessera-dev`.
    #[serde(default = "default_repository")]
    #[schemars(length(min = 1, max = 200))]
    pub repository: String,
    /// Tag of every built-in component image (the platform version).
    #[serde(default = "default_tag")]
    #[schemars(length(min = 1, max = 128))]
    pub tag: String,
    /// `Always`, `IfNotPresent` or `Never`; unset = Kubernetes' default for the tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self in ['Always', 'IfNotPresent', 'Never']").message("pullPolicy must be Always, IfNotPresent or Never"))]
    pub pull_policy: Option<String>,
    /// Names of image pull Secrets in the platform's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub pull_secrets: Vec<String>,
}

impl Default for Images {
    fn default() -> Self {
        Self {
            repository: default_repository(),
            tag: default_tag(),
            pull_policy: None,
            pull_secrets: Vec::new(),
        }
    }
}

fn default_repository() -> String {
    "ghcr.io/tessera-dev".into()
}

fn default_tag() -> String {
    env!("CARGO_PKG_VERSION").into()
}

/// Settings of a component with a database.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.replicas) || self.replicas <= 1 || (has(self.storage) && has(self.storage.postgres))").message("SQLite storage (the default) is one file on one volume: more than 1 replica needs storage.postgres"))]
pub struct ComponentSpec {
    /// Pods; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    /// CPU and memory requests and limits of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Where the component keeps its database (components without one ignore it).
    /// Unset = SQLite on a 1Gi volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
}

/// Exactly one of `sqlite` or `postgres`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.sqlite) != has(self.postgres)").message("storage needs exactly one of sqlite or postgres"))]
pub struct StorageSpec {
    /// A SQLite file on a PersistentVolumeClaim the operator creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite: Option<SqliteStorage>,
    /// A PostgreSQL database whose URL is in a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresStorage>,
}

/// SQLite on a volume.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SqliteStorage {
    /// Volume size, e.g. `1Gi`.
    #[serde(default = "default_volume_size")]
    #[schemars(length(max = 32))]
    pub size: String,
    /// Storage class; unset = the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
}

impl Default for SqliteStorage {
    fn default() -> Self {
        Self {
            size: default_volume_size(),
            storage_class_name: None,
        }
    }
}

fn default_volume_size() -> String {
    "1Gi".into()
}

/// PostgreSQL: the `postgres://…` URL is read from a Secret (it holds a password).
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PostgresStorage {
    /// The Secret key holding the URL.
    pub url_secret_ref: SecretKeyRef,
}

/// A key of a Secret in the platform's namespace.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret's data; default `url`.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_secret_key() -> String {
    "url".into()
}

/// A GCRA rate limit: `requests` per `periodSeconds`, bursts up to `burst`.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Requests per period once a burst is spent.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub requests: u32,
    /// The period, in seconds.
    #[schemars(range(min = 1, max = 86_400))]
    pub period_seconds: u32,
    /// Most requests at once from an idle client.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub burst: u32,
}

/// Who may call a route.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RouteAuth {
    /// Anyone (the upstream checks tokens itself, if it wants).
    Public,
    /// A valid access token; with `roles`, carrying one of them.
    #[default]
    Authenticated,
}

/// The gateway.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Pods; default 2, so that a node drain never stops traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    /// CPU and memory of the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Public host name; with it an Ingress is created and the gateway URL is
    /// `https://<host>` (`http://` without `tlsSecretName`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub host: Option<String>,
    /// IngressClass of the Ingress; unset = the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub ingress_class_name: Option<String>,
    /// Secret (type kubernetes.io/tls) with the certificate for `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub tls_secret_name: Option<String>,
    /// Limit applied to every client before route limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_rate_limit: Option<RateLimit>,
    /// Limit of the login route, per client address (default 10 per minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_rate_limit: Option<RateLimit>,
    /// Extra routes to upstreams outside the platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub routes: Vec<GatewayRoute>,
}

/// A route to an upstream the operator does not deploy.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRoute {
    /// Unique route name: lowercase letters, digits and `-`.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Path prefix, starting with `/`.
    #[schemars(length(min = 1, max = 200))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("a route prefix must start with '/' (e.g. /orders/)"))]
    pub prefix: String,
    /// Upstream base URL, `http://host:port` or `h2c://host:port`.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('h2c://')").message("an upstream must be an http:// or h2c:// URL"))]
    pub upstream: String,
    /// Who may call it.
    #[serde(default)]
    pub auth: RouteAuth,
    /// With `Authenticated`: roles of which the token needs one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub roles: Vec<String>,
    /// Per-client limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// Token signing algorithm of new keys.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Algorithm {
    /// Ed25519 (fastest; the default).
    #[default]
    EdDSA,
    /// ECDSA P-256.
    ES256,
    /// RSA 2048 with SHA-256 (for verifiers without EdDSA or ECDSA).
    RS256,
}

impl From<Algorithm> for tessera_keys::Algorithm {
    fn from(value: Algorithm) -> Self {
        match value {
            Algorithm::EdDSA => Self::EdDSA,
            Algorithm::ES256 => Self::ES256,
            Algorithm::RS256 => Self::RS256,
        }
    }
}

/// Identity: issuer, tokens, key policy.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
// 180 = `keys::PROPAGATION` + `keys::LEEWAY` (`keys::checked_policy` applies the same bound
// to Platforms stored without this rule; a test holds the two to the same answers).
#[x_kube(validation = Rule::new("!has(self.keyPolicy) || !has(self.keyPolicy.retirementSeconds) || self.keyPolicy.retirementSeconds >= (has(self.accessTokenTtlSeconds) ? self.accessTokenTtlSeconds : 900) + 180").message("keyPolicy.retirementSeconds must be at least accessTokenTtlSeconds + 180: a retired key must stay published until the last token it signed has expired, and identity signs with it for up to 120 s after its retirement (until the keyset reaches its pods) while verifiers accept a token 60 s past its expiry"))]
pub struct IdentitySpec {
    /// Replicas, resources, storage.
    #[serde(flatten)]
    pub component: ComponentSpec,
    /// `iss` of every token: the URL clients reach the gateway at, e.g.
    /// `https://api.example.com`.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("issuer must be an http(s) URL, e.g. https://api.example.com"))]
    pub issuer: String,
    /// `aud` of access tokens; default `[tessera]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub audiences: Vec<String>,
    /// Access-token lifetime, seconds (default 900).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30, max = 86_400))]
    pub access_token_ttl_seconds: Option<u32>,
    /// Refresh-token lifetime, seconds (default 1209600, 14 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 60, max = 31_536_000))]
    pub refresh_token_ttl_seconds: Option<u32>,
    /// How long verifiers may cache the JWKS, seconds (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86_400))]
    pub jwks_max_age_seconds: Option<u32>,
    /// Signing keys: algorithm and rotation schedule.
    #[serde(default)]
    pub key_policy: KeyPolicySpec,
    /// Emails that get the `admin` role at signup or login.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub bootstrap_admins: Vec<String>,
}

/// Rotation schedule (DESIGN.md §4). Unset durations derive from the token lifetime and
/// the JWKS cache lifetime.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.prePublicationSeconds) || !has(self.rotationIntervalSeconds) || self.prePublicationSeconds < self.rotationIntervalSeconds").message("keyPolicy.prePublicationSeconds must be shorter than rotationIntervalSeconds"))]
pub struct KeyPolicySpec {
    /// Algorithm of new keys: `EdDSA` (default), `ES256` or `RS256`.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// How long a key signs before the next one takes over (default 604800, 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 600, max = 31_536_000))]
    pub rotation_interval_seconds: Option<u32>,
    /// How long a new key is published before it signs; default = JWKS max-age + 120 s
    /// for the Secret to reach the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31_536_000))]
    pub pre_publication_seconds: Option<u32>,
    /// How long a retired key stays published; default = access-token lifetime + JWKS
    /// max-age + 120 s for the demotion to reach identity's pods + 60 s clock leeway. At
    /// least the access-token lifetime + 180 s (identity signs with the key until the
    /// demotion reaches its pods, and verifiers accept a token 60 s past its expiry): less
    /// would remove a key while a token it signed is still accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 31_536_000))]
    pub retirement_seconds: Option<u32>,
    /// How many removed keys `status.keyHistory` keeps listed, newest first, so past kids
    /// can be audited after they left the JWKS (default 5, at most 20, 0 = none). Only
    /// kids, algorithms and dates are kept: a removed key's private material is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 20))]
    pub history: Option<u32>,
}

/// Logging.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LoggingSpec {
    /// Replicas, resources, storage.
    #[serde(flatten)]
    pub component: ComponentSpec,
    /// How long log records are kept, seconds (default 604800, 7 days). The audit chain
    /// is never pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 3600, max = 315_360_000))]
    pub retention_seconds: Option<u32>,
}

/// Notification: channels are Secrets holding a URL each.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NotificationSpec {
    /// Replicas, resources, storage.
    #[serde(flatten)]
    pub component: ComponentSpec,
    /// `From:` of emails, e.g. `Tessera <no-reply@example.com>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 320))]
    pub sender: Option<String>,
    /// SMTP server URL (`smtp://` or `smtps://user:password@host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SecretKeyRef>,
    /// SMS provider URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SecretKeyRef>,
    /// Push provider URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<SecretKeyRef>,
}

/// The event bus: an external NATS, or one the operator runs.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.natsUrl) && has(self.managed))").message("events: set natsUrl (an external NATS) or managed (one run by the operator), not both"))]
pub struct EventsSpec {
    /// URL of an existing NATS with JetStream, e.g. `nats://nats.infra:4222`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.startsWith('nats://') || self.startsWith('tls://')").message("natsUrl must be a nats:// or tls:// URL"))]
    pub nats_url: Option<String>,
    /// A single-node NATS (JetStream on a volume) run by the operator. This is the
    /// default when `natsUrl` is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedNats>,
}

/// The operator-run NATS.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedNats {
    /// NATS server image.
    #[serde(default = "default_nats_image")]
    #[schemars(length(max = 253))]
    pub image: String,
    /// JetStream volume size.
    #[serde(default = "default_volume_size")]
    #[schemars(length(max = 32))]
    pub storage_size: String,
}

impl Default for ManagedNats {
    fn default() -> Self {
        Self {
            image: default_nats_image(),
            storage_size: default_volume_size(),
        }
    }
}

fn default_nats_image() -> String {
    "docker.io/library/nats:2.11-alpine".into()
}

/// A service to onboard: deployed, routed, and given a client identity.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OnboardedService {
    /// DNS label, unique among services.
    #[schemars(
        length(min = 1, max = 40),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Full image reference.
    #[schemars(length(min = 1, max = 253))]
    pub image: String,
    /// Public port of the service (default 8080); its admin port is 9090.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65_535))]
    pub port: i32,
    /// Path prefix routed to it by the gateway, starting with `/`.
    #[schemars(length(min = 1, max = 200))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("a route prefix must start with '/' (e.g. /orders/)"))]
    pub route_prefix: String,
    /// Who may call it through the gateway.
    #[serde(default)]
    pub auth: RouteAuth,
    /// Roles of which a caller's token needs one (with `Authenticated`); also the roles
    /// of the service's own client identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub roles: Vec<String>,
    /// Replicas and resources (onboarded services bring their own storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub replicas: Option<i32>,
    /// CPU and memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_port() -> i32 {
    8080
}
