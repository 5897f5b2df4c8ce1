//! The rotation state machine, one situation at a time: manual rotation, outages, policy changes, bad input.

use tessera_keys::{
    Algorithm, GeneratedKey, KeyError, KeyPolicy, KeyState, Keyset, KeysetError, PolicyError,
    generate, rotate,
};
use time::macros::offset;

use crate::{MINUTE, at, hourly_policy, key, keyset, step};

/// A keyset bootstrapped at minute 0.
fn bootstrapped() -> Keyset {
    step(&Keyset::empty(), &hourly_policy(), 0, false).keyset
}

#[test]
fn force_creates_a_next_key_at_once_but_activates_it_only_after_pre_publication() {
    let policy = hourly_policy();
    let set = bootstrapped();
    let first = set.active().unwrap().kid.clone();

    let forced = step(&set, &policy, 5, true);
    assert_eq!(forced.changes.len(), 1);
    let next = forced
        .keyset
        .next()
        .expect("a next key is created at once")
        .clone();
    assert_eq!(next.created_at, at(5));
    assert_eq!(forced.keyset.active().unwrap().kid, first);
    assert_eq!(forced.next_deadline, at(15));

    let early = step(&forced.keyset, &policy, 14, true);
    assert!(early.is_unchanged(), "not published long enough yet");

    let done = step(&forced.keyset, &policy, 15, true);
    assert_eq!(done.activated(), Some(next.kid.as_str()));
    assert_eq!(done.keyset.key(&first).unwrap().state, KeyState::Retiring);
    assert!(
        done.keyset.next().is_none(),
        "one forced rotation per request"
    );

    let unforced = step(&forced.keyset, &policy, 15, false);
    assert!(
        unforced.is_unchanged(),
        "without force the interval still applies"
    );
    assert_eq!(unforced.next_deadline, at(60));
}

#[test]
fn force_promotes_a_next_key_that_is_already_published_long_enough() {
    let mut next = key(Algorithm::EdDSA, KeyState::Next);
    next.created_at = at(1);
    let set = keyset(vec![key(Algorithm::EdDSA, KeyState::Active), next.clone()]);
    let rotation = step(&set, &hourly_policy(), 12, true);
    assert_eq!(rotation.activated(), Some(next.kid.as_str()));
    let old = &rotation.keyset.keys[0];
    assert_eq!(
        (old.state, old.retiring_at, old.remove_after),
        (KeyState::Retiring, Some(at(12)), Some(at(32)))
    );
}

#[test]
fn force_on_an_empty_keyset_only_bootstraps() {
    let rotation = step(&Keyset::empty(), &hourly_policy(), 0, true);
    assert_eq!(rotation.keyset.keys.len(), 1);
    assert_eq!(rotation.next_deadline, at(50));
}

#[test]
fn after_a_long_outage_one_call_publishes_a_next_key_and_stops_there() {
    let policy = hourly_policy();
    let retiring = key(Algorithm::EdDSA, KeyState::Retiring);
    let active = key(Algorithm::EdDSA, KeyState::Active);
    let set = keyset(vec![retiring.clone(), active.clone()]);

    let rotation = step(&set, &policy, 600, false);
    let summary: Vec<_> = rotation.changes.iter().map(|c| (c.from, c.to)).collect();
    assert_eq!(
        summary,
        vec![
            (Some(KeyState::Retiring), None),
            (None, Some(KeyState::Next))
        ]
    );
    assert_eq!(rotation.keyset.active().unwrap().kid, active.kid);
    assert_eq!(rotation.next_deadline, at(610));

    let later = step(&rotation.keyset, &policy, 610, false);
    assert_eq!(
        later.activated(),
        rotation.keyset.next().map(|k| k.kid.as_str())
    );
}

#[test]
fn a_new_policy_algorithm_applies_to_new_keys_only() {
    let policy = KeyPolicy {
        algorithm: Algorithm::ES256,
        ..hourly_policy()
    };
    let active = key(Algorithm::EdDSA, KeyState::Active);
    let set = keyset(vec![active.clone()]);
    let published = step(&set, &policy, 50, false).keyset;
    assert_eq!(published.next().unwrap().alg, Algorithm::ES256);
    let rotated = step(&published, &policy, 60, false).keyset;
    assert_eq!(rotated.active().unwrap().alg, Algorithm::ES256);
    let old = rotated.key(&active.kid).unwrap();
    assert_eq!((old.alg, old.state), (Algorithm::EdDSA, KeyState::Retiring));
    assert_eq!(old.private_key_pem, active.private_key_pem);
}

#[test]
fn an_invalid_keyset_or_policy_is_refused_without_generating_anything() {
    let mut calls = 0;
    let mut counting = |alg| {
        calls += 1;
        generate(alg)
    };
    let two_active = keyset(vec![
        key(Algorithm::EdDSA, KeyState::Active),
        key(Algorithm::EdDSA, KeyState::Active),
    ]);
    let err = rotate(&two_active, &hourly_policy(), at(0), false, &mut counting).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::Keyset(KeysetError::MultipleActiveKeys { .. })
        ),
        "{err}"
    );

    let bad_policy = KeyPolicy {
        pre_publication: 60 * MINUTE,
        ..hourly_policy()
    };
    let err = rotate(&Keyset::empty(), &bad_policy, at(0), false, &mut counting).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::Policy(PolicyError::PrePublicationTooLong { .. })
        ),
        "{err}"
    );
    assert_eq!(calls, 0);
}

#[test]
fn a_generator_that_repeats_a_kid_or_ignores_the_algorithm_is_rejected() {
    let set = bootstrapped();
    let active = set.active().unwrap().clone();
    let mut repeat = |alg| {
        Ok(GeneratedKey {
            kid: active.kid.clone(),
            alg,
            private_key_pem: active.private_key_pem.clone(),
        })
    };
    let err = rotate(&set, &hourly_policy(), at(50), false, &mut repeat).unwrap_err();
    assert!(
        matches!(err, KeyError::GeneratedKeyRejected { .. }),
        "{err}"
    );

    let mut wrong_alg = |_| generate(Algorithm::ES256);
    let err = rotate(&set, &hourly_policy(), at(50), false, &mut wrong_alg).unwrap_err();
    assert!(
        err.to_string().contains("the policy asks for EdDSA"),
        "{err}"
    );
}

#[test]
fn timestamps_are_written_in_utc_whatever_the_clock_offset() {
    let now = at(0).to_offset(offset!(+2));
    let rotation = rotate(
        &Keyset::empty(),
        &hourly_policy(),
        now,
        false,
        &mut generate,
    )
    .unwrap();
    let json = String::from_utf8(rotation.keyset.to_json()).unwrap();
    assert!(
        json.contains("\"created_at\": \"2026-03-01T00:00:00Z\""),
        "{json}"
    );
}
