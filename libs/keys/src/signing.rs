//! Signing access tokens with one key: JWS header with alg, kid and `typ: at+jwt` (RFC 9068).

use std::fmt;

use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;

use crate::{Algorithm, Key, KeyError, PrivateKeyError};

/// The JWT `typ` of access tokens (RFC 9068 §2.1), which keeps them from being
/// mistaken for ID tokens or other JWTs signed by the same key.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// A loaded private key ready to sign. Cheap to clone; `Debug` shows only kid and alg.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    header: Header,
    key: EncodingKey,
}

impl SigningKey {
    /// Loads the key's private PEM, checking it matches the key's `alg`.
    pub fn from_key(key: &Key) -> Result<Self, KeyError> {
        // Our own reader first: it gives the precise reason a PEM is unusable.
        key.public_key().map_err(|reason| key.invalid(reason))?;
        let pem = key.private_key_pem.expose().as_bytes();
        let encoding = match key.alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
        }
        .map_err(|_| key.invalid(PrivateKeyError::Unusable { declared: key.alg }))?;
        let mut header = Header::new(key.alg.to_jwt());
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(key.kid.clone());
        Ok(Self {
            kid: key.kid.clone(),
            alg: key.alg,
            header,
            key: encoding,
        })
    }

    /// The kid written in every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// Signs the claims as a compact JWS with header `{alg, kid, typ: "at+jwt"}`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        jsonwebtoken::encode(&self.header, claims, &self.key).map_err(|source| KeyError::Sign {
            kid: self.kid.clone(),
            source,
        })
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}
