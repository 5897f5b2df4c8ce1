//! The keyset document: round trip, validation errors, JWKS and what Debug shows.

use serde_json::Value;
use tessera_keys::{
    Algorithm, KeyError, KeyState, Keyset, KeysetError, PrivateKeyError, PrivateKeyPem,
};

use crate::{at, key, keyset};

/// A valid three-key keyset: retiring, active, next.
fn full_keyset() -> Keyset {
    let mut active = key(Algorithm::EdDSA, KeyState::Active);
    active.activated_at = Some(at(60));
    keyset(vec![
        key(Algorithm::EdDSA, KeyState::Retiring),
        active,
        key(Algorithm::ES256, KeyState::Next),
    ])
}

/// The keyset's JSON, edited, then parsed.
fn parse_edited(set: &Keyset, edit: impl FnOnce(&mut Value)) -> Result<Keyset, KeysetError> {
    let mut json: Value = serde_json::from_slice(&set.to_json()).unwrap();
    edit(&mut json);
    Keyset::from_json(&serde_json::to_vec(&json).unwrap())
}

#[test]
fn a_keyset_survives_a_json_round_trip_unchanged() {
    let set = full_keyset();
    let json = set.to_json();
    assert_eq!(Keyset::from_json(&json).unwrap(), set);
    let value: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(value["version"], 1);
    let first = &value["keys"][0];
    for field in [
        "kid",
        "alg",
        "state",
        "created_at",
        "activated_at",
        "retiring_at",
        "remove_after",
        "private_key_pem",
    ] {
        assert!(first.get(field).is_some(), "missing {field} in {first}");
    }
    assert_eq!(first["state"], "retiring");
    assert_eq!(first["created_at"], "2026-03-01T00:00:00Z");
    assert!(
        value["keys"][2].get("activated_at").is_none(),
        "a next key has no activated_at"
    );
}

#[test]
fn two_active_keys_are_refused_naming_both_kids() {
    let set = keyset(vec![
        key(Algorithm::EdDSA, KeyState::Active),
        key(Algorithm::EdDSA, KeyState::Active),
    ]);
    let err = Keyset::from_json(&set.to_json()).unwrap_err();
    let kids = vec![set.keys[0].kid.clone(), set.keys[1].kid.clone()];
    assert_eq!(
        err.to_string(),
        format!(
            "keyset has 2 active keys (kids {}, {}); exactly one must be active",
            kids[0], kids[1]
        )
    );
    assert!(matches!(err, KeysetError::MultipleActiveKeys { kids: found } if found == kids));
}

#[test]
fn a_keyset_without_an_active_key_is_refused() {
    let set = keyset(vec![key(Algorithm::EdDSA, KeyState::Next)]);
    assert!(matches!(
        set.validate(),
        Err(KeysetError::NoActiveKey { count: 1 })
    ));
}

#[test]
fn two_next_keys_are_refused() {
    let mut set = full_keyset();
    set.keys.push(key(Algorithm::EdDSA, KeyState::Next));
    assert!(
        matches!(set.validate(), Err(KeysetError::MultipleNextKeys { kids }) if kids.len() == 2)
    );
}

#[test]
fn a_duplicate_kid_is_refused() {
    let set = full_keyset();
    let err = parse_edited(&set, |json| {
        json["keys"][0]["kid"] = json["keys"][1]["kid"].clone();
    })
    .unwrap_err();
    assert!(
        matches!(&err, KeysetError::DuplicateKid { kid } if *kid == set.keys[1].kid),
        "{err}"
    );
}

#[test]
fn a_malformed_kid_is_refused() {
    let err = parse_edited(&full_keyset(), |json| {
        json["keys"][1]["kid"] = "has space".into();
    })
    .unwrap_err();
    assert!(
        matches!(&err, KeysetError::InvalidKid { kid, .. } if kid == "has space"),
        "{err}"
    );
}

