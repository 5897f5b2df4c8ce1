//! Random tokens and the fast hashes used for high-entropy secrets (refresh tokens,
//! client secrets). These secrets carry 256 bits of randomness, so a slow password hash
//! would cost throughput and buy nothing (DESIGN.md §3).

use aws_lc_rs::{constant_time, digest, hmac, rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Bytes of randomness in generated tokens and secrets.
const TOKEN_BYTES: usize = 32;

/// A new random token: `prefix` plus 256 random bits in base64url. The prefix lets secret
/// scanners recognise leaked Tessera tokens.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::fill(&mut bytes).expect("the system random generator failed");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// 32 random bytes (keys, peppers).
pub fn random_key() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes).expect("the system random generator failed");
    bytes
}

/// SHA-256, how refresh tokens are stored (a database leak yields no usable token).
pub fn sha256(data: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, data.as_bytes())
        .as_ref()
        .to_vec()
}

/// The keyed hash of client secrets: HMAC-SHA-256 under the install's pepper.
#[derive(Clone)]
pub struct SecretHasher(hmac::Key);

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher(..)")
    }
}

impl SecretHasher {
    /// A hasher keyed with `pepper`.
    pub fn new(pepper: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, pepper))
    }

    /// The hash of `secret`.
    pub fn hash(&self, secret: &str) -> Vec<u8> {
        hmac::sign(&self.0, secret.as_bytes()).as_ref().to_vec()
    }

    /// Whether `secret` hashes to `expected`, compared in constant time.
    pub fn matches(&self, secret: &str, expected: &[u8]) -> bool {
        constant_time::verify_slices_are_equal(&self.hash(secret), expected).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_and_unique() {
        let (a, b) = (random_token("tsr_"), random_token("tsr_"));
        assert!(a.starts_with("tsr_") && a.len() == 4 + 43);
        assert_ne!(a, b);
    }

    #[test]
    fn secret_hashes_depend_on_the_pepper() {
        let (one, two) = (
            SecretHasher::new(b"pepper-one"),
            SecretHasher::new(b"pepper-two"),
        );
        let hash = one.hash("s3cret");
        assert!(one.matches("s3cret", &hash));
        assert!(!one.matches("s3cret!", &hash));
        assert!(!two.matches("s3cret", &hash));
    }
}
