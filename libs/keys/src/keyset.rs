//! The keyset: keys with their states and timestamps, its validation, its public JWKS and its debug view.

use std::collections::HashSet;
use std::fmt;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::material::{self, PublicKey};
use crate::{Algorithm, KeyError, KeyState, KeysetError, PrivateKeyError, SigningKey};

/// The keyset format version this build reads and writes.
pub const KEYSET_VERSION: u32 = 1;

/// The longest kid accepted. Generated kids are 43 characters (a base64url SHA-256);
/// the bound keeps hand-made kids short enough for headers, logs and labels.
pub const KID_MAX_LEN: usize = 128;

/// A PKCS#8 private key in PEM form.
///
/// Serialized as a plain string. `Debug` never shows the content, so keys and keysets
/// can be logged; reading the secret takes an explicit [`PrivateKeyPem::expose`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PrivateKeyPem(String);

impl PrivateKeyPem {
    /// Wraps PEM text. Nothing is checked here: [`Keyset::validate`] checks the material.
    pub fn new(pem: impl Into<String>) -> Self {
        Self(pem.into())
    }

    /// The PEM text. Call only where the key is used or stored, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for PrivateKeyPem {
    fn from(pem: String) -> Self {
        Self(pem)
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(..)")
    }
}

/// One signing key of a keyset.
///
/// Only the state and the timestamps of a key ever change; its kid, alg and private
/// material are fixed when it is generated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// Key id, written in JWT headers and JWKS entries. Generated kids are the RFC 7638 thumbprint.
    pub kid: String,
    /// The algorithm this key signs with.
    pub alg: Algorithm,
    /// Where the key is in its life.
    pub state: KeyState,
    /// When the key was generated (and first published).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it became active. Required for active and retiring keys.
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub activated_at: Option<OffsetDateTime>,
    /// When it stopped signing. Required for retiring keys.
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub retiring_at: Option<OffsetDateTime>,
    /// When it leaves the JWKS and the keyset. Required for retiring keys.
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub remove_after: Option<OffsetDateTime>,
    /// The PKCS#8 private key.
    pub private_key_pem: PrivateKeyPem,
}

impl Key {
    pub(crate) fn public_key(&self) -> Result<PublicKey, PrivateKeyError> {
        material::read(self.private_key_pem.expose(), self.alg)
    }

