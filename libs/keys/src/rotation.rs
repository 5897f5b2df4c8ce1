//! The rotation state machine: a pure function from (keyset, policy, now) to the next keyset and deadline.

use std::time::Duration;

use serde::Serialize;
use time::{OffsetDateTime, UtcOffset};

use crate::keyset::kid_is_well_formed;
use crate::{Algorithm, GeneratedKey, Key, KeyError, KeyPolicy, KeyState, Keyset};

/// One key's change of state in a rotation. `from: None` is a created key, `to: None` a removed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    /// The key that changed.
    pub kid: String,
    /// Its state before, or `None` if it was just created.
    pub from: Option<KeyState>,
    /// Its state after, or `None` if it was removed from the keyset.
    pub to: Option<KeyState>,
}

/// The outcome of [`rotate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The keyset to store and publish (equal to the input when `changes` is empty).
    pub keyset: Keyset,
    /// What changed, in the order it happened.
    pub changes: Vec<KeyChange>,
    /// The earliest time at which calling [`rotate`] again (with the same policy and
    /// `force`) changes something. Always later than `now`.
    pub next_deadline: OffsetDateTime,
}

impl Rotation {
    /// Whether this rotation changed nothing, so there is nothing to store or publish.
    pub fn is_unchanged(&self) -> bool {
        self.changes.is_empty()
    }

    /// The kid that became active in this rotation (bootstrap or promotion), if any.
    pub fn activated(&self) -> Option<&str> {
        self.changes
            .iter()
            .find(|change| change.to == Some(KeyState::Active))
            .map(|change| change.kid.as_str())
    }
}

/// `t + d`, saturating at the largest representable time instead of panicking, so that
/// absurdly long policies mean "never" rather than a crash.
fn after(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    t.saturating_add(time::Duration::try_from(d).unwrap_or(time::Duration::MAX))
}

/// When a key became active. `validate` guarantees active keys have `activated_at`;
/// falling back to `created_at` keeps this total without a panic path.
fn activated_at(key: &Key) -> OffsetDateTime {
    key.activated_at.unwrap_or(key.created_at)
}

/// When the active key is due to get a successor published.
fn generation_time(active: &Key, policy: &KeyPolicy) -> OffsetDateTime {
    // `validate` guarantees pre_publication < rotation_interval.
    after(
        activated_at(active),
        policy
            .rotation_interval
            .saturating_sub(policy.pre_publication),
    )
}

/// When the next key may take over: once published for `pre_publication`, and once the
/// active key has served its interval unless a manual rotation is requested.
fn promotion_time(active: &Key, next: &Key, policy: &KeyPolicy, force: bool) -> OffsetDateTime {
    let published_long_enough = after(next.created_at, policy.pre_publication);
    if force {
        published_long_enough
    } else {
        published_long_enough.max(after(activated_at(active), policy.rotation_interval))
    }
}

fn index_of(keys: &[Key], state: KeyState) -> Option<usize> {
    keys.iter().position(|key| key.state == state)
}

/// Advances the keyset as far as `now` allows. See the crate documentation for the rules.
///
/// `force` requests a manual rotation: a next key is created at once if there is none,
/// and it takes over as soon as it has been published for `pre_publication`, without
/// waiting for the interval. Keep passing `force` until [`Rotation::activated`] reports a
/// promotion (e.g. derive it as "rotation requested after the active key's
/// `activated_at`"); a bootstrap or a promotion satisfies the request within the call.
///
/// Pure: the only effects are through `generate`, called at most once per call.
pub fn rotate(
    keyset: &Keyset,
    policy: &KeyPolicy,
    now: OffsetDateTime,
    force: bool,
    generate: &mut dyn FnMut(Algorithm) -> Result<GeneratedKey, KeyError>,
) -> Result<Rotation, KeyError> {
    policy.validate()?;
    keyset.validate()?;
    // One offset throughout the document, whatever the caller's clock uses.
    let now = now.to_offset(UtcOffset::UTC);
    let mut keys = keyset.keys.clone();
    let mut changes = Vec::new();
    let mut force = force;

    // Retiring keys leave once every token they signed has expired.
    keys.retain(|key| {
        let expired = key.state == KeyState::Retiring && key.remove_after.is_none_or(|t| now >= t);
        if expired {
            changes.push(KeyChange {
                kid: key.kid.clone(),
                from: Some(KeyState::Retiring),
                to: None,
            });
        }
        !expired
    });

    if let Some(active) = index_of(&keys, KeyState::Active) {
        if let Some(next) = index_of(&keys, KeyState::Next) {
            if promotion_time(&keys[active], &keys[next], policy, force) <= now {
                let old = &mut keys[active];
                old.state = KeyState::Retiring;
                old.retiring_at = Some(now);
                old.remove_after = Some(after(now, policy.retirement));
                changes.push(KeyChange {
                    kid: old.kid.clone(),
                    from: Some(KeyState::Active),
                    to: Some(KeyState::Retiring),
                });
                let new = &mut keys[next];
                new.state = KeyState::Active;
                new.activated_at = Some(now);
                changes.push(KeyChange {
                    kid: new.kid.clone(),
                    from: Some(KeyState::Next),
                    to: Some(KeyState::Active),
                });
                // The manual rotation asked for has happened.
                force = false;
            }
        } else if force || generation_time(&keys[active], policy) <= now {
            // Published from now on; it signs only after pre_publication (never in this call,
            // since pre_publication is positive).
            let key = new_key(&keys, policy, now, KeyState::Next, generate)?;
            changes.push(KeyChange {
                kid: key.kid.clone(),
                from: None,
                to: Some(KeyState::Next),
            });
            keys.push(key);
        }
    } else {
        // Bootstrap: nobody can have cached or received anything yet, so the first key
        // signs at once. (A valid non-empty keyset always has an active key, and removal
        // above only touches retiring keys, so this is the empty keyset.)
        let mut key = new_key(&keys, policy, now, KeyState::Active, generate)?;
        key.activated_at = Some(now);
        changes.push(KeyChange {
            kid: key.kid.clone(),
            from: None,
            to: Some(KeyState::Active),
        });
        keys.push(key);
        force = false;
    }

    let next_deadline = next_deadline(&keys, policy, force);
    Ok(Rotation {
        keyset: Keyset {
            version: keyset.version,
            keys,
        },
        changes,
        next_deadline,
    })
}

