//! Encryption at rest for the keyset that standalone identity keeps in its own database.
//!
//! Format: `version (1 byte) || nonce (12 bytes) || AES-256-GCM ciphertext || tag (16 bytes)`.
//! The version byte is also the associated data, so it cannot be swapped without the
//! tag failing. Nonces are random: with a 96-bit nonce, one key can seal about 2^32
//! messages before a collision becomes a concern, far beyond one seal per rotation.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// The only format version written and read.
const FORMAT_V1: u8 = 1;

/// Length of the AES-GCM authentication tag.
const TAG_LEN: usize = 16;

/// Why sealed bytes could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Too short to hold a version, a nonce and a tag: not something `seal` produced.
    #[error("sealed data is truncated ({len} bytes; at least {min} expected)")]
    Truncated {
        /// Length received.
        len: usize,
        /// Shortest sealed value possible.
        min: usize,
    },
    /// The first byte names a format this build does not know.
    #[error("sealed data has unknown format version {0}; this build reads version 1")]
    UnknownVersion(u8),
    /// Authentication failed: the key is wrong or the bytes were altered.
    #[error("sealed data cannot be opened: wrong key, or the data was altered")]
    Decrypt,
}

fn cipher(key: &[u8; 32]) -> LessSafeKey {
    // A 32-byte key is by construction a valid AES-256 key.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32 bytes is an AES-256 key"))
}

/// Encrypts and authenticates `plaintext` with AES-256-GCM under a fresh random nonce.
///
/// # Panics
///
/// Only if the operating system's random number generator fails.
pub fn seal(plaintext: &[u8], key: &[u8; 32]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).expect("the system random number generator works");
    let mut body = plaintext.to_vec();
    cipher(key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from([FORMAT_V1]),
            &mut body,
        )
        .expect("AES-GCM sealing only fails for inputs larger than 64 GiB");
    let mut sealed = Vec::with_capacity(1 + NONCE_LEN + body.len());
    sealed.push(FORMAT_V1);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&body);
    sealed
}

/// Checks and decrypts bytes made by [`seal`] with the same key.
pub fn open(sealed: &[u8], key: &[u8; 32]) -> Result<Vec<u8>, SealError> {
    let min = 1 + NONCE_LEN + TAG_LEN;
    let Some((&version, rest)) = sealed.split_first() else {
        return Err(SealError::Truncated { len: 0, min });
    };
    if version != FORMAT_V1 {
        return Err(SealError::UnknownVersion(version));
    }
    if sealed.len() < min {
        return Err(SealError::Truncated {
            len: sealed.len(),
            min,
        });
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Decrypt)?;
    let mut buffer = ciphertext.to_vec();
    let plaintext_len = cipher(key)
        .open_in_place(nonce, Aad::from([version]), &mut buffer)
        .map_err(|_| SealError::Decrypt)?
        .len();
    buffer.truncate(plaintext_len);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn sealed_data_starts_with_the_version_and_grows_by_nonce_and_tag() {
        let sealed = seal(b"keyset", &KEY);
        assert_eq!(sealed[0], FORMAT_V1);
        assert_eq!(sealed.len(), 1 + NONCE_LEN + b"keyset".len() + TAG_LEN);
    }

    #[test]
    fn an_empty_plaintext_round_trips() {
        assert_eq!(open(&seal(b"", &KEY), &KEY), Ok(Vec::new()));
    }

    #[test]
    fn an_unknown_version_and_truncated_data_are_reported_as_such() {
        let mut sealed = seal(b"keyset", &KEY);
        sealed[0] = 9;
        assert_eq!(open(&sealed, &KEY), Err(SealError::UnknownVersion(9)));
        assert!(matches!(
            open(&[FORMAT_V1, 1, 2], &KEY),
            Err(SealError::Truncated { len: 3, .. })
        ));
        assert!(matches!(
            open(&[], &KEY),
            Err(SealError::Truncated { len: 0, .. })
        ));
    }
}