    /// The public JWK of this key, with `kid`, `alg` and `use: sig`.
    pub fn public_jwk(&self) -> Result<Jwk, KeyError> {
        self.public_key()
            .map(|public| public.to_jwk(&self.kid, self.alg))
            .map_err(|reason| self.invalid(reason))
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key, base64url.
    pub fn thumbprint(&self) -> Result<String, KeyError> {
        self.public_key()
            .map(|public| public.thumbprint())
            .map_err(|reason| self.invalid(reason))
    }

    pub(crate) fn invalid(&self, reason: PrivateKeyError) -> KeyError {
        KeyError::InvalidKey {
            kid: self.kid.clone(),
            alg: self.alg,
            reason,
        }
    }

    /// The timestamps this key's state requires, with their names, for validation.
    fn required_timestamps(&self) -> Vec<(&'static str, Option<OffsetDateTime>)> {
        match self.state {
            KeyState::Next => vec![],
            KeyState::Active => vec![("activated_at", self.activated_at)],
            KeyState::Retiring => vec![
                ("activated_at", self.activated_at),
                ("retiring_at", self.retiring_at),
                ("remove_after", self.remove_after),
            ],
        }
    }
}

/// Whether a kid is safe to put in JWT headers, URLs, logs and Kubernetes labels.
pub(crate) fn kid_is_well_formed(kid: &str) -> bool {
    (1..=KID_MAX_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The keyset document: every key that is published, signing or retiring.
///
/// Build one with [`Keyset::from_json`] (which validates) or [`Keyset::empty`] and
/// [`crate::rotate`]. The derived `Deserialize` does not validate; prefer `from_json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyset {
    /// Format version, [`KEYSET_VERSION`].
    pub version: u32,
    /// The keys, in the order they were generated.
    pub keys: Vec<Key>,
}

impl Keyset {
    /// A keyset with no keys; the first rotation bootstraps it.
    pub fn empty() -> Self {
        Self {
            version: KEYSET_VERSION,
            keys: Vec::new(),
        }
    }

    /// Checks every rule of the format: supported version, well-formed and unique kids,
    /// exactly one active key when non-empty, at most one next key, the timestamps each
    /// state requires, and private material that parses and matches its `alg`.
    pub fn validate(&self) -> Result<(), KeysetError> {
        if self.version != KEYSET_VERSION {
            return Err(KeysetError::UnsupportedVersion {
                version: self.version,
                supported: KEYSET_VERSION,
            });
        }
        let mut seen = HashSet::new();
        for key in &self.keys {
            if !kid_is_well_formed(&key.kid) {
                return Err(KeysetError::InvalidKid {
                    kid: key.kid.clone(),
                    max: KID_MAX_LEN,
                });
            }
            if !seen.insert(key.kid.as_str()) {
                return Err(KeysetError::DuplicateKid {
                    kid: key.kid.clone(),
                });
            }
            check_timestamps(key)?;
        }
        let kids_in = |state| -> Vec<String> {
            self.keys
                .iter()
                .filter(|key| key.state == state)
                .map(|key| key.kid.clone())
                .collect()
        };
        let active = kids_in(KeyState::Active);
        if active.len() > 1 {
            return Err(KeysetError::MultipleActiveKeys { kids: active });
        }
        if active.is_empty() && !self.keys.is_empty() {
            return Err(KeysetError::NoActiveKey {
                count: self.keys.len(),
            });
        }
        let next = kids_in(KeyState::Next);
        if next.len() > 1 {
            return Err(KeysetError::MultipleNextKeys { kids: next });
        }
        // Last, because parsing RSA keys is the expensive part.
        for key in &self.keys {
            key.public_key().map_err(|reason| KeysetError::PrivateKey {
                kid: key.kid.clone(),
                alg: key.alg,
                reason,
            })?;
        }
        Ok(())
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> Option<&Key> {
        self.keys.iter().find(|key| key.state == KeyState::Active)
    }

    /// The published key waiting to become active, if any.
    pub fn next(&self) -> Option<&Key> {
        self.keys.iter().find(|key| key.state == KeyState::Next)
    }

    /// The key with this kid.
    pub fn key(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|key| key.kid == kid)
    }

    /// A signer for the active key.
    pub fn signing_key(&self) -> Result<SigningKey, KeyError> {
        self.active()
            .ok_or(KeyError::NoActiveKey)
            .and_then(SigningKey::from_key)
    }

    /// The public JWKS: every key of the set (active first, then next, then retiring),
    /// each with `kid`, `alg` and `use: sig`, and no private parameter.
    ///
    /// A key whose PEM cannot be read is left out; [`Keyset::validate`] refuses such
    /// keysets, so this only happens to keysets built by hand.
    pub fn jwks(&self) -> JwkSet {
        // Active first: clients that ignore `kid` and take the first key then pick the signer.
        let order = [KeyState::Active, KeyState::Next, KeyState::Retiring];
        let keys = order
            .iter()
            .flat_map(|state| self.keys.iter().filter(move |key| key.state == *state))
            .filter_map(|key| key.public_jwk().ok())
            .collect();
        JwkSet { keys }
    }

    /// What `/debug/keys` shows: kid, algorithm, state, dates and thumbprint of each key.
    pub fn infos(&self) -> Vec<KeyInfo> {
        self.keys.iter().map(KeyInfo::of).collect()
    }
}

/// Checks that the key's state has its timestamps and that all can be written as RFC 3339.
fn check_timestamps(key: &Key) -> Result<(), KeysetError> {
    for (field, value) in key.required_timestamps() {
        if value.is_none() {
            return Err(KeysetError::MissingTimestamp {
                kid: key.kid.clone(),
                state: key.state,
                field,
            });
        }
    }
    let all = [
        ("created_at", Some(key.created_at)),
        ("activated_at", key.activated_at),
        ("retiring_at", key.retiring_at),
        ("remove_after", key.remove_after),
    ];
    for (field, value) in all {
        if value.is_some_and(|t| !(0..=9999).contains(&t.year())) {
            return Err(KeysetError::TimestampOutOfRange {
                kid: key.kid.clone(),
                field,
            });
        }
    }
    Ok(())
}

/// A key as shown on `/debug/keys`: everything but the private material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// Signing algorithm.
    pub alg: Algorithm,
    /// Current state.
    pub state: KeyState,
    /// When the key was generated.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it became active.
    #[serde(with = "time::serde::rfc3339::option")]
    pub activated_at: Option<OffsetDateTime>,
    /// When it stopped signing.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retiring_at: Option<OffsetDateTime>,
    /// When it leaves the JWKS.
    #[serde(with = "time::serde::rfc3339::option")]
    pub remove_after: Option<OffsetDateTime>,
    /// RFC 7638 SHA-256 thumbprint of the public key, base64url; empty if the PEM is unreadable.
    pub thumbprint: String,
}

impl KeyInfo {
    fn of(key: &Key) -> Self {
        Self {
            kid: key.kid.clone(),
            alg: key.alg,
            state: key.state,
            created_at: key.created_at,
            activated_at: key.activated_at,
            retiring_at: key.retiring_at,
            remove_after: key.remove_after,
            thumbprint: key.thumbprint().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_style_kids_and_simple_names_are_well_formed() {
        assert!(kid_is_well_formed(
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        ));
        assert!(kid_is_well_formed("2026-01.a"));
    }

    #[test]
    fn empty_long_and_punctuated_kids_are_not_well_formed() {
        assert!(!kid_is_well_formed(""));
        assert!(!kid_is_well_formed(&"a".repeat(KID_MAX_LEN + 1)));
        assert!(!kid_is_well_formed("a b"));
        assert!(!kid_is_well_formed("a/b"));
        assert!(!kid_is_well_formed("é"));
    }

    #[test]
    fn private_key_pem_debug_hides_the_content() {
        let pem = PrivateKeyPem::new("-----BEGIN PRIVATE KEY-----\nsecret\n");
        assert_eq!(format!("{pem:?}"), "PrivateKeyPem(..)");
        assert_eq!(pem.expose(), "-----BEGIN PRIVATE KEY-----\nsecret\n");
    }

    #[test]
    fn an_empty_keyset_is_valid_and_has_no_active_key() {
        let keyset = Keyset::empty();
        assert_eq!(keyset.validate().map_err(|e| e.to_string()), Ok(()));
        assert!(keyset.active().is_none());
        assert!(keyset.jwks().keys.is_empty());
        assert!(matches!(keyset.signing_key(), Err(KeyError::NoActiveKey)));
    }
}
