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
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::crd::ROTATE_KEYS_ANNOTATION;

    fn platform(identity: &serde_json::Value) -> Platform {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tessera.dev/v1alpha1", "kind": "Platform",
            "metadata": {"name": "p", "namespace": "n"},
            "spec": {"identity": identity.clone()}
        }))
        .unwrap()
    }

    #[test]
    fn the_policy_derives_from_token_lifetime_and_jwks_cache() {
        let policy = policy(&platform(&serde_json::json!({
            "issuer": "https://a", "accessTokenTtlSeconds": 600, "jwksMaxAgeSeconds": 120,
            "keyPolicy": {"algorithm": "ES256", "rotationIntervalSeconds": 86_400}
        })));
        assert_eq!(policy.algorithm, tessera_keys::Algorithm::ES256);
        assert_eq!(policy.rotation_interval, Duration::from_secs(86_400));
        assert_eq!(policy.pre_publication, Duration::from_secs(120 + 120));
        assert_eq!(policy.retirement, Duration::from_secs(600 + 120 + 120 + 60));
    }

    /// Identity keeps signing with the old key until the promotion reaches its pods (the
    /// Secret's propagation), so the old key must stay published until a token signed
    /// that late has expired, leeway included, however short the JWKS max-age.
    #[test]
    fn a_retired_key_outlives_the_tokens_signed_before_identity_saw_its_retirement() {
        let mut p = platform(&serde_json::json!({
            "issuer": "https://a", "accessTokenTtlSeconds": 60, "jwksMaxAgeSeconds": 0,
            "keyPolicy": {"rotationIntervalSeconds": 3600}
        }));
        let start = time::macros::datetime!(2026-01-01 00:00 UTC);
        let first = step(&p, &Keyset::empty(), start, &mut tessera_keys::generate).unwrap();
        p.metadata
            .annotations
            .get_or_insert_default()
            .insert(ROTATE_KEYS_ANNOTATION.into(), "now".into());
        let next = step(
            &p,
            &first.rotation.keyset,
            start,
            &mut tessera_keys::generate,
        )
        .unwrap();
        let promoted_at = start + time::Duration::hours(1);
        let promoted = step(
            &p,
            &next.rotation.keyset,
            promoted_at,
            &mut tessera_keys::generate,
        )
        .unwrap()
        .rotation;
        assert!(promoted.activated().is_some());
        let retiring = promoted
            .keyset
            .keys
            .iter()
            .find(|key| key.state == tessera_keys::KeyState::Retiring)
            .unwrap();
        // The last token identity can sign with it: just before the promotion reaches it.
        let last_token_expiry = promoted_at + PROPAGATION + Duration::from_secs(60);
        assert!(
            retiring.remove_after.unwrap() >= last_token_expiry + LEEWAY,
            "removed at {:?}, a token it signed is valid until {}",
            retiring.remove_after,
            last_token_expiry + LEEWAY
        );
    }

    #[test]
    fn explicit_policy_durations_win() {
        let policy = policy(&platform(&serde_json::json!({
            "issuer": "https://a",
            "keyPolicy": {"prePublicationSeconds": 900, "retirementSeconds": 7200}
        })));
        assert_eq!(policy.algorithm, tessera_keys::Algorithm::EdDSA);
        assert_eq!(policy.rotation_interval, Duration::from_secs(604_800));
        assert_eq!(policy.pre_publication, Duration::from_secs(900));
        assert_eq!(policy.retirement, Duration::from_secs(7200));
    }

    #[test]
    fn a_rotation_request_is_pending_until_its_value_is_recorded_as_handled() {
        let mut p = platform(&serde_json::json!({"issuer": "https://a"}));
        assert_eq!(pending_rotation_request(&p), None);
        p.metadata
            .annotations
            .get_or_insert_default()
            .insert(ROTATE_KEYS_ANNOTATION.into(), "one".into());
        assert_eq!(pending_rotation_request(&p).as_deref(), Some("one"));
        p.status.get_or_insert_default().handled_rotation_request = Some("one".into());
        assert_eq!(pending_rotation_request(&p), None);
        p.metadata
            .annotations
            .get_or_insert_default()
            .insert(ROTATE_KEYS_ANNOTATION.into(), "two".into());
        assert_eq!(pending_rotation_request(&p).as_deref(), Some("two"));
    }

    /// Rotates `keyset` through `n` full rotations (forced, each promoted after the
    /// pre-publication) and past the last retirement, collecting the history as the
    /// reconciler does: each step's history becomes the next step's previous one.
    fn rotate_through(p: &mut Platform, n: usize) -> (Keyset, Vec<RemovedKeyStatus>) {
        let mut now = time::macros::datetime!(2026-01-01 00:00 UTC);
        let mut keyset = Keyset::empty();
        let apply = |p: &mut Platform, keyset: &mut Keyset, now| {
            let step = step(p, keyset, now, &mut tessera_keys::generate).unwrap();
            *keyset = step.rotation.keyset;
            p.status.get_or_insert_default().key_history = step.history;
        };
        apply(p, &mut keyset, now);
        for round in 0..n {
            p.metadata
                .annotations
                .get_or_insert_default()
                .insert(ROTATE_KEYS_ANNOTATION.into(), round.to_string());
            apply(p, &mut keyset, now);
            now += time::Duration::hours(1);
            apply(p, &mut keyset, now);
            p.status.get_or_insert_default().handled_rotation_request = Some(round.to_string());
            // Past the retirement (default: 900 + 300 + 60 s): the retired key leaves.
            now += time::Duration::hours(1);
            apply(p, &mut keyset, now);
        }
        let history = p.status.clone().unwrap_or_default().key_history;
        (keyset, history)
    }

    #[test]
    fn removed_keys_are_listed_newest_first_up_to_the_history_limit() {
        let mut p = platform(&serde_json::json!({
            "issuer": "https://a", "keyPolicy": {"history": 2}
        }));
        let (keyset, history) = rotate_through(&mut p, 3);
        assert_eq!(keyset.keys.len(), 1, "removed keys leave the keyset itself");
        assert_eq!(history.len(), 2, "{history:?}");
        // Newest first: removed later, and retired later.
        assert!(history[0].removed_at > history[1].removed_at, "{history:?}");
        assert!(history[0].retiring_at > history[1].retiring_at);
        assert_ne!(history[0].kid, keyset.keys[0].kid);
        assert_eq!(history[0].algorithm, "EdDSA");
        assert!(history[0].activated_at.is_some());
    }

    #[test]
    fn the_default_history_keeps_five_removed_keys_and_zero_keeps_none() {
        let mut p = platform(&serde_json::json!({"issuer": "https://a"}));
        let (_, history) = rotate_through(&mut p, 7);
        assert_eq!(history.len(), DEFAULT_HISTORY as usize);
        let kids: std::collections::BTreeSet<_> = history.iter().map(|h| &h.kid).collect();
        assert_eq!(kids.len(), history.len(), "no key is listed twice");

        let mut p = platform(&serde_json::json!({
            "issuer": "https://a", "keyPolicy": {"history": 0}
        }));
        let (_, history) = rotate_through(&mut p, 2);
        assert!(history.is_empty(), "{history:?}");
    }

    #[test]
    fn lowering_the_history_cuts_the_list_at_the_next_step() {
        let mut p = platform(&serde_json::json!({"issuer": "https://a"}));
        let (keyset, history) = rotate_through(&mut p, 3);
        assert_eq!(history.len(), 3);
        p.spec.identity.key_policy.history = Some(1);
        let now = time::macros::datetime!(2026-01-01 06:00:30 UTC);
        let quiet = step(&p, &keyset, now, &mut tessera_keys::generate).unwrap();
        assert!(quiet.rotation.is_unchanged());
        assert_eq!(quiet.history, history[..1]);
    }

    #[test]
    fn the_least_safe_retirement_is_accepted_and_the_default_never_falls_below_it() {
        // With a JWKS max-age of 0 the derived retirement is exactly the least safe one.
        let mut p = platform(&serde_json::json!({
            "issuer": "https://a", "accessTokenTtlSeconds": 900, "jwksMaxAgeSeconds": 0
        }));
        let derived = checked_policy(&p).expect("the derived policy is accepted");
        assert_eq!(derived.retirement, Duration::from_secs(900 + 120 + 60));
        p.spec.identity.key_policy.retirement_seconds = Some(1080);
        assert!(checked_policy(&p).is_ok());
        p.spec.identity.key_policy.retirement_seconds = Some(1079);
        let error = checked_policy(&p).unwrap_err();
        assert!(error.contains("retirement (1079s)"), "{error}");
    }

    #[test]
    fn generated_client_secrets_are_identity_format_and_unique() {
        let (a, b) = (random_client_secret(), random_client_secret());
        assert!(a.starts_with("tsc_") && a.len() == 4 + 43);
        assert_ne!(a, b);
        let pepper = random_bytes();
        let secret = pepper_secret(
            &platform(&serde_json::json!({"issuer": "https://a"})),
            &pepper,
        );
        let stored = &secret.data.unwrap()["pepper"].0;
        assert_eq!(decode_pepper(stored).unwrap(), pepper);
        assert_eq!(secret.metadata.labels.unwrap()[GENERATED], "true");
    }
}
