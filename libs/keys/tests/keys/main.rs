//! Integration tests of tessera-keys through its public API only.

mod keyset;
mod policy;
mod rotation;
mod sealed;
mod signing;
mod timeline;

use std::time::Duration;

use tessera_keys::{Algorithm, Key, KeyPolicy, KeyState, Keyset, Rotation, generate, rotate};
use time::OffsetDateTime;
use time::macros::datetime;

/// The simulated clock: minutes after a fixed start.
pub fn at(minutes: i64) -> OffsetDateTime {
    datetime!(2026-03-01 00:00 UTC) + time::Duration::minutes(minutes)
}

pub const MINUTE: Duration = Duration::from_secs(60);

/// Interval 1 h, pre-publication 10 min, retirement 20 min.
pub fn hourly_policy() -> KeyPolicy {
    KeyPolicy {
        algorithm: Algorithm::EdDSA,
        rotation_interval: 60 * MINUTE,
        pre_publication: 10 * MINUTE,
        retirement: 20 * MINUTE,
    }
}

/// A freshly generated key in `state`, with the timestamps that state requires.
pub fn key(alg: Algorithm, state: KeyState) -> Key {
    let generated = generate(alg).expect("key generation works");
    let (activated_at, retiring_at, remove_after) = match state {
        KeyState::Next => (None, None, None),
        KeyState::Active => (Some(at(0)), None, None),
        KeyState::Retiring => (Some(at(0)), Some(at(0)), Some(at(20))),
    };
    Key {
        kid: generated.kid,
        alg,
        state,
        created_at: at(0),
        activated_at,
        retiring_at,
        remove_after,
        private_key_pem: generated.private_key_pem,
    }
}

pub fn keyset(keys: Vec<Key>) -> Keyset {
    Keyset { version: 1, keys }
}

/// One rotation at `minute` with the real key generator.
pub fn step(set: &Keyset, policy: &KeyPolicy, minute: i64, force: bool) -> Rotation {
    rotate(set, policy, at(minute), force, &mut generate).expect("rotation succeeds")
}
