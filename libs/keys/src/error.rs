//! Errors of the keyset document and of key operations (generation, signing, rotation).

use crate::{Algorithm, KeyState, PolicyError, PrivateKeyError};

/// Why a keyset document was refused. Every message names the key (kid) at fault.
#[derive(Debug, thiserror::Error)]
pub enum KeysetError {
    /// The bytes are not JSON, or lack a required member, or a member has the wrong type.
    #[error("keyset document is not valid JSON of the expected shape: {0}")]
    Json(#[source] serde_json::Error),
    /// The `version` member names a format this build does not read.
    #[error("keyset version {version} is not supported; this build reads version {supported}")]
    UnsupportedVersion {
        /// The version found in the document.
        version: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A key's `alg` is not one of EdDSA, ES256, RS256.
    #[error("key {kid} has unknown alg \"{alg}\"; expected one of EdDSA, ES256, RS256")]
    UnknownAlgorithm {
        /// The key at fault.
        kid: String,
        /// The value found.
        alg: String,
    },
    /// A key's `state` is not one of next, active, retiring.
    #[error("key {kid} has unknown state \"{state}\"; expected one of next, active, retiring")]
    UnknownState {
        /// The key at fault.
        kid: String,
        /// The value found.
        state: String,
    },
    /// A timestamp is not RFC 3339 (for example `2026-01-31T10:00:00Z`).
    #[error("key {kid}: {field} \"{value}\" is not an RFC 3339 timestamp")]
    InvalidTimestamp {
        /// The key at fault.
        kid: String,
        /// The member holding the timestamp.
        field: &'static str,
        /// The value found.
        value: String,
    },
    /// A timestamp cannot be written back as RFC 3339 (its year is outside 0000 to 9999).
    #[error("key {kid}: {field} is outside the years 0000 to 9999 that RFC 3339 can express")]
    TimestampOutOfRange {
        /// The key at fault.
        kid: String,
        /// The member holding the timestamp.
        field: &'static str,
    },
    /// A kid is empty, too long, or has characters outside `A-Z a-z 0-9 - _ .`.
    #[error(
        "kid \"{kid}\" is not well-formed: it must be 1 to {max} characters from A-Z a-z 0-9 - _ ."
    )]
    InvalidKid {
        /// The kid found.
        kid: String,
        /// The longest kid accepted.
        max: usize,
    },
    /// Two keys share a kid: a verifier could not tell which one signed a token.
    #[error("kid {kid} appears more than once in the keyset; kids must be unique")]
    DuplicateKid {
        /// The repeated kid.
        kid: String,
    },
    /// The keyset has keys but none of them is active, so nothing can sign.
    #[error("keyset has {count} keys but none is active; exactly one must be active")]
    NoActiveKey {
        /// How many keys the keyset holds.
        count: usize,
    },
    /// More than one key is active: signers would disagree about which key to use.
    #[error(
        "keyset has {} active keys (kids {}); exactly one must be active",
        kids.len(),
        kids.join(", ")
    )]
    MultipleActiveKeys {
        /// The kids of the active keys.
        kids: Vec<String>,
    },
    /// More than one key is waiting as next: the rotation would not know which to promote.
    #[error(
        "keyset has {} next keys (kids {}); at most one may be next",
        kids.len(),
        kids.join(", ")
    )]
    MultipleNextKeys {
        /// The kids of the next keys.
        kids: Vec<String>,
    },
    /// A key lacks a timestamp its state requires (e.g. a retiring key without `remove_after`).
    #[error("key {kid} is {state} but has no {field}")]
    MissingTimestamp {
        /// The key at fault.
        kid: String,
        /// Its state.
        state: KeyState,
        /// The missing member.
        field: &'static str,
    },
    /// A key's `private_key_pem` is unreadable or does not match its `alg`.
    #[error("key {kid} ({alg}): {reason}")]
    PrivateKey {
        /// The key at fault.
        kid: String,
        /// The algorithm the key declares.
        alg: Algorithm,
        /// What is wrong with the PEM.
        reason: PrivateKeyError,
    },
}

/// Why a key could not be generated, loaded, used to sign, or rotated.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The keyset given to an operation is invalid.
    #[error(transparent)]
    Keyset(#[from] KeysetError),
    /// The rotation policy is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The crypto library could not generate a key pair.
    #[error("could not generate a new {alg} key pair (the crypto library reported a failure)")]
    Generate {
        /// The algorithm asked for.
        alg: Algorithm,
    },
    /// A key's private PEM cannot be used for its algorithm.
    #[error("key {kid} ({alg}) cannot be loaded: {reason}")]
    InvalidKey {
        /// The key at fault.
        kid: String,
        /// The algorithm the key declares.
        alg: Algorithm,
        /// What is wrong with the PEM.
        reason: PrivateKeyError,
    },
    /// A freshly generated key does not fit the keyset (wrong algorithm or a kid already used).
    #[error("the generated key {kid} cannot join the keyset: {reason}")]
    GeneratedKeyRejected {
        /// The kid of the generated key.
        kid: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The keyset has no active key, so there is nothing to sign with.
    #[error("the keyset has no active key to sign with")]
    NoActiveKey,
    /// Encoding or signing the token failed.
    #[error("signing a token with key {kid} failed")]
    Sign {
        /// The key used.
        kid: String,
        /// The underlying failure (claims serialization or the signature itself).
        #[source]
        source: jsonwebtoken::errors::Error,
    },
}