#[test]
fn a_pem_that_does_not_match_its_alg_is_refused_with_both_algorithms() {
    let set = full_keyset();
    let err = parse_edited(&set, |json| json["keys"][2]["alg"] = "RS256".into()).unwrap_err();
    assert!(
        matches!(
            &err,
            KeysetError::PrivateKey {
                alg: Algorithm::RS256,
                reason: PrivateKeyError::AlgorithmMismatch {
                    declared: Algorithm::RS256,
                    actual: Algorithm::ES256
                },
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(&set.keys[2].kid), "{err}");
}

#[test]
fn a_garbage_pem_is_refused_as_not_pem() {
    let err = parse_edited(&full_keyset(), |json| {
        json["keys"][1]["private_key_pem"] = "hello".into();
    })
    .unwrap_err();
    assert!(
        matches!(
            &err,
            KeysetError::PrivateKey {
                reason: PrivateKeyError::NotPem,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_unknown_version_is_refused() {
    let err = parse_edited(&full_keyset(), |json| json["version"] = 2.into()).unwrap_err();
    assert!(
        matches!(err, KeysetError::UnsupportedVersion { version: 2, .. }),
        "{err}"
    );
}

#[test]
fn an_unknown_state_is_refused_naming_the_key_and_the_state() {
    let set = full_keyset();
    let err = parse_edited(&set, |json| json["keys"][0]["state"] = "retired".into()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "key {} has unknown state \"retired\"; expected one of next, active, retiring",
            set.keys[0].kid
        )
    );
    assert!(matches!(err, KeysetError::UnknownState { .. }));
}

#[test]
fn a_retiring_key_without_remove_after_is_refused() {
    let set = full_keyset();
    let err = parse_edited(&set, |json| {
        json["keys"][0]
            .as_object_mut()
            .unwrap()
            .remove("remove_after");
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "key {} is retiring but has no remove_after",
            set.keys[0].kid
        )
    );
}

#[test]
fn not_json_is_a_json_error() {
    assert!(matches!(
        Keyset::from_json(b"not json"),
        Err(KeysetError::Json(_))
    ));
}

#[test]
fn debug_output_never_contains_private_keys() {
    let set = full_keyset();
    for debug in [
        format!("{set:?}"),
        format!("{:?}", set.keys[0]),
        format!("{:?}", set.keys[0].private_key_pem),
        format!("{set:#?}"),
    ] {
        assert!(!debug.contains("PRIVATE KEY"), "{debug}");
        assert!(debug.contains("PrivateKeyPem(..)"), "{debug}");
    }
    assert!(set.keys[0].private_key_pem.expose().contains("PRIVATE KEY"));
}

#[test]
fn the_jwks_publishes_every_state_without_private_parameters() {
    let set = full_keyset();
    let jwks = set.jwks();
    let kids: Vec<_> = jwks
        .keys
        .iter()
        .map(|jwk| jwk.common.key_id.clone().unwrap())
        .collect();
    // Active first, then next, then retiring.
    assert_eq!(
        kids,
        vec![
            set.keys[1].kid.clone(),
            set.keys[2].kid.clone(),
            set.keys[0].kid.clone()
        ]
    );
    let json: Value = serde_json::to_value(&jwks).unwrap();
    for entry in json["keys"].as_array().unwrap() {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(entry.get(private).is_none(), "{private} in {entry}");
        }
        assert_eq!(entry["use"], "sig");
        assert!(
            entry["alg"] == "EdDSA" || entry["alg"] == "ES256",
            "{entry}"
        );
    }
    assert!(!serde_json::to_string(&jwks).unwrap().contains("PRIVATE"));
}

#[test]
fn an_rsa_jwks_entry_has_only_the_public_modulus_and_exponent() {
    let set = keyset(vec![key(Algorithm::RS256, KeyState::Active)]);
    let json = serde_json::to_value(set.jwks()).unwrap();
    let entry = json["keys"][0].as_object().unwrap();
    let mut members: Vec<_> = entry.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "e", "kid", "kty", "n", "use"]);
    assert_eq!(entry["e"], "AQAB");
}

#[test]
fn infos_show_dates_and_thumbprints_but_no_private_material() {
    let set = full_keyset();
    let infos = set.infos();
    assert_eq!(infos.len(), 3);
    assert_eq!(infos[1].state, KeyState::Active);
    assert_eq!(infos[1].activated_at, Some(at(60)));
    assert_eq!(infos[0].remove_after, Some(at(20)));
    for (info, key) in infos.iter().zip(&set.keys) {
        assert_eq!(info.thumbprint, key.kid, "generated kids are thumbprints");
    }
    let json = serde_json::to_string(&infos).unwrap();
    assert!(!json.contains("PRIVATE"), "{json}");
    assert!(json.contains("\"thumbprint\""), "{json}");
    assert!(
        json.contains("\"remove_after\":\"2026-03-01T00:20:00Z\""),
        "{json}"
    );
}

#[test]
fn a_hand_built_key_with_garbage_material_is_left_out_of_the_jwks() {
    let mut set = full_keyset();
    set.keys[0].private_key_pem = PrivateKeyPem::new("garbage");
    assert_eq!(set.jwks().keys.len(), 2);
    assert_eq!(set.infos()[0].thumbprint, "");
    assert!(matches!(
        set.keys[0].public_jwk(),
        Err(KeyError::InvalidKey { .. })
    ));
}
