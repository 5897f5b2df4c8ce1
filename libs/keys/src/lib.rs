//! Signing keys shared by the identity service and the operator: the keyset document,
//! key generation, the public JWKS, token signing, and the rotation state machine.
//!
//! # The keyset document
//!
//! One JSON document holds every key that is published, signing or retiring. The
//! operator keeps it in a Secret mounted into identity (and publishes [`Keyset::jwks`]
//! in a ConfigMap); standalone identity keeps it in its database, encrypted with
//! [`sealed::seal`]. This format is the contract between the two: [`Keyset::from_json`]
//! reads it and validates it, [`Keyset::to_json`] writes it.
//!
//! ```
//! # fn main() -> Result<(), tessera_keys::KeysetError> {
//! // Example keys only: never use these anywhere.
//! let document = br#"{
//!   "version": 1,
//!   "keys": [
//!     {
//!       "kid": "junU6mZWeOv2-UUYZKgR6Aui2B7xDQBAgg_4VZ88cF4",
//!       "alg": "EdDSA",
//!       "state": "retiring",
//!       "created_at": "2026-01-01T00:00:00Z",
//!       "activated_at": "2026-01-01T00:00:00Z",
//!       "retiring_at": "2026-01-02T00:00:00Z",
//!       "remove_after": "2026-01-02T00:21:00Z",
//!       "private_key_pem": "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA4o7kpQEVM1VwZGdjzcFeeXnnd1xBVtLyuZdBDafnVp\n-----END PRIVATE KEY-----\n"
//!     },
//!     {
//!       "kid": "lPzDpNFv8U0jyf418ZFEW_uScv0RXZNA5A1DWVGV-dA",
//!       "alg": "EdDSA",
//!       "state": "active",
//!       "created_at": "2026-01-01T23:54:00Z",
//!       "activated_at": "2026-01-02T00:00:00Z",
//!       "private_key_pem": "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEICUbJqqiQ8ZfnJ4/mEJdPQ3ZHKBlmsAKkSOu5gNN7ON8\n-----END PRIVATE KEY-----\n"
//!     }
//!   ]
//! }"#;
//! let keyset = tessera_keys::Keyset::from_json(document)?;
//! assert_eq!(keyset.active().map(|key| key.kid.as_str()), Some("lPzDpNFv8U0jyf418ZFEW_uScv0RXZNA5A1DWVGV-dA"));
//! assert_eq!(keyset.jwks().keys.len(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! Members:
//!
//! - `version`: `1`. Another value is refused with [`KeysetError::UnsupportedVersion`].
//! - `keys`: in generation order. Each key has:
//!   - `kid`: 1 to 128 characters from `A-Z a-z 0-9 - _ .`, unique in the set. Generated
//!     kids are the RFC 7638 SHA-256 thumbprint of the public key, base64url.
//!   - `alg`: `"EdDSA"` (Ed25519), `"ES256"` (P-256) or `"RS256"` (RSA, 2048 to 8192 bits).
//!   - `state`: `"next"`, `"active"` or `"retiring"`. A non-empty set has exactly one
//!     active key and at most one next key.
//!   - `created_at`: RFC 3339; when the key was generated and first published.
//!   - `activated_at`: RFC 3339; when it started signing. Required for active and
//!     retiring keys; absent for next keys.
//!   - `retiring_at`, `remove_after`: RFC 3339; when it stopped signing and when it
//!     leaves the set. Required for retiring keys; absent otherwise.
//!   - `private_key_pem`: unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) whose
//!     material matches `alg`.
//!
//! Absent optional timestamps may also be written as `null`. Unknown members are
//! ignored on reading and dropped on writing. Writers emit timestamps in UTC.
//!
//! # Rotation rules
//!
//! [`rotate`] is a pure function `(keyset, policy, now, force) -> (keyset, changes,
//! next_deadline)`; its only effect is calling the key generator it is given. With
//! interval `I`, pre-publication `P` and retirement `R` from the [`KeyPolicy`]:
//!
//! 1. An empty keyset gets one key, active at once (nothing can have been cached yet).
//! 2. A retiring key is removed once `now >= remove_after`.
//! 3. When the active key has signed for `I - P` and there is no next key, a next key is
//!    generated (`created_at = now`); it is published in the JWKS from then on.
//! 4. The next key becomes active once it has been published for `P` and the active key
//!    has signed for `I`. The old key becomes retiring with `retiring_at = now` and
//!    `remove_after = now + R`.
//! 5. `force` (manual rotation) creates a next key at once if there is none, and lets it
//!    take over as soon as it has been published for `P`, without waiting for `I`. A key
//!    is never activated before it has been published for `P`, except at bootstrap.
//! 6. New keys use the policy's algorithm; existing keys keep theirs until they retire.
//!    Keys are never regenerated or altered except for their state and timestamps.
//!
//! One call applies every transition `now` allows, and `next_deadline` is the earliest
//! later time at which another call would change something: callers sleep until then
//! (or until a manual rotation is requested) and call again.
//!
//! Choose `P >=` JWKS cache lifetime + time for a keyset change to reach every pod, and
//! `R >=` longest token lifetime + JWKS cache lifetime + clock leeway
//! ([`KeyPolicy::derived`] computes both).

mod algorithm;
mod document;
mod error;
mod generate;
mod keyset;
mod material;
mod policy;
mod rotation;
pub mod sealed;
mod signing;

pub use algorithm::{Algorithm, KeyState, UnknownAlgorithm, UnknownKeyState};
pub use error::{KeyError, KeysetError};
pub use generate::{GeneratedKey, generate};
pub use keyset::{KEYSET_VERSION, KID_MAX_LEN, Key, KeyInfo, Keyset, PrivateKeyPem};
pub use material::PrivateKeyError;
pub use policy::{KeyPolicy, PolicyError};
pub use rotation::{KeyChange, Rotation, rotate};
pub use sealed::SealError;
pub use signing::{ACCESS_TOKEN_TYP, SigningKey};
