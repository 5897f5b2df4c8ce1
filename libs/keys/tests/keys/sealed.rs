//! Encryption at rest of the standalone keyset.

use tessera_keys::SealError;
use tessera_keys::sealed::{open, seal};

const KEY: [u8; 32] = [0x42; 32];

#[test]
fn sealed_bytes_open_to_the_original_plaintext() {
    let plaintext = b"{\"version\": 1, \"keys\": []}";
    let sealed = seal(plaintext, &KEY);
    assert!(
        !sealed.windows(plaintext.len()).any(|w| w == plaintext),
        "ciphertext hides the plaintext"
    );
    assert_eq!(open(&sealed, &KEY).unwrap(), plaintext);
}

#[test]
fn the_wrong_key_cannot_open() {
    let sealed = seal(b"secret", &KEY);
    assert_eq!(open(&sealed, &[0x43; 32]), Err(SealError::Decrypt));
}

#[test]
fn any_altered_byte_after_the_version_is_detected() {
    let sealed = seal(b"secret keyset", &KEY);
    for index in 1..sealed.len() {
        let mut tampered = sealed.clone();
        tampered[index] ^= 0x01;
        assert_eq!(
            open(&tampered, &KEY),
            Err(SealError::Decrypt),
            "byte {index}"
        );
    }
}

#[test]
fn two_seals_of_the_same_plaintext_differ() {
    assert_ne!(seal(b"same", &KEY), seal(b"same", &KEY));
}
