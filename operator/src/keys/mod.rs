//! Signing-key rotation for a platform: the policy from the spec, the forced-rotation
//! annotation, the status view of the keyset, and the generated Secrets. Pure: the
//! reconciler does the reads and writes, in the order that keeps every token valid
//! (JWKS ConfigMap before the keyset Secret).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use tessera_keys::{GeneratedKey, KeyError, KeyPolicy, Keyset, Rotation};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::children::{self, Component, GENERATED};
use crate::crd::{KeyStatus, Platform, ROTATE_KEYS_ANNOTATION, RemovedKeyStatus};

/// Default JWKS cache lifetime granted to verifiers (identity's default).
const JWKS_MAX_AGE: u32 = 300;
/// Time for a Secret change to reach identity's pods: kubelet sync (about a minute) plus
/// identity's 2 s file poll, with margin.
const PROPAGATION: Duration = Duration::from_secs(120);
/// Clock skew allowed between issuer and verifiers.
const LEEWAY: Duration = Duration::from_secs(60);

/// The key policy of `platform`: explicit values, or derived from the token lifetime and
/// the JWKS cache lifetime (DESIGN.md §4).
pub fn policy(platform: &Platform) -> KeyPolicy {
    let identity = &platform.spec.identity;
    let spec = &identity.key_policy;
    let secs = |s: u32| Duration::from_secs(u64::from(s));
    let derived = KeyPolicy::derived(
        spec.algorithm.into(),
        secs(spec.rotation_interval_seconds.unwrap_or(604_800)),
        secs(identity.access_token_ttl_seconds.unwrap_or(900)),
        secs(identity.jwks_max_age_seconds.unwrap_or(JWKS_MAX_AGE)),
        PROPAGATION,
        LEEWAY,
    );
    KeyPolicy {
        pre_publication: spec
            .pre_publication_seconds
            .map_or(derived.pre_publication, secs),
        retirement: spec.retirement_seconds.map_or(derived.retirement, secs),
        ..derived
    }
}

/// The key policy of `platform`, or why it cannot work: the checks of `tessera-keys`, and
/// (as the CRD's CEL rule, for a Platform stored without it) a retirement shorter than
/// `least_retirement`, which would drop a key while a token it signed is accepted.
pub fn checked_policy(platform: &Platform) -> Result<KeyPolicy, String> {
    let policy = policy(platform);
    policy.validate().map_err(|error| error.to_string())?;
    let ttl = platform
        .spec
        .identity
        .access_token_ttl_seconds
        .unwrap_or(900);
    let least = least_retirement(Duration::from_secs(u64::from(ttl)));
    if policy.retirement < least {
        return Err(format!(
            "key policy: retirement ({}s) must be at least the access-token lifetime ({ttl}s) \
             + {}s for the keyset to reach identity + {}s clock leeway ({}s)",
            policy.retirement.as_secs(),
            PROPAGATION.as_secs(),
            LEEWAY.as_secs(),
            least.as_secs()
        ));
    }
    Ok(policy)
}

/// The shortest retirement that keeps every token a key signed verifiable: identity signs
/// with a retiring key until the demotion reaches its pods (`PROPAGATION` after it), a
/// token lives `token_lifetime` (`exp` in whole seconds, never rounded up), and verifiers
/// accept it until `LEEWAY` past `exp`. A key removed at exactly that moment is enough:
/// removal happens once `now >= remove_after`, and verifiers refuse a token once
/// `now >= exp + leeway`. The JWKS max-age is not needed here: a cached JWKS only keeps
/// a removed key longer. The CRD's CEL rule states the same bound (`+ 180`).
fn least_retirement(token_lifetime: Duration) -> Duration {
    token_lifetime
        .saturating_add(PROPAGATION)
        .saturating_add(LEEWAY)
}

/// The `tessera.dev/rotate-keys` value still waiting for a rotation, if any.
pub fn pending_rotation_request(platform: &Platform) -> Option<String> {
    let requested = platform
        .metadata
        .annotations
        .as_ref()?
        .get(ROTATE_KEYS_ANNOTATION)?;
    let handled = platform
        .status
        .as_ref()
        .and_then(|s| s.handled_rotation_request.as_ref());
    (Some(requested) != handled).then(|| requested.clone())
}

/// Removed keys `status.keyHistory` keeps when `keyPolicy.history` is unset.
pub const DEFAULT_HISTORY: u32 = 5;

/// The outcome of one rotation step.
#[derive(Debug, Clone)]
pub struct Step {
    /// The rotation (keyset, changes, next deadline).
    pub rotation: Rotation,
    /// The rotation request completed by this step, to record in the status.
    pub handled_request: Option<String>,
    /// `status.keyHistory` after this step: the keys it removed ahead of the previous
    /// history, newest first, cut to `keyPolicy.history`.
    pub history: Vec<RemovedKeyStatus>,
}

/// How many removed keys the status lists.
pub fn history_limit(platform: &Platform) -> usize {
    let limit = platform
        .spec
        .identity
        .key_policy
        .history
        .unwrap_or(DEFAULT_HISTORY);
    usize::try_from(limit).unwrap_or(usize::MAX)
}

