//! Generating new key pairs as PKCS#8 PEM, with the RFC 7638 thumbprint as kid.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair,
};

use crate::material::{self, PKCS8_LABEL};
use time::OffsetDateTime;

use crate::{Algorithm, Key, KeyError, KeyState, PrivateKeyPem};

/// A freshly generated key pair, before it joins a keyset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// The RFC 7638 SHA-256 thumbprint of the public key: unique per key pair, so a
    /// kid is never reused for different material.
    pub kid: String,
    /// The algorithm the key is for.
    pub alg: Algorithm,
    /// The PKCS#8 private key (Ed25519, P-256, or RSA 2048).
    pub private_key_pem: PrivateKeyPem,
}

impl GeneratedKey {
    /// The key as a keyset entry in `state`, created at `now`; an active key is
    /// activated at `now` too (a keyset of its own, a test, a benchmark).
    pub fn into_key(self, state: KeyState, now: OffsetDateTime) -> Key {
        Key {
            kid: self.kid,
            alg: self.alg,
            state,
            created_at: now,
            activated_at: (state != KeyState::Next).then_some(now),
            retiring_at: None,
            remove_after: None,
            private_key_pem: self.private_key_pem,
        }
    }
}

/// Generates a new key pair for `alg` with the system random number generator.
///
/// RSA keys are 2048 bits: the size every verifier accepts, and generation of larger
/// keys takes seconds. Ed25519 keys are written as PKCS#8 v1, as `openssl genpkey` does.
pub fn generate(alg: Algorithm) -> Result<GeneratedKey, KeyError> {
    let failed = |_| KeyError::Generate { alg };
    let der: Vec<u8> = match alg {
        Algorithm::EdDSA => Ed25519KeyPair::generate()
            .and_then(|pair| pair.to_pkcs8v1())
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        Algorithm::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
        Algorithm::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
            .and_then(|pair| pair.as_der())
            .map_err(failed)?
            .as_ref()
            .to_vec(),
    };
    // LF line endings: the PEM lives inside JSON and YAML, where CRLF is only noise.
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    let pem_text = pem::encode_config(&pem::Pem::new(PKCS8_LABEL, der), config);
    // Read back through the same path every keyset load uses, so a generated key is
    // known to load, and derive the kid from what was actually written.
    let public = material::read(&pem_text, alg).map_err(|_| KeyError::Generate { alg })?;
    Ok(GeneratedKey {
        kid: public.thumbprint(),
        alg,
        private_key_pem: PrivateKeyPem::new(pem_text),
    })
}
