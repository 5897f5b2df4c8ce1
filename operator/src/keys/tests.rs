//! The key policy and rotation rules of this module, checked on their own.

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