/// Generates a key for the policy's algorithm and checks it can join the keyset.
fn new_key(
    keys: &[Key],
    policy: &KeyPolicy,
    now: OffsetDateTime,
    state: KeyState,
    generate: &mut dyn FnMut(Algorithm) -> Result<GeneratedKey, KeyError>,
) -> Result<Key, KeyError> {
    let generated = generate(policy.algorithm)?;
    let reject = |reason: String| KeyError::GeneratedKeyRejected {
        kid: generated.kid.clone(),
        reason,
    };
    if generated.alg != policy.algorithm {
        return Err(reject(format!(
            "it is {} but the policy asks for {}",
            generated.alg, policy.algorithm
        )));
    }
    if !kid_is_well_formed(&generated.kid) {
        return Err(reject("its kid is not well-formed".to_owned()));
    }
    // A kid is never reused, even for a key that has since been removed from this
    // keyset: generated kids are thumbprints, so a clash here means a broken generator.
    if keys.iter().any(|key| key.kid == generated.kid) {
        return Err(reject("its kid is already in the keyset".to_owned()));
    }
    let mut key = generated.into_key(state, now);
    // Activation is the caller's business: it stamps `activated_at` when it promotes.
    key.activated_at = None;
    key.public_key().map_err(|reason| key.invalid(reason))?;
    Ok(key)
}

/// The earliest future time at which a rotation would change something: the next
/// generation or promotion, or the earliest removal of a retiring key.
fn next_deadline(keys: &[Key], policy: &KeyPolicy, force: bool) -> OffsetDateTime {
    let active = index_of(keys, KeyState::Active).map(|i| &keys[i]);
    let next = index_of(keys, KeyState::Next).map(|i| &keys[i]);
    let succession = match (active, next) {
        (Some(active), Some(next)) => Some(promotion_time(active, next, policy, force)),
        (Some(active), None) => Some(generation_time(active, policy)),
        // Unreachable after a successful rotation: there is always an active key.
        (None, _) => None,
    };
    let removals = keys
        .iter()
        .filter(|key| key.state == KeyState::Retiring)
        .filter_map(|key| key.remove_after);
    succession
        .into_iter()
        .chain(removals)
        .min()
        .unwrap_or_else(|| after(OffsetDateTime::UNIX_EPOCH, Duration::MAX))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn policy() -> KeyPolicy {
        KeyPolicy {
            algorithm: Algorithm::EdDSA,
            rotation_interval: 60 * MINUTE,
            pre_publication: 10 * MINUTE,
            retirement: 20 * MINUTE,
        }
    }

    #[test]
    fn an_empty_keyset_gets_one_active_key_and_a_deadline_for_its_successor() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let rotation = rotate(
            &Keyset::empty(),
            &policy(),
            now,
            false,
            &mut crate::generate,
        )
        .unwrap();
        let active = rotation.keyset.active().unwrap();
        assert_eq!(active.activated_at, Some(now));
        assert_eq!(rotation.activated(), Some(active.kid.as_str()));
        assert_eq!(rotation.next_deadline, datetime!(2026-01-01 00:50 UTC));
    }

    #[test]
    fn absurdly_long_durations_saturate_instead_of_panicking() {
        let now = datetime!(2026-01-01 00:00 UTC);
        assert_eq!(after(now, Duration::MAX).year(), 9999);
    }

    #[test]
    fn a_failing_generator_fails_the_rotation() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let err = rotate(&Keyset::empty(), &policy(), now, false, &mut |alg| {
            Err(KeyError::Generate { alg })
        })
        .unwrap_err();
        assert!(matches!(
            err,
            KeyError::Generate {
                alg: Algorithm::EdDSA
            }
        ));
    }
}