/// The key history after `rotation` of `before`: every key the rotation removed, stamped
/// `removed_at = now`, ahead of `previous`, cut to `limit` entries. Pure.
pub fn history(
    previous: &[RemovedKeyStatus],
    before: &Keyset,
    rotation: &Rotation,
    now: OffsetDateTime,
    limit: usize,
) -> Vec<RemovedKeyStatus> {
    let mut removed: Vec<&tessera_keys::Key> = rotation
        .changes
        .iter()
        .filter(|change| change.to.is_none())
        .filter_map(|change| before.keys.iter().find(|key| key.kid == change.kid))
        .collect();
    // Several removals in one step: the one retired last counts as the newest.
    removed.sort_by_key(|key| std::cmp::Reverse(key.retiring_at));
    removed
        .into_iter()
        .map(|key| RemovedKeyStatus {
            kid: key.kid.clone(),
            algorithm: key.alg.to_string(),
            created_at: rfc3339(key.created_at),
            activated_at: key.activated_at.map(rfc3339),
            retiring_at: key.retiring_at.map(rfc3339),
            removed_at: rfc3339(now),
        })
        .chain(
            previous
                .iter()
                .filter(|old| rotation.changes.iter().all(|c| c.kid != old.kid))
                .cloned(),
        )
        .take(limit)
        .collect()
}

/// Advances `keyset` as far as `now` allows, forcing a rotation while an annotation
/// request is pending; a request is handled once a key has been activated.
pub fn step(
    platform: &Platform,
    keyset: &Keyset,
    now: OffsetDateTime,
    generate: &mut dyn FnMut(tessera_keys::Algorithm) -> Result<GeneratedKey, KeyError>,
) -> Result<Step, KeyError> {
    let pending = pending_rotation_request(platform);
    let rotation =
        tessera_keys::rotate(keyset, &policy(platform), now, pending.is_some(), generate)?;
    let handled_request = if rotation.activated().is_some() {
        pending
    } else {
        None
    };
    let previous = platform
        .status
        .as_ref()
        .map_or(&[][..], |status| status.key_history.as_slice());
    let history = history(previous, keyset, &rotation, now, history_limit(platform));
    Ok(Step {
        rotation,
        handled_request,
        history,
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The status view of a keyset: states and dates, never material.
pub fn statuses(keyset: &Keyset) -> Vec<KeyStatus> {
    keyset
        .keys
        .iter()
        .map(|key| KeyStatus {
            kid: key.kid.clone(),
            algorithm: key.alg.to_string(),
            state: key.state.to_string(),
            created_at: rfc3339(key.created_at),
            activated_at: key.activated_at.map(rfc3339),
            retiring_at: key.retiring_at.map(rfc3339),
            remove_after: key.remove_after.map(rfc3339),
        })
        .collect()
}

/// The public JWKS of `keyset`, as published in the JWKS ConfigMap.
pub fn jwks_json(keyset: &Keyset) -> String {
    serde_json::to_string(&keyset.jwks()).expect("a JWKS serializes")
}

/// RFC 3339 text of a time, for the status.
pub fn format_time(t: OffsetDateTime) -> String {
    rfc3339(t)
}

fn generated_secret(
    platform: &Platform,
    component: &Component,
    name: String,
    data: BTreeMap<String, Vec<u8>>,
) -> Secret {
    let cx = children::Context::new(platform);
    let mut metadata = cx.meta(component, name);
    metadata
        .labels
        .get_or_insert_default()
        .insert(GENERATED.into(), "true".into());
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Secret::default()
    }
}

/// The keyset Secret (`keyset.json`, mounted into identity only).
pub fn keyset_secret(platform: &Platform, keyset: &Keyset) -> Secret {
    generated_secret(
        platform,
        &Component::Identity,
        children::keyset_secret_name(platform),
        BTreeMap::from([("keyset.json".into(), keyset.to_json())]),
    )
}

/// The pepper Secret: 32 bytes in base64, as identity's `--client-secret-pepper` wants.
pub fn pepper_secret(platform: &Platform, pepper: &[u8; 32]) -> Secret {
    generated_secret(
        platform,
        &Component::Identity,
        children::pepper_secret_name(platform),
        BTreeMap::from([("pepper".into(), STANDARD.encode(pepper).into_bytes())]),
    )
}

/// A component's client Secret: `client_id` and `client_secret`.
pub fn client_secret(platform: &Platform, component: &Component, secret: &str) -> Secret {
    generated_secret(
        platform,
        component,
        children::client_secret_name(platform, component),
        BTreeMap::from([
            ("client_id".into(), component.name().into_bytes()),
            ("client_secret".into(), secret.as_bytes().to_vec()),
        ]),
    )
}

/// 32 random bytes.
pub fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator failed");
    bytes
}

/// A new client secret in identity's format: `tsc_` + 256 random bits, base64url.
pub fn random_client_secret() -> String {
    format!("tsc_{}", URL_SAFE_NO_PAD.encode(random_bytes()))
}

/// Decodes the pepper Secret's value.
pub fn decode_pepper(value: &[u8]) -> Option<Vec<u8>> {
    STANDARD
        .decode(std::str::from_utf8(value).ok()?.trim())
        .ok()
        .filter(|bytes| bytes.len() == 32)
}

#[cfg(test)]
mod tests;
