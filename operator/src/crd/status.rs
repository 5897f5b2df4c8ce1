//! `PlatformStatus`: what the operator observed and did.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The observed state of a platform.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlatformStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, one `<Component>Ready` per component, `KeysRotating`, `Paused`,
    /// `Degraded`.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Where clients reach the platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
    /// The kid signing tokens now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_key: Option<String>,
    /// Every key in the keyset, with its state and dates (never key material).
    #[serde(default)]
    pub keys: Vec<KeyStatus>,
    /// Keys removed from the keyset and the JWKS, newest first, at most
    /// `spec.identity.keyPolicy.history` of them (never key material).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub key_history: Vec<RemovedKeyStatus>,
    /// When the keyset next changes by itself (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key_change: Option<String>,
    /// The last `tessera.dev/rotate-keys` value a manual rotation was completed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_rotation_request: Option<String>,
}

/// One signing key as shown in the status.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// Key id (RFC 7638 thumbprint).
    pub kid: String,
    /// `EdDSA`, `ES256` or `RS256`.
    pub algorithm: String,
    /// `next` (published, not signing), `active` (signing) or `retiring` (published until
    /// its tokens expire).
    pub state: String,
    /// When it was generated and published.
    pub created_at: String,
    /// When it started signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<String>,
    /// When it stopped signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_at: Option<String>,
    /// When it leaves the JWKS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_after: Option<String>,
}

/// A key that was removed from the keyset once its tokens had expired, as kept in
/// `status.keyHistory` for audits.
#[derive(JsonSchema, Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RemovedKeyStatus {
    /// Key id (RFC 7638 thumbprint), as found in the `kid` header of the tokens it signed.
    pub kid: String,
    /// `EdDSA`, `ES256` or `RS256`.
    pub algorithm: String,
    /// When it was generated and published.
    pub created_at: String,
    /// When it started signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<String>,
    /// When it stopped signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_at: Option<String>,
    /// When the operator removed it from the keyset and the JWKS.
    pub removed_at: String,
}
