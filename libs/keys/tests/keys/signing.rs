//! Generation, signing and verification against the published JWKS.

use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde::{Deserialize, Serialize};
use tessera_keys::{Algorithm, KeyState, SigningKey, generate};

use crate::{key, keyset};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Claims {
    sub: String,
    exp: i64,
}

fn claims() -> Claims {
    Claims {
        sub: "user-1".to_owned(),
        // Far in the future: these tests are about signatures, not expiry.
        exp: 4_102_444_800,
    }
}

fn verify(token: &str, jwk: &Jwk, alg: Algorithm) -> Result<Claims, jsonwebtoken::errors::Error> {
    let key = DecodingKey::from_jwk(jwk)?;
    decode::<Claims>(token, &key, &Validation::new(alg.to_jwt())).map(|data| data.claims)
}

#[test]
fn every_algorithm_signs_at_jwt_tokens_that_verify_with_its_jwks_entry_only() {
    for alg in Algorithm::ALL {
        let signer_key = key(alg, KeyState::Active);
        let other_key = key(alg, KeyState::Next);
        let set = keyset(vec![signer_key.clone(), other_key.clone()]);
        set.validate().unwrap();
        let jwks = set.jwks();

        let signer = SigningKey::from_key(&signer_key).unwrap();
        assert_eq!(signer.kid(), signer_key.kid);
        assert_eq!(signer.alg(), alg);
        let token = signer.sign(&claims()).unwrap();

        let header = decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"), "{alg}");
        assert_eq!(
            header.kid.as_deref(),
            Some(signer_key.kid.as_str()),
            "{alg}"
        );
        assert_eq!(header.alg, alg.to_jwt(), "{alg}");

        let own = jwks.find(&signer_key.kid).expect("the signer is published");
        assert_eq!(verify(&token, own, alg).unwrap(), claims(), "{alg}");
        let other = jwks
            .find(&other_key.kid)
            .expect("the next key is published");
        assert!(
            verify(&token, other, alg).is_err(),
            "{alg}: another key's JWK must not verify"
        );
    }
}

#[test]
fn the_kid_is_the_rfc_7638_thumbprint_of_the_public_jwk() {
    for alg in Algorithm::ALL {
        let k = key(alg, KeyState::Active);
        let jwk = k.public_jwk().unwrap();
        assert_eq!(
            k.kid,
            jwk.thumbprint(ThumbprintHash::SHA256).unwrap(),
            "{alg}"
        );
        assert_eq!(k.thumbprint().unwrap(), k.kid, "{alg}");
        assert_eq!(k.kid.len(), 43, "{alg}: base64url of 32 bytes");
    }
}

#[test]
fn two_generated_keys_differ_in_kid_and_material() {
    for alg in [Algorithm::EdDSA, Algorithm::ES256] {
        let a = generate(alg).unwrap();
        let b = generate(alg).unwrap();
        assert_ne!(a.kid, b.kid, "{alg}");
        assert_ne!(
            a.private_key_pem.expose(),
            b.private_key_pem.expose(),
            "{alg}"
        );
    }
}

#[test]
fn generated_keys_are_pkcs8_pem_with_unix_line_endings() {
    for alg in Algorithm::ALL {
        let generated = generate(alg).unwrap();
        assert_eq!(generated.alg, alg);
        let pem = generated.private_key_pem.expose();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "{alg}: {pem}"
        );
        assert!(pem.ends_with("-----END PRIVATE KEY-----\n"), "{alg}");
        assert!(!pem.contains('\r'), "{alg}");
    }
}

#[test]
fn a_key_whose_pem_is_for_another_algorithm_cannot_sign() {
    let mut k = key(Algorithm::EdDSA, KeyState::Active);
    k.alg = Algorithm::ES256;
    let err = SigningKey::from_key(&k).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "key {} (ES256) cannot be loaded: the PEM holds EdDSA key material but the key declares alg ES256",
            k.kid
        )
    );
}

#[test]
fn the_keyset_signs_with_its_active_key() {
    let active = key(Algorithm::EdDSA, KeyState::Active);
    let set = keyset(vec![key(Algorithm::EdDSA, KeyState::Next), active.clone()]);
    assert_eq!(set.signing_key().unwrap().kid(), active.kid);
}

#[test]
fn signing_key_debug_shows_kid_and_alg_but_no_material() {
    let k = key(Algorithm::ES256, KeyState::Active);
    let debug = format!("{:?}", SigningKey::from_key(&k).unwrap());
    assert!(debug.contains(&k.kid), "{debug}");
    assert!(debug.contains("ES256"), "{debug}");
    assert!(!debug.contains("PRIVATE"), "{debug}");
}
