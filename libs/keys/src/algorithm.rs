//! The two small vocabularies of the keyset: signing algorithms and key states.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A JWS signing algorithm Tessera can generate keys for and sign with.
///
/// The names are the JOSE names (RFC 7518, RFC 8037) and are case-sensitive, as in a
/// JWT header or a JWKS `alg` member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
// The variant names are the JOSE registry names; renaming them to `Es256` would make
// the serde and `Display` forms differ from the Rust names for no gain.
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    /// Ed25519 signatures (RFC 8037). The default: fastest to sign and small keys.
    #[default]
    EdDSA,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys when generated here.
    RS256,
}

impl Algorithm {
    /// Every supported algorithm, in documentation order.
    pub const ALL: [Self; 3] = [Self::EdDSA, Self::ES256, Self::RS256];

    /// The JOSE name, as written in keysets, JWKS and JWT headers.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }

    /// The matching `jsonwebtoken` algorithm, for building validators.
    pub const fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
            Self::RS256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no supported algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signing algorithm \"{0}\"; expected one of EdDSA, ES256, RS256")]
pub struct UnknownAlgorithm(pub String);

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str() == s)
            .ok_or_else(|| UnknownAlgorithm(s.to_owned()))
    }
}

/// Where a key is in its life: `next -> active -> retiring -> (removed)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published in the JWKS, not signing yet: verifiers get time to cache it.
    Next,
    /// The one key that signs new tokens.
    Active,
    /// No longer signs; stays published until every token it signed has expired.
    Retiring,
}

impl KeyState {
    /// The lowercase name used in the keyset document.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retiring => "retiring",
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no key state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key state \"{0}\"; expected one of next, active, retiring")]
pub struct UnknownKeyState(pub String);

impl FromStr for KeyState {
    type Err = UnknownKeyState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Next, Self::Active, Self::Retiring]
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownKeyState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms_print_parse_and_serialize_as_their_jose_names() {
        for (alg, name) in [
            (Algorithm::EdDSA, "EdDSA"),
            (Algorithm::ES256, "ES256"),
            (Algorithm::RS256, "RS256"),
        ] {
            assert_eq!(alg.to_string(), name);
            assert_eq!(name.parse::<Algorithm>(), Ok(alg));
            assert_eq!(serde_json::to_string(&alg).unwrap(), format!("\"{name}\""));
            assert_eq!(format!("{:?}", alg.to_jwt()), name);
        }
    }

    #[test]
    fn the_default_algorithm_is_eddsa() {
        assert_eq!(Algorithm::default(), Algorithm::EdDSA);
    }

    #[test]
    fn algorithm_names_are_case_sensitive_and_the_error_lists_the_choices() {
        let err = "eddsa".parse::<Algorithm>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown signing algorithm \"eddsa\"; expected one of EdDSA, ES256, RS256"
        );
        assert!("HS256".parse::<Algorithm>().is_err());
    }

    #[test]
    fn key_states_serialize_lowercase_and_reject_other_spellings() {
        for (state, name) in [
            (KeyState::Next, "next"),
            (KeyState::Active, "active"),
            (KeyState::Retiring, "retiring"),
        ] {
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{name}\"")
            );
            assert_eq!(name.parse::<KeyState>(), Ok(state));
        }
        assert!(serde_json::from_str::<KeyState>("\"Active\"").is_err());
        assert!("retired".parse::<KeyState>().is_err());
    }
}
