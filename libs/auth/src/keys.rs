//! The verification key cache: a JWKS turned, once per fetch, into decoding keys indexed by
//! `kid`, each pinned to the one algorithm it may verify.

use std::collections::HashMap;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::KeySourceError;

/// Longest `kid` accepted. Tessera's kids are a few dozen characters; the bound keeps
/// hostile headers from costing more than a short string comparison.
pub(crate) const MAX_KID_BYTES: usize = 128;

/// Whether `kid` is a plausible key id: 1 to 128 characters of `[A-Za-z0-9._-]`.
///
/// The `kid` comes from an unauthenticated header, so anything else (paths, quotes, SQL,
/// control characters) is refused before it is looked up, logged or used to refetch.
pub(crate) fn is_well_formed_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_BYTES
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A public key and the only algorithm it verifies.
pub(crate) struct PinnedKey {
    pub(crate) algorithm: Algorithm,
    pub(crate) key: DecodingKey,
}

/// The keys of one JWKS fetch.
pub(crate) struct KeyCache {
    keys: HashMap<String, PinnedKey>,
}

impl KeyCache {
    /// Builds the cache of the usable keys of `set`.
    ///
    /// Keys that are not for signatures, symmetric, of an unsupported type, or whose
    /// declared `alg` contradicts their type are skipped (and logged): they must never be
    /// chosen by a token. A set with no usable key is an error so the previous keys stay.
    pub(crate) fn from_jwks(set: &JwkSet) -> Result<Self, KeySourceError> {
        let mut keys = HashMap::with_capacity(set.keys.len());
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.as_deref() else {
                tracing::warn!("JWKS key without kid skipped");
                continue;
            };
            if !is_well_formed_kid(kid) {
                tracing::warn!("JWKS key with a malformed kid skipped");
                continue;
            }
            let Some(algorithm) = pinned_algorithm(jwk) else {
                tracing::warn!(
                    kid,
                    "JWKS key not usable for EdDSA, ES256 or RS256 signatures skipped"
                );
                continue;
            };
            if keys.contains_key(kid) {
                // Two keys under one kid would let a token pick either: keep the first.
                tracing::warn!(
                    kid,
                    "JWKS holds the same kid twice; the later key is skipped"
                );
                continue;
            }
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(key) => key,
                Err(error) => {
                    tracing::warn!(kid, %error, "JWKS key with invalid parameters skipped");
                    continue;
                }
            };
            keys.insert(kid.to_owned(), PinnedKey { algorithm, key });
        }
        if keys.is_empty() {
            return Err(KeySourceError::NoUsableKeys);
        }
        Ok(Self { keys })
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&PinnedKey> {
        self.keys.get(kid)
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// The algorithm a JWK is pinned to, or `None` when it must not verify tokens.
///
/// The key type decides (OKP Ed25519 → `EdDSA`, EC P-256 → `ES256`, RSA → `RS256`); a declared
/// `alg` must agree with it. Symmetric (`oct`) keys never qualify: a public JWKS holding
/// one is an attack on HMAC confusion.
fn pinned_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let usable_for_signatures = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    ) && jwk
        .common
        .key_operations
        .as_ref()
        .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    if !usable_for_signatures {
        return None;
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type),
        Some(declared) => (Algorithm::try_from(declared).ok() == Some(by_type)).then_some(by_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn set(json: &str) -> JwkSet {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn kids_outside_the_safe_alphabet_or_too_long_are_not_well_formed() {
        assert!(is_well_formed_kid("2026-01-k1.Ab_9"));
        assert!(!is_well_formed_kid(""));
        assert!(!is_well_formed_kid("../../etc/passwd"));
        assert!(!is_well_formed_kid("' OR 1=1 --"));
        assert!(!is_well_formed_kid("k\u{e9}"));
        assert!(is_well_formed_kid(&"a".repeat(128)));
        assert!(!is_well_formed_kid(&"a".repeat(129)));
    }

    #[test]
    fn the_algorithm_is_derived_from_the_key_type_when_alg_is_absent() {
        let cache = KeyCache::from_jwks(&set(&format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"ed","x":"{ED_X}"}}]}}"#
        )))
        .unwrap();
        assert_eq!(cache.get("ed").unwrap().algorithm, Algorithm::EdDSA);
    }

    #[test]
    fn a_declared_alg_contradicting_the_key_type_disqualifies_the_key() {
        let result = KeyCache::from_jwks(&set(&format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"ed","alg":"ES256","x":"{ED_X}"}}]}}"#
        )));
        assert!(matches!(result, Err(KeySourceError::NoUsableKeys)));
    }

    #[test]
    fn symmetric_and_encryption_keys_are_skipped() {
        let cache = KeyCache::from_jwks(&set(&format!(
            r#"{{"keys":[
                {{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}},
                {{"kty":"OKP","crv":"Ed25519","kid":"enc","use":"enc","x":"{ED_X}"}},
                {{"kty":"OKP","crv":"Ed25519","kid":"sign-only","key_ops":["sign"],"x":"{ED_X}"}},
                {{"kty":"OKP","crv":"Ed25519","kid":"ok","use":"sig","x":"{ED_X}"}}
            ]}}"#
        )))
        .unwrap();
        assert!(cache.get("hmac").is_none());
        assert!(cache.get("enc").is_none());
        assert!(cache.get("sign-only").is_none());
        assert!(cache.get("ok").is_some());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn keys_with_a_malformed_or_missing_kid_are_skipped() {
        let result = KeyCache::from_jwks(&set(&format!(
            r#"{{"keys":[
                {{"kty":"OKP","crv":"Ed25519","kid":"../x","x":"{ED_X}"}},
                {{"kty":"OKP","crv":"Ed25519","x":"{ED_X}"}}
            ]}}"#
        )));
        assert!(matches!(result, Err(KeySourceError::NoUsableKeys)));
    }
}
